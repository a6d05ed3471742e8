/*
 * ThrottleActor and its guard, on a real simvm guest running memtouch.
 * Every pause and resume the actor makes is recorded with its timestamps
 * (as seed 002's reviewers asked), and the tests assert on that timeline:
 * the run-time share at 10/50/90/99%, alternation, set/reset/cancel, stop
 * and kill while paused (the guest runs afterwards: its step counter in
 * guest memory advances), and the owner's hold.
 */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

#include "actors/actor.h"
#include "actors/throttle.h"
#include "kvm/guest.h"
#include "kvm/throttle_guard.h"
#include "tern/error.h"

#define SPEC "simvm:mem=64M,vcpus=2,workload=memtouch:ws=8M"
#define EV_MAX 8192
#define MS 1000000ull
/* Liveness bound for waiting on an event of the throttle or the guest. */
#define WAIT_BOUND_NS (30000 * MS)

struct rec {
	uv_mutex_t lock;
	struct tern_throttle_event ev[EV_MAX];
	size_t n;
	size_t lost;
};

struct fx {
	struct tern_guest *g;
	struct tern_runtime *rt;
	struct tern_mailbox *mb;
	struct tern_throttle_guard guard;
	struct tern_throttle_args args;
	struct tern_throttle_result res;
	struct tern_actor *a;
	struct rec rec;
};

static void
sleep_ms(unsigned ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};

	nanosleep(&ts, NULL);
}

static void
on_event(void *arg, const struct tern_throttle_event *ev)
{
	struct rec *r = arg;

	uv_mutex_lock(&r->lock);
	if (r->n < EV_MAX)
		r->ev[r->n++] = *ev;
	else
		r->lost++;
	uv_mutex_unlock(&r->lock);
}

/* snapshot copies the timeline so far into out (EV_MAX entries). */
static size_t
snapshot(struct fx *f, struct tern_throttle_event *out)
{
	size_t n;

	uv_mutex_lock(&f->rec.lock);
	n = f->rec.n;
	memcpy(out, f->rec.ev, n * sizeof(*out));
	cr_assert_eq(f->rec.lost, 0);
	uv_mutex_unlock(&f->rec.lock);
	return n;
}

static void
fx_start(struct fx *f, uint32_t slice_ms)
{
	struct tern_guest_config cfg;
	char err[256];
	int rc;

	memset(f, 0, sizeof(*f));
	cr_assert_eq(uv_mutex_init(&f->rec.lock), 0);
	cr_assert_eq(tern_guest_spec_parse(SPEC, &cfg, err, sizeof(err)), 0, "%s", err);
	rc = tern_guest_create(&f->g, &cfg, TERN_GUEST_SOURCE, err, sizeof(err));
	cr_assert_eq(rc, 0, "guest: %s (%s)", err, tern_strerror(rc));
	cr_assert_eq(tern_throttle_guard_init(&f->guard, f->g), 0);
	cr_assert_eq(tern_runtime_create(&f->rt, NULL), 0);
	cr_assert_eq(tern_mailbox_open(f->rt, "test", &f->mb), 0);
	f->args = (struct tern_throttle_args){
	    .guest = f->g,
	    .guard = &f->guard,
	    .timeslice_ms = slice_ms,
	    .result = &f->res,
	    .on_event = on_event,
	    .event_arg = &f->rec,
	    .realtime = getenv("THR_NORT") == NULL,
	};
	rc = tern_spawn(f->rt, &tern_throttle_actor, &f->args, tern_mailbox_id(f->mb), &f->a, NULL);
	cr_assert_eq(rc, 0, "spawn: %s", tern_strerror(rc));
}

/* fx_join joins the actor (if still there) and releases the guard, as the
 * owner must. */
static void
fx_join(struct fx *f, struct tern_exit *e)
{
	if (f->a != NULL) {
		cr_assert_eq(tern_actor_join(f->a, 5000, e), 0);
		f->a = NULL;
	}
	cr_assert_eq(tern_throttle_guard_release(&f->guard), 0);
}

static void
fx_end(struct fx *f)
{
	if (f->a != NULL) {
		tern_actor_stop(f->a);
		fx_join(f, NULL);
	}
	tern_mailbox_close(f->mb);
	tern_runtime_destroy(f->rt);
	tern_throttle_guard_fini(&f->guard);
	tern_guest_destroy(f->g);
	uv_mutex_destroy(&f->rec.lock);
}

