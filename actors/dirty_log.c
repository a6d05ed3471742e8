/*
 * DirtyLogActor (seed 000): harvesting the dirty log costs 10-20 ms per
 * iteration when done on the migration's critical path.  Here it runs every
 * period in the background and merges into an accumulated set; DIRTY_TAKE
 * does one last harvest of what changed since the previous period and swaps
 * the set out, so the final iteration pays almost nothing.  No allocation
 * per iteration: the two bitmaps are allocated once and swapped.
 */
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>

#include "actors/dirty_log.h"
#include "actors/guest_call.h"
#include "tern/error.h"

#define DL_SAMPLES 256 /* ring of (time, pages) for the sliding window */

struct dl_sample {
	uint64_t t_ns;
	uint64_t pages;
};

struct dl_state {
	struct tern_dirty_log_args *args;
	struct tern_guest *guest;
	struct tern_bitmap *acc;                    /* accumulating now */
	struct tern_bitmap *spare[TERN_DIRTY_MAPS]; /* cleared, ready to swap in */
	uint32_t nspare;
	int tracking;
	struct dl_sample samples[DL_SAMPLES];
	uint32_t head, count;
	uint64_t window_ns;
	uint64_t last_harvest_ns; /* duration of the last harvest */
	uint64_t stalls;          /* ring_full_stalls last reported */
	/* A periodic harvest is cut into slices of the address space so that
	 * a TAKE waits for one slice at most, never for a whole sweep (whose
	 * cost follows the populated memory walked: ~10 ms per 256 MiB here). */
	uint64_t cursor; /* next page of the sweep in progress */
	uint64_t slice_pages;
};

#define DL_SLICE_GAP_NS 100000ull /* between slices: serve the mailbox */

static void
dl_sample_add(struct dl_state *s, uint64_t now, uint64_t pages)
{
	s->samples[s->head] = (struct dl_sample){now, pages};
	s->head = (s->head + 1) % DL_SAMPLES;
	if (s->count < DL_SAMPLES)
		s->count++;
}

/* Pages/s over the window: pages reported by harvests inside the window over
 * the time they span. */
static uint64_t
dl_rate_pps(const struct dl_state *s, uint64_t now)
{
	uint64_t pages = 0, oldest = now;
	for (uint32_t i = 0; i < s->count; i++) {
		const struct dl_sample *x =
		    &s->samples[(s->head + DL_SAMPLES - 1 - i) % DL_SAMPLES];
		if (now - x->t_ns > s->window_ns)
			break;
		pages += x->pages;
		oldest = x->t_ns;
	}
	/* The oldest sample's pages were written during the period before it. */
	uint64_t span = now - oldest + (uint64_t)s->args->period_ms * 1000000ull;
	return span ? (uint64_t)((double)pages * 1e9 / (double)span) : 0;
}

static const char *
dl_mode(const struct dl_state *s)
{
	return s->guest->dirty_mode != NULL ? s->guest->dirty_mode->name : "none";
}

/* A whole harvest (slice_pages 0) or the next slice of the sweep. */
static int
dl_harvest_some(struct tern_actor *self, struct dl_state *s, uint64_t slice_pages, bool *done)
{
	uint64_t pages = 0, t0 = tern_now_ns();
	int rc = tern_guest_fault_hit("harvest", tern_runtime_trace(tern_actor_rt(self)));
	if (rc == 0)
		rc = tern_guest_dirty_harvest_slice(s->guest, s->acc, &s->cursor, slice_pages,
		                                    &pages, done);
	if (rc != 0)
		return tern_actor_fail(self, rc, "dirty-log harvest failed: %s",
		                       s->guest->why[0] ? s->guest->why : tern_strerror(rc));
	uint64_t t1 = tern_now_ns();
	s->last_harvest_ns = t1 - t0;
	dl_sample_add(s, t1, pages);
	/* Written by vCPU threads: an atomic read. */
	uint64_t stalls = __atomic_load_n(&s->guest->stats.ring_full_stalls, __ATOMIC_RELAXED);
	if (stalls != s->stalls) {
		s->stalls = stalls;
		tern_actor_counter(self, "ring_full_stalls", (double)stalls);
	}
	return 0;
}

