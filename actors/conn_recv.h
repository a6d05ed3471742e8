/*
 * Destination ConnectionActor: owns one accepted, handshaken TCP connection.
 *
 * Validates every frame.  W_PAGES: every range is checked against guest
 * memory before a byte is written, the pages are populated ahead of the data
 * (MADV_POPULATE_WRITE costs a fraction of a first-touch fault here) and
 * received straight into guest memory, then acknowledged with W_ACK.
 * Connection 0 forwards control frames to the ReceiverCoordinator (CTL_IN)
 * and sends its answers (CTL_OUT).  Anything malformed: W_ABORT to the peer
 * and an error exit, never a desync.
 */
#ifndef TERN_ACTORS_CONN_RECV_H
#define TERN_ACTORS_CONN_RECV_H

#include <stdatomic.h>

#include "actors/actor.h"
#include "actors/populate_ahead.h"
#include "kvm/guest.h"
#include "net/link.h"

struct tern_pc_dst;

struct tern_conn_recv_args {
	struct tern_link link; /* owned by the actor from spawn on (closed in stop) */
	uint32_t conn;
	uint32_t receiver; /* ReceiverCoordinator: CTL_IN, PAGES_IN */
	int populate;      /* populate ranges ahead of the data */
	int deadline_ms;   /* no progress for this long: the source is gone */
	/* Set (release) by the ReceiverCoordinator once the guest exists;
	 * NULL until W_CONFIG was accepted. */
	struct tern_guest *_Atomic *guest;
	struct tern_bitmap *written;       /* valid once *guest is set */
	struct tern_populate_ahead *ahead; /* valid once *guest is set */
	/* The end of memory (the receiver's, shared by every connection): once
	 * set, a page frame is a protocol violation.  Together with *writers
	 * (page frames being written now) it is a Dekker pair, both seq_cst:
	 * either the receiver sees a writer or the writer sees the barrier. */
	atomic_bool *memory_closed;
	_Atomic uint32_t *writers;
	/* Postcopy (actors/postcopy.h), set (seq_cst) by the receiver at the
	 * switch: from then on pages are placed, never written in place; a
	 * writer reads it after counting itself in writers (the same Dekker
	 * pair: the receiver checks writers after setting it). */
	struct tern_pc_dst *_Atomic *pc;
	/* This connection's own barrier, set by the receiver on W_FENCE (the
	 * source gave up on it), and its writes in progress: the same Dekker
	 * pair, so once the receiver saw writing == 0 after setting fenced,
	 * nothing from this connection reaches guest memory again. */
	atomic_bool fenced;
	_Atomic uint32_t writing;
	/* Set before this actor fails on a frame the protocol forbids: the
	 * receiver then aborts the migration instead of counting the
	 * connection lost (a lost data connection is survivable, a lying
	 * source is not).  why is written before it and read after it. */
	atomic_bool violation;
	char why[TERN_STR_MAX];
	_Atomic uint64_t bytes; /* bytes on the wire, both directions */
	_Atomic uint64_t payload;
};

extern const struct tern_actor_desc tern_conn_recv_actor;

#endif /* TERN_ACTORS_CONN_RECV_H */
