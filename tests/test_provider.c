/*
 * kvm/provider.c: what a VMM's guest ops are checked for before a migration
 * uses them -- missing slots, bad layouts, and a failing slot's reason
 * reaching the error -- and how several regions map into the migration's
 * one page space (kvm/guest.h).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "kvm/guest.h"
#include "tern/guest.h"

static uint8_t fake_mem[16 * 4096] __attribute__((aligned(4096)));
static uint32_t fake_nregions = 1;
static uint64_t fake_gpa = 0;
/* Region i: fake_pages[i] pages (16 when 0) at fake_gpa + i GiB, mapped at
 * fake_mem (the mapping's content does not matter here). */
static uint64_t fake_pages[80];

static uint64_t
fake_npages(uint32_t i)
{
	return fake_pages[i] ? fake_pages[i] : 16;
}

static int
fake_regions(void *guest, struct tern_mem_region *out, uint32_t cap, uint32_t *count)
{
	*count = fake_nregions;
	for (uint32_t i = 0; i < cap && i < fake_nregions; i++)
		out[i] = (struct tern_mem_region){.gpa = fake_gpa + ((uint64_t)i << 30),
		                                  .size = fake_npages(i) * 4096,
		                                  .host = fake_mem,
		                                  .fd = -1};
	return 0;
}

/* A sloppy VMM: marks every page asked for, and the bits after the last
 * one in its last word too (a gap libtern must not take for pages). */
static int
fake_harvest(void *guest, uint32_t region, uint64_t first, uint64_t count, uint64_t *bitmap,
             uint64_t *pages)
{
	if (first % 64 != 0 || first + count > fake_npages(region))
		return -EINVAL;
	for (uint64_t i = 0; i < (count + 63) / 64; i++)
		bitmap[i] = ~0ull;
	*pages += count;
	return 0;
}

static uint64_t
fake_ring_full(void *guest)
{
	return 7;
}

static int
fake_pop(void *guest, struct tern_dirty_entry *out, uint32_t cap, uint32_t *n)
{
	static int popped;
	*n = 0;
	if (popped++ == 0 && cap >= 2) {
		out[0] = (struct tern_dirty_entry){.region = 1, .page = 3};
		out[1] = (struct tern_dirty_entry){.region = 2, .page = 63};
		*n = 2;
	}
	return 0;
}

static int
fake_ok(void *guest)
{
	return 0;
}

static int
fake_start(void *guest, uint32_t mode, uint32_t n)
{
	return 0;
}

static int
fake_save(void *guest, void *buf, uint64_t cap, uint64_t *len)
{
	tern_guest_error("device %d refused to save", 7);
	return -EIO;
}

static int
fake_load(void *guest, const void *buf, uint64_t len)
{
	return 0;
}

static struct tern_guest_ops fake_ops;

static void
fake_setup(void)
{
	fake_nregions = 1;
	fake_gpa = 0;
	memset(fake_pages, 0, sizeof(fake_pages));
	fake_ops = (struct tern_guest_ops){
	    .size = sizeof(struct tern_guest_ops),
	    .name = "fake-vmm",
	    .regions = fake_regions,
	    .dirty_modes = TERN_DIRTY_BITMAP,
	    .dirty_start = fake_start,
	    .dirty_stop = fake_ok,
	    .pause = fake_ok,
	    .resume = fake_ok,
	    .state_save = fake_save,
	    .state_load = fake_load,
	};
}

static int
wrap(struct tern_guest **g, char *err, size_t errlen)
{
	struct tern_guest_provider p = {.ops = &fake_ops, .guest = NULL};
	return tern_guest_from_provider(g, &p, TERN_GUEST_SOURCE, err, errlen);
}

