/*
 * The "ring" dirty-log mode (kvm/dirty_ring.h, simvm): per-vCPU rings with
 * KVM dirty-ring semantics, checked as KVM's dirty_log_test does, by
 * comparing what the harvests report with what changed in guest memory
 * between iterations:
 *  - every page a running memtouch workload wrote before a harvest is
 *    reported by it or by the next one, and nothing but vCPU-written pages;
 *  - through the DirtyLogActor: no page lost across DIRTY_TAKE's swap while
 *    the guest writes, up to a final TAKE with the guest paused;
 *  - a full ring stops its vCPU and never drops an entry: the union of the
 *    harvests is exactly the set of pages the vCPU wrote;
 *  - pause and destroy work with a vCPU stopped on a full ring;
 *  - mode selection errors name the mode.
 * And, printed only (no timed assertion), the harvest cost of bitmap and
 * ring at a fixed dirty set as the guest grows (seed 001).
 */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "actors/actor.h"
#include "actors/dirty_log.h"
#include "kvm/bitmap.h"
#include "kvm/guest.h"
#include "messages/msg.h"
#include "messages/trace.h"
#include "tern/error.h"
#include "tests/guest_util.h"

#define PG TERN_PAGE_SIZE
#define CTL_PAGES 64u /* memtouch control pages (vcpus <= 64) */

static void
set_mode(struct tern_guest *g, const char *mode, uint32_t ring_size)
{
	char why[256];
	int rv = tern_guest_set_dirty_mode(g, mode, ring_size, why, sizeof(why));

	cr_assert_eq(rv, 0, "set_dirty_mode %s: %s", mode, why);
}

static struct tern_guest *
ring_guest(const char *spec, uint32_t ring_size)
{
	struct tern_guest *g = mkguest(spec, TERN_GUEST_SOURCE);
	int rv;

	set_mode(g, "ring", ring_size);
	rv = g->ops->dirty_start(g);
	cr_assert_eq(rv, 0, "dirty_start: %s (%s)", g->why, tern_strerror(rv));
	return g;
}

static uint64_t
steps_of(struct tern_guest *g)
{
	char why[256];
	uint64_t p = 0;

	cr_assert_eq(tern_guest_check(g, &p, why, sizeof(why)), 0, "check: %s", why);
	return p;
}

/* The iteration's picture of memory: word 0 of every control and
 * working-set page (memtouch rewrites word 0 at every step, the control
 * page's words at every step), read while the vCPUs run. */
static void
snapshot(const struct tern_guest *g, uint64_t *snap, uint64_t npg)
{
	for (uint64_t p = 0; p < npg; p++)
		snap[p] = __atomic_load_n((const uint64_t *)(g->regions[0].host + p * PG) +
		                              (p < CTL_PAGES ? 2 : 0), /* ctl: steps */
		                          __ATOMIC_RELAXED);
}

/* expect_changed_reported: every page that differs between prev and cur
 * is set in a or b; returns how many differed. */
static uint64_t
expect_changed_reported(const uint64_t *prev, const uint64_t *cur, uint64_t npg,
                        const struct tern_bitmap *a, const struct tern_bitmap *b, const char *what,
                        int it)
{
	uint64_t changed = 0;

	for (uint64_t p = 0; p < npg; p++) {
		if (prev[p] == cur[p])
			continue;
		changed++;
		cr_assert(tern_bitmap_test(a, p) || (b != NULL && tern_bitmap_test(b, p)),
		          "%s iter %d: page %" PRIu64 " changed but was never reported", what, it,
		          p);
	}
	return changed;
}

/* expect_only_vcpu_pages: a ring reports control and working-set pages,
 * nothing else. */
static void
expect_only_vcpu_pages(const struct tern_guest *g, const struct tern_bitmap *bm, uint64_t npg,
                       const char *what, int it)
{
	uint64_t pos = npg, f, c;

	for (uint64_t p = g->cfg.vcpus; p < CTL_PAGES; p++)
		cr_assert(!tern_bitmap_test(bm, p), "%s iter %d: unused control page %" PRIu64,
		          what, it, p);
	cr_assert(!tern_bitmap_next_run(bm, &pos, 1, &f, &c),
	          "%s iter %d: page %" PRIu64 " outside the working set reported", what, it, f);
}

/* ---- mode selection ---- */

