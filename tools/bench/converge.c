/*
 * `converge`: auto-converge against a capped link.  A guest that dirties
 * memory faster than --max-bandwidth lets the link carry, migrated with
 * each --auto-converge mode in turn (modes alternating run by run, so that
 * a drift of the machine hits them alike).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kvm/guest.h"
#include "tools/bench/bench.h"

#define CV_NMODES 4
static const char *const cv_modes[CV_NMODES] = {"off", "step", "qemu", "rate"};
enum { CV_OFF, CV_STEP, CV_QEMU, CV_RATE };

/* One migration of the converge scenario, read from the sender's summary. */
struct cv_run {
	int measured;  /* tern gave an outcome: completed, or aborted with the source running */
	int completed; /* outcome completed, both processes exited 0 */
	double iterations, total_ms, throttle_pct, throttle_max_pct, downtime_ms;
	double expected_downtime_ms, switchover_retries, wall_ms, warm_ms;
	int stalled;
	char stall_reason[256];
	char error[768]; /* a run that did not complete: tern's error line, or the bench's */
};

/* The last line of s that mentions "failed" (tern's error), else its last line. */
static void
cv_err_line(const char *s, char *out, size_t len)
{
	const char *best = NULL, *last = NULL;
	for (const char *l = s; *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : l + strlen(l)) {
		size_t n = strcspn(l, "\n");
		if (n == 0)
			continue;
		last = l;
		if (memmem(l, n, "failed", 6) != NULL)
			best = l;
	}
	const char *l = best ? best : last;
	snprintf(out, len, "%.*s", l ? (int)strcspn(l, "\n") : 0, l ? l : "");
}

static void
cv_once(const struct bench_opts *o, const char *guest, struct cv_run *cv)
{
	struct bench_result r;

	memset(cv, 0, sizeof(*cv));
	bench_migrate_once(o, guest, &r);
	const json_t *js = r.src;
	cv->wall_ms = r.wall_ms;
	cv->warm_ms = r.warm_ms;
	cv->completed = r.ok;
	/* An abort is a result here (no convergence within --timeout), as long as
	 * tern said so itself: exit 1, a summary, the source guest still running. */
	cv->measured = r.ok || (strcmp(bench_field_str(js, "outcome"), "aborted") == 0 &&
	                        r.src_exit == 1 && bench_field(js, "workload_ok") == 1);
	cv->iterations = bench_field(js, "iterations");
	cv->throttle_pct = bench_field(js, "throttle_pct");
	cv->throttle_max_pct = bench_field(js, "throttle_max_pct");
	cv->switchover_retries = bench_field(js, "switchover_retries");
	cv->stalled = bench_field(js, "stalled") == 1;
	snprintf(cv->stall_reason, sizeof(cv->stall_reason), "%s",
	         bench_field_str(js, "stall_reason"));
	/* Time and downtime mean something only for a migration that completed. */
	cv->total_ms = r.ok ? r.total_ms : NAN;
	cv->downtime_ms = r.ok ? r.downtime_ms : NAN;
	cv->expected_downtime_ms = r.ok ? bench_field(js, "expected_downtime_ms") : NAN;
	if (!r.ok) {
		char line[400];
		cv_err_line(r.src_err, line, sizeof(line));
		if (cv->measured)
			snprintf(cv->error, sizeof(cv->error), "%s", line);
		else
			snprintf(cv->error, sizeof(cv->error), "%s; source: %s", r.error, line);
	}
	bench_results_free(&r, 1);
}

/* The fields of one run, or their medians over the completed runs. */
static void
cv_fields_json(json_t *o, const struct cv_run *c, int decimals)
{
	bench_set_num(o, "iterations", c->iterations, decimals);
	bench_set_num(o, "total_ms", c->total_ms, 0);
	bench_set_num(o, "throttle_pct", c->throttle_pct, decimals);
	bench_set_num(o, "throttle_max_pct", c->throttle_max_pct, decimals);
	bench_set_num(o, "downtime_ms", c->downtime_ms, 0);
	bench_set_num(o, "expected_downtime_ms", c->expected_downtime_ms, 0);
	bench_set_num(o, "switchover_retries", c->switchover_retries, decimals);
}

/* Median over the completed runs of a mode; n_done how many there were. */
static void
cv_median(const struct cv_run *runs, int n, struct cv_run *med, int *n_done)
{
	double v[BENCH_MAX_RUNS];
	n = n < BENCH_MAX_RUNS ? n : BENCH_MAX_RUNS;
	memset(med, 0, sizeof(*med));
	*n_done = 0;
	for (int i = 0; i < n; i++)
		*n_done += runs[i].completed;
#define CV_MED(field)                                                                              \
	do {                                                                                       \
		for (int i = 0; i < n; i++)                                                        \
			v[i] = runs[i].completed ? runs[i].field : NAN;                            \
		med->field = bench_median(v, n);                                                   \
	} while (0)
	CV_MED(iterations);
	CV_MED(total_ms);
	CV_MED(throttle_pct);
	CV_MED(throttle_max_pct);
	CV_MED(downtime_ms);
	CV_MED(expected_downtime_ms);
	CV_MED(switchover_retries);
#undef CV_MED
}