static struct tern_msg_throttle_state
set_pct(struct fx *f, uint32_t pct)
{
	struct tern_msg m, r;
	int rc;

	tern_msg_init(&m, TERN_MSG_THROTTLE_SET);
	m.u.throttle_set.pct = pct;
	rc = tern_mailbox_request(f->mb, tern_actor_id(f->a), &m, &r, 5000);
	cr_assert_eq(rc, 0, "THROTTLE_SET %u: %s", pct, tern_strerror(rc));
	cr_assert_eq(r.type, TERN_MSG_THROTTLE_STATE);
	return r.u.throttle_state;
}

/* wait_slices waits until the actor has made n slices at pct (a
 * THROTTLE_SET of the pct in force is a query), asserting that it does
 * within the liveness bound; returns its last state. */
static struct tern_msg_throttle_state
wait_slices(struct fx *f, uint32_t pct, uint64_t n)
{
	uint64_t t0 = tern_now_ns();
	struct tern_msg_throttle_state st;

	while ((st = set_pct(f, pct)).slices < n) {
		cr_assert_lt(tern_now_ns() - t0, WAIT_BOUND_NS, "%" PRIu64 " of %" PRIu64 " slices",
		             (uint64_t)st.slices, n);
		sleep_ms(50); /* few queries: they share the actor with its ticks */
	}
	return st;
}

static uint64_t
progress_of(struct tern_guest *g)
{
	uint64_t p = 0;
	char why[256];
	int rc = tern_guest_check(g, &p, why, sizeof(why));

	cr_assert_eq(rc, 0, "check: %s", why);
	return p;
}

/* guest_runs: the workload's step counter in guest memory advances, waited
 * for within the liveness bound (a loaded host runs the vCPU threads late,
 * a paused guest never). */
static bool
guest_runs(struct tern_guest *g)
{
	uint64_t p0 = progress_of(g), t0 = tern_now_ns();

	while (progress_of(g) <= p0) {
		if (tern_now_ns() - t0 > WAIT_BOUND_NS)
			return false;
		sleep_ms(1);
	}
	return true;
}

/* guest_ran_during: whether the step counter moved while this thread slept
 * ms (to show that a paused guest does not). */
static bool
guest_ran_during(struct tern_guest *g, unsigned ms)
{
	uint64_t p0 = progress_of(g);

	sleep_ms(ms);
	return progress_of(g) > p0;
}

/* wait_paused waits until the throttle has paused the guest, asserting that
 * it does within the liveness bound. */
static void
wait_paused(struct fx *f)
{
	uint64_t t0 = tern_now_ns();

	while (!tern_throttle_guard_paused(&f->guard)) {
		cr_assert_lt(tern_now_ns() - t0, WAIT_BOUND_NS,
		             "the throttle never paused the guest");
		sleep_ms(1);
	}
}

/* fx_paused starts the fixture (slice_ms slices), sets pct and waits until
 * the throttle has paused the guest. */
static void
fx_paused(struct fx *f, uint32_t slice_ms, uint32_t pct)
{
	fx_start(f, slice_ms);
	set_pct(f, pct);
	wait_paused(f);
}

/* wait_events waits until the timeline holds n events of kind called after
 * t_ns, asserting that it does within the liveness bound. */
static void
wait_events(struct fx *f, uint32_t kind, uint64_t t_ns, size_t n, const char *what)
{
	uint64_t t0 = tern_now_ns();
	size_t have;

	for (;;) {
		have = 0;
		uv_mutex_lock(&f->rec.lock);
		for (size_t i = 0; i < f->rec.n; i++)
			have += f->rec.ev[i].kind == kind && f->rec.ev[i].t_call_ns > t_ns;
		uv_mutex_unlock(&f->rec.lock);
		if (have >= n)
			return;
		cr_assert_lt(tern_now_ns() - t0, WAIT_BOUND_NS, "%s: %zu of %zu", what, have, n);
		sleep_ms(1);
	}
}

/* check_timeline: pauses and resumes alternate (pause first), timestamps
 * never go back (a HELD event ends a pause: the hold did).  Returns whether
 * the timeline ends paused. */
