/*
 * kvm/provider.c: what a VMM's guest ops are checked for before a migration
 * uses them -- missing slots, layouts this version cannot migrate, and a
 * failing slot's reason reaching the error.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "kvm/guest.h"
#include "tern/guest.h"

static uint8_t fake_mem[16 * 4096] __attribute__((aligned(4096)));
static uint32_t fake_nregions = 1;
static uint64_t fake_gpa = 0;

static int
fake_regions(void *guest, struct tern_mem_region *out, uint32_t cap, uint32_t *count)
{
	*count = fake_nregions;
	for (uint32_t i = 0; i < cap && i < fake_nregions; i++)
		out[i] = (struct tern_mem_region){.gpa = fake_gpa + i * sizeof(fake_mem),
		                                  .size = sizeof(fake_mem),
		                                  .host = fake_mem,
		                                  .fd = -1};
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
	cr_assert_eq(g->region.host, fake_mem);
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
	fake_ops.size = sizeof(fake_ops) - 8; /* built against an older header */
	cr_assert_eq(wrap(&g, err, sizeof(err)), TERN_EINVAL);
	cr_assert_not_null(strstr(err, "older"), "%s", err);
}

Test(provider, layouts_this_version_cannot_migrate_are_refused, .init = fake_setup)
{
	struct tern_guest *g;
	char err[256] = "";
	fake_nregions = 2;
	cr_assert_eq(wrap(&g, err, sizeof(err)), TERN_ENOTSUP);
	cr_assert_not_null(strstr(err, "2 memory region"), "%s", err);
	fake_nregions = 1;
	fake_gpa = 1ull << 32;
	cr_assert_eq(wrap(&g, err, sizeof(err)), TERN_ENOTSUP);
	cr_assert_not_null(strstr(err, "0x100000000"), "%s", err);
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
