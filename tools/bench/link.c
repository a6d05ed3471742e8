/*
 * `link`: what the link allows against what tern achieves.  Per P streams:
 * iperf3 (the ceiling), the plain-C data mover (copy.c: the simplest correct
 * program) and tern over P connections; then tern with each chunk size, and
 * tern through tern-relay at 1 ms RTT against the stop-and-wait bound.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "tools/bench/bench.h"

/* Everything measured, kept for the report. */
struct link_runs {
	int n, np;
	char guest[128];
	struct bench_iperf ip; /* ip.runs unused: P comes from --streams */
	double iperf_bps[8];
	char iperf_why[256];
	struct bench_copy *cp;   /* [np][n] */
	struct bench_result *tr; /* [np][n] tern, P connections */
	struct bench_result *ch; /* [nchunks][n] tern, 1 connection */
	struct bench_result *dl; /* [3][n] tern through the relay */
	char chunk_s[8][16];
};

static void
link_measure(const struct bench_cfg *x, struct link_runs *L)
{
	int n = L->n, np = L->np;
	char conns[8][8];
	struct bench_opts o;

	/* (a) the link's ceiling */
	if (bench_find_exe("iperf3", L->ip.path, sizeof(L->ip.path)) != 0) {
		snprintf(L->ip.why, sizeof(L->ip.why), "iperf3 not found in PATH");
	} else {
		L->ip.ok = 1;
		for (int k = 0; k < np; k++) {
			fprintf(stderr, "link: iperf3 -P %d -l 1M, %d s\n", x->streams[k],
			        x->iperf_seconds);
			L->iperf_bps[k] =
			    bench_iperf_one(L->ip.path, x->streams[k], x->iperf_seconds,
			                    L->iperf_why, sizeof(L->iperf_why));
		}
	}

	/* (b) the simplest correct copy */
	char sz[32];
	fprintf(stderr, "link: %s of random data into a memfd\n",
	        terni_format_size(x->size, sz, sizeof(sz)));
	uint8_t *src = bench_random_memfd(x->size);
	for (int k = 0; k < np; k++)
		for (int i = 0; i < n; i++) {
			struct bench_copy *c = &L->cp[k * n + i];
			if (src == NULL) {
				snprintf(c->why, sizeof(c->why), "no source memfd: %s",
				         strerror(errno));
				continue;
			}
			fprintf(stderr, "link: copy baseline, %d stream(s), run %d/%d\n",
			        x->streams[k], i + 1, n);
			bench_copy_once(src, x->size, bench_copy_sig(src, x->size), x->streams[k],
			                0, c);
			if (!c->ok)
				fprintf(stderr, "link: copy FAILED: %s\n", c->why);
			else
				fprintf(stderr, "link: copy %.2f GB/s whole, %.2f GB/s transfer\n",
				        x->size / c->total_s / 1e9, x->size / c->transfer_s / 1e9);
		}
	if (src != NULL)
		munmap(src, x->size);

	/* (c) tern, P connections */
	bench_opts_from(&o, x);
	for (int k = 0; k < np; k++) {
		snprintf(conns[k], sizeof(conns[k]), "%d", x->streams[k]);
		o.connections = conns[k];
		bench_mrun(&o, "link: tern", L->guest, n, &L->tr[k * n]);
	}
	/* chunk size, one connection */
	o.connections = NULL;
	for (int k = 0; k < x->nchunks; k++) {
		o.chunk_size =
		    terni_format_size(x->chunks[k], L->chunk_s[k], sizeof(L->chunk_s[k]));
		bench_mrun(&o, "link: chunk", L->guest, n, &L->ch[k * n]);
	}
	o.chunk_size = NULL;
	/* (d) 1 ms RTT through tern-relay: P=1 with no delay (the relay's own
	 * cost), P=1 and P=4 with 500 us each way. */
	if (!x->no_delay) {
		o.relay_delay = "0us";
		bench_mrun(&o, "link: relay 0", L->guest, n, &L->dl[0]);
		o.relay_delay = "500us";
		bench_mrun(&o, "link: relay 1ms", L->guest, n, &L->dl[n]);
		o.connections = "4";
		bench_mrun(&o, "link: relay 1ms", L->guest, n, &L->dl[2 * n]);
	}
}

