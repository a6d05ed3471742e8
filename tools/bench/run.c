/*
 * Migrations by the tern CLI: `tern receive` and `tern send` as two child
 * processes (through tern-relay when a delay is asked for), both summaries
 * parsed with jansson, and the set statistics every benchmark reports.
 */
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

#include "tools/bench/bench.h"
/* proc.h names a default tern for the tests; tern-bench finds its own. */
#ifndef TERN_CLI_PATH
#define TERN_CLI_PATH "tern"
#endif
#include "tests/proc.h"

/* ---- children ---- */

#define BENCH_MAX_CHILDREN 8
/* Read by the signal handler: volatile, written only by the main thread. */
static volatile pid_t bench_children[BENCH_MAX_CHILDREN];

void
bench_track(pid_t pid)
{
	for (int i = 0; i < BENCH_MAX_CHILDREN; i++)
		if (bench_children[i] == 0) {
			bench_children[i] = pid;
			return;
		}
}

void
bench_untrack(pid_t pid)
{
	for (int i = 0; i < BENCH_MAX_CHILDREN; i++)
		if (bench_children[i] == pid)
			bench_children[i] = 0;
}

void
bench_on_signal(int sig)
{
	for (int i = 0; i < BENCH_MAX_CHILDREN; i++)
		if (bench_children[i] > 0)
			kill(bench_children[i], SIGKILL);
	signal(sig, SIG_DFL);
	raise(sig);
}

int
bench_start(struct proc *p, char *const argv[], int want_ready)
{
	if (proc_start(p, argv, want_ready) != 0)
		return -errno;
	bench_track(p->pid);
	return 0;
}

/* proc_wait with wait4's resource usage, and a deadline that also holds
 * when a child closes its output but keeps running. */
int
bench_wait(struct proc *p, int timeout_ms, struct rusage *ru)
{
	uint64_t deadline = proc_now_ms() + (uint64_t)timeout_ms;
	int killed = 0;

	proc_collect(p, deadline, &killed);
	for (;;) {
		pid_t r = wait4(p->pid, &p->status, WNOHANG, ru);
		if (r == p->pid || (r < 0 && errno != EINTR))
			break;
		if (!killed && proc_now_ms() >= deadline) {
			kill(p->pid, SIGKILL);
			killed = 1;
		}
		usleep(1000);
	}
	bench_untrack(p->pid);
	p->exited = 1;
	if (p->out >= 0)
		close(p->out);
	if (p->err >= 0)
		close(p->err);
	if (p->ready >= 0)
		close(p->ready);
	p->out = p->err = p->ready = -1;
	return killed ? -1 : 0;
}

/*
 * On this PVM guest the first use of memory the VM never touched costs
 * 10-25 us per page (the hypervisor backs it), while memory freed a moment
 * ago is re-used cheaply: touching and freeing len bytes before a run makes
 * every run start from the same state.
 */
double
bench_warm(uint64_t len)
{
	double t0 = bench_now();
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
	               MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED)
		return NAN;
	madvise(p, len, MADV_NOHUGEPAGE);
	if (madvise(p, len, MADV_POPULATE_WRITE) != 0)
		bench_touch(p, len);
	munmap(p, len);
	return (bench_now() - t0) * 1e3;
}

/* ---- memory of the children ---- */

/* Polls /proc/PID/status of the two tern processes while they run: the
 * peaks of RssAnon (tern's own memory: heap, stacks, bitmaps, buffers; a
 * memfd guest is RssShmem and not in it), VmHWM and RssShmem.  Every MEM_POLL_MS: a peak shorter
 * than that may be missed. */
#define MEM_POLL_MS 5

struct mem_poll {
	pid_t pid[2];
	struct bench_mem_use *use[2];
	_Atomic int stop; /* set by the main thread; polled */
	uv_thread_t th;
};

/* One status file: 0, or -1 when the process is gone or is not our child
 * (a pid reused after the reap). */
