/*
 * ReceiverCoordinator: the destination's state machine.
 *
 *   listening -> configured -> state [-> verified] -> resumed | aborted
 *
 * Each control frame is accepted once, in that order (W_DIGEST only with
 * --verify); page data only while configured.  Anything else aborts the
 * migration with a one-line reason: the source resumes its guest.
 *
 * It starts with connections already accepted and handshaken (the session
 * accepts them), spawns one ConnectionActor per connection, checks W_CONFIG
 * against its own guest or builds one from it (vCPUs parked), loads W_STATE, checks W_DIGEST, and
 * on W_COMPLETE resumes the guest and confirms.  It ends with TERN_ACTOR_DONE; the guest (if any)
 * is handed to the caller in args->guest.
 */
#ifndef TERN_ACTORS_RECEIVER_H
#define TERN_ACTORS_RECEIVER_H

#include "actors/conn_recv.h"
#include "actors/populate_ahead.h"
#include "net/hello.h"
#include "tern/tern.h"

struct tern_receiver_args {
	const struct tern_recv_opts *opts;
	uint32_t nconns;
	struct tern_conn_recv_args conns[TERN_MAX_CONNECTIONS]; /* fds filled in */
	struct tern_guest *_Atomic guest; /* out: owned by the caller after join */
	/* The destination's own guest (a VMM's), or NULL: one is built from
	 * the announced layout.  W_CONFIG must match its layout. */
	struct tern_guest *own;
	/* Pages that received data here: an announced zero page that never
	 * did needs no work (and touching it would allocate it).  Allocated
	 * with the guest, before it is published; freed by the caller. */
	struct tern_bitmap written;
	/* Made ready with the guest (before it is published): the populator
	 * started then, stopped at the end of memory; the connections take
	 * its blocks.  Freed by the receiver's stop. */
	struct tern_populate_ahead ahead;
	/* Set at W_STATE (the source sends it only once every page frame was
	 * acknowledged) and whenever the migration ends: from then on no
	 * connection writes guest memory.  See tern_conn_recv_args. */
	atomic_bool memory_closed;
	_Atomic uint32_t writers;
	/* Postcopy's state once the source switched (actors/postcopy.h);
	 * NULL before.  Owned by the receiver. */
	struct tern_pc_dst *_Atomic pc;
	int result;
	char err[TERN_STR_MAX];
	struct tern_stats *stats;
	uint64_t start_ns;
	/* Postcopy recovery (postcopy_recv.c): the driver's mailbox, which
	 * accepts the source's return (PC_PAUSED, PC_RELINKED); the migration
	 * it must be, kept from the first accept; recover_cancel (set by the
	 * receiver's stop) ends a wait for it. */
	uint32_t driver;
	char migration[TERN_STR_MAX];
	uint8_t key[TERN_WIRE_KEY_LEN];
	uint32_t asked;
	atomic_bool recover_cancel;
};

extern const struct tern_actor_desc tern_receiver_actor;

#endif /* TERN_ACTORS_RECEIVER_H */
