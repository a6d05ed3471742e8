/*
 * Convergence policy: pure functions (no threads, no clocks, no I/O) that
 * the coordinator asks what throttle to request from the ThrottleActor,
 * whether the expected downtime fits, and whether the migration stalls.
 *
 * Two ways to choose the throttle:
 *  - stepping (seed 002 and QEMU's auto-converge), one configurable struct:
 *    the seed starts after 2 iterations and adds 10% every 2 iterations up
 *    to 99%; QEMU starts at cpu-throttle-initial (20%) and adds
 *    cpu-throttle-increment (10%) whenever the bytes dirtied during an
 *    iteration exceeded throttle-trigger-threshold (50%) of the bytes sent
 *    in it, for 2 syncs;
 *  - dirty-rate driven: from the measured dirty rate and wire bandwidth,
 *    the throttle at which the next iteration's residue fits the downtime
 *    limit, reached directly instead of stepped to.
 */
#ifndef TERN_ACTORS_CONVERGE_H
#define TERN_ACTORS_CONVERGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct tern_converge_config {
	uint32_t initial_pct;   /* the first throttle (seed 10, QEMU 20) */
	uint32_t increment_pct; /* each further step (10) */
	uint32_t max_pct;       /* cap, at most 99 */
	/* Iteration-count trigger (seed), used when trigger_ratio_pct == 0:
	 * step after start_after_iters iterations and then every
	 * step_every_iters iterations. */
	uint32_t start_after_iters; /* seed 2 */
	uint32_t step_every_iters;  /* seed 2 (0 counts as 1) */
	/* Ratio trigger (QEMU), when trigger_ratio_pct > 0: a sync is "high"
	 * when dirty bytes > trigger_ratio_pct% of sent bytes; every
	 * trigger_syncs high syncs make one step. */
	uint32_t trigger_ratio_pct; /* QEMU 50 */
	uint32_t trigger_syncs;     /* QEMU 2 (0 counts as 1) */
	/* true: a low sync resets the count (the syncs must be consecutive).
	 * QEMU's migration_trigger_throttle does not reset it (false). */
	bool trigger_consecutive;
};

/* Per-migration stepping state; zero it at the start of a migration. */
struct tern_converge_state {
	uint32_t pct;        /* the throttle decided so far */
	uint32_t iters;      /* syncs seen */
	uint32_t high_syncs; /* ratio trigger: high syncs not yet spent */
};

/* tern_converge_defaults_seed fills c with seed 002's policy: 10% after 2
 * iterations, +10% every 2 iterations, at most 99%. */
void tern_converge_defaults_seed(struct tern_converge_config *c);

/* tern_converge_defaults_qemu fills c with QEMU's auto-converge defaults:
 * 20% initial, +10%, at most 99%, on dirty > 50% of sent for 2 consecutive
 * syncs. */
void tern_converge_defaults_qemu(struct tern_converge_config *c);

/* tern_converge_step records one completed iteration (one dirty-log sync)
 * in which dirty_bytes were dirtied and sent_bytes were sent, and returns
 * the throttle pct to enforce from now on (also left in st->pct); it never
 * goes down.  Call it once per iteration, after the sync. */
uint32_t tern_converge_step(const struct tern_converge_config *c, struct tern_converge_state *st,
                            uint64_t dirty_bytes, uint64_t sent_bytes);

/* Inputs of the dirty-rate-driven mode. */
struct tern_converge_rate_in {
	double dirty_bps;     /* dirty rate measured, bytes/s */
	uint32_t current_pct; /* throttle in force while dirty_bps was measured */
	double bw_bps;        /* measured wire bandwidth, bytes/s */
	double downtime_s;    /* downtime limit, seconds */
	uint64_t remaining;   /* dirty bytes still to send */
	uint32_t iterations;  /* horizon in iterations to converge in (0: 1) */
};

/* tern_converge_rate_pct returns the throttle (0..99) that makes the
 * residue fit the downtime limit within in->iterations iterations (see the
 * derivation in converge.c); 0 when it already fits, 99 when nothing short
 * of stopping the guest would do (or the bandwidth is 0). */
uint32_t tern_converge_rate_pct(const struct tern_converge_rate_in *in);

/* tern_converge_downtime_ns is the expected downtime of switching over
 * now: the remaining bytes plus what the guest dirties at dirty_bps during
 * lead_ns (the time between this decision and the pause), sent at bw_bps.
 * UINT64_MAX when bw_bps is 0. */
uint64_t tern_converge_downtime_ns(uint64_t remaining, double dirty_bps, double bw_bps,
                                   uint64_t lead_ns);

/* One progress sample. */
struct tern_converge_sample {
	uint64_t t_ns;
	uint64_t remaining;
};

/* tern_converge_stalled reports whether the remaining bytes have not
 * decreased over the last window_ns of samples (oldest first, times not
 * decreasing): the low-water mark of the window's later half is not below
 * that of its earlier half, which starts at the last sample at least
 * window_ns old.  False while the samples span less than the window.  When
 * stalled and why != NULL, writes a one-line reason naming the dirty rate
 * and bandwidth ("dirty rate 250 MB/s exceeds bandwidth 120 MB/s"). */
bool tern_converge_stalled(const struct tern_converge_sample *s, size_t n, uint64_t window_ns,
                           double dirty_bps, double bw_bps, char *why, size_t whylen);

/* tern_converge_reason writes the one-line reason of a stall from the dirty
 * rate and the bandwidth (MB = 10^6 bytes). */
void tern_converge_reason(double dirty_bps, double bw_bps, char *why, size_t whylen);

/* The coordinator's convergence controller, still pure: the throttle
 * policy chosen by --auto-converge and the stall detector over the
 * remaining bytes of each iteration. */
#define TERN_CONVERGE_SAMPLES 64

struct tern_converge_ctl {
	int mode; /* TERN_CONVERGE_* (tern/tern.h) */
	struct tern_converge_config conv;
	struct tern_converge_state st;
	struct tern_converge_sample samples[TERN_CONVERGE_SAMPLES];
	uint32_t nsamples;
	uint64_t window_ns;
};

/* One iteration's figures, at the decision that follows it. */
struct tern_converge_in {
	uint64_t now_ns;
	uint64_t dirty_bytes; /* the dirty set just taken */
	uint64_t sent_bytes;  /* sent in the iteration */
	double dirty_bps, bw_bps;
	double downtime_s;    /* the limit in force */
	uint32_t current_pct; /* the throttle in force */
};

/* tern_converge_ctl_init sets the policy: mode, the step overrides (0: the
 * mode's default) and the stall window (0: 5000 ms). */
void tern_converge_ctl_init(struct tern_converge_ctl *c, int mode, uint32_t initial_pct,
                            uint32_t increment_pct, uint32_t max_pct, uint32_t stall_window_ms);

/* tern_converge_ctl_pct returns the throttle to ask for next (the current
 * one when off; never below the current one in rate mode, which already
 * failed to converge). */
uint32_t tern_converge_ctl_pct(struct tern_converge_ctl *c, const struct tern_converge_in *in);

/* tern_converge_ctl_stalled records the iteration's remaining bytes and
 * reports whether they stopped shrinking over the window (why as in
 * tern_converge_stalled). */
bool tern_converge_ctl_stalled(struct tern_converge_ctl *c, const struct tern_converge_in *in,
                               char *why, size_t whylen);

#endif /* TERN_ACTORS_CONVERGE_H */