static void
link_stream_json(const struct bench_cfg *x, const struct link_runs *L, int k, json_t *streams)
{
	int n = L->n;
	double iperf_Bps = L->ip.ok ? L->iperf_bps[k] / 8 : NAN;
	double cw[BENCH_MAX_RUNS], ct[BENCH_MAX_RUNS], cpop[BENCH_MAX_RUNS], warm[BENCH_MAX_RUNS];
	double tw[BENCH_MAX_RUNS], tt[BENCH_MAX_RUNS];
	for (int i = 0; i < n; i++) {
		const struct bench_copy *c = &L->cp[k * n + i];
		cw[i] = c->ok ? x->size / c->total_s : NAN;
		ct[i] = c->ok ? x->size / c->transfer_s : NAN;
		cpop[i] = c->ok ? c->populate_s * 1e3 : NAN;
		warm[i] = c->warm_ms;
	}
	bench_rates(&L->tr[k * n], n, BENCH_RATE_WIRE, tw);
	bench_rates(&L->tr[k * n], n, BENCH_RATE_TRANSFER, tt);

	json_t *s = bench_push_obj(streams);
	bench_set_int(s, "parallel", x->streams[k]);
	bench_set_num(s, "iperf3_bytes_per_s", iperf_Bps, 0);
	json_t *copy = bench_set_obj(s, "copy");
	bench_stat(copy, "whole_bytes_per_s", cw, n, 0);
	bench_stat(copy, "transfer_bytes_per_s", ct, n, 0);
	bench_stat(copy, "populate_ms", cpop, n, 0);
	bench_stat(copy, "warm_ms", warm, n, 0);
	/* One "error" per failed copy: a key repeated in the hand-written
	 * report; an object keeps the last one. */
	for (int i = 0; i < n; i++)
		if (!L->cp[k * n + i].ok)
			bench_set_str(copy, "error", L->cp[k * n + i].why);
	char args[32];
	snprintf(args, sizeof(args), "--connections %d", x->streams[k]);
	bench_set(s, "tern", bench_mset(L->guest, args, &L->tr[k * n], n));
	json_t *sum = bench_set_obj(s, "summary");
	double m_tw = bench_median(tw, n), m_tt = bench_median(tt, n);
	double m_cw = bench_median(cw, n), m_ct = bench_median(ct, n);
	bench_set_num(sum, "iperf3_gbyte_per_s", iperf_Bps / 1e9, 3);
	bench_set_num(sum, "copy_whole_gbyte_per_s", m_cw / 1e9, 3);
	bench_set_num(sum, "copy_transfer_gbyte_per_s", m_ct / 1e9, 3);
	bench_set_num(sum, "tern_whole_gbyte_per_s", m_tw / 1e9, 3);
	bench_set_num(sum, "tern_transfer_gbyte_per_s", m_tt / 1e9, 3);
	bench_set_num(sum, "tern_vs_copy_whole", m_tw / m_cw, 3);
	bench_set_num(sum, "tern_vs_copy_transfer", m_tt / m_ct, 3);
	bench_set_num(sum, "tern_vs_iperf3", m_tw / iperf_Bps, 3);
}

static void
link_chunks_json(const struct bench_cfg *x, const struct link_runs *L, json_t *report)
{
	int n = L->n;
	double v[BENCH_MAX_RUNS], best = NAN;
	const char *best_s = NULL;
	json_t *cs = bench_set_obj(report, "chunk_size");
	bench_set_int(cs, "connections", 1);
	json_t *sizes = bench_set_arr(cs, "sizes");
	for (int k = 0; k < x->nchunks; k++) {
		char args[48];
		snprintf(args, sizeof(args), "--chunk-size %s", L->chunk_s[k]);
		(void)json_array_append_new(sizes, bench_mset(L->guest, args, &L->ch[k * n], n));
		bench_rates(&L->ch[k * n], n, BENCH_RATE_WIRE, v);
		double m = bench_median(v, n);
		if (isfinite(m) && (!isfinite(best) || m > best)) {
			best = m;
			best_s = L->chunk_s[k];
		}
	}
	bench_set_str(cs, "fastest", best_s);
}

/* seed 004's stop-and-wait bound per connection: chunk / (chunk/thr + rtt),
 * with thr the connection's measured no-delay rate and the 1 MiB chunk. */
