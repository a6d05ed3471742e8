/*
 * DIRTY_TAKE off the critical path (issue 17 item 5): the DirtyLogActor
 * harvests on a thread it owns (actors/dirty_harvest.h) and a TAKE swaps
 * sets without waiting for a harvest in progress.
 *
 * The guest is a simvm guest behind a provider that wraps its dirty slots
 * with a gate: a test can hold one harvest call inside the guest (as a
 * PAGEMAP_SCAN slice sits in the kernel) for as long as it likes, and the
 * gate counts dirty_* calls that overlap (one harvester) or come after
 * dirty_stop.  Ordering comes from the gate and from messages, never from
 * timing: a TAKE that waited for the held harvest would never return (the
 * request's bound is only there to fail instead of hanging).
 *
 *  - TAKEs while a harvest is held return, and no page is lost: every page
 *    written is in a set taken after it was written;
 *  - the final TAKE waits for the held slice, then holds every page left;
 *  - a kill while a harvest is held: tracking does not end until the
 *    harvest returned, and the actor's stop joins the thread;
 *  - a writer thread dirties pages while TAKEs interleave: each page is in
 *    a set, and the first set holding it was taken after its write began.
 *    (A page may be in two: a store whose write-protect fault was resolved
 *    just before a harvest re-protected the page faults again, and the
 *    page is rightly reported again.)
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "actors/actor.h"
#include "actors/dirty_log.h"
#include "kvm/bitmap.h"
#include "kvm/guest.h"
#include "tern/error.h"
#include "tern/guest.h"
#include "tests/guest_util.h"

#define PG TERN_PAGE_SIZE
#define CTL_PAGES 64u          /* simvm's control pages: the tests write above */
#define REQ_BOUND_MS 60000     /* a TAKE that waited on the held harvest: fail */
#define GUEST_PAGES (64u << 8) /* 64 MiB */

/* ---- the gated provider ---- */

struct gate {
	struct tern_guest_provider inner; /* the simvm guest's own provider */
	struct tern_guest_ops ops;        /* inner's, dirty slots wrapped */
	uv_mutex_t mu;
	uv_cond_t cv;
	int arm;       /* harvest calls still to hold */
	bool held;     /* a harvest call is held in the gate now */
	bool released; /* the held call may return */
	uint64_t holds, harvests;
	bool stopped;        /* dirty_stop was called */
	int after_stop;      /* dirty_* calls after dirty_stop */
	atomic_int inside;   /* dirty_* calls in progress */
	atomic_int overlaps; /* a dirty_* call began while another ran */
};

static void
gate_enter(struct gate *t)
{
	/* Any order suffices: an overlap shows up in either thread. */
	if (atomic_fetch_add(&t->inside, 1) != 0)
		atomic_fetch_add(&t->overlaps, 1);
	uv_mutex_lock(&t->mu);
	t->after_stop += t->stopped;
	uv_mutex_unlock(&t->mu);
}

static void
gate_leave(struct gate *t)
{
	atomic_fetch_sub(&t->inside, 1);
}

static int
gate_regions(void *guest, struct tern_mem_region *out, uint32_t cap, uint32_t *count)
{
	struct gate *t = guest;
	return t->inner.ops->regions(t->inner.guest, out, cap, count);
}

static int
gate_dirty_start(void *guest, uint32_t mode, uint32_t ring_entries)
{
	struct gate *t = guest;
	gate_enter(t);
	int rc = t->inner.ops->dirty_start(t->inner.guest, mode, ring_entries);
	gate_leave(t);
	return rc;
}

/* The harvest is done, then held: its pages are in the caller's bitmap but
 * not yet in any set, as after a PAGEMAP_SCAN slice still in the kernel. */
static int
gate_dirty_harvest(void *guest, uint32_t region, uint64_t first, uint64_t count, uint64_t *bitmap,
                   uint64_t *pages)
{
	struct gate *t = guest;
	gate_enter(t);
	int rc = t->inner.ops->dirty_harvest(t->inner.guest, region, first, count, bitmap, pages);
	uv_mutex_lock(&t->mu);
	t->harvests++;
	if (t->arm > 0) {
		t->arm--;
		t->held = true;
		t->released = false;
		t->holds++;
		uv_cond_broadcast(&t->cv);
		while (!t->released)
			uv_cond_wait(&t->cv, &t->mu);
		t->held = false;
		uv_cond_broadcast(&t->cv);
	}
	uv_mutex_unlock(&t->mu);
	gate_leave(t);
	return rc;
}

