/*
 * DirtyLogActor (seed 000; issue 17 item 5): harvesting the dirty log costs
 * 10-20 ms per iteration when done on the migration's critical path, and on
 * populated memory a single PAGEMAP_SCAN slice sits in the kernel for
 * milliseconds.  So the harvest runs on a thread the actor owns
 * (actors/dirty_harvest.h), every period, into an accumulated set, and
 * DIRTY_TAKE only swaps sets under a short lock: a TAKE never waits for a
 * harvest in progress.  Only the final TAKE (guest paused) harvests, once,
 * completely, after the slice in progress.  No allocation per iteration:
 * the bitmaps are allocated once and swapped.
 *
 * The thread is started last in init and joined first in stop, which runs
 * on every exit path (a kill included), before tracking ends.  A harvest
 * failure on the thread reaches the actor through an eventfd it watches.
 */
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "actors/dirty_harvest.h"
#include "actors/dirty_log.h"
#include "actors/guest_call.h"
#include "tern/error.h"

struct dl_state {
	struct tern_dirty_log_args *args;
	struct tern_guest *guest;
	struct tern_harvester hv;                   /* owns the accumulating set */
	struct tern_bitmap *acc;                    /* the set hv accumulates into */
	struct tern_bitmap *spare[TERN_DIRTY_MAPS]; /* cleared, ready to swap in */
	uint32_t nspare;
	int tracking;
	uint64_t stalls; /* ring_full_stalls last reported */
};

static const char *
dl_mode(const struct dl_state *s)
{
	return s->guest->dirty_mode != NULL ? s->guest->dirty_mode->name : "none";
}

/* The ring mode's stall counter, when it moved: written by vCPU threads, so
 * an atomic read. */
static void
dl_report_stalls(struct tern_actor *self, struct dl_state *s, bool always)
{
	uint64_t stalls = __atomic_load_n(&s->guest->stats.ring_full_stalls, __ATOMIC_RELAXED);
	if (stalls != s->stalls || always) {
		s->stalls = stalls;
		tern_actor_counter(self, "ring_full_stalls", (double)stalls);
	}
}

static int
dl_init(struct tern_actor *self, void *state, void *arg)
{
	struct dl_state *s = state;
	s->args = arg;
	s->guest = s->args->guest;
	s->acc = &s->args->maps[0];
	for (uint32_t i = 1; i < TERN_DIRTY_MAPS; i++)
		s->spare[s->nspare++] = &s->args->maps[i];
	if (s->args->period_ms == 0)
		s->args->period_ms = 30;
	if (s->args->window_ms == 0)
		s->args->window_ms = 1000;
	uint64_t slice = s->args->slice_pages ? s->args->slice_pages : 16384; /* 64 MiB */
	/* Like a VMM's migration thread: the lowest real-time priority so a
	 * TAKE is not queued behind the vCPU threads for a scheduler slice.
	 * The actor only swaps sets and answers; the harvest thread runs at
	 * normal priority.  Where the host refuses, normal priority. */
	struct sched_param sp = {.sched_priority = 1};
	if (pthread_setschedparam(pthread_self(), SCHED_FIFO, &sp) != 0)
		tern_actor_state(self, "realtime refused: normal priority");
	struct tern_trace *trace = tern_runtime_trace(tern_actor_rt(self));
	char why[TERN_STR_MAX];
	int rc;
	if ((rc = tern_harvester_init(&s->hv, s->guest, trace, s->acc, s->args->period_ms,
	                              s->args->window_ms, slice)) != 0 ||
	    (rc = tern_actor_watch_fd(self, tern_harvester_fd(&s->hv), POLLIN)) != 0)
		return tern_actor_fail(self, rc, "cannot prepare the harvest thread: %s",
		                       tern_strerror(rc));
	if (s->args->mode != NULL &&
	    (rc = tern_guest_set_dirty_mode(s->guest, s->args->mode, s->args->ring_size, why,
	                                    sizeof(why))) != 0) {
		return tern_actor_fail(self, rc, "%s", why);
	}
	if ((rc = tern_guest_fault_hit("dirty_start", trace)) != 0 ||
	    (rc = s->guest->ops->dirty_start(s->guest)) != 0) {
		return tern_actor_fail(self, rc, "cannot start %s dirty tracking: %s", dl_mode(s),
		                       s->guest->why[0] ? s->guest->why : tern_strerror(rc));
	}
	s->tracking = 1;
	s->stalls = __atomic_load_n(&s->guest->stats.ring_full_stalls, __ATOMIC_RELAXED);
	/* Last: from here on the thread is the guest's one harvester. */
	if ((rc = tern_harvester_start(&s->hv)) != 0)
		return tern_actor_fail(self, rc, "cannot start the harvest thread: %s",
		                       tern_strerror(rc));
	tern_actor_set_tick(self, (uint64_t)s->args->period_ms * 1000000ull);
	if (strcmp(dl_mode(s), "ring") == 0)
		snprintf(why, sizeof(why), "tracking (mode=ring, ring_size=%u)",
		         s->guest->dirty_ring_size);
	else
		snprintf(why, sizeof(why), "tracking (mode=%s)", dl_mode(s));
	tern_actor_state(self, why);
	return 0;
}