static bool
check_timeline(const struct tern_throttle_event *ev, size_t n)
{
	bool paused = false;
	uint64_t last = 0;

	for (size_t i = 0; i < n; i++) {
		cr_assert_leq(ev[i].t_call_ns, ev[i].t_ret_ns, "event %zu", i);
		cr_assert_geq(ev[i].t_call_ns, last, "event %zu goes back in time", i);
		last = ev[i].t_ret_ns;
		switch (ev[i].kind) {
		case TERN_THROTTLE_EV_PAUSE:
			cr_assert(!paused, "event %zu: pause while paused", i);
			paused = true;
			break;
		case TERN_THROTTLE_EV_RESUME:
			cr_assert(paused, "event %zu: resume while running", i);
			paused = false;
			break;
		case TERN_THROTTLE_EV_HELD:
			/* While paused: the owner's hold ended the pause. */
			paused = false;
			break;
		default:
			cr_assert_fail("event %zu: kind %u", i, ev[i].kind);
		}
	}
	return paused;
}

struct share {
	uint32_t slices;
	double run_share; /* run time / wall time over the slices */
	double mean_slice_ms;
	double median_slice_ms;
	double median_pause_ms; /* pause latency (call to return) */
	double worst_slice_err; /* worst single-slice share error, points */
};

static int
cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* share_of measures, from the timeline alone, every complete slice at pct
 * (as the actor does, from the first): a slice runs from a pause's return to the next pause's
 * return, its paused part ends at the resume's call (see throttle.h). */
static struct share
share_of(const struct tern_throttle_event *ev, size_t n, uint32_t pct, uint32_t last)
{
	struct share s = {0};
	uint64_t wall = 0, paused = 0;
	static uint64_t walls[EV_MAX], pauses[EV_MAX], lats[EV_MAX];
	uint32_t k = 0;

	for (size_t i = 0; i + 2 < n; i++) {
		if (ev[i].kind != TERN_THROTTLE_EV_PAUSE || ev[i].pct != pct)
			continue;
		if (ev[i + 1].kind != TERN_THROTTLE_EV_RESUME ||
		    ev[i + 2].kind != TERN_THROTTLE_EV_PAUSE || ev[i + 2].pct != pct)
			continue;
		lats[k] = ev[i + 2].t_ret_ns - ev[i + 2].t_call_ns;
		walls[k] = ev[i + 2].t_ret_ns - ev[i].t_ret_ns;
		pauses[k++] = ev[i + 1].t_call_ns - ev[i].t_ret_ns;
	}
	for (uint32_t i = last != 0 && k > last ? k - last : 0; i < k; i++) {
		uint64_t w = walls[i], p = pauses[i];
		double err = fabs(100.0 * (double)(w - p) / (double)w - (100.0 - pct));
		if (err > s.worst_slice_err)
			s.worst_slice_err = err;
		wall += w;
		paused += p;
		walls[s.slices++] = w;
	}
	if (s.slices > 0) {
		s.run_share = (double)(wall - paused) / (double)wall;
		s.mean_slice_ms = (double)wall / s.slices / 1e6;
		qsort(walls, s.slices, sizeof(walls[0]), cmp_u64);
		s.median_slice_ms = (double)walls[s.slices / 2] / 1e6;
		qsort(lats, k, sizeof(lats[0]), cmp_u64);
		s.median_pause_ms = (double)lats[k / 2] / 1e6;
	}
	return s;
}

