/*
 * tern-bench internals: what the benchmark files share.  Not a public header:
 * only the files of tools/bench/ include it.
 *
 *   main.c      the command table, option parsing, help, `all`
 *   report.c    the JSON report (jansson): numbers, statistics, host
 *   machine.c   this machine's limits: memory, page population, iperf3
 *   run.c       child processes and one migration by the tern CLI
 *   copy.c      the plain-C data mover, the baseline of `link` and `dest`
 *   migrate.c, link.c, zero.c, dirtylog.c, trace.c, converge.c: one
 *               subcommand each
 */
#ifndef TERN_TOOLS_BENCH_BENCH_H
#define TERN_TOOLS_BENCH_BENCH_H

#include <jansson.h>
#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "kvm/spec.h"

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

#define BENCH_PAGE 4096ull
#define BENCH_MEM_BYTES (1ull << 30)   /* memory bandwidth buffer */
#define BENCH_POP_BYTES (256ull << 20) /* page-population region */
#define BENCH_REPEATS 3                /* best of */
#define BENCH_DEFAULT_GUEST "simvm:mem=1G,vcpus=1,fill=random"
#define BENCH_DEMO_GUEST                                                                           \
	"simvm:mem=1G,vcpus=2,fill=random,workload=memtouch:ws=256M,rate=200M,pattern=random"
#define BENCH_PC_GUEST                                                                             \
	"simvm:mem=256M,vcpus=2,fill=zero,workload=memtouch:ws=64M,rate=400M,pattern=random"
#define BENCH_CV_GUEST "simvm:mem=256M,vcpus=2,fill=random,workload=memtouch:ws=128M,pattern=random"
#define BENCH_ERR_TAIL 2048 /* bytes of a failed child's stderr kept in the report */
#define BENCH_MAX_RUNS 64   /* --runs; the statistics hold this many values */

/* ---- the command line (main.c) ---- */

/* Every option of every subcommand; each subcommand reads its own. */
struct bench_cfg {
	const char *tern; /* the tern binary */
	int runs;
	int timeout_s;     /* per migration, tern send --timeout */
	int iperf_seconds; /* 0: the subcommand's default */
	/* migrate, all */
	const char *guest; /* migrate, converge (NULL: their default) */
	const char *connections;
	const char *chunk_size;
	int verify;
	int no_baseline;
	int same_backing; /* migrate: tern receive --same-backing */
	/* link, zero, trace */
	uint64_t size; /* guest / buffer size */
	int streams[8], nstreams;
	uint64_t chunks[8];
	int nchunks;
	int no_delay;
	const char *modes; /* zero: --zero-pages modes, comma-separated */
	uint64_t sparse_mem, sparse_data;
	/* dirtylog */
	uint64_t sizes[8];
	int nsizes;
	int takes, interval_ms, period_ms;
	int dl_sparse, dl_populated; /* --memory: which guests (both by default) */
	/* converge */
	const char *max_bandwidth; /* tern send --max-bandwidth (NULL: 50M) */
};

/* A subcommand fills report (an object that already holds "bench" and,
 * at the top level, "host") and returns 0 when everything was measured,
 * -1 when a migration or a measurement failed (it is in the report). */
typedef int bench_run_fn(const struct bench_cfg *cfg, json_t *report);

int bench_machine(const struct bench_cfg *cfg, json_t *report);
int bench_migrate(const struct bench_cfg *cfg, json_t *report);
int bench_link(const struct bench_cfg *cfg, json_t *report);
int bench_zero(const struct bench_cfg *cfg, json_t *report);
int bench_dirtylog(const struct bench_cfg *cfg, json_t *report);
int bench_trace(const struct bench_cfg *cfg, json_t *report);
int bench_tls(const struct bench_cfg *cfg, json_t *report);
int bench_dest(const struct bench_cfg *cfg, json_t *report);
int bench_converge(const struct bench_cfg *cfg, json_t *report);
int bench_postcopy(const struct bench_cfg *cfg, json_t *report);

/* ---- the report (report.c) ---- */

/* bench_now: CLOCK_MONOTONIC in seconds. */
double bench_now(void);

/* bench_median of the finite values among the first n (up to 64) of v;
 * NaN when there are none.  bench_sort sorts v in place. */
double bench_median(const double *v, int n);
void bench_sort(double *v, int n);

/* Sizes are written with terni_format_size (kvm/spec.h), as tern's spec
 * parser reads them. */

/* Values for the report.  A number is rounded to `decimals` (0: an integer);
 * NaN and infinities, figures not known, become null.  Strings go through
 * tools_json_text (tools/json_text.h): the tail of a child's stderr may cut
 * a character. */
json_t *bench_num(double v, int decimals);