static int
mem_read(pid_t pid, struct bench_mem_use *u)
{
	char path[64], line[256];
	double anon = NAN, hwm = NAN, shmem = NAN;
	long ppid = -1;
	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	FILE *f = fopen(path, "r");
	if (f == NULL)
		return -1;
	while (fgets(line, sizeof(line), f) != NULL) {
		long v;
		if (sscanf(line, "PPid: %ld", &v) == 1)
			ppid = v;
		else if (sscanf(line, "RssAnon: %ld kB", &v) == 1)
			anon = v * 1024.0;
		else if (sscanf(line, "VmHWM: %ld kB", &v) == 1)
			hwm = v * 1024.0;
		else if (sscanf(line, "RssShmem: %ld kB", &v) == 1)
			shmem = v * 1024.0;
	}
	fclose(f);
	if (ppid != (long)getpid() || isnan(anon))
		return -1; /* not ours any more, or a zombie */
	if (isnan(u->rss_anon_peak) || anon > u->rss_anon_peak)
		u->rss_anon_peak = anon;
	/* Peaks: the last sample may come from a process tearing down. */
	if (isnan(u->vm_hwm) || hwm > u->vm_hwm)
		u->vm_hwm = hwm;
	if (isnan(u->rss_shmem) || shmem > u->rss_shmem)
		u->rss_shmem = shmem;
	return 0;
}

double
bench_mem_own(const struct bench_mem_use *m, double guest_bytes)
{
	if (!(m->rss_shmem < guest_bytes / 2))
		return m->rss_anon_peak; /* a memfd guest, or unknown */
	double own = m->rss_anon_peak - guest_bytes;
	return own > 0 ? own : 0;
}

static void
mem_poll_main(void *arg)
{
	struct mem_poll *m = arg;
	while (!atomic_load_explicit(&m->stop, memory_order_relaxed)) {
		for (int i = 0; i < 2; i++)
			if (m->pid[i] > 0 && mem_read(m->pid[i], m->use[i]) != 0)
				m->pid[i] = 0;
		usleep(MEM_POLL_MS * 1000);
	}
}

/* ---- tern's summaries ---- */

double
bench_field(const json_t *summary, const char *name)
{
	json_t *v = json_object_get(summary, name);
	if (json_is_boolean(v))
		return json_is_true(v);
	return json_is_number(v) ? json_number_value(v) : NAN;
}

const char *
bench_field_str(const json_t *summary, const char *name)
{
	const char *s = json_string_value(json_object_get(summary, name));
	return s != NULL ? s : "";
}

/* The largest conns[].key of a summary, NaN without connections. */
static double
bench_conns_max(const json_t *summary, const char *key)
{
	double best = NAN;
	size_t i;
	json_t *c;
	json_array_foreach(json_object_get(summary, "conns"), i, c)
	{
		double v = bench_field(c, key);
		if (isfinite(v))
			best = isfinite(best) ? fmax(best, v) : v;
	}
	return best;
}

/* The first line of out that is a JSON object (tern --json prints one
 * summary line), parsed; NULL if none. */
static json_t *
bench_summary(const char *out)
{
	for (const char *l = out; l != NULL && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL)
		if (*l == '{')
			return json_loadb(l, strcspn(l, "\n"), 0, NULL);
	return NULL;
}

static double
bench_ms(struct timeval tv)
{
	return (double)tv.tv_sec * 1e3 + (double)tv.tv_usec / 1e3;
}

static void
bench_tail(const char *s, size_t slen, char *dst, size_t len)
{
	size_t n = slen >= len ? len - 1 : slen;
	memcpy(dst, s + slen - n, n);
	dst[n] = '\0';
}

/* dir(tern)/name: the tools are built side by side. */
static void
bench_sibling(const char *tern, const char *name, char *out, size_t len)
{
	const char *slash = strrchr(tern, '/');
	if (slash == NULL)
		snprintf(out, len, "%s", name);
	else
		snprintf(out, len, "%.*s/%s", (int)(slash - tern), tern, name);
}

static void
bench_result_init(struct bench_result *res)
{
	memset(res, 0, sizeof(*res));
	res->src_exit = res->dst_exit = -1;
	res->total_ms = res->downtime_ms = res->payload_bytes = res->bytes_sent = NAN;
	res->iterations = res->guest_build_ms = res->throughput_bps = res->wall_ms = NAN;
	res->src_user_ms = res->src_sys_ms = res->dst_user_ms = res->dst_sys_ms = NAN;
	res->active_ms_max = res->pages_zero = res->pages_skipped = res->zero_scan_ms = NAN;
	res->warm_ms = NAN;
	res->src_cpu_user_ms = res->src_cpu_sys_ms = res->dst_cpu_user_ms = res->dst_cpu_sys_ms =
	    NAN;
	res->src_mem.rss_anon_peak = res->src_mem.vm_hwm = res->src_mem.rss_shmem = NAN;
	res->dst_mem.rss_anon_peak = res->dst_mem.vm_hwm = res->dst_mem.rss_shmem = NAN;
}

