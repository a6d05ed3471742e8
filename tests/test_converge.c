/*
 * actors/converge: the stepping policies (seed 002 and QEMU), the
 * dirty-rate-driven throttle checked against its own model, the expected
 * downtime and the stall detector.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "actors/converge.h"

#define MB 1000000.0

Test(converge, seed_steps)
{
	struct tern_converge_config c;
	struct tern_converge_state st = {0};
	/* After iteration n (1-based): 0, 10, 10, 20, 20, 30, ... */
	static const uint32_t want[] = {0, 10, 10, 20, 20, 30, 30, 40};

	tern_converge_defaults_seed(&c);
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		/* The iteration trigger ignores the byte counts. */
		uint32_t p = tern_converge_step(&c, &st, i * 1000, 1);
		cr_assert_eq(p, want[i], "iteration %zu: %u, want %u", i + 1, p, want[i]);
	}
	for (int i = 0; i < 400; i++)
		tern_converge_step(&c, &st, 0, 0);
	cr_assert_eq(st.pct, 99, "capped at 99, got %u", st.pct);
}

Test(converge, qemu_ratio_trigger)
{
	struct tern_converge_config c;
	struct tern_converge_state st = {0};

	tern_converge_defaults_qemu(&c);
	cr_assert_eq(tern_converge_step(&c, &st, 40, 100), 0);  /* 40% of sent: low */
	cr_assert_eq(tern_converge_step(&c, &st, 50, 100), 0);  /* exactly 50%: not above */
	cr_assert_eq(tern_converge_step(&c, &st, 60, 100), 0);  /* first high */
	cr_assert_eq(tern_converge_step(&c, &st, 60, 100), 20); /* second: initial */
	cr_assert_eq(tern_converge_step(&c, &st, 60, 100), 20);
	cr_assert_eq(tern_converge_step(&c, &st, 10, 100), 20); /* low resets */
	cr_assert_eq(tern_converge_step(&c, &st, 60, 100), 20);
	cr_assert_eq(tern_converge_step(&c, &st, 60, 100), 30); /* +10 */
	/* QEMU proper: a low sync does not reset the count. */
	c.trigger_consecutive = false;
	cr_assert_eq(tern_converge_step(&c, &st, 60, 100), 30);
	cr_assert_eq(tern_converge_step(&c, &st, 10, 100), 30);
	cr_assert_eq(tern_converge_step(&c, &st, 60, 100), 40);
	/* Huge byte counts do not overflow the comparison. */
	cr_assert_eq(tern_converge_step(&c, &st, UINT64_MAX, UINT64_MAX / 2), 40);
	cr_assert_eq(tern_converge_step(&c, &st, UINT64_MAX, UINT64_MAX / 2), 50);
	cr_assert_eq(tern_converge_step(&c, &st, UINT64_MAX / 4, UINT64_MAX), 50);
	c.max_pct = 55;
	for (int i = 0; i < 10; i++)
		tern_converge_step(&c, &st, 60, 100);
	cr_assert_eq(st.pct, 55);
	c.max_pct = 150; /* never above 99, whatever the config says */
	for (int i = 0; i < 40; i++)
		tern_converge_step(&c, &st, 60, 100);
	cr_assert_eq(st.pct, 99);
}

/* The model the formula is derived from: iterate D' = R(1-p) D / B. */
static bool
model_fits(double r, double p, double bw, double limit, double d, uint32_t k)
{
	for (uint32_t i = 0; i < k; i++)
		d = r * (1.0 - p) * d / bw;
	return d <= bw * limit * (1 + 1e-9);
}

Test(converge, rate_driven_matches_model)
{
	static const double rates[] = {50 * MB, 120 * MB, 250 * MB, 1000 * MB};
	static const double bws[] = {100 * MB, 120 * MB, 1000 * MB};
	static const double dmb[] = {30, 300, 3000};
	int checked = 0;

	for (size_t a = 0; a < 4; a++)
		for (size_t b = 0; b < 3; b++)
			for (size_t d = 0; d < 3; d++)
				for (uint32_t k = 1; k <= 3; k++) {
					struct tern_converge_rate_in in = {
					    .dirty_bps = rates[a],
					    .bw_bps = bws[b],
					    .downtime_s = 0.3,
					    .remaining = (uint64_t)(dmb[d] * MB),
					    .iterations = k,
					};
					uint32_t p = tern_converge_rate_pct(&in);
					double pp = p / 100.0;
					cr_assert_leq(p, 99);
					if (dmb[d] * MB <= bws[b] * 0.3) {
						/* Fits already: switch over now. */
						cr_assert_eq(p, 0);
						continue;
					}
					if (p == 99)
						continue; /* may not suffice: the stall path */
					cr_assert(model_fits(rates[a], pp, bws[b], 0.3,
					                     (double)in.remaining, k),
					          "p=%u does not fit (R %g B %g D %g k %u)", p,
					          rates[a], bws[b], dmb[d], k);
					/* ...and one percent less would not (minimal). */
					if (p > 0)
						cr_assert(!model_fits(rates[a], pp - 0.01, bws[b],
						                      0.3, (double)in.remaining, k),
						          "p=%u not minimal", p);
					checked++;
				}
	cr_assert_gt(checked, 40);
}

