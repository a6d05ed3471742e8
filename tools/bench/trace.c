/*
 * `trace`: what tracing costs.  An idle guest and the demo guest, each
 * migrated without and with --trace on both sides, runs alternating so that
 * a drift of the machine hits both alike.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tools/bench/bench.h"

/* Both trace files' bytes (then removed); NaN for a run without them. */
static double
trace_bytes(const char *sp, const char *dp, int on)
{
	struct stat st;
	uint64_t b = 0;
	if (on && stat(sp, &st) == 0)
		b += (uint64_t)st.st_size;
	if (on && stat(dp, &st) == 0)
		b += (uint64_t)st.st_size;
	unlink(sp);
	unlink(dp);
	return on ? (double)b : NAN;
}

static void
trace_guest_json(json_t *guests, const char *guest, const struct bench_result *off_runs,
                 const struct bench_result *on_runs, const double *bytes, int n)
{
	double off[BENCH_MAX_RUNS], on[BENCH_MAX_RUNS];
	json_t *g = bench_push_obj(guests);
	bench_set_str(g, "guest", guest);
	bench_set(g, "off", bench_mset(guest, "", off_runs, n));
	bench_set(g, "on", bench_mset(guest, "--trace on both sides", on_runs, n));
	bench_set_num(g, "trace_bytes_both_sides", bench_median(bytes, n), 0);
	BENCH_FIELD(off_runs, n, total_ms, off);
	BENCH_FIELD(on_runs, n, total_ms, on);
	double m0 = bench_median(off, n), m1 = bench_median(on, n);
	bench_set_num(g, "overhead_pct_total_ms", (m1 - m0) / m0 * 100, 2);
	BENCH_FIELD(off_runs, n, src_user_ms, off);
	BENCH_FIELD(on_runs, n, src_user_ms, on);
	bench_set_num(g, "source_user_ms_off", bench_median(off, n), 0);
	bench_set_num(g, "source_user_ms_on", bench_median(on, n), 0);
	bench_set_num(g, "target_pct", 2, 0);
}

int
bench_trace(const struct bench_cfg *x, json_t *report)
{
	char sz[32], g0[128], sp[64], dp[64];
	const char *guests[2] = {g0, BENCH_DEMO_GUEST};
	int n = x->runs, rc = 0;
	struct bench_result *res = calloc((size_t)(4 * n), sizeof(*res));
	double bytes[4][BENCH_MAX_RUNS];
	struct bench_opts o;

	if (res == NULL)
		return -1;
	snprintf(g0, sizeof(g0), "simvm:mem=%s,vcpus=1,fill=random",
	         terni_format_size(x->size, sz, sizeof(sz)));
	snprintf(sp, sizeof(sp), "/tmp/tern-bench-%d-src.trace", (int)getpid());
	snprintf(dp, sizeof(dp), "/tmp/tern-bench-%d-dst.trace", (int)getpid());
	const char *sx[3] = {"--trace", sp, NULL}, *dx[3] = {"--trace", dp, NULL};
	bench_opts_from(&o, x);
	o.warm_bytes = 2 * (x->size > (1ull << 30) ? x->size : (1ull << 30));
	for (int g = 0; g < 2; g++)
		for (int i = 0; i < n; i++)
			for (int t = 0; t < 2; t++) {
				o.send_extra = t ? sx : NULL;
				o.recv_extra = t ? dx : NULL;
				bench_mrun(&o, t ? "trace: on" : "trace: off", guests[g], 1,
				           &res[(g * 2 + t) * n + i]);
				bytes[g * 2 + t][i] = trace_bytes(sp, dp, t);
			}
	json_t *ga = bench_set_arr(report, "guests");
	for (int g = 0; g < 2; g++)
		trace_guest_json(ga, guests[g], &res[g * 2 * n], &res[(g * 2 + 1) * n],
		                 bytes[g * 2 + 1], n);
	for (int i = 0; i < 4 * n; i++)
		rc |= res[i].ok ? 0 : -1;
	bench_results_free(res, 4 * n);
	free(res);
	return rc;
}