static void
run_share_at(uint32_t pct)
{
	static struct tern_throttle_event ev[EV_MAX];
	struct fx f;
	struct tern_msg_throttle_state st;
	struct tern_exit e;
	size_t n;

	fx_start(&f, 100);
	cr_assert(guest_runs(f.g), "the workload runs before throttling");
	st = set_pct(&f, pct);
	cr_assert_eq(st.status, 0);
	cr_assert_eq(st.pct, pct);
	/* 22 slices (counted, not timed).  Twenty rather than ten: on this
	 * loaded 2-core host a pause sometimes waits 50-150 ms for a vCPU
	 * thread the host has descheduled, and the carry needs a few slices
	 * to pay that back. */
	st = wait_slices(&f, pct, 22);
	cr_assert_eq(st.pct, pct);
	/* Stopped while throttling: the guest must run afterwards. */
	tern_actor_stop(f.a);
	fx_join(&f, &e);
	cr_assert_eq(e.reason, TERN_EXIT_NORMAL);
	n = snapshot(&f, ev);
	cr_assert(!check_timeline(ev, n), "the guest was left paused");
	struct share s = share_of(ev, n, pct, 0);
	/* The actor's own figure is the share of its last 10 slices. */
	struct share w = share_of(ev, n, pct, 10);
	bool ok = fabs(100.0 * s.run_share - (100.0 - pct)) <= 2.0;
	/* Slices stay on the 100 ms grid.  A slice stretches when the host
	 * takes longer to stop the vCPUs (descheduled threads) than the run
	 * part lasts, as at 99% on a loaded host: allow the pause latency, and
	 * 10 ms of late timer wake-ups on a busy host (seen: 105.6 ms at 99%
	 * with two test suites running).  A slice that forgot its pause or its
	 * run part would be off by far more. */
	bool grid = s.median_slice_ms > 97.0 && s.median_slice_ms < 110.0 + s.median_pause_ms;
	if (!ok || !grid || getenv("THR_DUMP") != NULL)
		for (size_t i = 0; i < n; i++)
			fprintf(stderr, "  %u pct %u call %.3f ms lat %.3f ms\n", ev[i].kind,
			        ev[i].pct, (ev[i].t_call_ns - ev[0].t_call_ns) / 1e6,
			        (ev[i].t_ret_ns - ev[i].t_call_ns) / 1e6);
	fprintf(stderr,
	        "throttle %2u%%: %u slices, mean %.2f ms, median %.2f ms, run share %.3f%% (want "
	        "%u%%), worst slice %.2f points off, last 10 %.3f%%; max pause %.2f ms, max "
	        "resume %.2f ms, median pause %.2f ms\n",
	        pct, s.slices, s.mean_slice_ms, s.median_slice_ms, 100.0 * s.run_share, 100 - pct,
	        s.worst_slice_err, 100.0 * w.run_share, f.res.max_pause_ns / 1e6,
	        f.res.max_resume_ns / 1e6, s.median_pause_ms);
	/* What must hold on any host: the guest runs after the stop. */
	cr_assert(guest_runs(f.g), "the guest does not run after the stop");
	/* Accuracy is only measurable when the host lets a pause complete
	 * within a timeslice: an overloaded host (load far above the core
	 * count, seen at 9 on 2 cores) can keep the vCPU threads from parking
	 * for most of a second, and no 100 ms throttle controls that. */
	if (f.res.max_pause_ns > 100000000ull) {
		fx_end(&f);
		cr_skip_test("host overloaded: a pause took %.1f ms (> one 100 ms timeslice); "
		             "run share %.3f%% not judged",
		             f.res.max_pause_ns / 1e6, 100.0 * s.run_share);
	}
	cr_assert_geq(s.slices, 18, "only %u complete slices of %u", s.slices, st.slices);
	cr_assert(grid, "median slice %.2f ms, median pause latency %.2f ms", s.median_slice_ms,
	          s.median_pause_ms);
	cr_assert(ok, "run share %.3f%%, want %u%% +- 2", 100.0 * s.run_share, 100 - pct);
	/* What the actor reports is what the timeline says. */
	cr_assert_eq(f.res.pct, pct);
	cr_assert(fabs(f.res.run_share_ppm / 1e4 - 100.0 * w.run_share) < 0.01,
	          "actor's run share %.3f%%, timeline's %.3f%%", f.res.run_share_ppm / 1e4,
	          100.0 * w.run_share);
	size_t pauses = 0;
	for (size_t i = 0; i < n; i++)
		pauses += ev[i].kind == TERN_THROTTLE_EV_PAUSE;
	cr_assert_eq(f.res.slices, pauses);
	cr_assert_geq(f.res.slices, st.slices);
	fx_end(&f);
}

Test(throttle, share_10)
{
	run_share_at(10);
}
Test(throttle, share_50)
{
	run_share_at(50);
}
Test(throttle, share_90)
{
	run_share_at(90);
}
Test(throttle, share_99)
{
	run_share_at(99);
}

/* The pause is real: while the throttle holds the guest paused (a long
 * slice), its step counter does not move. */
Test(throttle, pause_stops_guest)
{
	static struct tern_throttle_event ev[EV_MAX];
	struct fx f;

	/* 10 s slices, paused 8 s of each: the 200 ms looked at lie inside
	 * the pause however late this thread runs. */
	fx_paused(&f, 10000, 80);
	cr_assert(!guest_ran_during(f.g, 200), "the guest ran while throttle-paused");
	size_t n = snapshot(&f, ev);
	cr_assert(check_timeline(ev, n));
	cr_assert_eq(set_pct(&f, 0).pct, 0);
	cr_assert(guest_runs(f.g));
	fx_end(&f);
}