static int
gate_dirty_stop(void *guest)
{
	struct gate *t = guest;
	gate_enter(t);
	int rc = t->inner.ops->dirty_stop(t->inner.guest);
	uv_mutex_lock(&t->mu);
	t->stopped = true;
	uv_mutex_unlock(&t->mu);
	gate_leave(t);
	return rc;
}

static int
gate_pause(void *guest)
{
	struct gate *t = guest;
	return t->inner.ops->pause(t->inner.guest);
}

static int
gate_resume(void *guest)
{
	struct gate *t = guest;
	return t->inner.ops->resume(t->inner.guest);
}

static int
gate_save(void *guest, void *buf, uint64_t cap, uint64_t *len)
{
	struct gate *t = guest;
	return t->inner.ops->state_save(t->inner.guest, buf, cap, len);
}

static int
gate_load(void *guest, const void *buf, uint64_t len)
{
	struct gate *t = guest;
	return t->inner.ops->state_load(t->inner.guest, buf, len);
}

/* gate_new builds the simvm guest of spec and a tern_guest over the gated
 * provider (bitmap mode: every writer is caught, the test's too). */
static struct gate *
gate_new(const char *spec, struct tern_guest **g)
{
	struct tern_guest_config cfg;
	struct gate *t = calloc(1, sizeof(*t));
	char err[256];
	int rv;

	cr_assert_not_null(t);
	cr_assert_eq(uv_mutex_init(&t->mu), 0);
	cr_assert_eq(uv_cond_init(&t->cv), 0);
	cr_assert_eq(tern_guest_spec_parse(spec, &cfg, err, sizeof(err)), 0, "%s", err);
	rv = tern_simvm_provider_create(&t->inner, &cfg, TERN_GUEST_SOURCE, err, sizeof(err));
	cr_assert_eq(rv, 0, "simvm: %s", err);
	t->ops = *t->inner.ops;
	t->ops.regions = gate_regions;
	t->ops.dirty_modes = TERN_DIRTY_BITMAP;
	t->ops.dirty_start = gate_dirty_start;
	t->ops.dirty_harvest = gate_dirty_harvest;
	t->ops.dirty_ring_pop = NULL;
	t->ops.dirty_stop = gate_dirty_stop;
	t->ops.pause = gate_pause;
	t->ops.resume = gate_resume;
	t->ops.state_save = gate_save;
	t->ops.state_load = gate_load;
	/* Optional slots this wrapper does not forward (they would get the
	 * gate as their guest): absent, as for an older VMM. */
	t->ops.dirty_ring_full = NULL;
	t->ops.state_size = NULL;
	struct tern_guest_provider p = {.ops = &t->ops, .guest = t};
	rv = tern_guest_from_provider(g, &p, TERN_GUEST_SOURCE, err, sizeof(err));
	cr_assert_eq(rv, 0, "provider: %s", err);
	return t;
}

static void
gate_free(struct gate *t, struct tern_guest *g)
{
	tern_guest_destroy(g);
	tern_simvm_provider_destroy(&t->inner);
	uv_cond_destroy(&t->cv);
	uv_mutex_destroy(&t->mu);
	free(t);
}

/* gate_hold_next: the next harvest call stays in the gate; returns once it
 * is there. */
static void
gate_hold_next(struct gate *t)
{
	uv_mutex_lock(&t->mu);
	uint64_t before = t->holds;
	t->arm = 1;
	while (t->holds == before || !t->held)
		uv_cond_wait(&t->cv, &t->mu);
	uv_mutex_unlock(&t->mu);
}

static void
gate_release(struct gate *t)
{
	uv_mutex_lock(&t->mu);
	t->released = true;
	uv_cond_broadcast(&t->cv);
	uv_mutex_unlock(&t->mu);
}

static bool
gate_is_held(struct gate *t)
{
	uv_mutex_lock(&t->mu);
	bool held = t->held;
	uv_mutex_unlock(&t->mu);
	return held;
}

/* ---- the actor ---- */