/* One mode's report; returns the median iterations, *done the completed runs. */
static double
cv_mode_json(json_t *modes, int m, const char *args, const struct cv_run *runs, int n, int *done)
{
	struct cv_run med;
	double v[BENCH_MAX_RUNS];
	int nn = n < BENCH_MAX_RUNS ? n : BENCH_MAX_RUNS, aborted = 0;
	cv_median(runs, n, &med, done);
	for (int i = 0; i < n; i++)
		aborted += runs[i].measured && !runs[i].completed;
	json_t *o = bench_push_obj(modes);
	bench_set_str(o, "mode", cv_modes[m]);
	bench_set_str(o, "send_args", args);
	bench_set_int(o, "runs_completed", *done);
	bench_set_int(o, "runs_aborted", aborted);
	bench_set_int(o, "runs_failed", n - *done - aborted);
	cv_fields_json(bench_set_obj(o, "median"), &med, 1);
	for (int i = 0; i < nn; i++)
		v[i] = runs[i].completed ? runs[i].total_ms : NAN;
	bench_stat(o, "total_ms", v, nn, 0);
	for (int i = 0; i < nn; i++)
		v[i] = runs[i].warm_ms;
	bench_stat(o, "warm_ms", v, nn, 0);
	json_t *ra = bench_set_arr(o, "runs");
	for (int i = 0; i < n; i++) {
		const struct cv_run *c = &runs[i];
		json_t *r = bench_push_obj(ra);
		bench_set_int(r, "run", i + 1);
		bench_set_str(r, "outcome",
		              c->completed  ? "completed"
		              : c->measured ? "aborted"
		                            : "failed");
		cv_fields_json(r, c, 0);
		bench_set_num(r, "wall_ms", c->wall_ms, 0);
		bench_set_bool(r, "stalled", c->stalled);
		bench_set_str(r, "stall_reason", c->stall_reason);
		if (!c->completed)
			bench_set_str(r, "error", c->error);
	}
	return med.iterations;
}

/* The target, over the medians of the completed runs: rate converges in
 * fewer iterations than step. */
static void
cv_target_json(json_t *report, const double *med_it, const int *done, int timeout_s)
{
	char note[256];
	int held;
	if (done[CV_RATE] == 0) {
		held = 0;
		snprintf(note, sizeof(note), "rate did not converge within %d s", timeout_s);
	} else if (done[CV_STEP] == 0) {
		held = 1;
		snprintf(note, sizeof(note),
		         "step did not converge within %d s; rate did in %.0f iterations",
		         timeout_s, med_it[CV_RATE]);
	} else {
		held = med_it[CV_RATE] < med_it[CV_STEP];
		snprintf(note, sizeof(note), "median iterations: rate %.1f, step %.1f",
		         med_it[CV_RATE], med_it[CV_STEP]);
	}
	json_t *t = bench_set_obj(report, "target");
	bench_set_str(t, "statement", "rate converges in fewer iterations than step");
	bench_set_bool(t, "held", held);
	bench_set_num(t, "rate_iterations_median", med_it[CV_RATE], 1);
	bench_set_num(t, "step_iterations_median", med_it[CV_STEP], 1);
	bench_set_str(t, "note", note);
	bench_set_bool(t, "off_converged", done[CV_OFF] != 0);
}

int
bench_converge(const struct bench_cfg *x, json_t *report)
{
	const char *guest = x->guest ? x->guest : BENCH_CV_GUEST;
	const char *bw = x->max_bandwidth ? x->max_bandwidth : "50M";
	int n = x->runs, rc = 0;
	struct cv_run *cv = calloc((size_t)(CV_NMODES * n), sizeof(*cv));
	struct tern_guest_config cfg;
	struct bench_opts o;
	char why[256], args[CV_NMODES][128];

	if (cv == NULL)
		return -1;
	bench_opts_from(&o, x);
	o.warm_bytes =
	    tern_guest_spec_parse(guest, &cfg, why, sizeof(why)) == 0 ? 2 * cfg.mem_size : 0;
	for (int m = 0; m < CV_NMODES; m++)
		snprintf(args[m], sizeof(args[m]),
		         "--max-bandwidth %s --timeout %ds --auto-converge %s", bw, x->timeout_s,
		         cv_modes[m]);
	for (int i = 0; i < n; i++)
		for (int m = 0; m < CV_NMODES; m++) {
			const char *sx[] = {"--max-bandwidth", bw, "--auto-converge", cv_modes[m],
			                    NULL};
			struct cv_run *c = &cv[m * n + i];
			o.send_extra = sx;
			fprintf(stderr, "converge: %s, run %d/%d\n", cv_modes[m], i + 1, n);
			cv_once(&o, guest, c);
			if (c->completed)
				fprintf(stderr,
				        "converge: %s: completed, %.0f iterations, %.0f ms, "
				        "throttle %.0f%% (max %.0f%%), downtime %.0f ms (expected "
				        "%.0f ms)\n",
				        cv_modes[m], c->iterations, c->total_ms, c->throttle_pct,
				        c->throttle_max_pct, c->downtime_ms,
				        c->expected_downtime_ms);
			else
				fprintf(stderr, "converge: %s: %s: %s\n", cv_modes[m],
				        c->measured ? "aborted" : "FAILED", c->error);
			if (!c->measured)
				rc = -1;
		}

	bench_set_str(report, "tern", x->tern);
	bench_set_str(report, "guest", guest);
	bench_set_str(report, "max_bandwidth", bw);
	bench_set_int(report, "timeout_s", x->timeout_s);
	bench_set_int(report, "runs_per_mode", n);
	json_t *modes = bench_set_arr(report, "modes");
	double med_it[CV_NMODES];
	int done[CV_NMODES];
	for (int m = 0; m < CV_NMODES; m++)
		med_it[m] = cv_mode_json(modes, m, args[m], &cv[m * n], n, &done[m]);
	cv_target_json(report, med_it, done, x->timeout_s);
	free(cv);
	return rc;
}