Test(ring, mode_selection_errors_name_the_mode)
{
	struct tern_guest *g = mkguest("simvm:mem=1M", TERN_GUEST_SOURCE);
	char why[256];

	cr_assert_str_eq(g->dirty_mode->name, "bitmap", "bitmap is the default");
	cr_assert_eq(tern_guest_set_dirty_mode(g, "clear-log", 0, why, sizeof(why)), TERN_EINVAL);
	cr_assert(strstr(why, "'clear-log'") && strstr(why, "bitmap, ring"), "%s", why);
	cr_assert_eq(tern_guest_set_dirty_mode(g, "ring", 100, why, sizeof(why)), TERN_EINVAL);
	cr_assert(strstr(why, "'ring'") && strstr(why, "100"), "%s", why);
	cr_assert_eq(tern_guest_set_dirty_mode(g, "ring", 8, why, sizeof(why)), TERN_EINVAL);
	set_mode(g, "ring", 16);
	cr_assert_str_eq(g->dirty_mode->name, "ring");
	cr_assert_eq(g->dirty_ring_size, 16);
	cr_assert_eq(g->ops->dirty_start(g), 0, "%s", g->why);
	cr_assert_eq(g->ops->dirty_start(g), TERN_ESTATE);
	cr_assert_eq(tern_guest_set_dirty_mode(g, "bitmap", 0, why, sizeof(why)), TERN_ESTATE);
	cr_assert(strstr(why, "'bitmap'") && strstr(why, "'ring'"), "%s", why);
	cr_assert_eq(g->ops->dirty_stop(g), 0);
	cr_assert_eq(g->ops->dirty_stop(g), 0, "dirty_stop is idempotent");
	set_mode(g, NULL, 0);
	cr_assert_str_eq(g->dirty_mode->name, "bitmap", "NULL selects the default");
	tern_guest_destroy(g);
}

/* The DirtyLogActor refuses an unknown mode at spawn, naming it. */
Test(ring, actor_unknown_mode_fails_spawn)
{
	struct tern_guest *g = mkguest("simvm:mem=1M", TERN_GUEST_SOURCE);
	struct tern_dirty_log_args a = {.guest = g, .mode = "pml"};
	struct tern_runtime *rt;
	struct tern_actor *act = NULL;
	int rv;

	cr_assert_eq(tern_runtime_create(&rt, NULL), 0);
	struct tern_exit why;
	rv = tern_spawn(rt, &tern_dirty_log_actor, &a, 0, &act, &why);
	cr_assert_eq(rv, TERN_EINVAL, "%s", tern_strerror(rv));
	cr_assert(strstr(why.why, "'pml'") != NULL, "err: %s", why.why);
	cr_assert_eq(why.reason, TERN_EXIT_ERROR);
	cr_assert(!g->dirty_tracking);
	tern_runtime_destroy(rt);
	tern_guest_destroy(g);
}

/* ---- harvests while the workload runs ---- */

/* Writes by anyone but the vCPUs are not in the ring (as with KVM); the
 * vCPUs' are, each page once until harvested. */
Test(ring, only_vcpu_writes_and_once_per_page, .timeout = 30)
{
	struct tern_guest *g =
	    mkguest("simvm:mem=16M,vcpus=1,workload=memtouch:ws=64K,rate=0", TERN_GUEST_SOURCE);
	struct tern_bitmap bm;
	uint64_t pages = 0, npg = CTL_PAGES + 16, s0;

	cr_assert_eq(g->ops->pause(g), 0);
	set_mode(g, "ring", 64);
	cr_assert_eq(g->ops->dirty_start(g), 0, "%s", g->why);
	cr_assert_eq(tern_bitmap_init(&bm, g->npages), 0);
	for (uint64_t p = 97; p < g->npages; p += 97)
		g->regions[0].host[p * PG + 8] = 1; /* the VMM writes: not tracked */
	cr_assert_eq(g->ops->dirty_harvest(g, &bm, &pages), 0, "%s", g->why);
	cr_assert_eq(pages, 0, "%" PRIu64 " non-vCPU writes reported", pages);
	/* 16 working-set pages rewritten thousands of times: a ring of 64
	 * holds them all (once each), so the vCPU never stalls. */
	s0 = steps_of(g);
	cr_assert_eq(g->ops->resume(g), 0);
	while (steps_of(g) < s0 + 5000)
		sleep_us(1000);
	cr_assert_eq(g->ops->pause(g), 0);
	cr_assert_eq(g->ops->dirty_harvest(g, &bm, &pages), 0);
	cr_assert_eq(pages, 17, "16 pages + the control page, once each: %" PRIu64, pages);
	cr_assert_eq(tern_bitmap_count(&bm), 17);
	cr_assert(tern_bitmap_test(&bm, 0));
	expect_only_vcpu_pages(g, &bm, npg, "once", 0);
	cr_assert_eq(__atomic_load_n(&g->stats.ring_full_stalls, __ATOMIC_RELAXED), 0);
	pages = 0;
	cr_assert_eq(g->ops->dirty_harvest(g, &bm, &pages), 0);
	cr_assert_eq(pages, 0, "paused guest: nothing new");
	tern_bitmap_fini(&bm);
	tern_guest_destroy(g);
}