Test(converge, rate_driven_cases)
{
	/* R 250 MB/s, B 120 MB/s, L 0.3 s, D 600 MB: BL = 36 MB,
	 * p >= 1 - B^2 L / (R D) = 1 - 120*36/(250*600) = 0.9712 -> 98. */
	struct tern_converge_rate_in in = {
	    .dirty_bps = 250 * MB, .bw_bps = 120 * MB, .downtime_s = 0.3, .remaining = 600000000};
	cr_assert_eq(tern_converge_rate_pct(&in), 98);
	/* Measured under 50% throttle: the guest really dirties twice that. */
	in.dirty_bps = 125 * MB;
	in.current_pct = 50;
	cr_assert_eq(tern_converge_rate_pct(&in), 98);
	/* Already fits: no throttle. */
	in.remaining = 30000000;
	cr_assert_eq(tern_converge_rate_pct(&in), 0);
	/* Nothing dirtied: no throttle; no bandwidth: the maximum. */
	in.remaining = 600000000;
	in.dirty_bps = 0;
	cr_assert_eq(tern_converge_rate_pct(&in), 0);
	in.dirty_bps = 250 * MB;
	in.bw_bps = 0;
	cr_assert_eq(tern_converge_rate_pct(&in), 99);
	/* Hopeless even at 99%: clamped. */
	in.bw_bps = 1 * MB;
	cr_assert_eq(tern_converge_rate_pct(&in), 99);
	/* Low dirty rate, big set: a mild throttle.  R 100, B 1000, L 0.3,
	 * D 6000 MB: 1 - 1000*300/(100*6000) = 0.5 -> 50. */
	in = (struct tern_converge_rate_in){
	    .dirty_bps = 100 * MB, .bw_bps = 1000 * MB, .downtime_s = 0.3, .remaining = 6000000000};
	cr_assert_eq(tern_converge_rate_pct(&in), 50);
}

Test(converge, expected_downtime)
{
	/* 120 MB at 120 MB/s: 1 s; plus 10 ms of a 250 MB/s guest. */
	cr_assert_eq(tern_converge_downtime_ns(120000000, 0, 120 * MB, 0), 1000000000ull);
	uint64_t ns = tern_converge_downtime_ns(120000000, 250 * MB, 120 * MB, 10000000);
	cr_assert(llabs((long long)ns - (long long)(1e9 * 122.5 / 120.0)) < 1000, "%lu", ns);
	cr_assert_eq(tern_converge_downtime_ns(1, 0, 0, 0), UINT64_MAX);
}

Test(converge, stall_detector)
{
	struct tern_converge_sample s[32];
	char why[128] = "";
	const uint64_t sec = 1000000000ull;

	/* Steadily decreasing: progressing. */
	for (int i = 0; i < 11; i++)
		s[i] = (struct tern_converge_sample){i * sec, 1000 - 50 * (uint64_t)i};
	cr_assert(!tern_converge_stalled(s, 11, 10 * sec, 250 * MB, 120 * MB, why, sizeof(why)));
	cr_assert_str_empty(why);
	/* Flat: stalled, with the reason. */
	for (int i = 0; i < 11; i++)
		s[i].remaining = 700;
	cr_assert(tern_converge_stalled(s, 11, 10 * sec, 250 * MB, 120 * MB, why, sizeof(why)));
	cr_assert_str_eq(why, "dirty rate 250 MB/s exceeds bandwidth 120 MB/s");
	/* Not enough history for the window: not (yet) stalled. */
	cr_assert(!tern_converge_stalled(s, 11, 20 * sec, 250 * MB, 120 * MB, NULL, 0));
	cr_assert(!tern_converge_stalled(s, 1, sec, 250 * MB, 120 * MB, NULL, 0));
	/* A sawtooth whose low-water mark does not move (each iteration sends
	 * down to 200 and the guest dirties it back up): stalled. */
	for (int i = 0; i < 21; i++)
		s[i] = (struct tern_converge_sample){i * sec / 2, i % 4 == 0 ? 200 : 900};
	cr_assert(tern_converge_stalled(s, 21, 8 * sec, 100 * MB, 120 * MB, why, sizeof(why)));
	cr_assert_str_eq(why, "remaining bytes not decreasing: dirty rate 100 MB/s, "
	                      "bandwidth 120 MB/s");
	/* The same sawtooth with a falling low-water mark: progressing. */
	for (int i = 0; i < 21; i++)
		s[i].remaining = i % 4 == 0 ? 1000 - 40 * (uint64_t)i : 900;
	cr_assert(!tern_converge_stalled(s, 21, 8 * sec, 100 * MB, 120 * MB, NULL, 0));
	/* Growing: stalled; small rates keep a decimal. */
	for (int i = 0; i < 11; i++)
		s[i] = (struct tern_converge_sample){i * sec, 100 + (uint64_t)i};
	cr_assert(tern_converge_stalled(s, 11, 4 * sec, 5.5 * MB, 2.24 * MB, why, sizeof(why)));
	cr_assert_str_eq(why, "dirty rate 5.5 MB/s exceeds bandwidth 2.2 MB/s");
}
