/*
 * `dest`: tern against the plain-C copy (copy.c), destination ready or not.
 * For each size, connection count and destination:
 *
 *   ready    `tern receive --guest SPEC --prealloc`: the guest is built and
 *            its memory prepared before the destination listens; the copy's
 *            receiver prepares its memory the same way before it accepts.
 *            Compared: tern's page data over its whole migration (source
 *            start to handoff) against the copy's receive phase.
 *   unready  `tern receive` building its guest from the source's layout,
 *            memory populated during the migration; the copy populates then
 *            receives.  Compared: tern's whole migration against the copy's
 *            whole run (its populate included).
 *
 * Runs alternate copy, tern, tern, copy, ... (A B B A): on this shared
 * 2-core machine only ratios within one invocation mean anything.  Every
 * run is reported with medians and spread, and each side's CPU time per
 * GiB beside the copy's.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "tools/bench/bench.h"

enum { DEST_READY, DEST_UNREADY };
static const char *dest_names[] = {"ready", "unready"};
static const double dest_target[] = {0.8, 1.2}; /* tern rate / copy rate, issue 17 */

/* One cell of the table: n runs of each. */
struct dest_cell {
	uint64_t size;
	int streams, mode, n;
	struct bench_copy cp[BENCH_MAX_RUNS];
	struct bench_result tr[BENCH_MAX_RUNS];
};

static double
dest_gib(uint64_t size)
{
	return (double)size / (double)(1ull << 30);
}

/* The compared rates, bytes/s per run (NaN for a failed run). */
static void
dest_rates(const struct dest_cell *c, double *copy, double *tern)
{
	for (int i = 0; i < c->n; i++) {
		const struct bench_copy *p = &c->cp[i];
		const struct bench_result *r = &c->tr[i];
		copy[i] = !p->ok                  ? NAN
		          : c->mode == DEST_READY ? (double)c->size / p->transfer_s
		                                  : (double)c->size / p->total_s;
		tern[i] = r->ok ? r->payload_bytes / (r->total_ms / 1e3) : NAN;
	}
}

static void
dest_cell_run(const struct bench_cfg *x, const uint8_t *src, uint64_t sig, struct dest_cell *c)
{
	char sz[32], guest[128], own[128], conns[16];
	struct bench_opts o;
	terni_format_size(c->size, sz, sizeof(sz));
	snprintf(guest, sizeof(guest), "simvm:mem=%s,vcpus=1,fill=random", sz);
	snprintf(own, sizeof(own), "simvm:mem=%s,vcpus=1", sz);
	snprintf(conns, sizeof(conns), "%d", c->streams);
	const char *ready[] = {"--guest", own, "--prealloc", NULL};
	bench_opts_from(&o, x);
	o.warm_bytes = 2 * c->size;
	o.connections = conns;
	o.chunk_size = x->chunk_size; /* NULL: tern's default */
	o.recv_extra = c->mode == DEST_READY ? ready : NULL;
	for (int i = 0; i < c->n; i++)
		for (int k = 0; k < 2; k++) {
			int tern = (i % 2) ^ k; /* A B B A: copy first in even runs */
			if (tern) {
				char label[64];
				snprintf(label, sizeof(label), "dest: %s %s P=%d tern", sz,
				         dest_names[c->mode], c->streams);
				bench_mrun(&o, label, guest, 1, &c->tr[i]);
				continue;
			}
			struct bench_copy *p = &c->cp[i];
			bench_copy_once(src, c->size, sig, c->streams, c->mode == DEST_READY, p);
			if (p->ok)
				fprintf(stderr, "dest: %s %s P=%d copy: %.2f GB/s\n", sz,
				        dest_names[c->mode], c->streams,
				        c->size /
				            (c->mode == DEST_READY ? p->transfer_s : p->total_s) /
				            1e9);
			else
				fprintf(stderr, "dest: copy FAILED: %s\n", p->why);
		}
}

/* {runs[], median, min, max, spread_pct} of v. */
static void
dest_series(json_t *o, const char *key, const double *v, int n, int decimals)
{
	double s[BENCH_MAX_RUNS];
	json_t *a = bench_set_obj(o, key);
	json_t *runs = bench_set_arr(a, "runs");
	int m = 0;
	for (int i = 0; i < n; i++) {
		(void)json_array_append_new(runs, bench_num(v[i], decimals));
		if (isfinite(v[i]))
			s[m++] = v[i];
	}
	bench_sort(s, m);
	double med = bench_median(v, n);
	bench_set_num(a, "median", med, decimals);
	bench_set_num(a, "min", m ? s[0] : NAN, decimals);
	bench_set_num(a, "max", m ? s[m - 1] : NAN, decimals);
	bench_set_num(a, "spread_pct", m ? (s[m - 1] - s[0]) / med * 100 : NAN, 1);
}

