/*
 * `migrate`: real migrations between two tern processes, each run and the
 * medians set against the machine's limits (one loopback TCP stream, memcpy)
 * measured in the same invocation.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tools/bench/bench.h"

static void
bench_cpu_json(json_t *o, const char *key, double user, double sys)
{
	json_t *c = bench_set_obj(o, key);
	bench_set_num(c, "user_ms", user, 0);
	bench_set_num(c, "sys_ms", sys, 0);
	bench_set_num(c, "total_ms", user + sys, 0);
}

/* tern's own CPU over the migration (guest build excluded), per GiB of page
 * data: the figure to set beside a plain copy's. */
static void
bench_mig_cpu_json(json_t *o, const char *key, double user, double sys, double payload)
{
	json_t *c = bench_set_obj(o, key);
	double gib = payload / (double)(1ull << 30);
	bench_set_num(c, "user_ms", user, 0);
	bench_set_num(c, "sys_ms", sys, 0);
	bench_set_num(c, "user_s_per_gib", user / 1e3 / gib, 3);
	bench_set_num(c, "sys_s_per_gib", sys / 1e3 / gib, 3);
}

/* A side's memory beyond its guest: the RssAnon peak (the guest is a memfd,
 * in RssShmem; with backing=anon-thp the guest is in RssAnon too). */
static void
bench_mem_json(json_t *o, const char *key, const struct bench_mem_use *m, double guest)
{
	json_t *c = bench_set_obj(o, key);
	bench_set_num(c, "own_mib", bench_mem_own(m, guest) / (1 << 20), 1);
	bench_set_num(c, "rss_anon_peak_bytes", m->rss_anon_peak, 0);
	bench_set_num(c, "vm_hwm_bytes", m->vm_hwm, 0);
	bench_set_num(c, "rss_shmem_peak_bytes", m->rss_shmem, 0);
}

/* The figures of one run, or the medians (the same names) over the runs. */
static void
bench_figures_json(json_t *o, const struct bench_result *r, const struct bench_baseline *b)
{
	bench_set_num(o, "total_ms", r->total_ms, 0);
	bench_set_num(o, "downtime_ms", r->downtime_ms, 0);
	bench_set_num(o, "payload_bytes", r->payload_bytes, 0);
	bench_set_num(o, "bytes_sent", r->bytes_sent, 0);
	bench_set_num(o, "iterations", r->iterations, 1);
	bench_set_num(o, "guest_build_ms", r->guest_build_ms, 0);
	bench_set_num(o, "throughput_bytes_per_s", r->throughput_bps, 0);
	bench_set_num(o, "throughput_gbit_per_s", r->throughput_bps * 8 / 1e9, 3);
	bench_set_num(o, "ratio_vs_iperf3_1stream", r->throughput_bps * 8 / b->iperf_bps, 4);
	bench_set_num(o, "ratio_vs_memcpy", r->throughput_bps / b->memcpy_bps, 4);
	bench_set_num(o, "wall_ms", r->wall_ms, 0);
	bench_cpu_json(o, "source_cpu", r->src_user_ms, r->src_sys_ms);
	bench_cpu_json(o, "destination_cpu", r->dst_user_ms, r->dst_sys_ms);
	bench_mig_cpu_json(o, "source_cpu_migration", r->src_cpu_user_ms, r->src_cpu_sys_ms,
	                   r->payload_bytes);
	bench_mig_cpu_json(o, "destination_cpu_migration", r->dst_cpu_user_ms, r->dst_cpu_sys_ms,
	                   r->payload_bytes);
	bench_mem_json(o, "source_memory", &r->src_mem, r->payload_bytes);
	bench_mem_json(o, "destination_memory", &r->dst_mem, r->payload_bytes);
}