Test(provider, a_whole_ops_table_is_taken, .init = fake_setup)
{
	struct tern_guest *g;
	char err[256] = "";
	cr_assert_eq(wrap(&g, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(g->npages, 16);
	cr_assert_eq(g->nregions, 1);
	cr_assert_eq(g->regions[0].host, fake_mem);
	tern_guest_destroy(g);
}

/* Regions of 5, 70 and 64 pages at gpa 0, 1 GiB and 2 GiB: bases 0, 64 and
 * 192 in the migration's space (each on 64 pages, at least a page of gap),
 * 256 pages in all. */
static struct tern_guest *
three_regions(void)
{
	struct tern_guest *g;
	char err[256] = "";
	fake_nregions = 3;
	fake_pages[0] = 5;
	fake_pages[1] = 70;
	fake_pages[2] = 64;
	fake_ops.dirty_harvest = fake_harvest;
	fake_ops.dirty_ring_pop = fake_pop;
	fake_ops.dirty_ring_full = fake_ring_full;
	fake_ops.dirty_modes = TERN_DIRTY_BITMAP | TERN_DIRTY_RING;
	cr_assert_eq(wrap(&g, err, sizeof(err)), 0, "%s", err);
	return g;
}

Test(provider, several_regions_with_holes_make_one_dense_space, .init = fake_setup)
{
	struct tern_guest *g = three_regions();
	cr_assert_eq(g->nregions, 3);
	cr_assert_eq(g->regions[1].base, 64 * 4096ull);
	cr_assert_eq(g->regions[2].base, 192 * 4096ull);
	cr_assert_eq(g->regions[2].gpa, 2ull << 30);
	cr_assert_eq(g->npages, 256);
	cr_assert_eq(g->cfg.mem_size, (5 + 70 + 64) * 4096ull);
	cr_assert(tern_guest_range_ok(g, 0, 5 * 4096));
	cr_assert_not(tern_guest_range_ok(g, 4 * 4096, 2 * 4096), "into the gap");
	cr_assert_not(tern_guest_range_ok(g, 5 * 4096, 4096), "the gap");
	cr_assert(tern_guest_range_ok(g, 64 * 4096, 70 * 4096));
	cr_assert_not(tern_guest_range_ok(g, 130 * 4096, 8 * 4096), "past region 1");
	cr_assert_not(tern_guest_range_ok(g, 256 * 4096, 4096), "past the end");
	cr_assert(tern_guest_space_ok(g, 0, 256 * 4096));
	cr_assert_eq(tern_guest_hva(g, 200 * 4096), fake_mem + 8 * 4096);
	cr_assert_eq(tern_guest_region_at(g, 100 * 4096), &g->regions[1]);
	cr_assert_null(tern_guest_region_at(g, 150 * 4096));
	tern_guest_destroy(g);
}

Test(provider, harvests_map_region_pages_into_the_space, .init = fake_setup)
{
	struct tern_guest *g = three_regions();
	struct tern_bitmap bm;
	uint64_t pages = 0;
	char why[192];
	cr_assert_eq(tern_bitmap_init(&bm, g->npages), 0);
	cr_assert_eq(g->ops->dirty_harvest(g, &bm, &pages), 0, "%s", g->why);
	cr_assert_eq(pages, 5 + 70 + 64);
	cr_assert_eq(tern_bitmap_count(&bm), 5 + 70 + 64, "the VMM's stray gap bits are dropped");
	cr_assert(tern_bitmap_test(&bm, 4) && !tern_bitmap_test(&bm, 5));
	cr_assert(tern_bitmap_test(&bm, 133) && !tern_bitmap_test(&bm, 134));
	cr_assert(tern_bitmap_test(&bm, 255));

	tern_bitmap_clear_all(&bm);
	pages = 0;
	cr_assert_eq(tern_guest_set_dirty_mode(g, "ring", 0, why, sizeof(why)), 0, "%s", why);
	cr_assert_eq(g->ops->dirty_harvest(g, &bm, &pages), 0, "%s", g->why);
	cr_assert_eq(pages, 2);
	cr_assert_eq(g->stats.ring_full_stalls, 7, "the VMM's ring-full count reaches the stats");
	cr_assert(tern_bitmap_test(&bm, 64 + 3));
	cr_assert(tern_bitmap_test(&bm, 192 + 63));
	tern_bitmap_fini(&bm);
	tern_guest_destroy(g);
}

Test(provider, a_missing_slot_is_named, .init = fake_setup)
{
	struct tern_guest *g = (struct tern_guest *)1;
	char err[256] = "";
	fake_ops.state_load = NULL;
	cr_assert_eq(wrap(&g, err, sizeof(err)), TERN_EINVAL);
	cr_assert_null(g);
	cr_assert_not_null(strstr(err, "fake-vmm"), "%s", err);
	cr_assert_not_null(strstr(err, "state_load"), "%s", err);
	fake_setup();
	fake_ops.size = 16; /* not sizeof(struct tern_guest_ops) */
	cr_assert_eq(wrap(&g, err, sizeof(err)), TERN_EINVAL);
	cr_assert_not_null(strstr(err, "size"), "%s", err);
}

static uint64_t
fake_state_size(void *guest)
{
	return 12345;
}

/* Optional slots added after the first release: used when the VMM's table
 * has them, never read past the end of an older VMM's table. */
Test(provider, optional_slots_are_read_only_within_the_vmms_table, .init = fake_setup)
{
	struct tern_guest *g;
	char err[256] = "";
	fake_ops.state_size = fake_state_size;
	cr_assert_eq(wrap(&g, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(tern_guest_state_size(g), 12345);
	tern_guest_destroy(g);
	/* Built against the first header: the table ends after state_load. */
	fake_ops.size = offsetof(struct tern_guest_ops, dirty_ring_full);
	cr_assert_eq(wrap(&g, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(tern_guest_state_size(g), 0);
	tern_guest_destroy(g);
}

Test(provider, bad_layouts_are_refused_with_the_region_named, .init = fake_setup)
{
	struct tern_guest *g;
	char err[256] = "";
	fake_nregions = 65;
	cr_assert_eq(wrap(&g, err, sizeof(err)), TERN_ENOTSUP);
	cr_assert_not_null(strstr(err, "65 memory regions"), "%s", err);
	cr_assert_not_null(strstr(err, "up to 64"), "%s", err);
	fake_nregions = 2;
	fake_pages[0] = (2ull << 30) / 4096; /* 2 GiB: runs into region 1 at 1 GiB */
	cr_assert_eq(wrap(&g, err, sizeof(err)), TERN_EINVAL);
	cr_assert_not_null(strstr(err, "region 1"), "%s", err);
	cr_assert_not_null(strstr(err, "overlaps"), "%s", err);
	fake_nregions = 0;
	cr_assert_eq(wrap(&g, err, sizeof(err)), TERN_EINVAL);
	fake_nregions = 1;
	fake_gpa = 100; /* not page-aligned */
	cr_assert_eq(wrap(&g, err, sizeof(err)), TERN_EINVAL);
	cr_assert_not_null(strstr(err, "region 0"), "%s", err);
}

Test(provider, a_failing_slot_gives_its_reason, .init = fake_setup)
{
	struct tern_guest *g;
	char err[256] = "", buf[64];
	size_t len = 0;
	cr_assert_eq(wrap(&g, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(g->ops->state_save(g, buf, sizeof(buf), &len), -EIO);
	cr_assert_str_eq(g->why, "fake-vmm: state_save failed: device 7 refused to save");
	tern_guest_destroy(g);
}