/* CPU seconds per GiB of one side (user, sys), per run and medians. */
/* One side's CPU per GiB, user and system, into o[key]; total gets their
 * sums. */
static void
dest_cpu(json_t *o, const char *key, const double *user, const double *sys, int n, double *total)
{
	json_t *c = bench_set_obj(o, key);
	dest_series(c, "user_s_per_gib", user, n, 3);
	dest_series(c, "sys_s_per_gib", sys, n, 3);
	for (int i = 0; i < n; i++)
		total[i] = user[i] + sys[i];
}

static const char *const dest_sides[2] = {"source_cpu", "destination_cpu"};

struct dest_row {
	double copy_gbs, tern_gbs, ratio, copy_spread, tern_spread;
	double cpu_src_ratio, cpu_dst_ratio;
};

static void
dest_cell_json(const struct dest_cell *c, json_t *cells, struct dest_row *row)
{
	int n = c->n;
	double cr[BENCH_MAX_RUNS], tr[BENCH_MAX_RUNS];
	double a[BENCH_MAX_RUNS], b[BENCH_MAX_RUNS], t[BENCH_MAX_RUNS];
	double cpu_c[2][BENCH_MAX_RUNS], cpu_t[2][BENCH_MAX_RUNS];
	double g = dest_gib(c->size);
	dest_rates(c, cr, tr);

	json_t *o = bench_push_obj(cells);
	bench_set_int(o, "size_bytes", (long long)c->size);
	bench_set_int(o, "connections", c->streams);
	bench_set_str(o, "destination", dest_names[c->mode]);
	bench_set_str(o, "order", "copy, tern, tern, copy, ... (A B B A)");
	json_t *cp = bench_set_obj(o, "copy");
	dest_series(cp, c->mode == DEST_READY ? "receive_bytes_per_s" : "whole_bytes_per_s", cr, n,
	            0);
	for (int side = 0; side < 2; side++) {
		for (int i = 0; i < n; i++) {
			const struct bench_copy *p = &c->cp[i];
			a[i] = p->ok ? (side ? p->dst_user_s : p->src_user_s) / g : NAN;
			b[i] = p->ok ? (side ? p->dst_sys_s : p->src_sys_s) / g : NAN;
		}
		dest_cpu(cp, dest_sides[side], a, b, n, cpu_c[side]);
	}
	for (int i = 0; i < n; i++)
		t[i] = c->cp[i].ok ? c->cp[i].populate_s * 1e3 : NAN;
	dest_series(cp, c->mode == DEST_READY ? "prepare_ms_off_clock" : "populate_ms", t, n, 0);
	for (int i = 0; i < n; i++)
		if (!c->cp[i].ok)
			bench_set_str(cp, "error", c->cp[i].why);

	json_t *tn = bench_set_obj(o, "tern");
	dest_series(tn, "whole_bytes_per_s", tr, n, 0);
	bench_rates(c->tr, n, BENCH_RATE_TRANSFER, t);
	dest_series(tn, "transfer_bytes_per_s", t, n, 0);
	for (int side = 0; side < 2; side++) {
		for (int i = 0; i < n; i++) {
			const struct bench_result *r = &c->tr[i];
			double gp = r->ok ? r->payload_bytes / (double)(1ull << 30) : NAN;
			a[i] = (side ? r->dst_cpu_user_ms : r->src_cpu_user_ms) / 1e3 / gp;
			b[i] = (side ? r->dst_cpu_sys_ms : r->src_cpu_sys_ms) / 1e3 / gp;
		}
		dest_cpu(tn, dest_sides[side], a, b, n, cpu_t[side]);
	}
	for (int i = 0; i < n; i++)
		a[i] = c->tr[i].ok ? bench_mem_own(&c->tr[i].src_mem, (double)c->size) / (1 << 20)
		                   : NAN;
	dest_series(tn, "source_own_mib", a, n, 1);
	for (int i = 0; i < n; i++)
		a[i] = c->tr[i].ok ? bench_mem_own(&c->tr[i].dst_mem, (double)c->size) / (1 << 20)
		                   : NAN;
	dest_series(tn, "destination_own_mib", a, n, 1);
	for (int i = 0; i < n; i++)
		if (!c->tr[i].ok) {
			bench_set_str(tn, "error", c->tr[i].error);
			bench_set_str(tn, "source_stderr", c->tr[i].src_err);
			bench_set_str(tn, "destination_stderr", c->tr[i].dst_err);
		}

	row->copy_gbs = bench_median(cr, n) / 1e9;
	row->tern_gbs = bench_median(tr, n) / 1e9;
	row->ratio = row->tern_gbs / row->copy_gbs;
	row->cpu_src_ratio = bench_median(cpu_t[0], n) / bench_median(cpu_c[0], n);
	row->cpu_dst_ratio = bench_median(cpu_t[1], n) / bench_median(cpu_c[1], n);
	double s[BENCH_MAX_RUNS];
	int m = 0;
	for (int i = 0; i < n; i++)
		if (isfinite(cr[i]))
			s[m++] = cr[i];
	bench_sort(s, m);
	row->copy_spread = m ? (s[m - 1] - s[0]) / 1e9 / row->copy_gbs * 100 : NAN;
	m = 0;
	for (int i = 0; i < n; i++)
		if (isfinite(tr[i]))
			s[m++] = tr[i];
	bench_sort(s, m);
	row->tern_spread = m ? (s[m - 1] - s[0]) / 1e9 / row->tern_gbs * 100 : NAN;

	json_t *sum = bench_set_obj(o, "summary");
	bench_set_num(sum, "copy_gbyte_per_s", row->copy_gbs, 3);
	bench_set_num(sum, "tern_gbyte_per_s", row->tern_gbs, 3);
	bench_set_num(sum, "tern_vs_copy", row->ratio, 3);
	bench_set_num(sum, "target", dest_target[c->mode], 1);
	bench_set_bool(sum, "met", row->ratio >= dest_target[c->mode]);
	bench_set_num(sum, "source_cpu_tern_vs_copy", row->cpu_src_ratio, 3);
	bench_set_num(sum, "destination_cpu_tern_vs_copy", row->cpu_dst_ratio, 3);
}

