/*
 * The destination's populate-ahead stage: a thread of the ReceiverCoordinator
 * that makes guest memory ready for data (kvm/guest_ready.h) a little ahead
 * of where the data arrives, while the connections receive, so that the
 * cost of installing pages moves off the connections' path and onto the
 * other core.
 *
 * The migration's space (kvm/guest.h) is cut into 2 MiB blocks (one may hold
 * the end of a region, a gap and the start of the next), each in one state:
 *
 *   FREE -> PREPARING (the populator) -> READY
 *   FREE -> TAKEN (a connection got there first and populates what it needs)
 *
 * A connection never writes a block being prepared (it waits, at most one
 * block's preparation): preparing a memfd block writes it through the
 * kernel (guest_ready.c), which would race with data.  The populator starts
 * at the lowest block and skips ahead of blocks the connections took, never
 * more than TERN_AHEAD_LEAD beyond the highest block they took, so a sparse
 * guest gets at most that much memory populated that no data needed.
 *
 * A preallocated guest (tern receive --prealloc) starts with every block
 * READY and no thread: the connections then never populate.
 */
#ifndef TERN_ACTORS_POPULATE_AHEAD_H
#define TERN_ACTORS_POPULATE_AHEAD_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "kvm/guest.h"
#include "messages/msg.h"

#define TERN_AHEAD_BLOCK (2ull << 20)
#define TERN_AHEAD_LEAD (64ull << 20)

struct tern_populate_ahead {
	struct tern_guest *g;
	uint64_t nblocks;
	_Atomic uint8_t *state; /* per block; see above */
	/* The highest block a connection took or found ready, plus one: where
	 * the data is.  Relaxed: only a hint for the populator's position. */
	_Atomic uint64_t front;
	atomic_bool stop; /* relaxed: polled between blocks */
	uv_thread_t th;
	bool running;
	int rc; /* the populator's first error (it then stops: an optimisation) */
	uint64_t blocks_prepared;
};

/* tern_populate_ahead_init sets up a for guest g: every block READY when
 * ready (a preallocated guest), else FREE.  Leaves a state that fini can
 * be called on, also on failure.  Returns 0 or TERN_ENOMEM. */
int tern_populate_ahead_init(struct tern_populate_ahead *a, struct tern_guest *g, bool ready);

/* tern_populate_ahead_start starts the populator thread (not for a ready
 * guest).  Returns 0 or the thread's error (the connections then populate
 * alone, as without it). */
int tern_populate_ahead_start(struct tern_populate_ahead *a);

/* tern_populate_ahead_stop stops and joins the populator; idempotent,
 * returns within one block's preparation. */
void tern_populate_ahead_stop(struct tern_populate_ahead *a);

/* tern_populate_ahead_cancel asks the populator to stop without waiting
 * for it (the end of memory: the switchover must not wait). */
void tern_populate_ahead_cancel(struct tern_populate_ahead *a);

/* tern_populate_ahead_fini stops it and frees the block map. */
void tern_populate_ahead_fini(struct tern_populate_ahead *a);

/* tern_populate_ahead_take is called by a connection before it writes the
 * data ranges of page frame p (checked against the guest): it waits for
 * blocks being prepared, takes the free ones, and returns true when some
 * block of p is not READY, i.e. the connection should populate p's ranges
 * itself. */
bool tern_populate_ahead_take(struct tern_populate_ahead *a, const struct tern_msg_w_pages *p);

#endif /* TERN_ACTORS_POPULATE_AHEAD_H */