/* Members set on an object, in order (jansson keeps insertion order). */
void bench_set(json_t *o, const char *key, json_t *v);
void bench_set_num(json_t *o, const char *key, double v, int decimals);
void bench_set_int(json_t *o, const char *key, long long v);
void bench_set_str(json_t *o, const char *key, const char *s);
void bench_set_bool(json_t *o, const char *key, int v);
/* bench_set_obj adds an empty object (or array) under key and returns it. */
json_t *bench_set_obj(json_t *o, const char *key);
json_t *bench_set_arr(json_t *o, const char *key);
/* bench_push_obj appends an empty object to array a and returns it. */
json_t *bench_push_obj(json_t *a);

/* bench_stat sets key to {median, min, max} over the finite values of v. */
void bench_stat(json_t *o, const char *key, const double *v, int n, int decimals);

/* bench_lat sets key to {samples, median_ms, p99_ms, max_ms} of n samples
 * in seconds, sorting them in place. */
void bench_lat(json_t *o, const char *key, double *s, int n);

/* The machine and its load: bench_load_start is the 1-minute load average
 * when tern-bench started; bench_host the "host" object. */
extern double bench_load_start;
double bench_loadavg(void);
json_t *bench_host(void);

/* bench_print writes the report to stdout, indented, and a newline. */
int bench_print(json_t *report);

/* ---- this machine's limits (machine.c) ---- */

/* The measuring kernels, also used by `zero`. */
extern volatile uint64_t bench_sink; /* keeps the read kernels from being optimised away */
uint8_t *bench_alloc_populated(size_t len);
uint64_t bench_read(const uint8_t *buf, size_t len);
void bench_touch(uint8_t *p, size_t len);

struct bench_mem {
	int ok;
	char why[128];
	double read_bps, memcpy_bps, zero_bps; /* bytes/s, best of BENCH_REPEATS */
};

/* bench_memory measures on a 1 GiB buffer of zero pages; quick: memcpy only. */
void bench_memory(struct bench_mem *m, int quick);

#define BENCH_IPERF_MAX_P 3

struct bench_iperf {
	int ok; /* 0: iperf3 missing or broken, see why */
	char why[256];
	char path[PATH_MAX];
	int seconds;
	int n;
	struct {
		int parallel;
		double bps; /* bits/s received, NaN on failure */
		char why[256];
	} runs[BENCH_IPERF_MAX_P];
};

/* bench_iperf runs iperf3 over loopback with 1, 2, 4 (nparallel of them)
 * streams; bench_iperf_one one run with `parallel` streams (bits/s, NaN
 * with why on failure). */
void bench_iperf(struct bench_iperf *r, int seconds, int nparallel);
double bench_iperf_one(const char *exe, int parallel, int seconds, char *why, size_t whylen);
int bench_find_exe(const char *name, char *out, size_t len);

/* The limits `migrate` compares with: one loopback TCP stream and memcpy. */
struct bench_baseline {
	int have;
	char why[256];
	double iperf_bps;  /* bits/s, one stream; NaN if unknown */
	double memcpy_bps; /* bytes/s; NaN if unknown */
};

/* bench_machine_run measures everything `machine` reports into report
 * (without "bench" and "host") and, when b is not NULL, leaves the figures
 * `migrate` compares with in b. */
int bench_machine_run(const struct bench_cfg *cfg, json_t *report, struct bench_baseline *b);

/* bench_baseline measures the baseline of `migrate` (memcpy, one iperf3
 * stream), unless --no-baseline. */
void bench_baseline(struct bench_baseline *b, const struct bench_cfg *cfg);

/* bench_migrate_set migrates guest cfg->runs times and sets the `migrate`
 * report of those runs into report. */
int bench_migrate_set(const struct bench_cfg *cfg, const char *guest,
                      const struct bench_baseline *b, json_t *report);

/* ---- migrations by the tern CLI (run.c) ---- */

/* How to run one migration. */
struct bench_opts {
	const char *tern;
	const char *connections; /* NULL: tern's default */
	const char *chunk_size;
	int verify;
	int timeout_s;
	const char *const *send_extra; /* more tern send arguments, NULL-terminated */
	const char *const *recv_extra; /* more tern receive arguments, NULL-terminated */
	const char *relay_delay;       /* migrate through tern-relay with this --delay */
	uint64_t warm_bytes;           /* warm the page allocator with this much first */
};

/* bench_opts_from: the migration settings of the command line, with the
 * page allocator warmed with twice cfg->size. */
void bench_opts_from(struct bench_opts *o, const struct bench_cfg *cfg);

/* A tern process's memory, from /proc/PID/status polled while it ran
 * (bytes; NaN unknown): tern's own memory is the RssAnon peak when the
 * guest is a memfd (RssShmem).  bench_mem_own: that, or for a guest in
 * anonymous memory (RssShmem small) the RssAnon peak less the guest's
 * data (guest_bytes, all resident by the end): approximate. */
struct bench_mem_use {
	double rss_anon_peak, vm_hwm, rss_shmem;
};
double bench_mem_own(const struct bench_mem_use *m, double guest_bytes);