struct rig {
	struct tern_guest *g;
	struct gate *gate;
	struct tern_dirty_log_args a;
	struct tern_runtime *rt;
	struct tern_mailbox *mb;
	struct tern_actor *act;
	uint32_t id;
	uint32_t held[2]; /* set ids held, as the coordinator: at most two */
};

/* rig_start spawns the actor on a gated guest of spec; pages from prefill
 * (0: none) to the end are written before tracking starts, so that they
 * exist and are clean (a first write into a hole is caught too, but holes
 * count as written where swap is on: dirty_wp.c). */
static void
rig_start(struct rig *r, const char *spec, uint64_t prefill)
{
	struct tern_exit why;
	int rv;

	memset(r, 0, sizeof(*r));
	r->gate = gate_new(spec, &r->g);
	if (prefill != 0)
		memset(r->g->regions[0].host + prefill * PG, 0, (r->g->npages - prefill) * PG);
	/* Harvests every millisecond, so that one is (nearly) always under
	 * way; each is one provider call on a 64 MiB guest. */
	r->a = (struct tern_dirty_log_args){.guest = r->g, .period_ms = 1};
	for (int k = 0; k < TERN_DIRTY_MAPS; k++)
		cr_assert_eq(tern_bitmap_init(&r->a.maps[k], r->g->npages), 0);
	cr_assert_eq(tern_runtime_create(&r->rt, NULL), 0);
	cr_assert_eq(tern_mailbox_open(r->rt, "test", &r->mb), 0);
	rv = tern_spawn(r->rt, &tern_dirty_log_actor, &r->a, tern_mailbox_id(r->mb), &r->act, &why);
	cr_assert_eq(rv, 0, "spawn: %s (%s)", tern_strerror(rv), why.why);
	r->id = tern_actor_id(r->act);
}

/* rig_take: DIRTY_TAKE; ORs the set into into (may be NULL), gives back the
 * older of the two sets held, and returns the set taken. */
static const struct tern_bitmap *
rig_take(struct rig *r, bool final, struct tern_bitmap *into)
{
	struct tern_msg m, rep;
	int rv;

	if (r->held[1] != 0) {
		tern_msg_init(&m, TERN_MSG_DIRTY_GIVE);
		m.u.dirty_give.set = r->held[1];
		cr_assert_eq(tern_send(r->rt, tern_mailbox_id(r->mb), r->id, &m), 0);
	}
	r->held[1] = r->held[0];
	tern_msg_init(&m, TERN_MSG_DIRTY_TAKE);
	m.u.dirty_take.final = final;
	rv = tern_mailbox_request(r->mb, r->id, &m, &rep, REQ_BOUND_MS);
	cr_assert_eq(rv, 0, "DIRTY_TAKE: %s", tern_strerror(rv));
	cr_assert_eq(rep.type, TERN_MSG_DIRTY_SET);
	uint32_t set = rep.u.dirty_set.set;
	cr_assert(set >= TERN_SET_DIRTY && set < TERN_SET_DIRTY + TERN_DIRTY_MAPS, "set %u", set);
	r->held[0] = set;
	const struct tern_bitmap *b = &r->a.maps[set - TERN_SET_DIRTY];
	cr_assert_eq(rep.u.dirty_set.pages, tern_bitmap_count(b));
	if (into != NULL)
		tern_bitmap_or(into, b);
	return b;
}

static void
rig_end(struct rig *r)
{
	struct tern_msg m;
	struct tern_exit ex;

	tern_msg_init(&m, TERN_MSG_DIRTY_STOP);
	cr_assert_eq(tern_send(r->rt, tern_mailbox_id(r->mb), r->id, &m), 0);
	cr_assert_eq(tern_actor_join(r->act, -1, &ex), 0);
	cr_assert_eq(ex.reason, TERN_EXIT_NORMAL, "%s", ex.why);
}

static void
rig_free(struct rig *r)
{
	cr_assert(!r->g->dirty_tracking, "the actor's stop ends tracking");
	cr_assert_eq(atomic_load(&r->gate->overlaps), 0, "two dirty_* calls ran at once");
	cr_assert_eq(r->gate->after_stop, 0, "a dirty_* call after dirty_stop");
	cr_assert_eq(atomic_load(&r->gate->inside), 0);
	tern_mailbox_close(r->mb);
	tern_runtime_destroy(r->rt);
	for (int k = 0; k < TERN_DIRTY_MAPS; k++)
		tern_bitmap_fini(&r->a.maps[k]);
	gate_free(r->gate, r->g);
}

