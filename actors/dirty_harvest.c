/*
 * The DirtyLogActor's harvester thread (see dirty_harvest.h).
 *
 * Lock order: guest_mu, then set_mu.  wait_mu is never held with another.
 */
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "actors/dirty_harvest.h"
#include "actors/guest_call.h"
#include "tern/error.h"

/* What init made, so that fini undoes exactly that. */
enum {
	HV_SCRATCH = 1u << 0,
	HV_GUEST_MU = 1u << 1,
	HV_SET_MU = 1u << 2,
	HV_WAIT_MU = 1u << 3,
	HV_WAKE = 1u << 4,
	HV_EFD = 1u << 5,
};

/* Words merged per hold of set_mu: 32 KiB of bitmap, a few microseconds, so
 * that a swap never waits long even behind a whole-guest merge (a mode
 * without slices, or a 1 TiB guest's bitmap). */
#define HV_MERGE_WORDS 4096u

/* An idle guest's sweeps come at most this many periods apart (hv_main). */
#define HV_IDLE_MAX 4u

/* hv_mutex_init makes a priority-inheriting mutex.  The owner (the actor)
 * runs at real-time priority where the host allows it, the thread at normal
 * priority: without inheritance a vCPU thread could preempt the thread
 * inside its microseconds under set_mu, or inside a slice the final harvest
 * waits for, and the owner would wait for a scheduler slice.  libuv has no
 * such mutex, hence pthreads here.  A system that refuses the protocol gets
 * a plain mutex: correct, only without the guarantee. */
static int
hv_mutex_init(pthread_mutex_t *m)
{
	pthread_mutexattr_t a;
	int rc = pthread_mutexattr_init(&a);
	if (rc != 0)
		return -rc;
	bool pi = pthread_mutexattr_setprotocol(&a, PTHREAD_PRIO_INHERIT) == 0;
	rc = pthread_mutex_init(m, &a);
	if (rc != 0 && pi)
		rc = pthread_mutex_init(m, NULL);
	(void)pthread_mutexattr_destroy(&a);
	return -rc;
}

/* As uv_mutex_lock and uv_mutex_unlock do: a failure here is a broken
 * invariant (a lock not held, or destroyed), not a condition to recover
 * from. */
static void
hv_lock(pthread_mutex_t *m)
{
	if (pthread_mutex_lock(m) != 0)
		abort();
}

static void
hv_unlock(pthread_mutex_t *m)
{
	if (pthread_mutex_unlock(m) != 0)
		abort();
}

