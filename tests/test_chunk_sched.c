/*
 * actors/chunk_sched: cutting sets into chunks, the bound on outstanding
 * chunks, acknowledgements (duplicates included) and the requeue of a dead
 * connection's chunks, and the ring-only walk as a chunk source.  No actor,
 * no runtime: both are data.
 */
#include <criterion/criterion.h>

#include <string.h>

#include "actors/chunk_sched.h"
#include "actors/ring_pass.h"
#include "actors/set_table.h"
#include "kvm/guest.h"

struct src {
	struct tern_bitmap *set;
	uint64_t pos, max_pages;
	uint32_t cuts;
};

static bool
src_cut(void *arg, struct tern_msg_chunk *c)
{
	struct src *s = arg;
	if (!tern_chunk_cut(s->set, TERN_SET_BULK, &s->pos, s->max_pages, c))
		return false;
	s->cuts++;
	return true;
}

/* A scheduler over a 1024-page bitmap with pages [first, first + n)
 * dirty, cut 16 pages at a time, at most max_out chunks outstanding. */
struct fix {
	struct tern_bitmap b;
	struct tern_chunk_sched cs;
	struct src s;
};

static void
fix_start(struct fix *f, uint64_t first, uint64_t n, uint32_t max_out)
{
	cr_assert_eq(tern_bitmap_init(&f->b, 1024), 0);
	if (n > 0)
		tern_bitmap_set_range(&f->b, first, n);
	f->s = (struct src){&f->b, 0, 16, 0};
	cr_assert_eq(tern_chunk_sched_init(&f->cs, max_out), 0);
	tern_chunk_sched_begin(&f->cs, src_cut, &f->s);
}

static void
fix_end(struct fix *f)
{
	tern_chunk_sched_fini(&f->cs);
	tern_bitmap_fini(&f->b);
}

Test(chunk_sched, cut_windows)
{
	struct tern_bitmap b;
	struct tern_msg_chunk c = {0};
	uint64_t pos = 0;
	cr_assert_eq(tern_bitmap_init(&b, 4096), 0);
	tern_bitmap_set_range(&b, 10, 5);  /* 10..14 */
	tern_bitmap_set_range(&b, 20, 10); /* 20..29 */
	cr_assert(tern_chunk_cut(&b, TERN_SET_BULK, &pos, 8, &c));
	/* 5 + 3 pages: the window ends inside the second run. */
	cr_assert_eq(c.gpa, 10ull << TERN_PAGE_SHIFT);
	cr_assert_eq(c.len, 13ull << TERN_PAGE_SHIFT);
	cr_assert_eq(c.pages, 8);
	cr_assert_eq(c.set, TERN_SET_BULK);
	cr_assert(tern_chunk_cut(&b, TERN_SET_BULK, &pos, 8, &c));
	cr_assert_eq(c.gpa, 23ull << TERN_PAGE_SHIFT);
	cr_assert_eq(c.pages, 7);
	cr_assert_not(tern_chunk_cut(&b, TERN_SET_BULK, &pos, 8, &c));
	tern_bitmap_fini(&b);
}

Test(chunk_sched, cut_caps_runs)
{
	struct tern_bitmap b;
	struct tern_msg_chunk c = {0};
	uint64_t pos = 0;
	cr_assert_eq(tern_bitmap_init(&b, 8192), 0);
	for (uint64_t p = 0; p < 4000; p += 2)
		tern_bitmap_set(&b, p); /* 2000 one-page runs */
	cr_assert(tern_chunk_cut(&b, 1, &pos, 100000, &c));
	cr_assert_eq(c.pages, TERN_CHUNK_MAX_RUNS);
	cr_assert_eq(c.gpa, 0);
	cr_assert_eq(c.len, (2ull * (TERN_CHUNK_MAX_RUNS - 1) + 1) << TERN_PAGE_SHIFT);
	tern_bitmap_fini(&b);
}

/* Every page cut exactly once, never more than max outstanding, and the
 * pass ends only when every chunk is acknowledged. */