/* Medians over the runs that completed. */
static void
bench_medians(const struct bench_result *res, int n, struct bench_result *med)
{
	double v[BENCH_MAX_RUNS] = {0};
	int m = n < BENCH_MAX_RUNS ? n : BENCH_MAX_RUNS;
	memset(med, 0, sizeof(*med));
#define BENCH_MED(field)                                                                           \
	do {                                                                                       \
		BENCH_FIELD(res, m, field, v);                                                     \
		med->field = bench_median(v, m);                                                   \
	} while (0)
	BENCH_MED(total_ms);
	BENCH_MED(downtime_ms);
	BENCH_MED(payload_bytes);
	BENCH_MED(bytes_sent);
	BENCH_MED(iterations);
	BENCH_MED(guest_build_ms);
	BENCH_MED(throughput_bps);
	BENCH_MED(wall_ms);
	BENCH_MED(src_user_ms);
	BENCH_MED(src_sys_ms);
	BENCH_MED(dst_user_ms);
	BENCH_MED(dst_sys_ms);
	BENCH_MED(src_cpu_user_ms);
	BENCH_MED(src_cpu_sys_ms);
	BENCH_MED(dst_cpu_user_ms);
	BENCH_MED(dst_cpu_sys_ms);
	BENCH_MED(src_mem.rss_anon_peak);
	BENCH_MED(src_mem.vm_hwm);
	BENCH_MED(src_mem.rss_shmem);
	BENCH_MED(dst_mem.rss_anon_peak);
	BENCH_MED(dst_mem.vm_hwm);
	BENCH_MED(dst_mem.rss_shmem);
#undef BENCH_MED
}

static void
bench_run_json(json_t *runs, int i, struct bench_result *r, const struct bench_baseline *b)
{
	json_t *o = bench_push_obj(runs);
	bench_set_int(o, "run", i + 1);
	bench_set_bool(o, "ok", r->ok);
	if (!r->ok) {
		bench_set_str(o, "error", r->error);
		bench_set_int(o, "source_exit", r->src_exit);
		bench_set_int(o, "destination_exit", r->dst_exit);
		bench_set_str(o, "source_stderr", r->src_err);
		bench_set_str(o, "destination_stderr", r->dst_err);
	}
	bench_figures_json(o, r, b);
	/* tern's own summaries, as tern wrote them; the report owns them now. */
	bench_set(o, "source", r->src != NULL ? r->src : json_null());
	bench_set(o, "destination", r->dst != NULL ? r->dst : json_null());
	r->src = r->dst = NULL;
}

int
bench_migrate_set(const struct bench_cfg *cfg, const char *guest, const struct bench_baseline *b,
                  json_t *report)
{
	int n = cfg->runs, nok = 0;
	struct bench_opts o = {
	    .tern = cfg->tern,
	    .connections = cfg->connections,
	    .chunk_size = cfg->chunk_size,
	    .verify = cfg->verify,
	    .timeout_s = cfg->timeout_s,
	};
	const char *same[] = {"--same-backing", NULL};
	if (cfg->same_backing)
		o.recv_extra = same;
	struct bench_result *res = calloc((size_t)n, sizeof(*res)), med;
	if (res == NULL)
		return -ENOMEM;
	for (int i = 0; i < n; i++) {
		fprintf(stderr, "migrate: run %d/%d, %s\n", i + 1, n, guest);
		bench_migrate_once(&o, guest, &res[i]);
		if (res[i].ok) {
			nok++;
			fprintf(
			    stderr,
			    "migrate: total %.0f ms, downtime %.0f ms, %.2f Gbit/s of page data\n",
			    res[i].total_ms, res[i].downtime_ms, res[i].throughput_bps * 8 / 1e9);
		} else {
			fprintf(stderr, "migrate: FAILED: %s\n", res[i].error);
		}
	}
	bench_medians(res, n, &med);

	bench_set_str(report, "tern", cfg->tern);
	bench_set_str(report, "guest", guest);
	bench_set_str(report, "connections", cfg->connections ? cfg->connections : "default");
	bench_set_str(report, "chunk_size", cfg->chunk_size ? cfg->chunk_size : "default");
	bench_set_bool(report, "verify", cfg->verify);
	bench_set_int(report, "runs_requested", n);
	bench_set_int(report, "runs_ok", nok);
	if (!b->have) {
		bench_set(report, "baseline", json_null());
	} else {
		json_t *bl = bench_set_obj(report, "baseline");
		bench_set_num(bl, "iperf3_1stream_bits_per_s", b->iperf_bps, 0);
		bench_set_num(bl, "memcpy_bytes_per_s", b->memcpy_bps, 0);
		if (b->why[0])
			bench_set_str(bl, "reason", b->why);
	}
	bench_figures_json(bench_set_obj(report, "median"), &med, b);
	json_t *runs = bench_set_arr(report, "runs");
	for (int i = 0; i < n; i++)
		bench_run_json(runs, i, &res[i], b);
	bench_results_free(res, n);
	free(res);
	return nok == n ? 0 : -1;
}

int
bench_migrate(const struct bench_cfg *cfg, json_t *report)
{
	struct bench_baseline b;
	bench_baseline(&b, cfg);
	return bench_migrate_set(cfg, cfg->guest ? cfg->guest : BENCH_DEFAULT_GUEST, &b, report);
}