struct bench_result {
	int ok;
	char error[256];
	int src_exit, dst_exit;
	json_t *src, *dst; /* tern's summaries, parsed; NULL if none */
	char src_err[BENCH_ERR_TAIL], dst_err[BENCH_ERR_TAIL];
	double total_ms, downtime_ms, payload_bytes, bytes_sent, iterations, guest_build_ms;
	double throughput_bps; /* payload bytes/s over total_ms */
	double wall_ms;
	double src_user_ms, src_sys_ms, dst_user_ms, dst_sys_ms;
	double active_ms_max; /* the longest conns[].active_ms: the transfer phase */
	double pages_zero, pages_skipped, zero_scan_ms;
	double warm_ms; /* the page-allocator warm-up before this run */
	/* tern's own CPU figures over the migration (cpu_user_ms, cpu_sys_ms in
	 * its summaries: guest build and preallocation excluded) */
	double src_cpu_user_ms, src_cpu_sys_ms, dst_cpu_user_ms, dst_cpu_sys_ms;
	struct bench_mem_use src_mem, dst_mem;
};

/* bench_migrate_once runs `tern receive` and `tern send` as two processes
 * and reads both summaries into res (bench_results_free releases them). */
void bench_migrate_once(const struct bench_opts *o, const char *guest, struct bench_result *res);
void bench_results_free(struct bench_result *res, int n);

/* bench_mrun runs n migrations of guest, progress labelled `label`;
 * returns how many completed. */
int bench_mrun(const struct bench_opts *o, const char *label, const char *guest, int n,
               struct bench_result *res);

/* A summary's number ("name": 123; true is 1), NaN when absent; and its
 * string ("" when absent). */
double bench_field(const json_t *summary, const char *name);
const char *bench_field_str(const json_t *summary, const char *name);

/* Per run: bytes on the wire over total_ms (BENCH_RATE_WIRE), or page data
 * over the longest connection's active time (BENCH_RATE_TRANSFER); NaN for
 * failed runs. */
enum { BENCH_RATE_WIRE, BENCH_RATE_TRANSFER };
void bench_rates(const struct bench_result *res, int n, int kind, double *v);

/* v[i] = res[i].field for the runs that completed, NaN for the others. */
#define BENCH_FIELD(res, n, field, v)                                                              \
	do {                                                                                       \
		for (int i_ = 0; i_ < (n); i_++)                                                   \
			(v)[i_] = (res)[i_].ok ? (res)[i_].field : NAN;                            \
	} while (0)

/* bench_mset: one set of migrations, compactly: medians, min and max, and
 * the failures in full (docs/bench.md). */
json_t *bench_mset(const char *guest, const char *args, const struct bench_result *res, int n);

/* Child processes, tracked so that a signal to tern-bench leaves none
 * behind (bench_on_signal kills them).  bench_start is proc_start
 * (tests/proc.h) tracked: 0 or -errno.  bench_wait waits up to timeout_ms
 * for the child, with its resource usage (ru may be NULL), and kills it at
 * the deadline: 0 if it exited by itself, -1 if it was killed. */
struct proc;
struct rusage;
void bench_track(pid_t pid);
void bench_untrack(pid_t pid);
void bench_on_signal(int sig);
int bench_start(struct proc *p, char *const argv[], int want_ready);
int bench_wait(struct proc *p, int timeout_ms, struct rusage *ru);

/* bench_warm warms the page allocator with len bytes: the milliseconds it
 * took (large when memory was cold), NaN if the memory was not there. */
double bench_warm(uint64_t len);

/* ---- the plain-C data mover (copy.c) ---- */

struct bench_copy {
	int ok;
	char why[128];
	double total_s, populate_s, transfer_s, warm_ms;
	/* CPU time: the sender threads; the receiver over its clocked part
	 * (ready: the receive only; unready: populate and receive) */
	double src_user_s, src_sys_s, dst_user_s, dst_sys_s;
};

/* bench_random_memfd: a populated memfd mapping of size random bytes. */
uint8_t *bench_random_memfd(uint64_t size);
/* bench_copy_sig: one word per page, XORed with its index. */
uint64_t bench_copy_sig(const uint8_t *p, uint64_t len);
/* bench_copy_once sends src over p TCP streams into a forked receiver's
 * fresh memfd, and checks the data by sig.  ready: the receiver prepares
 * its memory before it accepts (off the clock: transfer_s is the receive),
 * as tern receive --prealloc does; otherwise populate_s is on the clock. */
void bench_copy_once(const uint8_t *src, uint64_t size, uint64_t sig, int p, int ready,
                     struct bench_copy *cr);

/* help.c: --help for the whole program, and for the aspects. */
void bench_usage(FILE *f);
void bench_aspect_usage(FILE *f);

#endif /* TERN_TOOLS_BENCH_BENCH_H */