Test(chunk_sched, pass_bounded_and_complete)
{
	struct tern_bitmap b;
	struct tern_chunk_sched cs;
	cr_assert_eq(tern_bitmap_init(&b, 1 << 16), 0);
	tern_bitmap_set_range(&b, 100, 5000);
	tern_bitmap_set_range(&b, 9000, 333);
	struct src s = {&b, 0, 256, 0};
	cr_assert_eq(tern_chunk_sched_init(&cs, 4), 0);
	cr_assert(tern_chunk_sched_pass_done(&cs), "no pass yet: nothing to wait for");
	tern_chunk_sched_begin(&cs, src_cut, &s);
	uint64_t pages = 0, last = 0, ids[8];
	bool resend;
	for (int round = 0; !tern_chunk_sched_pass_done(&cs); round++) {
		uint32_t n = 0;
		struct tern_msg_chunk *c;
		while ((c = tern_chunk_sched_next(&cs, &resend)) != NULL) {
			cr_assert_not(resend);
			cr_assert_gt(c->chunk, last, "ids grow");
			last = c->chunk;
			pages += c->pages;
			tern_chunk_sched_commit(&cs);
			cr_assert_leq(tern_chunk_sched_outstanding(&cs), 4);
			ids[n++] = c->chunk;
		}
		cr_assert_leq(n, 4);
		if (n > 0)
			cr_assert_not(tern_chunk_sched_pass_done(&cs));
		for (uint32_t i = 0; i < n; i++)
			cr_assert(tern_chunk_sched_ack(&cs, ids[i], NULL));
		cr_assert_lt(round, 1000);
	}
	cr_assert_eq(pages, 5333);
	/* A window spans the gap between the runs: full chunks but the last. */
	cr_assert_eq(s.cuts, (5333 + 255) / 256);
	cr_assert_eq(tern_chunk_sched_outstanding(&cs), 0);
	tern_chunk_sched_fini(&cs);
	tern_bitmap_fini(&b);
}

/* A queue that is full: the chunk stays next, uncommitted, and is not cut
 * again. */
Test(chunk_sched, uncommitted_stays_next)
{
	struct fix f;
	bool resend;
	fix_start(&f, 0, 64, 8);
	struct tern_msg_chunk *c = tern_chunk_sched_next(&f.cs, &resend);
	uint64_t id = c->chunk;
	c->flags = 0x100; /* a route chosen by the caller */
	c = tern_chunk_sched_next(&f.cs, &resend);
	cr_assert_eq(c->chunk, id);
	cr_assert_eq(c->flags, 0x100);
	cr_assert_eq(f.s.cuts, 1);
	tern_chunk_sched_commit(&f.cs);
	struct tern_msg_chunk got;
	cr_assert(tern_chunk_sched_ack(&f.cs, id, &got));
	cr_assert_eq(got.flags, 0x100, "the acknowledged chunk is the one put");
	cr_assert_not(tern_chunk_sched_ack(&f.cs, id, NULL), "a second ack is a duplicate");
	fix_end(&f);
}

/* A dead connection's chunks go again before new ones, keep their ids and
 * routes, still count as outstanding, and an ack that beats the resend
 * cancels it. */