/* The figures of the source's summary. */
static void
bench_result_read(struct bench_result *res)
{
	const json_t *js = res->src;
	res->total_ms = bench_field(js, "total_ms");
	res->downtime_ms = bench_field(js, "downtime_ms");
	res->payload_bytes = bench_field(js, "payload_bytes");
	res->bytes_sent = bench_field(js, "bytes_sent");
	res->iterations = bench_field(js, "iterations");
	res->guest_build_ms = bench_field(js, "guest_build_ms");
	res->pages_zero = bench_field(js, "pages_zero");
	res->pages_skipped = bench_field(js, "pages_skipped");
	res->zero_scan_ms = bench_field(js, "zero_scan_ms");
	res->src_cpu_user_ms = bench_field(js, "cpu_user_ms");
	res->src_cpu_sys_ms = bench_field(js, "cpu_sys_ms");
	res->dst_cpu_user_ms = bench_field(res->dst, "cpu_user_ms");
	res->dst_cpu_sys_ms = bench_field(res->dst, "cpu_sys_ms");
	res->active_ms_max = bench_conns_max(js, "active_ms");
	if (res->total_ms > 0)
		res->throughput_bps = res->payload_bytes / (res->total_ms / 1e3);
}

/* Starts the relay to `to` and points `to` at it instead. */
static int
bench_relay(const struct bench_opts *o, struct proc *rl, char *to, size_t tolen, char *err,
            size_t errlen)
{
	char relay[PATH_MAX];
	int port;
	bench_sibling(o->tern, "tern-relay", relay, sizeof(relay));
	char *largv[] = {relay, "--listen", "127.0.0.1:0",          "--to",
	                 to,    "--delay",  (char *)o->relay_delay, "--ready-fd",
	                 "3",   NULL};
	if (bench_start(rl, largv, 1) != 0 || (port = proc_ready_port(rl, 10000)) <= 0) {
		snprintf(err, errlen, "cannot start %.200s", relay);
		return -1;
	}
	snprintf(to, tolen, "127.0.0.1:%d", port);
	return 0;
}

