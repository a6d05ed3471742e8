/*
 * ThrottleActor: auto-converge by pausing and resuming all vCPUs inside a
 * timeslice (seed 002).  At pct p the guest is paused for p% of every slice
 * (default 100 ms) and runs for the rest.
 *
 * What "paused" means here, and what is measured: a slice runs from one
 * pause taking effect (the guest's pause returned: no vCPU runs) to the
 * next.  Its paused part ends when the resume is called: the pause call's
 * latency counts as run time (the vCPUs run until it returns), and so does
 * the resume call's (the backend opens the gate first; the call then mostly
 * measures this thread being preempted by the vCPUs it woke).  The actor
 * starts each pause early by the measured pause latency, keeps slices on a
 * fixed grid, and carries the error of every slice into the next (bounded),
 * so the run-time share over a window of slices is 100 - p.  It cannot see
 * the host scheduler's delay between the gate opening and a vCPU thread
 * actually running again.
 *
 * Messages: THROTTLE_SET {pct} (request, 0..99; 0 resumes the guest and
 * stops pausing), replied with THROTTLE_STATE {pct, run_share_ppm (over the
 * last window_slices slices), slices, status (TERN_EINVAL for pct > 99,
 * which changes nothing)}.  Any other message is a protocol error.
 *
 * The guest is paused and resumed only through args->guard, never
 * directly: stop releases the guard (the guest ends up running on every
 * exit path, kill included) and the owner must release it again after
 * tern_actor_join (see kvm/throttle_guard.h).  The guard is single-use: once
 * released a throttle pause fails, and so does the actor (TERN_ECLOSED).
 *
 * Scheduling: the actor competes for the CPU with the vCPU threads it
 * throttles.  On a loaded host a normal-priority thread woke 5-30 ms late
 * and was preempted for as long by the vCPUs it had just resumed (measured
 * on 2 cores), which no latency compensation can hide at 90-99%.  With
 * args.realtime the actor's thread asks for SCHED_FIFO priority 1: it then
 * preempts the vCPUs when its deadline comes and is not preempted by them;
 * it sleeps almost all the time, so it takes next to no CPU.  Without the
 * privilege (EPERM) it runs at normal priority, says so in the trace and
 * in result->realtime, and the share is only as good as the host allows.
 *
 * Trace counters: "throttle_pct" on every change, "throttle_run_share"
 * (0..1) at the end of every window.
 */
#ifndef TERN_ACTORS_THROTTLE_H
#define TERN_ACTORS_THROTTLE_H

#include "actors/actor.h"
#include "kvm/guest.h"
#include "kvm/throttle_guard.h"

#define TERN_THROTTLE_MAX_PCT 99

enum tern_throttle_event_kind {
	TERN_THROTTLE_EV_PAUSE = 1,  /* the guest was paused */
	TERN_THROTTLE_EV_RESUME = 2, /* the guest was resumed */
	/* The owner holds the guard: a slice skipped, or (right after a
	 * PAUSE) the pause in progress was ended by the hold. */
	TERN_THROTTLE_EV_HELD = 3,
};

/* One pause or resume, CLOCK_MONOTONIC around the guest's call. */
struct tern_throttle_event {
	uint32_t kind; /* enum tern_throttle_event_kind */
	uint32_t pct;  /* the pct in force */
	uint64_t t_call_ns;
	uint64_t t_ret_ns;
};

/* Written by the actor's stop; read it after tern_actor_join. */
struct tern_throttle_result {
	uint32_t pct;           /* the pct in force at exit */
	uint32_t run_share_ppm; /* the last window's measured run-time share */
	uint64_t slices;        /* pauses made (one per enforced slice) */
	uint64_t held;          /* slices skipped or cut by the owner's hold */
	uint64_t paused_ns;     /* total time the throttle kept the guest paused */
	uint64_t max_pause_ns;  /* worst pause latency (call to return) */
	uint64_t max_resume_ns; /* worst resume latency */
	bool realtime;          /* the thread ran SCHED_FIFO */
};

struct tern_throttle_args {
	struct tern_guest *guest;            /* must be the guard's guest */
	struct tern_throttle_guard *guard;   /* initialised by the caller */
	uint32_t timeslice_ms;               /* 0: 100 */
	uint32_t window_slices;              /* run-share window, 0: 10 */
	struct tern_throttle_result *result; /* may be NULL */
	bool realtime;                       /* try SCHED_FIFO (see above) */
	/* on_event (may be NULL) is called on the actor's thread after every
	 * pause and resume the actor makes (and every held slice), in order,
	 * so that tests can check the timeline.  It must not block. */
	void (*on_event)(void *arg, const struct tern_throttle_event *ev);
	void *event_arg;
};

extern const struct tern_actor_desc tern_throttle_actor;

#endif /* TERN_ACTORS_THROTTLE_H */