static int
dl_take(struct tern_actor *self, struct dl_state *s, const struct tern_msg *m)
{
	if (s->nspare == 0)
		return tern_actor_fail(self, TERN_ESTATE, "DIRTY_TAKE while every set is lent out");
	struct tern_bitmap *fresh = s->spare[s->nspare - 1], *taken = NULL;
	uint64_t harvest_ns = 0;
	if (m->u.dirty_take.final) {
		/* Everything, now: the guest is paused and this set is the
		 * last.  Waits for the thread's slice in progress (one
		 * harvester), then harvests the whole guest. */
		char why[TERN_STR_MAX];
		int rc = tern_harvester_final(&s->hv, fresh, &taken, &harvest_ns, why, sizeof(why));
		if (rc != 0)
			return tern_actor_fail(self, rc, "dirty-log harvest failed: %s", why);
	} else {
		/* A swap: pages the thread is harvesting now, or the kernel
		 * still holds marked, land in the next set. */
		taken = tern_harvester_swap(&s->hv, fresh);
	}
	s->nspare--;
	s->acc = fresh;
	uint64_t now = tern_now_ns();
	struct tern_msg r;
	tern_msg_init(&r, TERN_MSG_DIRTY_SET);
	r.u.dirty_set.set = TERN_SET_DIRTY + (uint32_t)(taken - s->args->maps);
	r.u.dirty_set.pages = tern_bitmap_count(taken);
	r.u.dirty_set.rate_pps = tern_harvester_rate_pps(&s->hv, now);
	r.u.dirty_set.harvest_ns = harvest_ns;
	tern_actor_counter(self, "dirty_rate_pps", (double)r.u.dirty_set.rate_pps);
	tern_actor_counter(self, "dirty_pages", (double)r.u.dirty_set.pages);
	if (strcmp(dl_mode(s), "ring") == 0)
		dl_report_stalls(self, s, true);
	return tern_actor_reply(self, m, &r);
}

static int
dl_handle(struct tern_actor *self, void *state, const struct tern_msg *m)
{
	struct dl_state *s = state;
	switch (m->type) {
	case TERN_MSG_DIRTY_TAKE:
		return dl_take(self, s, m);
	case TERN_MSG_DIRTY_GIVE: {
		uint32_t id = m->u.dirty_give.set;
		int known = id >= TERN_SET_DIRTY && id < TERN_SET_DIRTY + TERN_DIRTY_MAPS;
		struct tern_bitmap *b = known ? &s->args->maps[id - TERN_SET_DIRTY] : NULL;
		for (uint32_t i = 0; known && i < s->nspare; i++)
			known &= b != s->spare[i];
		if (!known || b == s->acc)
			return tern_actor_fail(self, TERN_EINVAL, "DIRTY_GIVE of a set not lent");
		tern_bitmap_clear_all(b);
		s->spare[s->nspare++] = b;
		return 0;
	}
	case TERN_MSG_DIRTY_STOP:
		return TERN_ACTOR_DONE;
	default:
		return tern_actor_fail(self, TERN_EPROTO, "unexpected message %s",
		                       tern_msg_name(m->type));
	}
}

/* The harvest thread failed (its eventfd is readable): so does the actor. */
static int
dl_on_fd(struct tern_actor *self, void *state, int fd, short revents)
{
	struct dl_state *s = state;
	char why[TERN_STR_MAX];
	int rc = tern_harvester_error(&s->hv, why, sizeof(why));
	(void)fd;
	(void)revents;
	if (rc == 0)
		return 0; /* not yet written: the thread sets the error first */
	return tern_actor_fail(self, rc, "dirty-log harvest failed: %s", why);
}

/* Every period: the ring's stall counter in the trace when it moved (the
 * harvests that used to report it run on the thread, which has no trace
 * identity of its own). */
static int
dl_tick(struct tern_actor *self, void *state)
{
	dl_report_stalls(self, state, false);
	return 0;
}

static void
dl_stop(struct tern_actor *self, void *state)
{
	struct dl_state *s = state;
	/* Joined before tracking ends: no harvest may run past dirty_stop. */
	tern_harvester_stop(&s->hv);
	if (s->tracking)
		(void)s->guest->ops->dirty_stop(s->guest);
	s->tracking = 0;
	if (s->hv.have != 0)
		tern_actor_unwatch_fd(self, tern_harvester_fd(&s->hv));
	tern_harvester_fini(&s->hv);
}

const struct tern_actor_desc tern_dirty_log_actor = {
    .name = "dirty-log",
    .state_size = sizeof(struct dl_state),
    .init = dl_init,
    .handle = dl_handle,
    .tick = dl_tick,
    .on_fd = dl_on_fd,
    .stop = dl_stop,
};
