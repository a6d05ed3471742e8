/*
 * The report: one JSON object built with jansson and printed at the end,
 * and the small statistics every benchmark reports its runs with.
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "tools/bench/bench.h"
#include "tools/json_text.h"

#ifndef TERN_BUILD_TYPE
#define TERN_BUILD_TYPE "unknown"
#endif

double bench_load_start;

double
bench_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void
bench_sort(double *v, int n)
{
	for (int i = 1; i < n; i++)
		for (int j = i; j > 0 && v[j - 1] > v[j]; j--) {
			double t = v[j];
			v[j] = v[j - 1];
			v[j - 1] = t;
		}
}

double
bench_median(const double *v, int n)
{
	double s[BENCH_MAX_RUNS];
	int m = 0;
	for (int i = 0; i < n && m < BENCH_MAX_RUNS; i++)
		if (isfinite(v[i]))
			s[m++] = v[i];
	if (m == 0)
		return NAN;
	bench_sort(s, m);
	return m % 2 ? s[m / 2] : (s[m / 2 - 1] + s[m / 2]) / 2;
}

json_t *
bench_num(double v, int decimals)
{
	if (!isfinite(v))
		return json_null();
	if (decimals <= 0 && fabs(v) < 9e18)
		return json_integer((json_int_t)llround(v));
	double scale = pow(10, decimals);
	return json_real(round(v * scale) / scale);
}

/* An allocation failure loses the member: the report goes on without it. */
void
bench_set(json_t *o, const char *key, json_t *v)
{
	(void)json_object_set_new(o, key, v);
}

void
bench_set_num(json_t *o, const char *key, double v, int decimals)
{
	bench_set(o, key, bench_num(v, decimals));
}

void
bench_set_int(json_t *o, const char *key, long long v)
{
	bench_set(o, key, json_integer(v));
}

void
bench_set_str(json_t *o, const char *key, const char *s)
{
	bench_set(o, key, tools_json_text(s));
}

void
bench_set_bool(json_t *o, const char *key, int v)
{
	bench_set(o, key, json_boolean(v));
}

json_t *
bench_set_obj(json_t *o, const char *key)
{
	json_t *c = json_object();
	bench_set(o, key, c);
	return c; /* NULL: setting members on it does nothing */
}

json_t *
bench_set_arr(json_t *o, const char *key)
{
	json_t *c = json_array();
	bench_set(o, key, c);
	return c;
}

json_t *
bench_push_obj(json_t *a)
{
	json_t *c = json_object();
	(void)json_array_append_new(a, c);
	return c;
}

void
bench_stat(json_t *o, const char *key, const double *v, int n, int decimals)
{
	double lo = NAN, hi = NAN;
	for (int i = 0; i < n; i++)
		if (isfinite(v[i])) {
			lo = isfinite(lo) ? fmin(lo, v[i]) : v[i];
			hi = isfinite(hi) ? fmax(hi, v[i]) : v[i];
		}
	json_t *s = bench_set_obj(o, key);
	bench_set_num(s, "median", bench_median(v, n), decimals);
	bench_set_num(s, "min", lo, decimals);
	bench_set_num(s, "max", hi, decimals);
}

void
bench_lat(json_t *o, const char *key, double *s, int n)
{
	bench_sort(s, n);
	json_t *l = bench_set_obj(o, key);
	bench_set_int(l, "samples", n);
	bench_set_num(l, "median_ms", n ? s[n / 2] * 1e3 : NAN, 3);
	bench_set_num(l, "p99_ms", n ? s[(int)ceil(0.99 * n) - 1] * 1e3 : NAN, 3);
	bench_set_num(l, "max_ms", n ? s[n - 1] * 1e3 : NAN, 3);
}

double
bench_loadavg(void)
{
	double l = NAN;
	FILE *f = fopen("/proc/loadavg", "re");
	if (f != NULL) {
		if (fscanf(f, "%lf", &l) != 1)
			l = NAN;
		fclose(f);
	}
	return l;
}

json_t *
bench_host(void)
{
	struct utsname u;
	char thp[128] = "";
	FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "re");
	if (f != NULL) {
		if (fgets(thp, sizeof(thp), f) != NULL)
			thp[strcspn(thp, "\n")] = '\0';
		fclose(f);
	}
	json_t *h = json_object();
	bench_set_int(h, "cpus_online", sysconf(_SC_NPROCESSORS_ONLN));
	bench_set_str(h, "kernel", uname(&u) == 0 ? u.release : NULL);
	bench_set_bool(h, "dev_kvm", access("/dev/kvm", F_OK) == 0);
	bench_set_str(h, "thp_enabled", thp[0] ? thp : NULL);
	bench_set_str(h, "build_type", TERN_BUILD_TYPE);
	/* Other work on the machine skews every figure: record how busy it was
	 * (loadavg_1m_end closes the report). */
	bench_set_num(h, "loadavg_1m_start", bench_load_start, 2);
	return h;
}

/* Reals are rounded to a few decimals already (bench_num): 15 significant
 * digits print them as rounded, without binary noise. */
int
bench_print(json_t *report)
{
	int rc = json_dumpf(report, stdout, JSON_INDENT(2) | JSON_REAL_PRECISION(15));
	fputs("\n", stdout);
	fflush(stdout);
	return rc == 0 && !ferror(stdout) ? 0 : -1;
}
