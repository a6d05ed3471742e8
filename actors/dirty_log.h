/*
 * DirtyLogActor: harvests the guest's dirty log in the background, on a
 * thread it owns (actors/dirty_harvest.h), into an accumulated dirty set, so
 * that taking the set is a swap that never waits for a harvest.
 *
 * The sets it swaps are its own and are lent by id, never by address: the
 * bitmaps live in the args (the caller allocates them for the guest's page
 * count and frees them after joining every actor), and set id k is maps[k -
 * TERN_SET_DIRTY] (actors/set_table.h), which the coordinator and the actors
 * reading its chunks know from their spawn arguments.  A set lent by
 * DIRTY_SET is not written by anyone until it comes back by DIRTY_GIVE.
 *
 * Messages: DIRTY_TAKE (request; replied with DIRTY_SET and the lent set's
 * id; harvest_ns is the harvest made inside this TAKE: the final one's, 0
 * for the others), DIRTY_GIVE (the set comes back, cleared here),
 * DIRTY_STOP.  Tracking starts in init (in args->mode, reported as a trace
 * STATE "tracking (mode=...)") and the harvest thread right after it; stop
 * joins the thread, then stops tracking.  In ring mode the trace counter
 * "ring_full_stalls" counts the times a vCPU stopped on a full ring
 * (updated every period when it moved, and at every DIRTY_TAKE).
 */
#ifndef TERN_ACTORS_DIRTY_LOG_H
#define TERN_ACTORS_DIRTY_LOG_H

#include "actors/actor.h"
#include "actors/set_table.h"
#include "kvm/guest.h"

struct tern_dirty_log_args {
	struct tern_guest *guest;
	/* Allocated by the caller, npages bits each: one accumulates, the
	 * coordinator may hold up to two (the set being decided on and the
	 * final harvest at switchover).  Lent as ids TERN_SET_DIRTY + index. */
	struct tern_bitmap maps[TERN_DIRTY_MAPS];
	uint32_t period_ms;   /* background harvest period (30 ms) */
	uint32_t window_ms;   /* dirty-rate window (1000 ms) */
	uint64_t slice_pages; /* address space per harvest slice, pages (16384) */
	/* Dirty-log mode for tern_guest_set_dirty_mode before dirty_start:
	 * "bitmap" or "ring" (NULL: leave the guest's selection as it is),
	 * and the ring's entries per vCPU (0: TERN_DIRTY_RING_DEFAULT). */
	const char *mode;
	uint32_t ring_size;
};

extern const struct tern_actor_desc tern_dirty_log_actor;

#endif /* TERN_ACTORS_DIRTY_LOG_H */