Test(throttle, set_reset_cancel_sequences)
{
	static struct tern_throttle_event ev[EV_MAX];
	struct fx f;
	struct tern_msg_throttle_state st;
	unsigned seed = 7;

	fx_start(&f, 20);
	/* Out of range: an error reply, nothing changes. */
	st = set_pct(&f, 100);
	cr_assert_eq(st.status, TERN_EINVAL);
	cr_assert_eq(st.pct, 0);
	st = set_pct(&f, 50);
	cr_assert_eq(st.status, 0);
	st = set_pct(&f, 1000);
	cr_assert_eq(st.status, TERN_EINVAL);
	cr_assert_eq(st.pct, 50);
	sleep_ms(100);
	/* Up, down, off, on again, at random moments within slices. */
	for (int i = 0; i < 200; i++) {
		uint32_t pct = (uint32_t)(rand_r(&seed) % 5 == 0 ? 0 : rand_r(&seed) % 100);
		st = set_pct(&f, pct);
		cr_assert_eq(st.pct, pct);
		if (pct == 0)
			cr_assert(!tern_throttle_guard_paused(&f.guard));
		sleep_ms((unsigned)(rand_r(&seed) % 15));
	}
	st = set_pct(&f, 30);
	/* More than 20 slices in all before the cancel (counted, not timed). */
	wait_slices(&f, 30, 21);
	/* Cancel: reset to 0 and stop, as the coordinator does on abort. */
	st = set_pct(&f, 0);
	cr_assert(!tern_throttle_guard_paused(&f.guard));
	uint64_t slices = st.slices;
	cr_assert_gt(slices, 20, "the throttle paused only %" PRIu64 " times", slices);
	tern_actor_stop(f.a);
	struct tern_exit e;
	fx_join(&f, &e);
	cr_assert_eq(e.reason, TERN_EXIT_NORMAL);
	size_t n = snapshot(&f, ev);
	cr_assert(!check_timeline(ev, n));
	size_t pauses = 0;
	for (size_t i = 0; i < n; i++)
		pauses += ev[i].kind == TERN_THROTTLE_EV_PAUSE;
	cr_assert_eq(pauses, slices);
	cr_assert_eq(f.res.slices, slices);
	cr_assert(guest_runs(f.g));
	fx_end(&f);
}

/* end_while_paused: the actor is ended (stop or kill) in the middle of a
 * 990 ms pause; the guest must run afterwards. */
static void
end_while_paused(bool kill)
{
	static struct tern_throttle_event ev[EV_MAX];
	struct fx f;
	struct tern_exit e;

	/* 10 s slices at 99%: the slice's own resume would come 9.9 s after
	 * its pause, far from the stop's. */
	fx_paused(&f, 10000, 99);
	sleep_ms(50);
	uint64_t t_end = tern_now_ns();
	if (kill)
		tern_actor_kill(f.a);
	else
		tern_actor_stop(f.a);
	cr_assert_eq(tern_actor_join(f.a, 5000, &e), 0);
	f.a = NULL;
	cr_assert_eq(e.reason, kill ? TERN_EXIT_KILLED : TERN_EXIT_NORMAL);
	/* The owner's release after the join (a no-op if stop did it). */
	cr_assert_eq(tern_throttle_guard_release(&f.guard), 0);
	cr_assert(!tern_throttle_guard_paused(&f.guard));

	size_t n = snapshot(&f, ev);
	cr_assert_geq(n, 2);
	cr_assert(!check_timeline(ev, n));
	/* The last resume is the stop's: after it was asked, well before the
	 * slice's own at 9.9 s (a generous bound). */
	cr_assert_eq(ev[n - 1].kind, TERN_THROTTLE_EV_RESUME);
	cr_assert_eq(ev[n - 2].kind, TERN_THROTTLE_EV_PAUSE);
	cr_assert_geq(ev[n - 1].t_call_ns, t_end);
	cr_assert_lt(ev[n - 1].t_ret_ns - ev[n - 2].t_ret_ns, 5000 * MS);
	cr_assert(guest_runs(f.g), "the guest does not run after the throttle ended");
	/* Released: the guard refuses further throttle pauses. */
	cr_assert_eq(tern_throttle_guard_pause(&f.guard, NULL, NULL), TERN_ECLOSED);
	cr_assert(guest_runs(f.g));
	fx_end(&f);
}

