/*
 * kvm/uffd_missing.c, postcopy's destination memory: a thread touching a
 * page that has not arrived blocks until it is placed and then sees exactly
 * what was placed; a page is placed once and never overwritten (not by a
 * second copy of it, not when it was present already); faults are named by
 * their offset in the migration's space, in any region; memfd and anonymous
 * memory alike.  Real faulting threads, no timing: the test waits for the
 * fault on the userfaultfd itself (a generous liveness bound only).
 */
#include <criterion/criterion.h>
#include <poll.h>
#include <string.h>
#include <uv.h>

#include "kvm/guest.h"
#include "kvm/uffd_missing.h"

#define PG TERN_PAGE_SIZE

struct reader {
	const volatile uint64_t *word;
	uint64_t seen;
};

static void
reader_main(void *arg)
{
	struct reader *r = arg;
	r->seen = *r->word; /* faults, and blocks until the page is placed */
}

static struct tern_guest *
dest_guest(const char *spec)
{
	struct tern_guest_config cfg;
	struct tern_guest *g;
	char err[256];
	cr_assert_eq(tern_guest_spec_parse(spec, &cfg, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(tern_guest_create_provided(&g, &cfg, TERN_GUEST_DESTINATION, err, sizeof(err)),
	             0, "%s", err);
	return g;
}

/* The next fault, waited for on the userfaultfd (10 s: liveness only). */
static uint64_t
wait_fault(struct tern_uffd_missing *m)
{
	struct pollfd p = {.fd = tern_uffd_missing_fd(m), .events = POLLIN};
	uint64_t off = UINT64_MAX;
	cr_assert_eq(poll(&p, 1, 10000), 1, "no fault reported");
	cr_assert_eq(tern_uffd_missing_next_fault(m, &off), 0);
	return off;
}

static void
fill(uint8_t *buf, uint64_t len, uint64_t v)
{
	for (uint64_t i = 0; i < len / 8; i++)
		((uint64_t *)(void *)buf)[i] = v + i;
}

static void
blocks_until_placed(const char *spec)
{
	static uint8_t a[4 * PG], b[4 * PG];
	struct tern_guest *g = dest_guest(spec);
	struct tern_uffd_missing *m;
	char why[256] = "";
	uint64_t placed = 0;
	uint8_t *mem = tern_guest_hva(g, 0);

	/* Pages 0..15 arrived before the switch; 4..7 turned out stale. */
	fill(mem, 16 * PG, 0xa000);
	cr_assert_eq(tern_guest_region_at(g, 0)->size >= 16 * PG, 1);
	cr_assert_eq(tern_uffd_missing_open(&m, g, why, sizeof(why)), 0, "%s", why);
	tern_uffd_missing_hash(m);
	cr_assert_eq(tern_guest_discard(g, 4 * PG, 4 * PG), 0);

	struct reader r = {(const volatile uint64_t *)(mem + 5 * PG + 24), 0};
	uv_thread_t t;
	cr_assert_eq(uv_thread_create(&t, reader_main, &r), 0);
	cr_assert_eq(wait_fault(m), 5 * PG, "the fault names the page, not the byte");
	fill(a, sizeof(a), 0xb000);
	cr_assert_eq(tern_uffd_missing_place(m, 4 * PG, a, sizeof(a), &placed), 0);
	cr_assert_eq(placed, 4);
	uint64_t h = 0;
	for (int i = 0; i < 4; i++)
		h ^= tern_page_hash(4 + i, a + i * PG);
	cr_assert_eq(tern_uffd_missing_hashed(m), h,
	             "the placed pages' hashes, with their numbers");
	cr_assert_eq(uv_thread_join(&t), 0);
	cr_assert_eq(r.seen, 0xb000 + (PG + 24) / 8, "the reader sees what was placed");

	/* A second copy of the same pages (the background stream after an
	 * urgent request) and a copy onto a page present all along: nothing
	 * placed, nothing overwritten -- the guest may have written them. */
	mem[5 * PG + 100] = 0x5a;
	fill(b, sizeof(b), 0xc000);
	cr_assert_eq(tern_uffd_missing_place(m, 4 * PG, b, sizeof(b), &placed), 0);
	cr_assert_eq(placed, 0);
	cr_assert_eq(mem[5 * PG + 100], 0x5a);
	cr_assert_eq(tern_uffd_missing_place(m, 0, b, PG, &placed), 0);
	cr_assert_eq(placed, 0);
	cr_assert_eq(((uint64_t *)(void *)mem)[1], 0xa001);

	/* Half stale, half present: only the missing half is placed. */
	cr_assert_eq(tern_guest_discard(g, 9 * PG, 2 * PG), 0);
	cr_assert_eq(tern_uffd_missing_place(m, 8 * PG, b, sizeof(b), &placed), 0);
	cr_assert_eq(placed, 2);
	cr_assert_eq(((uint64_t *)(void *)(mem + 9 * PG))[0], 0xc000 + PG / 8);
	cr_assert_eq(((uint64_t *)(void *)(mem + 8 * PG))[0], 0xa000 + 8 * PG / 8);
	cr_assert_eq(tern_uffd_missing_placed(m), 6);

	cr_assert_eq(tern_uffd_missing_place(m, 15 * PG, a, 2 * PG, &placed), 0,
	             "a range may span pages present and missing");
	cr_assert_neq(tern_uffd_missing_place(m, 3, a, PG, &placed), 0, "unaligned");
	tern_uffd_missing_close(m);
	tern_guest_destroy(g);
}

Test(uffd_missing, a_reader_blocks_until_its_page_is_placed_memfd)
{
	blocks_until_placed("simvm:mem=4M,vcpus=1");
}

Test(uffd_missing, a_reader_blocks_until_its_page_is_placed_anon)
{
	blocks_until_placed("simvm:mem=4M,vcpus=1,backing=anon-thp");
}

/* A page never written is missing too (on a fresh destination); in the
 * second of two regions its fault is named by the region's base in the
 * migration's space; a zero page placed reads as zero. */
Test(uffd_missing, faults_in_any_region_and_zero_pages)
{
	struct tern_guest *g = dest_guest("simvm:mem=1M,vcpus=1,regions=2");
	struct tern_uffd_missing *m;
	char why[256] = "";
	uint64_t placed = 0;

	cr_assert_eq(g->nregions, 2);
	uint64_t base = g->regions[1].base;
	cr_assert_eq(base, 192 * PG);
	cr_assert_eq(tern_uffd_missing_open(&m, g, why, sizeof(why)), 0, "%s", why);
	struct reader r = {(const volatile uint64_t *)tern_guest_hva(g, base + 3 * PG), 1};
	uv_thread_t t;
	cr_assert_eq(uv_thread_create(&t, reader_main, &r), 0);
	cr_assert_eq(wait_fault(m), base + 3 * PG);
	cr_assert_eq(tern_uffd_missing_place_zero(m, base + 2 * PG, 3 * PG, &placed), 0);
	cr_assert_eq(placed, 3);
	cr_assert_eq(uv_thread_join(&t), 0);
	cr_assert_eq(r.seen, 0);
	uint64_t off = 0;
	cr_assert_eq(tern_uffd_missing_next_fault(m, &off), TERN_ETIMEDOUT, "no other fault");
	cr_assert_eq(tern_guest_discard(g, base + 127 * PG, 2 * PG), TERN_ERANGE,
	             "past the region's end");
	tern_uffd_missing_close(m);
	tern_guest_destroy(g);
}