/* write_page stores a non-zero stamp in page p (above the control pages)
 * and marks it in w. */
static void
write_page(struct rig *r, uint64_t p, uint64_t stamp, struct tern_bitmap *w)
{
	__atomic_store_n((uint64_t *)(r->g->regions[0].host + p * PG), stamp, __ATOMIC_RELAXED);
	if (w != NULL)
		tern_bitmap_set(w, p);
}

/* spread: the next of a sequence of pages scattered over the guest above
 * its control pages (a multiplicative hash of the previous). */
static uint64_t
spread(uint64_t *x)
{
	*x = CTL_PAGES + (*x * 2654435761u + 7) % (GUEST_PAGES - CTL_PAGES);
	return *x;
}

/* expect_covered: every page of w is in got. */
static void
expect_covered(const struct tern_bitmap *w, const struct tern_bitmap *got, const char *what)
{
	uint64_t pos = 0, f, c;
	while (tern_bitmap_next_run(w, &pos, UINT64_MAX, &f, &c))
		for (uint64_t p = f; p < f + c; p++)
			cr_assert(tern_bitmap_test(got, p),
			          "%s: page %" PRIu64 " written, never taken", what, p);
}

/* A TAKE while a harvest is held in the guest returns, and nothing is
 * lost: pages written before the held call (possibly in its unmerged
 * slice), during it, and after it are all in a later set. */
Test(dirty_take, take_never_waits_for_a_harvest_and_loses_nothing, .timeout = 120)
{
	struct rig r;
	struct tern_bitmap written, got;
	const int rounds = 16;
	uint64_t x = 1;

	rig_start(&r, "simvm:mem=64M,vcpus=1,workload=idle", 0);
	cr_assert_eq(tern_bitmap_init(&written, r.g->npages), 0);
	cr_assert_eq(tern_bitmap_init(&got, r.g->npages), 0);
	for (int it = 0; it < rounds; it++) {
		/* Pages spread over the guest, before and during the hold. */
		for (int k = 0; k < 40; k++)
			write_page(&r, spread(&x), (uint64_t)it << 32 | (uint64_t)k | 1, &written);
		gate_hold_next(r.gate);
		for (int k = 0; k < 40; k++)
			write_page(&r, spread(&x), (uint64_t)it << 32 | (uint64_t)k | 3, &written);
		/* Several TAKEs, every one while the harvest is held. */
		for (int k = 0; k < 1 + it % 3; k++)
			(void)rig_take(&r, false, &got);
		cr_assert(gate_is_held(r.gate), "the harvest returned during the TAKEs");
		gate_release(r.gate);
		if (it % 2)
			(void)rig_take(&r, false, &got);
	}
	cr_assert_eq(r.g->ops->pause(r.g), 0);
	(void)rig_take(&r, true, &got);
	expect_covered(&written, &got, "union of the TAKEs");
	rig_end(&r);
	cr_assert_eq(r.gate->holds, (uint64_t)rounds);
	rig_free(&r);
	tern_bitmap_fini(&written);
	tern_bitmap_fini(&got);
}

/* The final TAKE comes while a harvest is held: it waits for that call (one
 * harvester), then harvests everything: the pages written before and during
 * the held call are in the final set, and no two calls overlapped. */
Test(dirty_take, final_take_waits_for_the_slice_then_has_everything, .timeout = 120)
{
	struct rig r;
	struct tern_bitmap written;
	struct tern_msg m, rep;

	rig_start(&r, "simvm:mem=64M,vcpus=1,workload=idle", 0);
	cr_assert_eq(tern_bitmap_init(&written, r.g->npages), 0);
	(void)rig_take(&r, false, NULL); /* sets taken from here on */
	for (uint64_t p = CTL_PAGES; p < GUEST_PAGES; p += 97)
		write_page(&r, p, p | 1, &written);
	gate_hold_next(r.gate);
	for (uint64_t p = CTL_PAGES + 13; p < GUEST_PAGES; p += 101)
		write_page(&r, p, p | 1, &written);
	cr_assert_eq(r.g->ops->pause(r.g), 0);
	/* Sent, not awaited: the actor's answer needs the held call to end. */
	tern_msg_init(&m, TERN_MSG_DIRTY_TAKE);
	m.u.dirty_take.final = true;
	cr_assert_eq(tern_send(r.rt, tern_mailbox_id(r.mb), r.id, &m), 0);
	gate_release(r.gate);
	cr_assert_eq(tern_mailbox_recv(r.mb, &rep, REQ_BOUND_MS), 0);
	cr_assert_eq(rep.type, TERN_MSG_DIRTY_SET);
	cr_assert_eq(rep.re, m.seq);
	expect_covered(&written, &r.a.maps[rep.u.dirty_set.set - TERN_SET_DIRTY], "final set");
	rig_end(&r);
	rig_free(&r);
	tern_bitmap_fini(&written);
}