/* Snapshot, harvest, repeat: a page whose word changed between two
 * snapshots was written before the second one's harvest, so that harvest or
 * the one before reports it.  A small ring with an unpaced writer makes the
 * vCPUs stall on full rings during the test. */
static void
ring_concurrent(const char *spec, uint32_t ring_size, bool expect_stalls)
{
	struct tern_guest *g = ring_guest(spec, ring_size);
	uint64_t npg = CTL_PAGES + g->cfg.ws_size / PG, *snap[2], pages, changed = 0, stalls;
	uint64_t s = 99, steps0 = steps_of(g);
	struct tern_bitmap h[2];
	const int iters = 40;

	for (int k = 0; k < 2; k++) {
		cr_assert_not_null(snap[k] = calloc(npg, sizeof(uint64_t)));
		cr_assert_eq(tern_bitmap_init(&h[k], g->npages), 0);
	}
	for (int it = 0; it <= iters; it++) {
		uint64_t *cur = snap[it & 1], *prev = snap[(it + 1) & 1];
		struct tern_bitmap *hc = &h[it & 1], *hp = &h[(it + 1) & 1];

		/* The VMM writes above the working set: never reported. */
		for (int k = 0; k < 16; k++) {
			s = s * 6364136223846793005ull + 1442695040888963407ull;
			g->regions[0].host[(npg + (s >> 20) % (g->npages - npg)) * PG + 24] = 1;
		}
		snapshot(g, cur, npg);
		tern_bitmap_clear_all(hc);
		pages = 0;
		cr_assert_eq(g->ops->dirty_harvest(g, hc, &pages), 0, "%s", g->why);
		cr_assert_eq(pages, tern_bitmap_count(hc), "%s iter %d: each page once", spec, it);
		cr_assert_leq(pages, (uint64_t)g->dirty_ring_size * g->cfg.vcpus);
		expect_only_vcpu_pages(g, hc, npg, spec, it);
		if (it > 0)
			changed += expect_changed_reported(prev, cur, npg, hc, hp, spec, it);
		sleep_us(it % 3 == 0 ? 0 : 2000);
	}
	/* Paused: the last changes are in the final harvest or the one before. */
	cr_assert_eq(g->ops->pause(g), 0);
	snapshot(g, snap[(iters + 1) & 1], npg);
	tern_bitmap_clear_all(&h[(iters + 1) & 1]);
	cr_assert_eq(g->ops->dirty_harvest(g, &h[(iters + 1) & 1], &pages), 0);
	changed += expect_changed_reported(snap[iters & 1], snap[(iters + 1) & 1], npg,
	                                   &h[(iters + 1) & 1], &h[iters & 1], spec, iters + 1);
	stalls = __atomic_load_n(&g->stats.ring_full_stalls, __ATOMIC_RELAXED);
	cr_assert_gt(changed, 0, "%s: the workload wrote nothing during the test", spec);
	if (expect_stalls)
		cr_assert_gt(stalls, 0, "%s: no vCPU ever found its ring of %u full", spec,
		             ring_size);
	printf("%s ring=%u: %" PRIu64 " steps, %" PRIu64 " page changes checked, %" PRIu64
	       " ring-full stalls in %d harvests\n",
	       spec, g->dirty_ring_size, steps_of(g) - steps0, changed, stalls, iters + 2);
	for (int k = 0; k < 2; k++) {
		free(snap[k]);
		tern_bitmap_fini(&h[k]);
	}
	tern_guest_destroy(g);
}

Test(ring, harvest_or_next_paced, .timeout = 60)
{
	ring_concurrent("simvm:mem=64M,vcpus=2,fill=50,workload=memtouch:ws=4M,rate=32M", 0, false);
}

