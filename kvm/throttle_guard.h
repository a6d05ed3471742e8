/*
 * The throttle guard: the part of auto-converge that must outlive the
 * ThrottleActor (seed 002).  The throttle pauses and resumes the guest's
 * vCPUs through the guard only; the guard remembers whether the throttle
 * left the guest paused, so that whoever releases it -- the actor's stop
 * callback, or its owner after joining the actor -- resumes the vCPUs, and
 * whatever happens to the actor (stopped, killed, failed, mailbox gone) the
 * guest ends up running.
 *
 * It also keeps the throttle's pause/resume pair and the owner's own
 * switchover pause from fighting: guest pause/resume are idempotent, not
 * counted, so a throttle resume landing after the coordinator's pause would
 * silently restart a guest in switchover.  The owner therefore takes a hold
 * before its own pause.
 *
 * Contract:
 *  - The guard's memory belongs to the caller (libuv style); init it with
 *    the guest before spawning the ThrottleActor, fini it after the actor
 *    is joined.  The guest must outlive the guard's use.
 *  - tern_throttle_guard_pause/_resume are the throttle's calls.  Every
 *    guest pause/resume they make happens under the guard's mutex, so the
 *    guard's record always matches the guest.
 *  - tern_throttle_guard_hold (owner): waits for a throttle pause or resume
 *    in progress to finish, ends a throttle pause (resumes the guest), and
 *    makes every later throttle pause a no-op (TERN_ESTATE) until the
 *    matching unhold.  After it returns the guest is exactly as the owner
 *    left it, so the owner may pause it (switchover), resume it (strict
 *    switchover gave up) and nobody undoes that.  Holds nest (counted).
 *    Cost: one guest resume if the throttle had it paused.
 *  - tern_throttle_guard_release (both the actor's stop and the owner
 *    after tern_actor_join, also when the join timed out): resumes the guest
 *    if and only if the throttle left it paused, and closes the guard: later
 *    throttle pauses return TERN_ECLOSED, so an actor still running cannot
 *    pause the guest again.  Idempotent.  It never resumes a pause made by
 *    the owner (under a hold the throttle holds no pause).
 *  - Never call these from inside a guest op; never hold the guard's lock
 *    across a wait on the actor (the actor takes the lock in its stop).
 */
#ifndef TERN_KVM_THROTTLE_GUARD_H
#define TERN_KVM_THROTTLE_GUARD_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "kvm/guest.h"

struct tern_throttle_guard {
	struct tern_guest *guest;
	uv_mutex_t lock; /* serialises every guest pause/resume made here */
	/* paused: the throttle has the guest paused.  Written under lock;
	 * atomic so tern_throttle_guard_paused may peek without the lock. */
	atomic_bool paused;
	uint32_t holds;           /* owner holds, under lock */
	bool closed;              /* released: no more throttle pauses, under lock */
	uint64_t pauses, resumes; /* throttle pauses/resumes done, under lock */
};

/* tern_throttle_guard_init prepares g for guest.  0 or a negative code. */
int tern_throttle_guard_init(struct tern_throttle_guard *g, struct tern_guest *guest);

/* tern_throttle_guard_fini releases g (resuming the guest if the throttle
 * left it paused) and destroys its mutex.  No call on g may be running. */
void tern_throttle_guard_fini(struct tern_throttle_guard *g);

/* tern_throttle_guard_pause pauses the guest for the throttle.  Returns 0
 * once no vCPU runs, TERN_ESTATE (nothing done) while the owner holds the
 * guard, TERN_ECLOSED (nothing done) once released, or the guest's error
 * (the guard then counts the guest as throttle-paused, so a release still
 * resumes it).  t_call/t_ret (may be NULL) get CLOCK_MONOTONIC around the
 * guest's pause, for latency compensation. */
int tern_throttle_guard_pause(struct tern_throttle_guard *g, uint64_t *t_call, uint64_t *t_ret);

/* tern_throttle_guard_resume resumes the guest if the throttle paused it
 * (0), else does nothing and returns 1 (e.g. a hold ended the pause).
 * Negative on the guest's error (the guest stays counted as paused). */
int tern_throttle_guard_resume(struct tern_throttle_guard *g, uint64_t *t_call, uint64_t *t_ret);

/* tern_throttle_guard_hold: see the contract above.  0 or the guest's
 * resume error (the hold is taken even then). */
int tern_throttle_guard_hold(struct tern_throttle_guard *g);

/* tern_throttle_guard_unhold ends one hold; the throttle may pause again
 * from its next slice. */
void tern_throttle_guard_unhold(struct tern_throttle_guard *g);

/* tern_throttle_guard_release resumes the guest if the throttle left it
 * paused and closes the guard.  0, or the guest's resume error (then the
 * guest stays counted as paused and a later release retries). */
int tern_throttle_guard_release(struct tern_throttle_guard *g);

/* tern_throttle_guard_paused reports whether the throttle has the guest
 * paused right now (a snapshot). */
bool tern_throttle_guard_paused(struct tern_throttle_guard *g);

#endif /* TERN_KVM_THROTTLE_GUARD_H */