int
bench_dest(const struct bench_cfg *x, json_t *report)
{
	int modes[2], nmodes = 0, rc = 0;
	if (strstr(x->modes, "ready") == x->modes || strstr(x->modes, ",ready"))
		modes[nmodes++] = DEST_READY;
	if (strstr(x->modes, "unready"))
		modes[nmodes++] = DEST_UNREADY;
	if (nmodes == 0) {
		fprintf(stderr, "tern-bench dest: --modes takes ready, unready or both\n");
		return -1;
	}
	int ncells = x->nsizes * x->nstreams * nmodes;
	struct dest_cell *cells = calloc((size_t)ncells, sizeof(*cells));
	struct dest_row *rows = calloc((size_t)ncells, sizeof(*rows));
	if (cells == NULL || rows == NULL) {
		free(cells);
		free(rows);
		return -1;
	}
	bench_set_str(report, "order", "copy, tern, tern, copy, ... (A B B A) per cell");
	bench_set_int(report, "runs_each", x->runs);
	json_t *arr = bench_set_arr(report, "cells");
	int k = 0;
	for (int si = 0; si < x->nsizes; si++) {
		uint64_t size = x->sizes[si];
		uint8_t *src = bench_random_memfd(size);
		if (src == NULL) {
			fprintf(stderr, "tern-bench dest: no source memfd of %llu bytes\n",
			        (unsigned long long)size);
			rc = -1;
			break;
		}
		uint64_t sig = bench_copy_sig(src, size);
		for (int pi = 0; pi < x->nstreams; pi++)
			for (int mi = 0; mi < nmodes; mi++, k++) {
				struct dest_cell *c = &cells[k];
				c->size = size;
				c->streams = x->streams[pi];
				c->mode = modes[mi];
				c->n = x->runs;
				dest_cell_run(x, src, sig, c);
				dest_cell_json(c, arr, &rows[k]);
				for (int i = 0; i < c->n; i++)
					rc |= c->tr[i].ok && c->cp[i].ok ? 0 : -1;
				bench_results_free(c->tr, c->n);
			}
		munmap(src, size);
	}
	/* The table for docs/bench.md, on stderr. */
	fprintf(stderr, "\n| size | conns | destination | copy GB/s (spread) | tern GB/s (spread) "
	                "| tern/copy | target | src CPU tern/copy | dst CPU tern/copy |\n"
	                "|---|---|---|---|---|---|---|---|---|\n");
	for (int i = 0; i < k; i++) {
		char sz[32];
		const struct dest_cell *c = &cells[i];
		const struct dest_row *r = &rows[i];
		fprintf(stderr,
		        "| %s | %d | %s | %.2f (%.0f%%) | %.2f (%.0f%%) | %.2f | %s%.1f %s | %.2f "
		        "| %.2f |\n",
		        terni_format_size(c->size, sz, sizeof(sz)), c->streams, dest_names[c->mode],
		        r->copy_gbs, r->copy_spread, r->tern_gbs, r->tern_spread, r->ratio, "≥ ",
		        dest_target[c->mode], r->ratio >= dest_target[c->mode] ? "met" : "not met",
		        r->cpu_src_ratio, r->cpu_dst_ratio);
	}
	free(cells);
	free(rows);
	return rc;
}