Test(ring, harvest_or_next_small_ring_unpaced, .timeout = 60)
{
	ring_concurrent("simvm:mem=64M,vcpus=2,workload=memtouch:ws=4M,rate=0", 64, true);
}

/* ---- a full ring never drops an entry ---- */

/* One vCPU writes its pages in order (pattern=seq) as fast as it can into
 * a ring of 16: it stalls every few steps; the harvests drain it.  The
 * union of the harvests must be exactly the pages holding a non-zero stamp
 * (the workload's words in a fill=zero guest), as many as the vCPU's steps. */
Test(ring, full_ring_never_drops, .timeout = 60)
{
	/* The vCPU runs from creation on: pause it while tracking starts and
	 * wipe the stamps of the steps it made before, which no mode reports
	 * (tracking begins at dirty_start). */
	struct tern_guest *g =
	    mkguest("simvm:mem=128M,vcpus=1,workload=memtouch:ws=64M,rate=0,pattern=seq",
	            TERN_GUEST_SOURCE);
	cr_assert_eq(g->ops->pause(g), 0);
	set_mode(g, "ring", 16);
	cr_assert_eq(g->ops->dirty_start(g), 0, "dirty_start: %s", g->why);
	uint64_t ws = g->cfg.ws_size / PG, pages, total = 0, steps, stalls, written = 0;
	uint64_t steps0 = g->stats.workload_steps;
	for (uint64_t p = CTL_PAGES; p < CTL_PAGES + ws; p++)
		*(uint64_t *)(g->regions[0].host + p * PG) = 0;
	cr_assert_eq(g->ops->resume(g), 0);
	struct tern_bitmap h, uni;

	cr_assert_eq(tern_bitmap_init(&h, g->npages), 0);
	cr_assert_eq(tern_bitmap_init(&uni, g->npages), 0);
	/* At most 16 entries between two harvests, so 400 harvests cover at
	 * most ~6400 steps: fewer than the 16384 pages, no page written
	 * twice, every step a new entry. */
	for (int it = 0; it < 400; it++) {
		uint64_t stalls_before =
		    __atomic_load_n(&g->stats.ring_full_stalls, __ATOMIC_RELAXED);
		tern_bitmap_clear_all(&h);
		pages = 0;
		cr_assert_eq(g->ops->dirty_harvest(g, &h, &pages), 0, "%s", g->why);
		cr_assert_leq(pages, 16, "iter %d: %" PRIu64 " entries from a ring of 16", it,
		              pages);
		cr_assert_eq(pages, tern_bitmap_count(&h));
		/* The control page is written at every step: it comes back
		 * after every harvest.  The others are written once. */
		total += pages - tern_bitmap_test(&h, 0);
		h.words[0] &= ~1ull;
		for (uint64_t w = 0; w < h.nwords; w++) {
			cr_assert_eq(h.words[w] & uni.words[w], 0,
			             "iter %d: a page written once reported twice", it);
			uni.words[w] |= h.words[w];
		}
		if (it % 8 == 0) {
			/* Let the vCPU fill the ring and stall: wait for a stall
			 * since before this harvest (a liveness bound), not a
			 * while.  Counted from before the harvest: a vCPU that
			 * stalled since sleeps on its full ring until the next. */
			uint64_t t0 = tern_now_ns();
			while (__atomic_load_n(&g->stats.ring_full_stalls, __ATOMIC_RELAXED) ==
			       stalls_before) {
				cr_assert_lt(tern_now_ns() - t0, 30000000000ull,
				             "iter %d: the vCPU never found its ring full", it);
				sleep_us(100);
			}
		}
	}
	cr_assert_eq(g->ops->pause(g), 0);
	tern_bitmap_clear_all(&h);
	pages = 0;
	cr_assert_eq(g->ops->dirty_harvest(g, &h, &pages), 0);
	total += pages - tern_bitmap_test(&h, 0);
	tern_bitmap_or(&uni, &h);
	steps = g->stats.workload_steps - steps0;
	stalls = __atomic_load_n(&g->stats.ring_full_stalls, __ATOMIC_RELAXED);
	cr_assert_lt(steps + steps0, ws,
	             "the vCPU wrapped around its pages; the test needs more pages");
	cr_assert_gt(stalls, 0, "the vCPU never found its ring full");
	for (uint64_t p = CTL_PAGES; p < CTL_PAGES + ws; p++) {
		bool stamped = *(const uint64_t *)(g->regions[0].host + p * PG) != 0;

		written += stamped;
		cr_assert_eq(tern_bitmap_test(&uni, p), stamped, "page %" PRIu64 ": %s but %s", p,
		             stamped ? "written" : "never written",
		             stamped ? "never harvested" : "harvested");
	}
	cr_assert_eq(written, steps, "one new page per step");
	cr_assert_eq(total, steps, "every working-set entry once");
	printf("full ring of 16: %" PRIu64 " steps, %" PRIu64 " stalls, %" PRIu64
	       " entries harvested, none lost\n",
	       steps, stalls, total);
	tern_bitmap_fini(&h);
	tern_bitmap_fini(&uni);
	tern_guest_destroy(g);
}

