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
#include "kvm/guest.h"

struct tern_conn_recv_args {
	int fd;         /* owned by the actor from spawn on (closed in stop) */
	uint32_t conn;
	uint32_t receiver; /* ReceiverCoordinator: CTL_IN, PAGES_IN */
	int populate;      /* populate ranges ahead of the data */
	int deadline_ms;   /* no progress for this long: the source is gone */
	/* Set (release) by the ReceiverCoordinator once the guest exists;
	 * NULL until W_CONFIG was accepted. */
	struct tern_guest *_Atomic *guest;
	struct tern_bitmap *written; /* valid once *guest is set */
	_Atomic uint64_t bytes; /* bytes on the wire, both directions */
	_Atomic uint64_t payload;
};

extern const struct tern_actor_desc tern_conn_recv_actor;

#endif /* TERN_ACTORS_CONN_RECV_H */