static int
dl_harvest(struct tern_actor *self, struct dl_state *s)
{
	bool done;
	return dl_harvest_some(self, s, 0, &done);
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
	s->slice_pages = s->args->slice_pages ? s->args->slice_pages : 16384; /* 64 MiB */
	/* Like a VMM's migration thread: the lowest real-time priority so a
	 * TAKE is not queued behind the vCPU threads for a scheduler slice.
	 * Its work comes in bounded slices, so it cannot hog a core for long;
	 * where the host refuses, it runs at normal priority. */
	struct sched_param sp = {.sched_priority = 1};
	if (pthread_setschedparam(pthread_self(), SCHED_FIFO, &sp) != 0)
		tern_actor_state(self, "realtime refused: normal priority");
	s->window_ns = (uint64_t)s->args->window_ms * 1000000ull;
	char why[TERN_STR_MAX];
	int rc;
	if (s->args->mode != NULL &&
	    (rc = tern_guest_set_dirty_mode(s->guest, s->args->mode, s->args->ring_size, why,
	                                    sizeof(why))) != 0) {
		return tern_actor_fail(self, rc, "%s", why);
	}
	struct tern_trace *trace = tern_runtime_trace(tern_actor_rt(self));
	if ((rc = tern_guest_fault_hit("dirty_start", trace)) != 0 ||
	    (rc = s->guest->ops->dirty_start(s->guest)) != 0) {
		return tern_actor_fail(self, rc, "cannot start %s dirty tracking: %s", dl_mode(s),
		                       s->guest->why[0] ? s->guest->why : tern_strerror(rc));
	}
	s->tracking = 1;
	s->stalls = __atomic_load_n(&s->guest->stats.ring_full_stalls, __ATOMIC_RELAXED);
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
	/* Only the final TAKE (guest paused) harvests: a harvest while the
	 * vCPUs run costs tens of milliseconds here, and the background
	 * harvests already keep the set fresh.  Pages written since the last
	 * one are still marked in the kernel and land in the next set, so
	 * nothing is lost and TAKE stays a swap. */
	if (m->u.dirty_take.final) {
		/* Everything, now: the guest is paused and this set is the last. */
		int rc = dl_harvest(self, s);
		if (rc != 0)
			return rc;
	}
	struct tern_bitmap *taken = s->acc;
	s->acc = s->spare[--s->nspare];
	uint64_t now = tern_now_ns();
	struct tern_msg r;
	tern_msg_init(&r, TERN_MSG_DIRTY_SET);
	r.u.dirty_set.set = TERN_SET_DIRTY + (uint32_t)(taken - s->args->maps);
	r.u.dirty_set.pages = tern_bitmap_count(taken);
	r.u.dirty_set.rate_pps = dl_rate_pps(s, now);
	r.u.dirty_set.harvest_ns = s->last_harvest_ns;
	tern_actor_counter(self, "dirty_rate_pps", (double)r.u.dirty_set.rate_pps);
	tern_actor_counter(self, "dirty_pages", (double)r.u.dirty_set.pages);
	if (strcmp(dl_mode(s), "ring") == 0)
		tern_actor_counter(self, "ring_full_stalls", (double)s->stalls);
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

/* One slice of the periodic sweep; the next slice follows as soon as the
 * mailbox is served, the next sweep after the period. */
static int
dl_tick(struct tern_actor *self, void *state)
{
	struct dl_state *s = state;
	bool done;
	int rc = dl_harvest_some(self, s, s->slice_pages, &done);
	if (rc == 0)
		tern_actor_set_tick(self, done ? (uint64_t)s->args->period_ms * 1000000ull
		                               : DL_SLICE_GAP_NS);
	return rc;
}

static void
dl_stop(struct tern_actor *self, void *state)
{
	struct dl_state *s = state;
	if (s->tracking)
		(void)s->guest->ops->dirty_stop(s->guest);
	s->tracking = 0;
}

const struct tern_actor_desc tern_dirty_log_actor = {
    .name = "dirty-log",
    .state_size = sizeof(struct dl_state),
    .init = dl_init,
    .handle = dl_handle,
    .tick = dl_tick,
    .stop = dl_stop,
};