/* A vCPU stopped on a full ring is out of guest code: pause returns without
 * a harvest, and so do stop and destroy. */
Test(ring, pause_and_destroy_while_stalled, .timeout = 30)
{
	struct tern_guest *g =
	    ring_guest("simvm:mem=16M,vcpus=2,workload=memtouch:ws=4M,rate=0", 16);
	struct tern_bitmap bm;
	uint64_t t0 = tern_now_ns(), pages = 0, s1;

	cr_assert_eq(tern_bitmap_init(&bm, g->npages), 0);
	while (__atomic_load_n(&g->stats.ring_full_stalls, __ATOMIC_RELAXED) < 2 &&
	       tern_now_ns() - t0 < 5000000000ull)
		sleep_us(1000);
	cr_assert_geq(__atomic_load_n(&g->stats.ring_full_stalls, __ATOMIC_RELAXED), 2);
	t0 = tern_now_ns();
	cr_assert_eq(g->ops->pause(g), 0);
	printf("pause with both vCPUs stalled on full rings: %.3f ms\n",
	       (tern_now_ns() - t0) / 1e6);
	s1 = g->stats.workload_steps;
	cr_assert_eq(g->ops->dirty_harvest(g, &bm, &pages), 0);
	cr_assert_leq(pages, 32);
	cr_assert_eq(g->ops->resume(g), 0);
	while (steps_of(g) <= s1)
		sleep_us(1000); /* the harvest freed the rings: the vCPUs go on */
	cr_assert_eq(g->ops->dirty_stop(g), 0);
	cr_assert_eq(g->ops->dirty_start(g), 0, "%s", g->why);
	sleep_us(5000);
	tern_bitmap_fini(&bm);
	tern_guest_destroy(g); /* with vCPUs stalled again */
}

/* ---- through the DirtyLogActor ---- */

/* The set lent by DIRTY_SET is named by its id: 1 + its index in the
 * actor's maps (actors/set_table.h). */
static struct tern_bitmap *
take_final(struct tern_dirty_log_args *a, struct tern_mailbox *mb, uint32_t dl, uint64_t *npages,
           int final)
{
	struct tern_msg m, r;
	int rv;

	tern_msg_init(&m, TERN_MSG_DIRTY_TAKE);
	m.u.dirty_take.final = final;
	rv = tern_mailbox_request(mb, dl, &m, &r, 5000);
	cr_assert_eq(rv, 0, "DIRTY_TAKE: %s", tern_strerror(rv));
	cr_assert_eq(r.type, TERN_MSG_DIRTY_SET);
	*npages = r.u.dirty_set.pages;
	cr_assert(r.u.dirty_set.set >= TERN_SET_DIRTY &&
	              r.u.dirty_set.set < TERN_SET_DIRTY + TERN_DIRTY_MAPS,
	          "set id %u", r.u.dirty_set.set);
	return &a->maps[r.u.dirty_set.set - TERN_SET_DIRTY];
}

static void
give(struct tern_dirty_log_args *a, struct tern_runtime *rt, struct tern_mailbox *mb, uint32_t dl,
     struct tern_bitmap *b)
{
	struct tern_msg m;

	tern_msg_init(&m, TERN_MSG_DIRTY_GIVE);
	m.u.dirty_give.set = TERN_SET_DIRTY + (uint32_t)(b - a->maps);
	cr_assert_eq(tern_send(rt, tern_mailbox_id(mb), dl, &m), 0);
}

