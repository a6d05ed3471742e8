/*
 * The destination's readiness: tern_guest_prepare changes no byte of guest
 * memory, and the populate-ahead block map hands each 2 MiB block to the
 * populator or to a connection, never both (actors/populate_ahead.h).  No
 * timing: the populator is waited for by its block states.
 */
#include <criterion/criterion.h>
#include <sched.h>
#include <string.h>

#include "actors/populate_ahead.h"
#include "kvm/guest_ready.h"
#include "tern/error.h"

/* Through the provider ops, as a migration sees it (regions=N lays simvm's
 * memory out as N regions there). */
static struct tern_guest *
dest_guest(const char *spec)
{
	struct tern_guest_config cfg;
	struct tern_guest *g = NULL;
	char why[256] = "";
	cr_assert_eq(tern_guest_spec_parse(spec, &cfg, why, sizeof(why)), 0, "%s", why);
	cr_assert_eq(tern_guest_create_provided(&g, &cfg, TERN_GUEST_DESTINATION, why, sizeof(why)),
	             0, "%s", why);
	return g;
}

/* A frame of one data range [gpa, gpa + len). */
static struct tern_msg_w_pages
frame(uint8_t *pairs, uint64_t gpa, uint64_t len)
{
	struct tern_msg_w_pages f = {0};
	tern_ranges_put(pairs, 0, gpa, len);
	f.ranges = (struct tern_ranges){pairs, 1};
	return f;
}

static void
stamp(struct tern_guest *g, uint64_t page, uint8_t v)
{
	memset(tern_guest_hva(g, page * TERN_PAGE_SIZE), v, TERN_PAGE_SIZE);
}

static void
check_stamp(struct tern_guest *g, uint64_t page, uint8_t v)
{
	const uint8_t *p = tern_guest_hva(g, page * TERN_PAGE_SIZE);
	for (uint64_t i = 0; i < TERN_PAGE_SIZE; i++)
		cr_assert_eq(p[i], v, "page %llu byte %llu changed", (unsigned long long)page,
		             (unsigned long long)i);
}

static void
prepare_keeps_data(const char *spec)
{
	struct tern_guest *g = dest_guest(spec);
	stamp(g, 0, 0x5a);
	stamp(g, 700, 0xa5);
	cr_assert_eq(tern_guest_prepare(g, 0, (g->npages * TERN_PAGE_SIZE)), 0);
	check_stamp(g, 0, 0x5a);
	check_stamp(g, 700, 0xa5);
	check_stamp(g, 701, 0);
	cr_assert_eq(tern_guest_prepare_all(g, 3), 0);
	check_stamp(g, 0, 0x5a);
	check_stamp(g, 700, 0xa5);
	tern_guest_destroy(g);
}

Test(populate_ahead, prepare_keeps_memfd_data)
{
	prepare_keeps_data("simvm:mem=8M,vcpus=1");
}

Test(populate_ahead, prepare_keeps_anon_data)
{
	prepare_keeps_data("simvm:mem=8M,vcpus=1,backing=anon-thp");
}

/* Two regions: the space has a gap, which preparing and the populator skip. */
Test(populate_ahead, regions_and_gaps, .timeout = 60)
{
	struct tern_guest *g = dest_guest("simvm:mem=8M,vcpus=1,regions=2");
	struct tern_populate_ahead a;
	cr_assert_eq(g->nregions, 2);
	uint64_t p1 = g->regions[1].base / TERN_PAGE_SIZE + 5;
	stamp(g, 3, 0x11);
	stamp(g, p1, 0x22);
	cr_assert_eq(tern_guest_prepare(g, 0, g->npages * TERN_PAGE_SIZE), 0);
	check_stamp(g, 3, 0x11);
	check_stamp(g, p1, 0x22);
	cr_assert_eq(tern_populate_ahead_init(&a, g, false), 0);
	cr_assert_eq(tern_populate_ahead_start(&a), 0);
	for (uint64_t b = 0; b < a.nblocks; b++)
		while (atomic_load(&a.state[b]) != 2)
			sched_yield();
	tern_populate_ahead_stop(&a);
	cr_assert_eq(a.rc, 0);
	check_stamp(g, p1, 0x22);
	tern_populate_ahead_fini(&a);
	tern_guest_destroy(g);
}

Test(populate_ahead, connections_take_free_blocks)
{
	struct tern_guest *g = dest_guest("simvm:mem=8M,vcpus=1");
	struct tern_populate_ahead a;
	uint8_t pairs[16];
	cr_assert_eq(tern_populate_ahead_init(&a, g, false), 0);
	cr_assert_eq(a.nblocks, 4);
	/* Straddling blocks 0 and 1: both taken, the connection populates. */
	struct tern_msg_w_pages f =
	    frame(pairs, TERN_AHEAD_BLOCK - TERN_PAGE_SIZE, 2 * TERN_PAGE_SIZE);
	cr_assert(tern_populate_ahead_take(&a, &f));
	cr_assert_eq(atomic_load(&a.front), 2);
	/* Taken is not ready: a second frame there populates too. */
	f = frame(pairs, 0, TERN_PAGE_SIZE);
	cr_assert(tern_populate_ahead_take(&a, &f));
	tern_populate_ahead_fini(&a);
	tern_populate_ahead_fini(&a); /* idempotent */
	tern_guest_destroy(g);
}

Test(populate_ahead, preallocated_guest_is_ready)
{
	struct tern_guest *g = dest_guest("simvm:mem=8M,vcpus=1");
	struct tern_populate_ahead a;
	uint8_t pairs[16];
	cr_assert_eq(tern_populate_ahead_init(&a, g, true), 0);
	struct tern_msg_w_pages f = frame(pairs, 0, (g->npages * TERN_PAGE_SIZE));
	cr_assert_not(tern_populate_ahead_take(&a, &f));
	cr_assert_eq(tern_populate_ahead_start(&a), 0);
	tern_populate_ahead_fini(&a);
	tern_guest_destroy(g);
}

/* The populator prepares every free block (8 MiB is inside its lead),
 * skips the one a connection took, and keeps the data already there. */
Test(populate_ahead, populator_prepares_the_rest, .timeout = 60)
{
	struct tern_guest *g = dest_guest("simvm:mem=8M,vcpus=1");
	struct tern_populate_ahead a;
	uint8_t pairs[16];
	cr_assert_eq(tern_populate_ahead_init(&a, g, false), 0);
	stamp(g, 3 * TERN_AHEAD_BLOCK / TERN_PAGE_SIZE, 0x33);
	struct tern_msg_w_pages f = frame(pairs, 0, TERN_PAGE_SIZE);
	cr_assert(tern_populate_ahead_take(&a, &f)); /* block 0: the connection's */
	cr_assert_eq(tern_populate_ahead_start(&a), 0);
	for (uint64_t b = 1; b < a.nblocks; b++)
		while (atomic_load(&a.state[b]) != 2)
			sched_yield();
	cr_assert_eq(atomic_load(&a.state[0]), 3, "a taken block was prepared");
	tern_populate_ahead_stop(&a);
	cr_assert_eq(a.rc, 0);
	f = frame(pairs, TERN_AHEAD_BLOCK, 2 * TERN_AHEAD_BLOCK);
	cr_assert_not(tern_populate_ahead_take(&a, &f));
	check_stamp(g, 3 * TERN_AHEAD_BLOCK / TERN_PAGE_SIZE, 0x33);
	tern_populate_ahead_fini(&a);
	tern_guest_destroy(g);
}