void
bench_migrate_once(const struct bench_opts *o, const char *guest, struct bench_result *res)
{
	struct proc *r = calloc(1, sizeof(*r)), *s = calloc(1, sizeof(*s));
	struct proc *rl = calloc(1, sizeof(*rl));
	struct rusage ru_s, ru_d;
	char to[64], timeout[32];
	int nargs, port, relay_up = 0;

	bench_result_init(res);
	if (r == NULL || s == NULL || rl == NULL) {
		snprintf(res->error, sizeof(res->error), "out of memory");
		goto out;
	}
	if (o->warm_bytes)
		res->warm_ms = bench_warm(o->warm_bytes);
	char *rargv[24] = {
	    (char *)o->tern,        "receive", "--listen",         "127.0.0.1:0", "--ready-fd", "3",
	    "--exit-after-handoff", "--json",  "--accept-timeout", "60s",         NULL};
	nargs = 10;
	for (int i = 0; o->recv_extra != NULL && o->recv_extra[i] != NULL && nargs < 23; i++)
		rargv[nargs++] = (char *)o->recv_extra[i];
	rargv[nargs] = NULL;
	if (bench_start(r, rargv, 1) != 0) {
		snprintf(res->error, sizeof(res->error), "cannot start %s: %s", o->tern,
		         strerror(errno));
		goto out;
	}
	/* --prealloc prepares the guest before it listens: seconds per GiB
	 * on a loaded machine, so the port may come as late as the timeout. */
	port = proc_ready_port(r, o->timeout_s * 1000);
	if (port <= 0) {
		bench_wait(r, 0, &ru_d);
		res->dst_exit = proc_exit_code(r);
		bench_tail(r->errbuf, r->errlen, res->dst_err, sizeof(res->dst_err));
		snprintf(res->error, sizeof(res->error), "tern receive did not report its port");
		goto out;
	}
	snprintf(to, sizeof(to), "127.0.0.1:%d", port);
	if (o->relay_delay != NULL) {
		if (bench_relay(o, rl, to, sizeof(to), res->error, sizeof(res->error)) != 0) {
			bench_wait(r, 0, &ru_d);
			goto out;
		}
		relay_up = 1;
	}
	snprintf(timeout, sizeof(timeout), "%ds", o->timeout_s);
	char *sargv[40] = {(char *)o->tern, "send",   "--to",      to,     "--guest",
	                   (char *)guest,   "--json", "--timeout", timeout};
	nargs = 9;
	if (o->connections != NULL) {
		sargv[nargs++] = "--connections";
		sargv[nargs++] = (char *)o->connections;
	}
	if (o->chunk_size != NULL) {
		sargv[nargs++] = "--chunk-size";
		sargv[nargs++] = (char *)o->chunk_size;
	}
	if (o->verify)
		sargv[nargs++] = "--verify";
	for (int i = 0; o->send_extra != NULL && o->send_extra[i] != NULL && nargs < 39; i++)
		sargv[nargs++] = (char *)o->send_extra[i];
	sargv[nargs] = NULL;

	double t0 = bench_now();
	if (bench_start(s, sargv, 0) != 0) {
		snprintf(res->error, sizeof(res->error), "cannot start tern send: %s",
		         strerror(errno));
		bench_wait(r, 0, &ru_d);
		goto out;
	}
	struct mem_poll mp = {.pid = {s->pid, r->pid}, .use = {&res->src_mem, &res->dst_mem}};
	int polling = uv_thread_create(&mp.th, mem_poll_main, &mp) == 0;
	/* tern send gives up by itself at --timeout; the margin covers building
	 * the guest, which --timeout does not count. */
	int s_killed = bench_wait(s, (o->timeout_s + 120) * 1000, &ru_s);
	res->wall_ms = (bench_now() - t0) * 1e3;
	res->src_exit = proc_exit_code(s);
	/* A failed source leaves the destination waiting: do not wait long. */
	int d_killed = bench_wait(r, res->src_exit == 0 ? 60000 : 5000, &ru_d);
	res->dst_exit = proc_exit_code(r);
	if (polling) {
		atomic_store_explicit(&mp.stop, 1, memory_order_relaxed);
		uv_thread_join(&mp.th);
	}

	res->src = bench_summary(s->outbuf);
	res->dst = bench_summary(r->outbuf);
	res->src_user_ms = bench_ms(ru_s.ru_utime);
	res->src_sys_ms = bench_ms(ru_s.ru_stime);
	res->dst_user_ms = bench_ms(ru_d.ru_utime);
	res->dst_sys_ms = bench_ms(ru_d.ru_stime);
	if (res->src != NULL)
		bench_result_read(res);

	if (s_killed)
		snprintf(res->error, sizeof(res->error), "tern send killed after %d s",
		         o->timeout_s + 120);
	else if (res->src_exit != 0)
		snprintf(res->error, sizeof(res->error), "tern send exited %d", res->src_exit);
	else if (d_killed)
		snprintf(res->error, sizeof(res->error),
		         "tern receive killed: did not exit after handoff");
	else if (res->dst_exit != 0)
		snprintf(res->error, sizeof(res->error), "tern receive exited %d", res->dst_exit);
	else if (strcmp(bench_field_str(res->src, "outcome"), "completed") != 0)
		snprintf(res->error, sizeof(res->error), "no completed summary from tern send");
	else if (o->verify && bench_field(res->src, "verified") != 1)
		snprintf(res->error, sizeof(res->error), "--verify asked, digests not verified");
	else
		res->ok = 1;
	if (!res->ok) {
		bench_tail(s->errbuf, s->errlen, res->src_err, sizeof(res->src_err));
		bench_tail(r->errbuf, r->errlen, res->dst_err, sizeof(res->dst_err));
		/* Failed runs report no figures: a median must not mix them in. */
		res->throughput_bps = NAN;
	}
out:
	if (relay_up) {
		kill(rl->pid, SIGTERM);
		bench_wait(rl, 5000, NULL);
	}
	free(rl);
	free(r);
	free(s);
}

void
bench_results_free(struct bench_result *res, int n)
{
	for (int i = 0; res != NULL && i < n; i++) {
		json_decref(res[i].src);
		json_decref(res[i].dst);
		res[i].src = res[i].dst = NULL;
	}
}