/* Killed while a harvest is held: the actor is gone for senders at once,
 * but tracking ends only after the held call returned (its stop joins the
 * thread first), and nothing calls the guest afterwards.  Under ASan a
 * thread left unjoined would leak. */
Test(dirty_take, kill_mid_harvest_joins_the_thread, .timeout = 120)
{
	struct rig r;
	struct tern_exit ex;
	struct tern_msg m;

	rig_start(&r, "simvm:mem=64M,vcpus=1,workload=idle", 0);
	gate_hold_next(r.gate);
	tern_actor_kill(r.act);
	/* Monitor semantics: sends fail once the actor is exiting (its stop
	 * runs after that).  Polled, never timed. */
	for (;;) {
		tern_msg_init(&m, TERN_MSG_DIRTY_STOP);
		int rv = tern_send(r.rt, tern_mailbox_id(r.mb), r.id, &m);
		if (rv == TERN_ECLOSED)
			break;
		cr_assert_eq(rv, 0, "%s", tern_strerror(rv));
		sleep_us(1000);
	}
	uv_mutex_lock(&r.gate->mu);
	bool stopped = r.gate->stopped;
	uv_mutex_unlock(&r.gate->mu);
	cr_assert(!stopped, "dirty_stop while a harvest was still in the guest");
	cr_assert(gate_is_held(r.gate));
	gate_release(r.gate);
	cr_assert_eq(tern_actor_join(r.act, -1, &ex), 0);
	cr_assert_eq(ex.reason, TERN_EXIT_KILLED, "%s", ex.why);
	cr_assert(r.gate->stopped, "the stop ends tracking");
	rig_free(&r);
}

static bool
all_in(const struct tern_bitmap *w, const struct tern_bitmap *got)
{
	uint64_t pos = 0, f, c;
	while (tern_bitmap_next_run(w, &pos, UINT64_MAX, &f, &c))
		for (uint64_t p = f; p < f + c; p++)
			if (!tern_bitmap_test(got, p))
				return false;
	return true;
}

/* An idle guest's sweeps back off (dirty_harvest.c), but never stop: pages
 * written after many empty sweeps reach a non-final TAKE, and the final
 * TAKE has them all.  Polled, never timed: the test's timeout bounds it. */
Test(dirty_take, idle_backoff_still_harvests, .timeout = 120)
{
	struct rig r;
	struct tern_bitmap written, got;
	uint64_t x = 3;

	rig_start(&r, "simvm:mem=64M,vcpus=1,workload=idle", 0);
	cr_assert_eq(tern_bitmap_init(&written, r.g->npages), 0);
	cr_assert_eq(tern_bitmap_init(&got, r.g->npages), 0);
	(void)rig_take(&r, false, NULL); /* the pages of the build, if any */
	for (int round = 0; round < 3; round++) {
		/* Enough empty sweeps for the pause to reach its longest. */
		uv_mutex_lock(&r.gate->mu);
		uint64_t until = r.gate->harvests + 16;
		uv_mutex_unlock(&r.gate->mu);
		for (;;) {
			uv_mutex_lock(&r.gate->mu);
			bool enough = r.gate->harvests >= until;
			uv_mutex_unlock(&r.gate->mu);
			if (enough)
				break;
			(void)rig_take(&r, false, &got);
			sleep_us(1000);
		}
		tern_bitmap_clear_all(&got);
		tern_bitmap_clear_all(&written);
		for (int k = 0; k < 50; k++)
			write_page(&r, spread(&x), (uint64_t)round << 32 | (uint64_t)k | 1,
			           &written);
		/* A sweep after the pause takes them into a later set. */
		for (;;) {
			(void)rig_take(&r, false, &got);
			if (all_in(&written, &got))
				break;
			sleep_us(1000);
		}
		expect_covered(&written, &got, "TAKEs after idle sweeps");
	}
	cr_assert_eq(r.g->ops->pause(r.g), 0);
	(void)rig_take(&r, true, &got);
	expect_covered(&written, &got, "with the final TAKE");
	rig_end(&r);
	rig_free(&r);
	tern_bitmap_fini(&written);
	tern_bitmap_fini(&got);
}