Test(throttle, stop_while_paused)
{
	end_while_paused(false);
}
Test(throttle, kill_while_paused)
{
	end_while_paused(true);
}

/* The owner's release, alone, resumes a guest the throttle left paused
 * (as if the actor had vanished without its stop), and only such a pause. */
Test(throttle, guard_release_alone)
{
	struct tern_guest_config cfg;
	struct tern_guest *g = NULL;
	struct tern_throttle_guard guard;
	char err[256];
	uint64_t t0 = 0, t1 = 0;

	cr_assert_eq(tern_guest_spec_parse(SPEC, &cfg, err, sizeof(err)), 0);
	cr_assert_eq(tern_guest_create(&g, &cfg, TERN_GUEST_SOURCE, err, sizeof(err)), 0, "%s",
	             err);
	cr_assert_eq(tern_throttle_guard_init(&guard, g), 0);
	cr_assert_eq(tern_throttle_guard_resume(&guard, NULL, NULL), 1, "nothing to resume");
	cr_assert_eq(tern_throttle_guard_pause(&guard, &t0, &t1), 0);
	cr_assert(t0 != 0 && t0 <= t1);
	cr_assert(tern_throttle_guard_paused(&guard));
	cr_assert(!guest_ran_during(g, 100));
	cr_assert_eq(tern_throttle_guard_release(&guard), 0);
	cr_assert(!tern_throttle_guard_paused(&guard));
	cr_assert(guest_runs(g));
	cr_assert_eq(tern_throttle_guard_pause(&guard, NULL, NULL), TERN_ECLOSED);
	cr_assert_eq(tern_throttle_guard_release(&guard), 0, "idempotent");
	/* A pause the owner made is not the guard's to undo. */
	cr_assert_eq(g->ops->pause(g), 0);
	tern_throttle_guard_fini(&guard);
	cr_assert(!guest_ran_during(g, 100));
	cr_assert_eq(g->ops->resume(g), 0);
	tern_guest_destroy(g);
}

/* The owner's hold: ends a throttle pause, keeps the throttle from pausing,
 * and the owner's own pause is not undone by the throttle. */
Test(throttle, hold_blocks_throttle)
{
	static struct tern_throttle_event ev[EV_MAX];
	struct fx f;

	fx_paused(&f, 100, 60);
	cr_assert_eq(tern_throttle_guard_hold(&f.guard), 0);
	uint64_t t_hold = tern_now_ns();
	cr_assert(!tern_throttle_guard_paused(&f.guard), "the hold ends the throttle's pause");
	cr_assert(guest_runs(f.g), "held, the guest runs");
	/* Switchover: the owner pauses; three of the throttle's slices go by
	 * (counted, not timed) and the guest must not have moved. */
	cr_assert_eq(f.g->ops->pause(f.g), 0);
	uint64_t p_paused = progress_of(f.g), t_paused = tern_now_ns();
	wait_events(&f, TERN_THROTTLE_EV_HELD, t_paused, 3, "held slices under the owner's pause");
	cr_assert_eq(progress_of(f.g), p_paused, "the throttle resumed the owner's pause");
	/* Strict switchover gave up: the owner resumes, then unholds. */
	cr_assert_eq(f.g->ops->resume(f.g), 0);
	uint64_t t_unhold = tern_now_ns();
	tern_throttle_guard_unhold(&f.guard);
	wait_events(&f, TERN_THROTTLE_EV_PAUSE, t_unhold, 1,
	            "the throttle did not pause again after unhold");
	size_t n = snapshot(&f, ev);
	check_timeline(ev, n);
	size_t held = 0, after = 0;
	for (size_t i = 0; i < n; i++) {
		if (ev[i].t_call_ns > t_hold && ev[i].t_call_ns < t_unhold) {
			cr_assert_neq(ev[i].kind, TERN_THROTTLE_EV_PAUSE, "pause under a hold");
			held += ev[i].kind == TERN_THROTTLE_EV_HELD;
		}
		after += ev[i].t_call_ns > t_unhold && ev[i].kind == TERN_THROTTLE_EV_PAUSE;
	}
	cr_assert_geq(held, 3, "held slices: %zu", held);
	cr_assert_geq(after, 1, "the throttle did not pause again after unhold");
	set_pct(&f, 0);
	cr_assert(guest_runs(f.g));
	fx_end(&f);
	cr_assert_geq(f.res.held, held);
}