/* The actor harvests every 5 ms into its accumulated set while the test
 * snapshots and TAKEs.  A TAKE is a swap (only the final one, with the guest
 * paused, harvests), so a page changed between two snapshots is in the set
 * taken just before or in a later one, across every swap, and the final
 * TAKE holds everything up to the pause: no page is ever lost.  The small ring makes
 * the vCPUs stall, and the trace shows the mode and the stall counter. */
Test(ring, actor_take_loses_nothing, .timeout = 60)
{
	char path[] = "/tmp/tern-ring-trace-XXXXXX";
	struct tern_guest *g =
	    mkguest("simvm:mem=64M,vcpus=2,workload=memtouch:ws=4M,rate=0", TERN_GUEST_SOURCE);
	uint64_t npg = CTL_PAGES + g->cfg.ws_size / PG, *snap[32], changed = 0, n, stalls;
	struct tern_bitmap copy[32];
	struct tern_dirty_log_args a = {
	    .guest = g, .period_ms = 5, .mode = "ring", .ring_size = 256};
	struct tern_bitmap *held[2] = {NULL, NULL};
	struct tern_trace *trace;
	struct tern_runtime *rt;
	struct tern_mailbox *mb;
	struct tern_actor *act;
	struct tern_exit ex;
	uint32_t id;
	int fd = mkstemp(path), rv, states = 0, counters = 0;
	const int iters = 30;

	cr_assert_geq(fd, 0);
	close(fd);
	cr_assert_eq(tern_trace_open(&trace, path, "source"), 0);
	for (int k = 0; k < TERN_DIRTY_MAPS; k++)
		cr_assert_eq(tern_bitmap_init(&a.maps[k], g->npages), 0);
	for (int k = 0; k < iters + 2; k++) {
		cr_assert_not_null(snap[k] = calloc(npg, sizeof(uint64_t)));
		cr_assert_eq(tern_bitmap_init(&copy[k], g->npages), 0);
	}
	cr_assert_eq(tern_runtime_create(&rt, trace), 0);
	cr_assert_eq(tern_mailbox_open(rt, "main", &mb), 0);
	struct tern_exit why;
	rv = tern_spawn(rt, &tern_dirty_log_actor, &a, tern_mailbox_id(mb), &act, &why);
	cr_assert_eq(rv, 0, "spawn: %s (%s)", tern_strerror(rv), why.why);
	id = tern_actor_id(act);
	cr_assert_str_eq(g->dirty_mode->name, "ring");
	for (int it = 0; it <= iters + 1; it++) {
		int final = it == iters + 1;
		if (final)
			cr_assert_eq(g->ops->pause(g), 0); /* switchover */
		snapshot(g, snap[it], npg);
		/* The coordinator holds at most two sets: give the older back. */
		if (held[1] != NULL)
			give(&a, rt, mb, id, held[1]);
		held[1] = held[0];
		held[0] = take_final(&a, mb, id, &n, final);
		cr_assert_eq(n, tern_bitmap_count(held[0]));
		expect_only_vcpu_pages(g, held[0], npg, "actor", it);
		tern_bitmap_or(&copy[it], held[0]);
		sleep_us(it % 4 == 0 ? 0 : 7000); /* some TAKEs land between ticks */
	}
	/* Union of the sets around each interval between snapshots. */
	for (int it = 1; it <= iters + 1; it++) {
		struct tern_bitmap u;
		cr_assert_eq(tern_bitmap_init(&u, g->npages), 0);
		for (int k = it - 1; k <= iters + 1; k++)
			tern_bitmap_or(&u, &copy[k]);
		changed +=
		    expect_changed_reported(snap[it - 1], snap[it], npg, &u, NULL, "actor", it);
		tern_bitmap_fini(&u);
	}
	stalls = __atomic_load_n(&g->stats.ring_full_stalls, __ATOMIC_RELAXED);
	{
		struct tern_msg m;

		tern_msg_init(&m, TERN_MSG_DIRTY_STOP);
		cr_assert_eq(tern_send(rt, tern_mailbox_id(mb), id, &m), 0);
	}
	cr_assert_eq(tern_actor_join(act, 5000, &ex), 0);
	cr_assert_eq(ex.reason, TERN_EXIT_NORMAL, "%s", ex.why);
	cr_assert(!g->dirty_tracking, "the actor's stop ends tracking");
	tern_mailbox_close(mb);
	tern_runtime_destroy(rt);
	tern_trace_close(trace);
	cr_assert_gt(changed, 100, "the workload wrote too little during the test");
	cr_assert_gt(stalls, 0, "no vCPU ever found its ring of 256 full");

	struct tern_trace_reader *r;
	struct tern_trace_header h;
	struct tern_trace_record rec;
	cr_assert_eq(tern_trace_reader_open(&r, path, &h), 0);
	while ((rv = tern_trace_reader_next(r, &rec)) == 1) {
		if (rec.actor != id)
			continue;
		states += rec.kind == TERN_TRACE_STATE &&
		          !strcmp(rec.text, "tracking (mode=ring, ring_size=256)");
		counters += rec.kind == TERN_TRACE_COUNTER && !strcmp(rec.text, "ring_full_stalls");
	}
	cr_assert_eq(rv, 0);
	tern_trace_reader_close(r);
	unlink(path);
	cr_assert_eq(states, 1, "STATE naming the mode");
	cr_assert_geq(counters, iters, "a ring_full_stalls counter at every TAKE");
	printf("actor, ring of 256: %" PRIu64 " page changes checked over %d TAKEs, %" PRIu64
	       " stalls\n",
	       changed, iters + 2, stalls);
	for (int k = 0; k < TERN_DIRTY_MAPS; k++)
		tern_bitmap_fini(&a.maps[k]);
	for (int k = 0; k < iters + 2; k++) {
		free(snap[k]);
		tern_bitmap_fini(&copy[k]);
	}
	tern_guest_destroy(g);
}