/* ---- a writer against interleaved TAKEs ---- */

struct writer {
	struct rig *r;
	uint64_t first, count;
	atomic_uint_fast64_t *takes_done; /* TAKEs answered so far */
	uint32_t *epoch;                  /* per page: TAKEs answered before its write */
	atomic_bool done;
};

static void
writer_main(void *arg)
{
	struct writer *w = arg;
	for (uint64_t i = 0; i < w->count; i++) {
		uint64_t p = w->first + (i * 40503u) % w->count; /* a permutation: count is 2^k */
		/* Read before the store: every set answered by then was swapped
		 * before the page was written, so it cannot hold it. */
		w->epoch[p - w->first] = (uint32_t)atomic_load(w->takes_done);
		write_page(w->r, p, p | 1, NULL);
		if (i % 64 == 0)
			sleep_us(200); /* let TAKEs land among the writes */
	}
	atomic_store(&w->done, true);
}

/* Each page the writer dirtied once is in a set, and in none taken before
 * its write began: nothing lost, nothing reported early.  The memtouch
 * vCPUs write their own pages meanwhile. */
Test(dirty_take, writer_against_interleaved_takes, .timeout = 300)
{
	struct rig r;
	struct writer w;
	atomic_uint_fast64_t takes_done = 0;
	uv_thread_t th;
	const uint64_t first = GUEST_PAGES / 2, count = GUEST_PAGES / 2;
	uint32_t *in_take = calloc(count, sizeof(uint32_t));
	uint32_t *times = calloc(count, sizeof(uint32_t));

	cr_assert(in_take != NULL && times != NULL);
	/* The writer's pages exist before tracking starts: "exactly once"
	 * holds whether or not holes count as written. */
	rig_start(&r, "simvm:mem=64M,vcpus=1,workload=memtouch:ws=4M,rate=20M", first);
	w = (struct writer){.r = &r, .first = first, .count = count, .takes_done = &takes_done};
	w.epoch = calloc(count, sizeof(uint32_t));
	cr_assert_not_null(w.epoch);
	atomic_init(&w.done, false);
	cr_assert_eq(uv_thread_create(&th, writer_main, &w), 0);
	uint32_t t = 0;
	bool last = false;
	while (!last) {
		last = atomic_load(&w.done);
		if (last)
			cr_assert_eq(r.g->ops->pause(r.g), 0);
		const struct tern_bitmap *b = rig_take(&r, last, NULL);
		t++;
		atomic_store(&takes_done, t);
		uint64_t pos = first, f, c;
		while (tern_bitmap_next_run(b, &pos, UINT64_MAX, &f, &c)) {
			for (uint64_t p = f; p < f + c; p++) {
				if (times[p - first]++ == 0)
					in_take[p - first] = t; /* 1-based */
			}
		}
	}
	cr_assert_eq(uv_thread_join(&th), 0);
	uint64_t again = 0;
	for (uint64_t i = 0; i < count; i++) {
		cr_assert_geq(times[i], 1, "page %" PRIu64 " written, in no set", first + i);
		/* The first set holding it (take in_take, 1-based) was answered
		 * after the write began, i.e. after the epoch-th. */
		cr_assert_gt(in_take[i], w.epoch[i],
		             "page %" PRIu64 " in set %u, but written after set %u", first + i,
		             in_take[i], w.epoch[i]);
		again += times[i] > 1;
	}
	printf("writer: %" PRIu64 " pages over %u TAKEs, %" PRIu64 " reported twice\n", count, t,
	       again);
	rig_end(&r);
	rig_free(&r);
	free(w.epoch);
	free(in_take);
	free(times);
}
