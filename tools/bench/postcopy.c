/*
 * `postcopy`: a guest that dirties memory faster than --max-bandwidth lets
 * the link carry, migrated with the best pre-copy tern has (auto-converge
 * rate: the guest is throttled until it fits) and with postcopy
 * (--postcopy-on-stall: the destination runs it and pulls what is missing),
 * runs in A B B A order.  Per run and median: outcome, total time, downtime,
 * and the guest's own progress: the workload's steps per second over the
 * migration (its ledger counter, read on the destination at the end, over
 * the migration's time), which says how much each mode slowed the guest.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kvm/guest.h"
#include "tools/bench/bench.h"

#define PB_NMODES 2
static const char *const pb_modes[PB_NMODES] = {"precopy-auto-converge", "postcopy"};

struct pb_run {
	int completed;
	double total_ms, downtime_ms, steps_per_s, postcopy_ms, faults, fault_p50_us, fault_p99_us,
	    throttle_max_pct;
	char error[400];
};

static void
pb_once(const struct bench_opts *o, const char *guest, struct pb_run *p)
{
	struct bench_result r;
	memset(p, 0, sizeof(*p));
	bench_migrate_once(o, guest, &r);
	p->completed = r.ok;
	p->total_ms = r.ok ? r.total_ms : NAN;
	p->downtime_ms = r.ok ? r.downtime_ms : NAN;
	/* The ledger's steps, counted in guest memory from the guest's start
	 * (the migration's), read on the destination when it ended. */
	double steps = r.dst ? bench_field(r.dst, "workload_progress_at_resume") : NAN;
	p->steps_per_s = r.ok && r.total_ms > 0 ? steps * 1000.0 / r.total_ms : NAN;
	p->postcopy_ms = r.src ? bench_field(r.src, "postcopy_ms") : NAN;
	p->throttle_max_pct = r.src ? bench_field(r.src, "throttle_max_pct") : NAN;
	p->faults = r.dst ? bench_field(r.dst, "postcopy_faults") : NAN;
	p->fault_p50_us = r.dst ? bench_field(r.dst, "postcopy_fault_p50_us") : NAN;
	p->fault_p99_us = r.dst ? bench_field(r.dst, "postcopy_fault_p99_us") : NAN;
	if (!r.ok)
		snprintf(p->error, sizeof(p->error), "%s", r.error);
	bench_results_free(&r, 1);
}

static void
pb_fields(json_t *o, const struct pb_run *p)
{
	bench_set_num(o, "total_ms", p->total_ms, 0);
	bench_set_num(o, "downtime_ms", p->downtime_ms, 0);
	bench_set_num(o, "guest_steps_per_s", p->steps_per_s, 0);
	bench_set_num(o, "throttle_max_pct", p->throttle_max_pct, 0);
	bench_set_num(o, "postcopy_ms", p->postcopy_ms, 0);
	bench_set_num(o, "postcopy_faults", p->faults, 0);
	bench_set_num(o, "fault_p50_us", p->fault_p50_us, 0);
	bench_set_num(o, "fault_p99_us", p->fault_p99_us, 0);
}

/* One mode: every run, then the median and spread of its figures. */
static double
pb_mode_json(json_t *modes, int m, const char *args, const struct pb_run *runs, int n)
{
	double v[BENCH_MAX_RUNS];
	int nn = n < BENCH_MAX_RUNS ? n : BENCH_MAX_RUNS, done = 0;
	json_t *o = bench_push_obj(modes);
	bench_set_str(o, "mode", pb_modes[m]);
	bench_set_str(o, "send_args", args);
	for (int i = 0; i < nn; i++)
		done += runs[i].completed;
	bench_set_int(o, "runs_completed", done);
#define PB_STAT(field, name, dec)                                                                  \
	do {                                                                                       \
		for (int i = 0; i < nn; i++)                                                       \
			v[i] = runs[i].field;                                                      \
		bench_stat(o, name, v, nn, dec);                                                   \
	} while (0)
	PB_STAT(total_ms, "total_ms", 0);
	PB_STAT(downtime_ms, "downtime_ms", 0);
	PB_STAT(steps_per_s, "guest_steps_per_s", 0);
#undef PB_STAT
	json_t *ra = bench_set_arr(o, "runs");
	for (int i = 0; i < nn; i++) {
		json_t *r = bench_push_obj(ra);
		bench_set_int(r, "run", i + 1);
		bench_set_str(r, "outcome", runs[i].completed ? "completed" : "failed");
		pb_fields(r, &runs[i]);
		if (!runs[i].completed)
			bench_set_str(r, "error", runs[i].error);
	}
	for (int i = 0; i < nn; i++)
		v[i] = runs[i].steps_per_s;
	return bench_median(v, nn);
}

int
bench_postcopy(const struct bench_cfg *x, json_t *report)
{
	const char *guest = x->guest ? x->guest : BENCH_PC_GUEST;
	const char *bw = x->max_bandwidth ? x->max_bandwidth : "8M";
	int n = x->runs < 2 ? 2 : x->runs, rc = 0;
	struct pb_run *pb = calloc((size_t)(PB_NMODES * n), sizeof(*pb));
	struct tern_guest_config cfg;
	struct bench_opts o;
	char why[256], args[PB_NMODES][160];
	const char *sx[PB_NMODES][8] = {{"--max-bandwidth", bw, "--auto-converge", "rate", NULL},
	                                {"--max-bandwidth", bw, "--postcopy-on-stall",
	                                 "--stall-window", "1s", "--connections", "3", NULL}};

	if (pb == NULL)
		return -1;
	bench_opts_from(&o, x);
	o.warm_bytes =
	    tern_guest_spec_parse(guest, &cfg, why, sizeof(why)) == 0 ? 2 * cfg.mem_size : 0;
	for (int m = 0; m < PB_NMODES; m++) {
		size_t at = 0;
		for (int k = 0; sx[m][k] != NULL; k++)
			at += (size_t)snprintf(args[m] + at, sizeof(args[m]) - at, "%s%s",
			                       k ? " " : "", sx[m][k]);
	}
	/* A B B A ...: a drift of the machine hits both modes alike. */
	for (int i = 0; i < n; i++)
		for (int k = 0; k < PB_NMODES; k++) {
			int m = i % 2 == 0 ? k : PB_NMODES - 1 - k;
			struct pb_run *p = &pb[m * n + i];
			o.send_extra = sx[m];
			fprintf(stderr, "postcopy: %s, run %d/%d\n", pb_modes[m], i + 1, n);
			pb_once(&o, guest, p);
			if (p->completed)
				fprintf(
				    stderr,
				    "postcopy: %s: %.0f ms, downtime %.0f ms, guest %.0f steps/s\n",
				    pb_modes[m], p->total_ms, p->downtime_ms, p->steps_per_s);
			else
				fprintf(stderr, "postcopy: %s: FAILED: %s\n", pb_modes[m],
				        p->error);
		}
	bench_set_str(report, "tern", x->tern);
	bench_set_str(report, "guest", guest);
	bench_set_str(report, "max_bandwidth", bw);
	bench_set_int(report, "runs_per_mode", n);
	json_t *modes = bench_set_arr(report, "modes");
	double steps[PB_NMODES];
	for (int m = 0; m < PB_NMODES; m++)
		steps[m] = pb_mode_json(modes, m, args[m], &pb[m * n], n);
	bench_set_num(report, "guest_progress_postcopy_over_precopy", steps[1] / steps[0], 2);
	free(pb);
	return rc;
}