Test(chunk_sched, requeue)
{
	struct fix f;
	bool resend;
	fix_start(&f, 0, 1024, 4);
	uint64_t id[4];
	for (int i = 0; i < 4; i++) {
		struct tern_msg_chunk *c = tern_chunk_sched_next(&f.cs, &resend);
		c->flags = (uint32_t)i;
		id[i] = c->chunk;
		tern_chunk_sched_commit(&f.cs);
	}
	cr_assert_null(tern_chunk_sched_next(&f.cs, &resend), "window full");
	cr_assert_not(tern_chunk_sched_requeue(&f.cs, 999), "not outstanding");
	cr_assert(tern_chunk_sched_requeue(&f.cs, id[1]));
	cr_assert(tern_chunk_sched_requeue(&f.cs, id[2]));
	cr_assert_not(tern_chunk_sched_requeue(&f.cs, id[2]), "already queued again");
	/* id[2] acknowledged by the dying connection after all. */
	cr_assert(tern_chunk_sched_ack(&f.cs, id[2], NULL));
	struct tern_msg_chunk *c = tern_chunk_sched_next(&f.cs, &resend);
	cr_assert(resend);
	cr_assert_eq(c->chunk, id[1]);
	cr_assert_eq(c->flags, 1);
	tern_chunk_sched_commit(&f.cs);
	cr_assert_eq(tern_chunk_sched_outstanding(&f.cs), 3);
	/* Now one slot is free (id[2] acked): a new chunk. */
	c = tern_chunk_sched_next(&f.cs, &resend);
	cr_assert_not(resend);
	cr_assert_gt(c->chunk, id[3]);
	tern_chunk_sched_commit(&f.cs);
	/* A resend not yet put when its ack arrives is dropped. */
	cr_assert(tern_chunk_sched_requeue(&f.cs, id[3]));
	c = tern_chunk_sched_next(&f.cs, &resend);
	cr_assert(resend);
	cr_assert_eq(c->chunk, id[3]);
	cr_assert(tern_chunk_sched_ack(&f.cs, id[3], NULL));
	c = tern_chunk_sched_next(&f.cs, &resend);
	cr_assert(c == NULL || !resend);
	fix_end(&f);
}

Test(chunk_sched, empty_source)
{
	struct fix f;
	bool resend;
	fix_start(&f, 0, 0, 2);
	cr_assert_not(tern_chunk_sched_pass_done(&f.cs), "not known empty before a cut");
	cr_assert_null(tern_chunk_sched_next(&f.cs, &resend));
	cr_assert(tern_chunk_sched_pass_done(&f.cs));
	tern_chunk_sched_fini(&f.cs); /* idempotent: fix_end finishes it again */
	fix_end(&f);
}

/* The ring-only walk as a source: ring pages behind the walk go first while
 * under the step budget, then one walk chunk is forced; pages reported ahead
 * of the walk join it; every page goes exactly once. */
Test(chunk_sched, ring_walk)
{
	struct tern_bitmap walk, dirty;
	struct tern_ring_pass rp = {0};
	struct tern_msg_chunk c;
	cr_assert_eq(tern_bitmap_init(&walk, 4096), 0);
	cr_assert_eq(tern_bitmap_init(&dirty, 4096), 0);
	cr_assert_eq(tern_ring_pass_init(&rp, 4096, 32), 0);
	tern_bitmap_set_range(&walk, 0, 1024);
	tern_ring_pass_begin(&rp, &walk, 64);
	cr_assert(tern_ring_pass_wants_merge(&rp));
	memset(&c, 0, sizeof(c));
	cr_assert(tern_ring_pass_cut(&rp, &c));
	cr_assert_eq(c.set, TERN_SET_BULK);
	cr_assert_eq(c.pages, 64); /* pages 0..63: the walk is in word 0 */
	/* Written meanwhile: 10 pages behind the walk (word 0), 5 ahead (page
	 * 2000, beyond the walk's set). */
	tern_bitmap_set_range(&dirty, 0, 10);
	tern_bitmap_set_range(&dirty, 2000, 5);
	tern_ring_pass_merge(&rp, &dirty);
	cr_assert_not(tern_ring_pass_wants_merge(&rp), "ring pages not cut yet");
	cr_assert(tern_ring_pass_cut(&rp, &c));
	cr_assert_eq(c.set, TERN_SET_RING);
	cr_assert_eq(c.pages, 10);
	cr_assert_not(tern_ring_pass_wants_merge(&rp), "a ring chunk is unacknowledged");
	tern_ring_pass_acked(&rp, &c);
	uint64_t walked = 64;
	while (tern_ring_pass_cut(&rp, &c)) {
		cr_assert_eq(c.set, TERN_SET_BULK);
		walked += c.pages;
	}
	cr_assert_eq(walked, 1024 + 5, "the pages ahead joined the walk");
	cr_assert_eq(rp.pages, 10);
	cr_assert(rp.walk_done);
	tern_ring_pass_fini(&rp);
	tern_bitmap_fini(&walk);
	tern_bitmap_fini(&dirty);
}
