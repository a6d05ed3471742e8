/*
 * ThrottleActor (seed 002): pauses the guest for pct% of every timeslice.
 *
 * One slice, as the tick schedules it (T = timeslice, P = pct% of T):
 *
 *   pause call at  G - pause latency    -> returns at S ~ G: slice start
 *   resume call at S + P + carry        -> the guest runs again
 *   pause call at  G + T - pause latency, and so on.
 *
 * G is a fixed grid (the nominal slice starts), so a tick that wakes late
 * shortens the next slice instead of shifting every later one.  The pause
 * latency is a moving average of what the guard measured: the vCPUs run
 * until the pause returns, so it is started that much early.
 *
 * The resume is not compensated, on purpose.  The backend opens the vCPU
 * gate at the start of the call and does not wait for the vCPUs; what the
 * call's duration measures on a busy host is this thread being preempted
 * by the vCPUs it just woke (5-20 ms measured on 2 loaded cores, while the
 * pause takes ~30 us) -- time in which the guest runs.  So the paused part
 * of a slice ends at the resume call, and starting it early by its
 * "latency" would cut the real pause short.
 *
 * `carry` is the sum of the previous slices' errors (target paused time
 * minus actual), bounded to one slice: a tick that wakes late, or a pause
 * that waits for a vCPU thread the host has descheduled, makes
 * one slice's pause or run too long, and the next slice pays it back, so
 * the share over a window holds even when single slices miss.
 */
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>

#include "actors/throttle.h"
#include "tern/error.h"

#define TH_WINDOW_MAX 64

enum th_phase { TH_IDLE = 0, TH_RUNNING = 1, TH_PAUSED = 2 };

struct th_slice {
	uint64_t wall_ns;
	uint64_t run_ns;
};

struct th_state {
	struct tern_throttle_args *args;
	struct tern_throttle_guard *guard;
	uint64_t slice_ns;
	uint32_t window;
	uint32_t pct;
	int phase;
	uint64_t pause_at, resume_at; /* next deadlines (TH_RUNNING / TH_PAUSED) */
	uint64_t grid;                /* nominal start of the slice in progress */
	/* The slice in progress: its start (pause returned) and, once the
	 * guest resumed, the end of its paused part (the resume call); 0 when
	 * unknown.  Only a
	 * `counted` slice enters the window: one that began under another pct
	 * or was cut by a hold is not a sample of this pct. */
	uint64_t slice_start, paused_end;
	bool counted;
	int64_t carry_ns;
	uint64_t pause_lat; /* moving average */
	struct th_slice ring[TH_WINDOW_MAX];
	uint32_t head, count;
	uint32_t since_counter; /* slices since the last run-share counter */
	struct tern_throttle_result res;
};

static void
th_event(struct th_state *s, uint32_t kind, uint64_t t_call, uint64_t t_ret)
{
	struct tern_throttle_event ev = {
	    .kind = kind, .pct = s->pct, .t_call_ns = t_call, .t_ret_ns = t_ret};

	if (s->args->on_event != NULL)
		s->args->on_event(s->args->event_arg, &ev);
}

/* th_avg: moving average of the pause latency.  A sample is capped at four
 * times the average (+100 us): a pause that waited 100 ms for a vCPU thread
 * the host had descheduled says nothing about the next one, and starting
 * every later pause that much early would only cost the carry work. */
static uint64_t
th_avg(uint64_t avg, uint64_t x)
{
	if (avg == 0)
		return x < 1000000 ? x : 1000000;
	if (x > 4 * avg + 100000)
		x = 4 * avg + 100000;
	return avg - avg / 8 + x / 8;
}

/* th_share_ppm: run time over wall time of the window's slices. */
static uint32_t
th_share_ppm(const struct th_state *s)
{
	uint64_t wall = 0, run = 0;

	for (uint32_t i = 0; i < s->count; i++) {
		wall += s->ring[i].wall_ns;
		run += s->ring[i].run_ns;
	}
	if (wall == 0)
		return 1000000u;
	return (uint32_t)((double)run * 1e6 / (double)wall + 0.5);
}

/* th_forget starts measuring afresh (pct changed, or a slice was disturbed):
 * the slice in progress is not counted and its error not carried. */
static void
th_forget(struct th_state *s, bool window)
{
	s->counted = false;
	s->carry_ns = 0;
	if (window) {
		s->head = 0;
		s->count = 0;
		s->since_counter = 0;
	}
}