void
bench_opts_from(struct bench_opts *o, const struct bench_cfg *cfg)
{
	memset(o, 0, sizeof(*o));
	o->tern = cfg->tern;
	o->timeout_s = cfg->timeout_s;
	o->warm_bytes = 2 * cfg->size;
}

int
bench_mrun(const struct bench_opts *o, const char *label, const char *guest, int n,
           struct bench_result *res)
{
	int nok = 0;
	for (int i = 0; i < n; i++) {
		fprintf(stderr, "%s: run %d/%d, %s\n", label, i + 1, n, guest);
		bench_migrate_once(o, guest, &res[i]);
		if (res[i].ok) {
			nok++;
			fprintf(stderr, "%s: total %.0f ms, %.0f MB on the wire, warm-up %.0f ms\n",
			        label, res[i].total_ms, res[i].bytes_sent / 1e6, res[i].warm_ms);
		} else {
			fprintf(stderr, "%s: FAILED: %s\n", label, res[i].error);
		}
	}
	return nok;
}

/* ---- a set of migrations in the report ---- */

void
bench_rates(const struct bench_result *res, int n, int kind, double *v)
{
	for (int i = 0; i < n; i++) {
		const struct bench_result *r = &res[i];
		if (!r->ok)
			v[i] = NAN;
		else if (kind == BENCH_RATE_WIRE)
			v[i] = r->bytes_sent / (r->total_ms / 1e3);
		else
			v[i] = r->active_ms_max > 0 ? r->payload_bytes / (r->active_ms_max / 1e3)
			                            : NAN;
	}
}

/* The median of one field over the runs that completed. */
#define BENCH_MSET_MEDIAN(o, key, field)                                                           \
	do {                                                                                       \
		BENCH_FIELD(res, n, field, v);                                                     \
		bench_set_num(o, key, bench_median(v, n), 0);                                      \
	} while (0)

json_t *
bench_mset(const char *guest, const char *args, const struct bench_result *res, int n)
{
	double v[BENCH_MAX_RUNS] = {0};
	int nok = 0;
	json_t *o = json_object();
	n = n < BENCH_MAX_RUNS ? n : BENCH_MAX_RUNS;
	for (int i = 0; i < n; i++)
		nok += res[i].ok;
	bench_set_str(o, "guest", guest);
	bench_set_str(o, "send_args", args);
	bench_set_int(o, "runs", n);
	bench_set_int(o, "runs_ok", nok);
	BENCH_FIELD(res, n, total_ms, v);
	bench_stat(o, "total_ms", v, n, 0);
	BENCH_MSET_MEDIAN(o, "bytes_sent", bytes_sent);
	BENCH_MSET_MEDIAN(o, "payload_bytes", payload_bytes);
	bench_rates(res, n, BENCH_RATE_WIRE, v);
	bench_stat(o, "wire_bytes_per_s", v, n, 0);
	bench_rates(res, n, BENCH_RATE_TRANSFER, v);
	bench_stat(o, "transfer_bytes_per_s", v, n, 0);
	BENCH_MSET_MEDIAN(o, "transfer_ms", active_ms_max);
	BENCH_MSET_MEDIAN(o, "downtime_ms", downtime_ms);
	BENCH_MSET_MEDIAN(o, "pages_zero", pages_zero);
	BENCH_MSET_MEDIAN(o, "pages_skipped", pages_skipped);
	BENCH_MSET_MEDIAN(o, "zero_scan_ms", zero_scan_ms);
	BENCH_MSET_MEDIAN(o, "source_sys_ms", src_sys_ms);
	BENCH_MSET_MEDIAN(o, "destination_sys_ms", dst_sys_ms);
	for (int i = 0; i < n; i++)
		v[i] = res[i].warm_ms;
	bench_stat(o, "warm_ms", v, n, 0);
	if (nok < n) {
		json_t *failures = bench_set_arr(o, "failures");
		for (int i = 0; i < n; i++) {
			if (res[i].ok)
				continue;
			json_t *f = bench_push_obj(failures);
			bench_set_int(f, "run", i + 1);
			bench_set_str(f, "error", res[i].error);
			bench_set_str(f, "source_stderr", res[i].src_err);
			bench_set_str(f, "destination_stderr", res[i].dst_err);
		}
	}
	return o;
}
