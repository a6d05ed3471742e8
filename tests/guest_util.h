/*
 * What the tests that drive a guest directly share (test_guest.c,
 * test_dirty_ring.c): making a guest from a spec, asserting each step, and
 * short sleeps.  Header-only, as tests/hostile.h: one test executable per
 * file, each including what it uses.
 */
#ifndef TERN_TESTS_GUEST_UTIL_H
#define TERN_TESTS_GUEST_UTIL_H

#include <criterion/criterion.h>
#include <time.h>

#include "kvm/guest.h"
#include "tern/error.h"

/* mkguest parses spec and creates the guest in role; any failure fails
 * the test with the reason. */
static inline struct tern_guest *
mkguest(const char *spec, int role)
{
	struct tern_guest_config cfg;
	struct tern_guest *g = NULL;
	char err[256];
	int rv;

	rv = tern_guest_spec_parse(spec, &cfg, err, sizeof(err));
	cr_assert_eq(rv, 0, "parse %s: %s", spec, err);
	rv = tern_guest_create(&g, &cfg, role, err, sizeof(err));
	cr_assert_eq(rv, 0, "create %s: %s (%s)", spec, err, tern_strerror(rv));
	cr_assert_not_null(g);
	return g;
}

/* sleep_us lets a running workload make progress (never a timing check). */
static inline void
sleep_us(unsigned us)
{
	struct timespec ts = {.tv_sec = us / 1000000, .tv_nsec = (long)(us % 1000000) * 1000L};

	nanosleep(&ts, NULL);
}

#endif /* TERN_TESTS_GUEST_UTIL_H */