static void
link_delay_json(const struct bench_cfg *x, const struct link_runs *L, json_t *report)
{
	const double chunk = 1 << 20, rtt = 1e-3;
	int n = L->n;
	double v[BENCH_MAX_RUNS];
	json_t *d = bench_set_obj(report, "delay");
	bench_set_str(d, "relay",
	              "tern-relay --delay 500us (RTT + 1 ms); a 0us run measures the relay");
	bench_set_num(d, "chunk_bytes", chunk, 0);
	bench_set(d, "relay_0us_p1",
	          bench_mset(L->guest, "--connections 1 via relay 0us", &L->dl[0], n));
	const char *names[2] = {"relay_1ms_p1", "relay_1ms_p4"};
	for (int j = 0; j < 2; j++) {
		int p = j == 0 ? 1 : 4;
		double thr = NAN;
		/* the no-delay throughput at P, per connection */
		for (int k = 0; k < L->np; k++)
			if (x->streams[k] == p) {
				bench_rates(&L->tr[k * n], n, BENCH_RATE_TRANSFER, v);
				thr = bench_median(v, n) / p;
			}
		bench_set(d, names[j],
		          bench_mset(L->guest, p == 1 ? "--connections 1" : "--connections 4",
		                     &L->dl[(j + 1) * n], n));
		char k1[48], k2[48];
		snprintf(k1, sizeof(k1), "seed004_bound_p%d_bytes_per_s", p);
		snprintf(k2, sizeof(k2), "p%d_transfer_vs_seed004_bound", p);
		double bound = p * chunk / (chunk / thr + rtt);
		bench_set_num(d, k1, bound, 0);
		bench_rates(&L->dl[(j + 1) * n], n, BENCH_RATE_TRANSFER, v);
		bench_set_num(d, k2, bench_median(v, n) / bound, 3);
	}
	bench_rates(&L->dl[0], n, BENCH_RATE_TRANSFER, v);
	double r0 = bench_median(v, n);
	bench_rates(&L->dl[n], n, BENCH_RATE_TRANSFER, v);
	bench_set_num(d, "p1_1ms_vs_relay_0us", bench_median(v, n) / r0, 3);
}

int
bench_link(const struct bench_cfg *x, json_t *report)
{
	int n = x->runs, np = x->nstreams, rc = 0;
	struct link_runs *L = calloc(1, sizeof(*L));
	char sz[32];

	if (L == NULL)
		return -1;
	L->n = n;
	L->np = np;
	L->cp = calloc((size_t)(np * n), sizeof(*L->cp));
	L->tr = calloc((size_t)(np * n), sizeof(*L->tr));
	L->ch = calloc((size_t)(x->nchunks * n), sizeof(*L->ch));
	L->dl = calloc((size_t)(3 * n), sizeof(*L->dl));
	if (L->cp == NULL || L->tr == NULL || L->ch == NULL || L->dl == NULL) {
		rc = -1;
		goto out;
	}
	snprintf(L->guest, sizeof(L->guest), "simvm:mem=%s,vcpus=1,fill=random",
	         terni_format_size(x->size, sz, sizeof(sz)));
	link_measure(x, L);

	bench_set_int(report, "size_bytes", (long long)x->size);
	bench_set_int(report, "runs", n);
	bench_set_str(report, "guest", L->guest);
	if (!L->ip.ok)
		bench_set_str(report, "iperf3_reason", L->ip.why);
	else if (L->iperf_why[0])
		bench_set_str(report, "iperf3_error", L->iperf_why);
	json_t *streams = bench_set_arr(report, "streams");
	for (int k = 0; k < np; k++)
		link_stream_json(x, L, k, streams);
	link_chunks_json(x, L, report);
	if (!x->no_delay)
		link_delay_json(x, L, report);
	for (int i = 0; i < np * n; i++)
		rc |= L->tr[i].ok ? 0 : -1;
	for (int i = 0; i < x->nchunks * n; i++)
		rc |= L->ch[i].ok ? 0 : -1;
	for (int i = 0; !x->no_delay && i < 3 * n; i++)
		rc |= L->dl[i].ok ? 0 : -1;
out:
	bench_results_free(L->tr, np * n);
	bench_results_free(L->ch, x->nchunks * n);
	bench_results_free(L->dl, 3 * n);
	free(L->cp);
	free(L->tr);
	free(L->ch);
	free(L->dl);
	free(L);
	return rc;
}