/* th_close_slice accounts the slice that the pause returning at `now` ends. */
static void
th_close_slice(struct tern_actor *self, struct th_state *s, uint64_t now)
{
	int64_t bound = (int64_t)s->slice_ns;

	if (!s->counted || s->slice_start == 0 || s->paused_end == 0 || now <= s->paused_end)
		return;
	uint64_t wall = now - s->slice_start;
	uint64_t paused = s->paused_end - s->slice_start;
	s->carry_ns += (int64_t)(wall * s->pct / 100) - (int64_t)paused;
	if (s->carry_ns > bound)
		s->carry_ns = bound;
	if (s->carry_ns < -bound)
		s->carry_ns = -bound;
	s->ring[s->head] = (struct th_slice){.wall_ns = wall, .run_ns = wall - paused};
	s->head = (s->head + 1) % s->window;
	if (s->count < s->window)
		s->count++;
	if (++s->since_counter >= s->window) {
		s->since_counter = 0;
		tern_actor_counter(self, "throttle_run_share", th_share_ppm(s) / 1e6);
	}
}

static int
th_pause(struct tern_actor *self, struct th_state *s)
{
	uint64_t t0 = 0, t1 = 0;
	int rc = tern_throttle_guard_pause(s->guard, &t0, &t1);

	if (rc == TERN_ESTATE) {
		/* The owner holds the guest (switchover): skip this slice. */
		s->res.held++;
		t0 = tern_now_ns();
		th_event(s, TERN_THROTTLE_EV_HELD, t0, t0);
		th_forget(s, false);
		s->slice_start = 0;
		s->grid = 0;
		s->pause_at = tern_now_ns() + s->slice_ns;
		return 0;
	}
	if (rc == TERN_ECLOSED)
		return tern_actor_fail(self, rc, "throttle guard released by its owner");
	if (rc != 0) {
		(void)tern_throttle_guard_resume(s->guard, NULL, NULL);
		return tern_actor_fail(self, rc, "vCPU pause failed: %s", tern_strerror(rc));
	}
	th_event(s, TERN_THROTTLE_EV_PAUSE, t0, t1);
	s->res.slices++;
	if (t1 - t0 > s->res.max_pause_ns)
		s->res.max_pause_ns = t1 - t0;
	s->pause_lat = th_avg(s->pause_lat, t1 - t0);
	th_close_slice(self, s, t1);

	/* The pause may run past the slice's end when the carry asks for it:
	 * at 99% a slice has 1 ms of run to give back, and one late pause
	 * (a vCPU thread descheduled by the host when asked to stop) can owe
	 * 10-20 ms.  The next pause then follows the resume at once. */
	int64_t want = (int64_t)(s->slice_ns * s->pct / 100) + s->carry_ns;
	if (want < 0)
		want = 0;
	/* Stay on the grid unless this pause is far off it (first slice,
	 * after a hold, a host stall): then the grid restarts here. */
	if (s->grid == 0 || t1 > s->grid + s->slice_ns / 2 || t1 + s->slice_ns / 2 < s->grid)
		s->grid = t1;
	s->slice_start = t1;
	s->paused_end = 0;
	s->counted = true;
	s->resume_at = t1 + (uint64_t)want;
	s->phase = TH_PAUSED;
	/* TERN_FAULT=throttle@pause#N kills it with the vCPUs paused. */
	tern_actor_event(self, "pause", NULL);
	return 0;
}

/* th_resume ends the throttle's pause; `schedule` plans the next one. */
static int
th_resume(struct tern_actor *self, struct th_state *s, bool schedule)
{
	uint64_t t0 = 0, t1 = 0;
	int rc = tern_throttle_guard_resume(s->guard, &t0, &t1);

	if (rc < 0)
		return tern_actor_fail(self, rc, "vCPU resume failed: %s", tern_strerror(rc));
	if (rc == 0) {
		th_event(s, TERN_THROTTLE_EV_RESUME, t0, t1);
		if (t1 - t0 > s->res.max_resume_ns)
			s->res.max_resume_ns = t1 - t0;
		if (s->slice_start != 0)
			s->res.paused_ns += t0 - s->slice_start;
		s->paused_end = t0;
	} else {
		/* A hold ended our pause at a time we do not know. */
		t0 = tern_now_ns();
		s->res.held++;
		th_event(s, TERN_THROTTLE_EV_HELD, t0, t0);
		th_forget(s, false);
		s->paused_end = 0;
	}
	s->phase = TH_RUNNING;
	if (schedule) {
		s->grid = s->grid != 0 ? s->grid + s->slice_ns : t1 + s->slice_ns;
		s->pause_at = s->grid > s->pause_lat ? s->grid - s->pause_lat : 0;
	}
	return 0;
}

/* th_arm sets the tick for the next deadline (the tick period is relative). */
static void
th_arm(struct tern_actor *self, struct th_state *s)
{
	uint64_t now = tern_now_ns(), at;

	if (s->phase == TH_IDLE) {
		tern_actor_set_tick(self, 0);
		return;
	}
	at = s->phase == TH_RUNNING ? s->pause_at : s->resume_at;
	tern_actor_set_tick(self, at > now ? at - now : 1);
}