/* ---- measurements (printed, not asserted) ---- */

static int
cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Median harvest time of `mode` on a guest of `mem` where one vCPU rewrites
 * the same 1000 pages between harvests (memtouch ws=1000 pages, seq). */
static double
harvest_ms(const char *mem, const char *mode, bool populate, uint64_t *pages_out)
{
	char spec[160];
	struct tern_guest *g;
	struct tern_bitmap bm;
	uint64_t t[5], target, pages;

	snprintf(spec, sizeof(spec),
	         "simvm:mem=%s,vcpus=1,fill=zero,workload=memtouch:ws=4000K,rate=0,pattern=seq",
	         mem);
	g = mkguest(spec, TERN_GUEST_SOURCE);
	cr_assert_eq(g->ops->pause(g), 0);
	if (populate)
		cr_assert_eq(tern_guest_populate(g, 0, g->regions[0].size), 0);
	set_mode(g, mode, 0);
	cr_assert_eq(g->ops->dirty_start(g), 0, "%s", g->why);
	cr_assert_eq(tern_bitmap_init(&bm, g->npages), 0);
	for (int r = 0; r < 5; r++) {
		target = g->stats.workload_steps + 1000;
		while (g->stats.workload_steps < target) {
			cr_assert_eq(g->ops->resume(g), 0);
			sleep_us(2000);
			cr_assert_eq(g->ops->pause(g), 0);
		}
		pages = 0;
		uint64_t t0 = tern_now_ns();
		cr_assert_eq(g->ops->dirty_harvest(g, &bm, &pages), 0, "%s", g->why);
		t[r] = tern_now_ns() - t0;
		cr_assert_eq(pages, 1001, "%s %s: the 1000 pages and the control page", mem, mode);
	}
	*pages_out = pages;
	qsort(t, 5, sizeof(t[0]), cmp_u64);
	tern_bitmap_fini(&bm);
	tern_guest_destroy(g);
	return t[2] / 1e6;
}

Test(ring, measure_harvest_cost_vs_guest_size, .timeout = 120)
{
	static const char *const mems[] = {"256M", "1G", "4G"};
	uint64_t pages;

	printf("harvest of 1000 dirty pages (median of 5), one vCPU, fill=zero\n");
	printf("%-6s %14s %18s %10s\n", "guest", "bitmap holes ms", "bitmap populated ms",
	       "ring ms");
	for (size_t i = 0; i < sizeof(mems) / sizeof(mems[0]); i++) {
		double bh = harvest_ms(mems[i], "bitmap", false, &pages);
		double bp = getenv("TERN_RING_BENCH_NOPOP")
		                ? -1
		                : harvest_ms(mems[i], "bitmap", true, &pages);
		double rg = harvest_ms(mems[i], "ring", false, &pages);

		printf("%-6s %14.3f %18.3f %10.3f\n", mems[i], bh, bp, rg);
	}
	fflush(stdout);
}
