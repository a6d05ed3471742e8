/*
 * `zero`: zero pages.  One core scanning populated zero pages with
 * tern_page_is_zero against a plain read of the same buffer; an idle guest
 * of each fill in each --zero-pages mode; a sparse guest against a dense one.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "actors/zero_scan.h"
#include "tools/bench/bench.h"

#define ZERO_NFILLS 3
static const char *const zero_fills[ZERO_NFILLS] = {"zero", "50", "random"};

static uint64_t
zero_tern_pages(const uint8_t *buf, size_t len)
{
	uint64_t n = 0;
	for (size_t off = 0; off < len; off += BENCH_PAGE)
		n += tern_page_is_zero(buf + off);
	return n;
}

/* (a) one core: tern_page_is_zero over populated zero pages (the worst
 * case, every byte read) against a plain read of the same buffer. */
static void
zero_scan(json_t *report)
{
	double scan = NAN, rd = NAN;
	uint8_t *buf = bench_alloc_populated(BENCH_MEM_BYTES);
	int scan_ok = buf != NULL;
	fprintf(stderr, "zero: scan vs read, 1 GiB, best of %d\n", BENCH_REPEATS);
	for (int r = 0; buf != NULL && r < BENCH_REPEATS; r++) {
		double t0 = bench_now();
		bench_sink = bench_read(buf, BENCH_MEM_BYTES);
		double t1 = bench_now();
		uint64_t z = zero_tern_pages(buf, BENCH_MEM_BYTES);
		double t2 = bench_now();
		scan_ok &= z == BENCH_MEM_BYTES / BENCH_PAGE;
		rd = fmax(rd, BENCH_MEM_BYTES / (t1 - t0));
		scan = fmax(scan, BENCH_MEM_BYTES / (t2 - t1));
	}
	if (buf != NULL)
		munmap(buf, BENCH_MEM_BYTES);
	json_t *o = bench_set_obj(report, "scan");
	bench_set_int(o, "buffer_bytes", BENCH_MEM_BYTES);
	bench_set_str(o, "contents", "populated zero pages (the worst case: every byte is read)");
	bench_set_bool(o, "all_pages_found_zero", scan_ok);
	bench_set_num(o, "tern_page_is_zero_bytes_per_s", scan, 0);
	bench_set_num(o, "read_bytes_per_s", rd, 0);
	bench_set_num(o, "scan_vs_read", scan / rd, 3);
	bench_set_num(o, "target", 0.8, 1);
}

int
bench_zero(const struct bench_cfg *x, json_t *report)
{
	char modes[128], *mv[4], sz[32], smem[32], sdata[32], guest[160];
	int nm = 0, n = x->runs, rc = 0;
	struct bench_opts o;
	double v[BENCH_MAX_RUNS];

	snprintf(modes, sizeof(modes), "%s", x->modes);
	for (char *save = NULL, *t = strtok_r(modes, ",", &save); t != NULL && nm < 4;
	     t = strtok_r(NULL, ",", &save))
		mv[nm++] = t;
	struct bench_result *res = calloc((size_t)(ZERO_NFILLS * nm * n), sizeof(*res));
	struct bench_result *sp = calloc((size_t)(2 * n), sizeof(*sp));
	if (res == NULL || sp == NULL) {
		free(res);
		free(sp);
		return -1;
	}
	zero_scan(report);

	/* (b) a paused guest (workload idle) of each fill, in each mode */
	bench_opts_from(&o, x);
	terni_format_size(x->size, sz, sizeof(sz));
	const char *extra[3] = {"--zero-pages", NULL, NULL};
	o.send_extra = extra;
	for (int f = 0; f < ZERO_NFILLS; f++)
		for (int m = 0; m < nm; m++) {
			snprintf(guest, sizeof(guest), "simvm:mem=%s,vcpus=1,fill=%s", sz,
			         zero_fills[f]);
			extra[1] = mv[m];
			bench_mrun(&o, "zero", guest, n, &res[(f * nm + m) * n]);
		}

	/* (c) sparse against dense, detect (tern's default) */
	o.send_extra = NULL;
	terni_format_size(x->sparse_mem, smem, sizeof(smem));
	terni_format_size(x->sparse_data, sdata, sizeof(sdata));
	char sparse_g[128], dense_g[128];
	snprintf(sparse_g, sizeof(sparse_g), "simvm:mem=%s,vcpus=1,fill=random:%s", smem, sdata);
	snprintf(dense_g, sizeof(dense_g), "simvm:mem=%s,vcpus=1,fill=random", sdata);
	o.warm_bytes = 2 * x->sparse_data;
	bench_mrun(&o, "zero: dense", dense_g, n, &sp[0]);
	bench_mrun(&o, "zero: sparse", sparse_g, n, &sp[n]);

	json_t *fills = bench_set_arr(report, "fills");
	for (int f = 0; f < ZERO_NFILLS; f++) {
		double base = NAN;
		json_t *fo = bench_push_obj(fills);
		bench_set_str(fo, "fill", zero_fills[f]);
		snprintf(guest, sizeof(guest), "simvm:mem=%s,vcpus=1,fill=%s", sz, zero_fills[f]);
		for (int m = 0; m < nm; m++) {
			const struct bench_result *r = &res[(f * nm + m) * n];
			char args[64];
			snprintf(args, sizeof(args), "--zero-pages %s", mv[m]);
			bench_set(fo, mv[m], bench_mset(guest, args, r, n));
			BENCH_FIELD(r, n, total_ms, v);
			if (m == 0)
				base = bench_median(v, n);
		}
		/* each mode's median time over the first mode's */
		json_t *t = bench_set_obj(fo, "time_vs_first_mode");
		for (int m = 1; m < nm; m++) {
			BENCH_FIELD(&res[(f * nm + m) * n], n, total_ms, v);
			bench_set_num(t, mv[m], base / bench_median(v, n), 3);
		}
	}
	json_t *so = bench_set_obj(report, "sparse");
	bench_set(so, "dense", bench_mset(dense_g, "", &sp[0], n));
	bench_set(so, "sparse", bench_mset(sparse_g, "", &sp[n], n));
	double dv[BENCH_MAX_RUNS], sv[BENCH_MAX_RUNS];
	BENCH_FIELD(&sp[0], n, total_ms, dv);
	BENCH_FIELD(&sp[n], n, total_ms, sv);
	bench_set_num(so, "sparse_vs_dense_time", bench_median(sv, n) / bench_median(dv, n), 3);
	bench_set_num(so, "target", 1.5, 1);
	for (int i = 0; i < ZERO_NFILLS * nm * n; i++)
		rc |= res[i].ok ? 0 : -1;
	for (int i = 0; i < 2 * n; i++)
		rc |= sp[i].ok ? 0 : -1;
	bench_results_free(res, ZERO_NFILLS * nm * n);
	bench_results_free(sp, 2 * n);
	free(res);
	free(sp);
	return rc;
}