static int
th_set(struct tern_actor *self, struct th_state *s, uint32_t pct)
{
	int rc;

	if (pct == s->pct)
		return 0;
	if (pct == 0) {
		if (s->phase == TH_PAUSED && (rc = th_resume(self, s, false)) != 0)
			return rc;
		s->phase = TH_IDLE;
		s->pct = 0;
		s->slice_start = 0;
		s->grid = 0;
		th_forget(s, true);
	} else if (s->phase == TH_IDLE) {
		s->pct = pct;
		s->slice_start = 0;
		s->grid = 0;
		th_forget(s, true);
		s->phase = TH_RUNNING;
		s->pause_at = tern_now_ns();
	} else {
		/* Change of pct: the slice in progress keeps its start, so the
		 * pause in progress ends at the new pct's point (or now), and
		 * the new pct is measured from the next slice on. */
		s->pct = pct;
		th_forget(s, true);
		if (s->phase == TH_PAUSED) {
			s->resume_at = s->slice_start + s->slice_ns * pct / 100;
		}
	}
	tern_actor_counter(self, "throttle_pct", s->pct);
	tern_actor_state(self, s->pct == 0 ? "idle" : "throttling");
	th_arm(self, s);
	return 0;
}

static int
th_init(struct tern_actor *self, void *state, void *arg)
{
	struct th_state *s = state;
	struct tern_throttle_args *a = arg;

	if (a == NULL || a->guard == NULL || a->guest == NULL || a->guard->guest != a->guest ||
	    a->window_slices > TH_WINDOW_MAX)
		return TERN_EINVAL;
	s->args = a;
	s->guard = a->guard;
	s->slice_ns = (uint64_t)(a->timeslice_ms != 0 ? a->timeslice_ms : 100) * 1000000ull;
	s->window = a->window_slices != 0 ? a->window_slices : 10;
	s->phase = TH_IDLE;
	if (a->realtime) {
		struct sched_param sp = {.sched_priority = 1};
		int rc = pthread_setschedparam(pthread_self(), SCHED_FIFO, &sp);
		s->res.realtime = rc == 0;
		if (rc != 0)
			tern_actor_state(self, "realtime refused: normal priority");
	}
	tern_actor_state(self, "idle");
	return 0;
}

static int
th_handle(struct tern_actor *self, void *state, const struct tern_msg *m)
{
	struct th_state *s = state;
	struct tern_msg r;
	int rc, status = 0;

	if (m->type != TERN_MSG_THROTTLE_SET)
		return tern_actor_fail(self, TERN_EPROTO, "unexpected message %s",
		                       tern_msg_name(m->type));
	if (m->u.throttle_set.pct > TERN_THROTTLE_MAX_PCT)
		status = TERN_EINVAL;
	else if ((rc = th_set(self, s, m->u.throttle_set.pct)) != 0)
		return rc;
	tern_msg_init(&r, TERN_MSG_THROTTLE_STATE);
	r.u.throttle_state.pct = s->pct;
	r.u.throttle_state.run_share_ppm = th_share_ppm(s);
	r.u.throttle_state.slices = s->res.slices;
	r.u.throttle_state.status = status;
	/* A requester that is gone is not this actor's failure. */
	rc = tern_actor_reply(self, m, &r);
	return rc == TERN_ECLOSED ? 0 : rc;
}

static int
th_tick(struct tern_actor *self, void *state)
{
	struct th_state *s = state;
	int rc = 0;

	if (s->phase == TH_RUNNING)
		rc = th_pause(self, s);
	else if (s->phase == TH_PAUSED)
		rc = th_resume(self, s, true);
	if (rc != 0)
		return rc;
	th_arm(self, s);
	return 0;
}

static void
th_stop(struct tern_actor *self, void *state)
{
	struct th_state *s = state;

	(void)self;
	if (s->guard == NULL)
		return;
	if (s->phase == TH_PAUSED) {
		uint64_t t0 = 0, t1 = 0;
		if (tern_throttle_guard_resume(s->guard, &t0, &t1) == 0)
			th_event(s, TERN_THROTTLE_EV_RESUME, t0, t1);
	}
	/* Whatever the resume above did, release resumes a guest the
	 * throttle still holds paused, and closes the guard. */
	(void)tern_throttle_guard_release(s->guard);
	if (s->args->result != NULL) {
		s->res.pct = s->pct;
		s->res.run_share_ppm = th_share_ppm(s);
		*s->args->result = s->res;
	}
}

const struct tern_actor_desc tern_throttle_actor = {
    .name = "throttle",
    .state_size = sizeof(struct th_state),
    .init = th_init,
    .handle = th_handle,
    .tick = th_tick,
    .stop = th_stop,
};