int
tern_harvester_init(struct tern_harvester *h, struct tern_guest *g, struct tern_trace *trace,
                    struct tern_bitmap *acc, uint32_t period_ms, uint32_t window_ms,
                    uint64_t slice_pages)
{
	int rc;

	memset(h, 0, sizeof(*h));
	h->efd = -1;
	h->guest = g;
	h->trace = trace;
	h->acc = acc;
	h->period_ns = (uint64_t)period_ms * 1000000ull;
	h->window_ns = (uint64_t)window_ms * 1000000ull;
	h->slice_pages = slice_pages;
	if ((rc = tern_bitmap_init(&h->scratch, g->npages)) != 0)
		return rc;
	h->have |= HV_SCRATCH;
	if ((rc = hv_mutex_init(&h->guest_mu)) != 0)
		return rc;
	h->have |= HV_GUEST_MU;
	if ((rc = hv_mutex_init(&h->set_mu)) != 0)
		return rc;
	h->have |= HV_SET_MU;
	if ((rc = uv_mutex_init(&h->wait_mu)) != 0)
		return rc;
	h->have |= HV_WAIT_MU;
	if ((rc = uv_cond_init(&h->wake)) != 0)
		return rc;
	h->have |= HV_WAKE;
	if ((h->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0)
		return -errno;
	h->have |= HV_EFD;
	return 0;
}

static void
hv_sample_add(struct tern_harvester *h, uint64_t now, uint64_t pages, uint64_t gap_ns)
{
	h->samples[h->head] = (struct tern_harvest_sample){now, pages, gap_ns};
	h->head = (h->head + 1) % TERN_HARVEST_SAMPLES;
	if (h->count < TERN_HARVEST_SAMPLES)
		h->count++;
}

/* hv_merge moves scratch's pages [lo, hi) into the accumulating set and
 * clears them in scratch, HV_MERGE_WORDS words per hold of set_mu.  A swap
 * between two holds is harmless: each word goes to the set accumulating
 * when it is merged, and the set taken before no longer changes. */
static void
hv_merge(struct tern_harvester *h, uint64_t lo, uint64_t hi)
{
	uint64_t w = lo / 64, end = (hi + 63) / 64;
	uint64_t *src = h->scratch.words;

	while (w < end) {
		uint64_t stop = end - w > HV_MERGE_WORDS ? w + HV_MERGE_WORDS : end;
		hv_lock(&h->set_mu);
		uint64_t *dst = h->acc->words;
		for (; w < stop; w++) {
			if (src[w] != 0) {
				dst[w] |= src[w];
				src[w] = 0;
			}
		}
		hv_unlock(&h->set_mu);
	}
}

/* hv_slice harvests the next slice of the sweep into scratch and merges
 * it, all under guest_mu (so scratch is zero again when it is released). */
static int
hv_slice(struct tern_harvester *h, bool *done, uint64_t *found, uint64_t gap_ns)
{
	struct tern_guest *g = h->guest;
	uint64_t pages = 0;
	int rc;

	hv_lock(&h->guest_mu);
	/* A harvest that is not cut into slices (a mode without them) covers
	 * the whole guest and leaves the cursor at 0, so first is 0 for it
	 * and the merge below covers everything it may have set. */
	uint64_t first = h->cursor;
	if ((rc = tern_guest_fault_hit("harvest", h->trace)) == 0)
		rc = tern_guest_dirty_harvest_slice(g, &h->scratch, &h->cursor, h->slice_pages,
		                                    &pages, done);
	if (rc == 0)
		hv_merge(h, first, *done ? g->npages : h->cursor);
	else
		snprintf(h->why, sizeof(h->why), "%s", g->why[0] ? g->why : tern_strerror(rc));
	hv_unlock(&h->guest_mu);
	if (rc == 0) {
		*found += pages;
		hv_lock(&h->set_mu);
		hv_sample_add(h, tern_now_ns(), pages, gap_ns);
		hv_unlock(&h->set_mu);
	}
	return rc;
}

/* hv_wait sleeps until due (0: now), while final wants guest_mu, or until
 * stop.  Returns false when the thread is to end. */
static bool
hv_wait(struct tern_harvester *h, uint64_t due)
{
	bool go;

	uv_mutex_lock(&h->wait_mu);
	for (;;) {
		uint64_t now = tern_now_ns();
		if (h->stop || (!h->final_waiting && now >= due))
			break;
		if (h->final_waiting)
			uv_cond_wait(&h->wake, &h->wait_mu);
		else
			(void)uv_cond_timedwait(&h->wake, &h->wait_mu, due - now);
	}
	go = !h->stop;
	uv_mutex_unlock(&h->wait_mu);
	return go;
}

static void
hv_main(void *arg)
{
	struct tern_harvester *h = arg;
	/* Created by a real-time actor, the thread inherited its policy.  The
	 * harvest is background work that may run for as long as the guest
	 * keeps writing: at real-time priority it would take a core from the
	 * vCPUs for all that time, and nothing waits on it any more (TAKE
	 * swaps; the final harvest lends it its priority through guest_mu). */
	struct sched_param sp = {.sched_priority = 0};
	(void)pthread_setschedparam(pthread_self(), SCHED_OTHER, &sp);

	/* A sweep that found nothing doubles the pause before the next, up
	 * to HV_IDLE_MAX periods; one that found a page resets it.  Where a
	 * sweep walks the address space (bitmap: PAGEMAP_SCAN over populated
	 * memory), an idle guest otherwise pays a whole walk every period --
	 * a tenth of the source's CPU during a bulk pass here.  Nothing is
	 * lost: pages the kernel holds marked wait for the next sweep, and
	 * the final harvest takes everything.  A ring mode is never slowed:
	 * a ring left unharvested fills and stops its vCPU. */
	bool backoff = h->guest->dirty_mode != NULL && h->guest->dirty_mode->harvest_range != NULL;
	uint64_t gap = h->period_ns, found = 0;
	uint64_t due = tern_now_ns() + gap;
	while (hv_wait(h, due)) {
		bool done = false;
		int rc = hv_slice(h, &done, &found, gap);
		if (rc != 0) {
			uint64_t one = 1;
			uv_mutex_lock(&h->wait_mu);
			h->error = rc;
			uv_mutex_unlock(&h->wait_mu);
			/* The owner polls efd: wake it.  A full counter (never,
			 * at one write) would still leave it readable. */
			(void)!write(h->efd, &one, sizeof(one));
			return;
		}
		/* The next slice at once (guest_mu was released in between, so
		 * a final harvest gets in), the next sweep after the pause. */
		if (!done) {
			due = 0;
			continue;
		}
		if (!backoff || found != 0)
			gap = h->period_ns;
		else if (gap < HV_IDLE_MAX * h->period_ns)
			gap *= 2;
		found = 0;
		due = tern_now_ns() + gap;
	}
}

int
tern_harvester_start(struct tern_harvester *h)
{
	if (h->started)
		return TERN_ESTATE;
	int rc = uv_thread_create(&h->thread, hv_main, h);
	if (rc != 0)
		return rc;
	h->started = true;
	return 0;
}

int
tern_harvester_fd(const struct tern_harvester *h)
{
	return h->efd;
}

int
tern_harvester_error(struct tern_harvester *h, char *why, size_t whylen)
{
	uv_mutex_lock(&h->wait_mu);
	int rc = h->error;
	/* why is written before error, under wait_mu (hv_slice, hv_main). */
	snprintf(why, whylen, "%s", rc != 0 ? h->why : "");
	uv_mutex_unlock(&h->wait_mu);
	return rc;
}

struct tern_bitmap *
tern_harvester_swap(struct tern_harvester *h, struct tern_bitmap *fresh)
{
	hv_lock(&h->set_mu);
	struct tern_bitmap *taken = h->acc;
	h->acc = fresh;
	hv_unlock(&h->set_mu);
	return taken;
}

int
tern_harvester_final(struct tern_harvester *h, struct tern_bitmap *fresh,
                     struct tern_bitmap **taken, uint64_t *harvest_ns, char *why, size_t whylen)
{
	struct tern_guest *g = h->guest;
	uint64_t pages = 0;
	int rc;

	/* The thread starts no slice from here on, so guest_mu comes free
	 * after the one in progress (uv mutexes are not fair). */
	uv_mutex_lock(&h->wait_mu);
	h->final_waiting = true;
	uv_mutex_unlock(&h->wait_mu);
	hv_lock(&h->guest_mu);
	uint64_t t0 = tern_now_ns();
	/* Straight into the accumulating set: with guest_mu held the thread
	 * merges nothing, and only the owner swaps. */
	if ((rc = tern_guest_fault_hit("harvest", h->trace)) == 0)
		rc = g->ops->dirty_harvest(g, h->acc, &pages);
	uint64_t t1 = tern_now_ns();
	if (rc == 0) {
		hv_lock(&h->set_mu);
		hv_sample_add(h, t1, pages, h->period_ns);
		*taken = h->acc;
		h->acc = fresh;
		hv_unlock(&h->set_mu);
		*harvest_ns = t1 - t0;
	} else {
		snprintf(why, whylen, "%s", g->why[0] ? g->why : tern_strerror(rc));
	}
	hv_unlock(&h->guest_mu);
	uv_mutex_lock(&h->wait_mu);
	h->final_waiting = false;
	uv_cond_signal(&h->wake);
	uv_mutex_unlock(&h->wait_mu);
	return rc;
}

/* Pages/s over the window: pages reported by harvests inside the window
 * over the time they span. */
uint64_t
tern_harvester_rate_pps(struct tern_harvester *h, uint64_t now)
{
	uint64_t pages = 0, oldest = now, gap = h->period_ns;

	hv_lock(&h->set_mu);
	for (uint32_t i = 0; i < h->count; i++) {
		const struct tern_harvest_sample *x =
		    &h->samples[(h->head + TERN_HARVEST_SAMPLES - 1 - i) % TERN_HARVEST_SAMPLES];
		if (x->t_ns > now)
			continue; /* a slice that ended after the caller read its clock */
		if (now - x->t_ns > h->window_ns)
			break;
		pages += x->pages;
		oldest = x->t_ns;
		gap = x->gap_ns;
	}
	hv_unlock(&h->set_mu);
	/* The oldest sample's pages were written during the pause before it
	 * (a period, or longer after idle sweeps). */
	uint64_t span = now - oldest + gap;
	return span ? (uint64_t)((double)pages * 1e9 / (double)span) : 0;
}

void
tern_harvester_stop(struct tern_harvester *h)
{
	if (!h->started)
		return;
	uv_mutex_lock(&h->wait_mu);
	h->stop = true;
	uv_cond_signal(&h->wake);
	uv_mutex_unlock(&h->wait_mu);
	(void)uv_thread_join(&h->thread);
	h->started = false;
}

void
tern_harvester_fini(struct tern_harvester *h)
{
	tern_harvester_stop(h);
	if (h->have & HV_EFD)
		close(h->efd);
	if (h->have & HV_WAKE)
		uv_cond_destroy(&h->wake);
	if (h->have & HV_WAIT_MU)
		uv_mutex_destroy(&h->wait_mu);
	if (h->have & HV_SET_MU)
		(void)pthread_mutex_destroy(&h->set_mu);
	if (h->have & HV_GUEST_MU)
		(void)pthread_mutex_destroy(&h->guest_mu);
	if (h->have & HV_SCRATCH)
		tern_bitmap_fini(&h->scratch);
	h->have = 0;
	h->efd = -1;
}
