/*
 * tern-bench: the project's benchmark driver (a separate program from the
 * tests, as in libuv).
 *
 *   tern-bench machine [--iperf-seconds N]
 *   tern-bench migrate [--guest SPEC] [--connections N] [--chunk-size S]
 *                      [--runs R] [--verify] [--tern PATH] [--no-baseline]
 *   tern-bench link | zero | dirtylog | trace | converge [options]
 *   tern-bench all
 *
 * Every performance figure tern claims comes from here, and is reported next
 * to this machine's own limits measured in the same invocation (memory
 * bandwidth, page-population costs, loopback TCP via iperf3), because on a
 * virtual machine those limits, not the wire, decide what is possible.
 * Results are one JSON object on stdout; progress goes to stderr.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "actors/actor.h"
#include "actors/dirty_log.h"
#include "actors/zero_scan.h"
#include "kvm/guest.h"
#include "tern/tern.h"
/* proc.h names a default tern for the tests; tern-bench finds its own. */
#ifndef TERN_CLI_PATH
#define TERN_CLI_PATH "tern"
#endif
#include "tests/proc.h"

#ifndef TERN_BUILD_TYPE
#define TERN_BUILD_TYPE "unknown"
#endif
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
#define BENCH_ERR_TAIL 2048 /* bytes of a failed child's stderr kept in the report */

/* ---- children: tracked so that a signal to tern-bench leaves none behind ---- */

#define BENCH_MAX_CHILDREN 8
static volatile pid_t bench_children[BENCH_MAX_CHILDREN];

static void
bench_track(pid_t pid)
{
	for (int i = 0; i < BENCH_MAX_CHILDREN; i++)
		if (bench_children[i] == 0) {
			bench_children[i] = pid;
			return;
		}
}

static void
bench_untrack(pid_t pid)
{
	for (int i = 0; i < BENCH_MAX_CHILDREN; i++)
		if (bench_children[i] == pid)
			bench_children[i] = 0;
}

static void
bench_on_signal(int sig)
{
	for (int i = 0; i < BENCH_MAX_CHILDREN; i++)
		if (bench_children[i] > 0)
			kill(bench_children[i], SIGKILL);
	signal(sig, SIG_DFL);
	raise(sig);
}

static int
bench_start(struct proc *p, char *const argv[], int want_ready)
{
	if (proc_start(p, argv, want_ready) != 0)
		return -errno;
	bench_track(p->pid);
	return 0;
}

/* proc_wait with the child's resource usage (wait4) and a deadline that also
 * holds when a child closes its output but keeps running.  Returns 0 if the
 * child exited by itself, -1 if it was killed at the deadline. */
static int
bench_wait(struct proc *p, int timeout_ms, struct rusage *ru)
{
	uint64_t deadline = proc_now_ms() + (uint64_t)timeout_ms;
	int killed = 0;

	while (p->out >= 0 || p->err >= 0) {
		struct pollfd pf[2] = {{p->out, POLLIN, 0}, {p->err, POLLIN, 0}};
		int64_t left = (int64_t)(deadline - proc_now_ms());
		if (left <= 0 && !killed) {
			kill(p->pid, SIGKILL);
			killed = 1;
		}
		if (left <= 0)
			left = 1000;
		if (poll(pf, 2, (int)left) < 0 && errno != EINTR)
			break;
		if (pf[0].revents)
			proc_drain(&p->out, p->outbuf, &p->outlen);
		if (pf[1].revents)
			proc_drain(&p->err, p->errbuf, &p->errlen);
	}
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

/* ---- a small pretty JSON writer ---- */

struct jw {
	FILE *f;
	int depth;
	int first; /* no member written yet at this depth */
};

static void
jw_key(struct jw *w, const char *key)
{
	if (w->depth > 0)
		fprintf(w->f, "%s\n%*s", w->first ? "" : ",", 2 * w->depth, "");
	w->first = 0;
	if (key != NULL)
		fprintf(w->f, "\"%s\": ", key);
}

static void
jw_open(struct jw *w, const char *key, char bracket)
{
	jw_key(w, key);
	fputc(bracket, w->f);
	w->depth++;
	w->first = 1;
}

static void
jw_close(struct jw *w, char bracket)
{
	w->depth--;
	if (!w->first)
		fprintf(w->f, "\n%*s", 2 * w->depth, "");
	fputc(bracket, w->f);
	w->first = 0;
}

static void
jw_raw(struct jw *w, const char *key, const char *fmt, ...)
{
	va_list ap;
	jw_key(w, key);
	va_start(ap, fmt);
	vfprintf(w->f, fmt, ap);
	va_end(ap);
}

static void
jw_str(struct jw *w, const char *key, const char *s)
{
	jw_key(w, key);
	if (s == NULL) {
		fputs("null", w->f);
		return;
	}
	fputc('"', w->f);
	for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
		if (*c == '"' || *c == '\\')
			fprintf(w->f, "\\%c", *c);
		else if (*c == '\n')
			fputs("\\n", w->f);
		else if (*c < 0x20)
			fprintf(w->f, "\\u%04x", *c);
		else
			fputc(*c, w->f);
	}
	fputc('"', w->f);
}

/* A number, or null when it is not known (NaN). */
static void
jw_num(struct jw *w, const char *key, double v, int decimals)
{
	if (isfinite(v))
		jw_raw(w, key, "%.*f", decimals, v);
	else
		jw_raw(w, key, "null");
}

/* ---- timing helpers ---- */

static double
bench_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double
bench_median(const double *v, int n)
{
	double s[64];
	int m = 0;
	for (int i = 0; i < n && m < 64; i++)
		if (isfinite(v[i]))
			s[m++] = v[i];
	if (m == 0)
		return NAN;
	for (int i = 1; i < m; i++)
		for (int j = i; j > 0 && s[j - 1] > s[j]; j--) {
			double t = s[j];
			s[j] = s[j - 1];
			s[j - 1] = t;
		}
	return m % 2 ? s[m / 2] : (s[m / 2 - 1] + s[m / 2]) / 2;
}

/* ---- (a) memory bandwidth ---- */

typedef uint64_t bench_v2 __attribute__((vector_size(16)));
static volatile uint64_t bench_sink; /* keeps the read kernels from being optimised away */

/* Anonymous memory with every page-table entry installed, in 4 KiB pages as
 * tern's memfd guests use (no THP, even where THP is "always"). */
static uint8_t *
bench_alloc_populated(size_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return NULL;
	madvise(p, len, MADV_NOHUGEPAGE);
	if (madvise(p, len, MADV_POPULATE_WRITE) != 0)
		memset(p, 0, len); /* kernels before 5.14 */
	return p;
}

static uint64_t
bench_read(const uint8_t *buf, size_t len)
{
	const bench_v2 *v = (const bench_v2 *)buf;
	bench_v2 a = {0, 0}, b = a, c = a, d = a;
	for (size_t i = 0; i + 4 <= len / sizeof(bench_v2); i += 4) {
		a ^= v[i];
		b ^= v[i + 1];
		c ^= v[i + 2];
		d ^= v[i + 3];
	}
	a ^= b ^ c ^ d;
	return a[0] ^ a[1];
}

static int
bench_page_is_zero(const uint8_t *page)
{
	const bench_v2 *v = (const bench_v2 *)page;
	bench_v2 a = {0, 0}, b = a, c = a, d = a;
	for (size_t i = 0; i < BENCH_PAGE / sizeof(bench_v2); i += 4) {
		a |= v[i];
		b |= v[i + 1];
		c |= v[i + 2];
		d |= v[i + 3];
	}
	a |= b | c | d;
	return (a[0] | a[1]) == 0;
}

static uint64_t
bench_zero_pages(const uint8_t *buf, size_t len)
{
	uint64_t n = 0;
	for (size_t off = 0; off < len; off += BENCH_PAGE)
		n += (uint64_t)bench_page_is_zero(buf + off);
	return n;
}

struct mem_result {
	int ok;
	char why[128];
	double read_bps, memcpy_bps, zero_bps; /* bytes/s, best of BENCH_REPEATS */
};

/* Measures on a 1 GiB buffer of zero pages: an all-zero page is the worst
 * case of the zero check (the whole page is read).  quick: memcpy only. */
static void
bench_memory(struct mem_result *m, int quick)
{
	size_t len = BENCH_MEM_BYTES;
	uint8_t *src = bench_alloc_populated(len);
	uint8_t *dst = bench_alloc_populated(len);
	memset(m, 0, sizeof(*m));
	m->read_bps = m->zero_bps = NAN;
	if (src == NULL || dst == NULL) {
		snprintf(m->why, sizeof(m->why), "mmap of 2 x 1 GiB failed: %s", strerror(errno));
		m->memcpy_bps = NAN;
		goto out;
	}
	m->ok = 1;
	for (int r = 0; r < BENCH_REPEATS; r++) {
		double t0 = bench_now();
		memcpy(dst, src, len);
		double t1 = bench_now();
		bench_sink = dst[len - 1];
		m->memcpy_bps = fmax(m->memcpy_bps, (double)len / (t1 - t0));
		if (quick)
			continue;
		t0 = bench_now();
		bench_sink = bench_read(src, len);
		t1 = bench_now();
		m->read_bps = fmax(m->read_bps, (double)len / (t1 - t0));
		t0 = bench_now();
		uint64_t z = bench_zero_pages(src, len);
		t1 = bench_now();
		bench_sink = z;
		if (z != len / BENCH_PAGE) {
			snprintf(m->why, sizeof(m->why),
			         "zero check found %" PRIu64 " of %zu pages", z,
			         (size_t)(len / BENCH_PAGE));
			m->ok = 0;
		}
		m->zero_bps = fmax(m->zero_bps, (double)len / (t1 - t0));
	}
out:
	if (src != NULL)
		munmap(src, len);
	if (dst != NULL)
		munmap(dst, len);
}

/* ---- (b) page population ---- */

enum pop_kind { POP_MEMFD_WRITE, POP_MEMFD_POPULATE, POP_MEMFD_FALLOCATE, POP_ANON_THP, POP_N };

static const char *const pop_names[POP_N] = {
    [POP_MEMFD_WRITE] = "memfd_first_write",
    [POP_MEMFD_POPULATE] = "memfd_populate_write",
    [POP_MEMFD_FALLOCATE] = "memfd_fallocate_populate",
    [POP_ANON_THP] = "anon_thp_first_write",
};

struct pop_result {
	int ok;
	char why[128];
	double secs;           /* whole operation, best of BENCH_REPEATS */
	double fallocate_secs; /* POP_MEMFD_FALLOCATE: the two phases of that best run */
	double populate_secs;
	uint64_t thp_bytes; /* POP_ANON_THP: AnonHugePages of the region */
};

/* The AnonHugePages of the mapping that starts at addr, from /proc/self/smaps. */
static uint64_t
bench_thp_bytes(const void *addr)
{
	FILE *f = fopen("/proc/self/smaps", "re");
	char line[512];
	int in = 0;
	uint64_t kb = 0;
	if (f == NULL)
		return 0;
	while (fgets(line, sizeof(line), f) != NULL) {
		unsigned long lo, hi;
		if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2) { /* a mapping's header line */
			in = lo == (uintptr_t)addr;
			continue;
		}
		if (in && sscanf(line, "AnonHugePages: %" SCNu64, &kb) == 1)
			break;
	}
	fclose(f);
	return kb * 1024;
}

static void
bench_touch(uint8_t *p, size_t len)
{
	for (size_t off = 0; off < len; off += BENCH_PAGE)
		((volatile uint8_t *)p)[off] = 1;
}

static int
bench_pop_once(enum pop_kind kind, size_t len, double *secs, double *fa, double *po, uint64_t *thp)
{
	int fd = -1, rc = 0;
	void *map = MAP_FAILED, *raw = MAP_FAILED;
	size_t rawlen = len + (2u << 20);
	double t0, t1, t2;

	*fa = *po = 0;
	if (kind == POP_ANON_THP) {
		raw =
		    mmap(NULL, rawlen, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (raw == MAP_FAILED)
			return -errno;
		/* Aligned to 2 MiB so that every huge page can be used. */
		uint8_t *p =
		    (uint8_t *)(((uintptr_t)raw + (2u << 20) - 1) & ~((uintptr_t)(2u << 20) - 1));
		if (madvise(p, len, MADV_HUGEPAGE) != 0) {
			rc = -errno;
			goto out;
		}
		t0 = bench_now();
		bench_touch(p, len);
		*secs = bench_now() - t0;
		*thp = bench_thp_bytes(p);
		goto out;
	}
	fd = memfd_create("tern-bench", MFD_CLOEXEC);
	if (fd < 0 || ftruncate(fd, (off_t)len) != 0) {
		rc = -errno;
		goto out;
	}
	t0 = bench_now();
	if (kind == POP_MEMFD_FALLOCATE && fallocate(fd, 0, 0, (off_t)len) != 0) {
		rc = -errno;
		goto out;
	}
	t1 = bench_now();
	map = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (map == MAP_FAILED) {
		rc = -errno;
		goto out;
	}
	if (kind == POP_MEMFD_WRITE)
		bench_touch(map, len);
	else if (madvise(map, len, MADV_POPULATE_WRITE) != 0) {
		rc = -errno;
		goto out;
	}
	t2 = bench_now();
	*secs = t2 - t0;
	*fa = t1 - t0;
	*po = t2 - t1;
out:
	if (map != MAP_FAILED)
		munmap(map, len);
	if (raw != MAP_FAILED)
		munmap(raw, rawlen);
	if (fd >= 0)
		close(fd);
	return rc;
}

static void
bench_populate(struct pop_result *res)
{
	for (int k = 0; k < POP_N; k++) {
		struct pop_result *r = &res[k];
		memset(r, 0, sizeof(*r));
		r->secs = INFINITY;
		fprintf(stderr, "machine: %s, %d x %llu MiB\n", pop_names[k], BENCH_REPEATS,
		        BENCH_POP_BYTES >> 20);
		for (int i = 0; i < BENCH_REPEATS; i++) {
			double s = 0, fa, po;
			uint64_t thp = 0;
			int rc = bench_pop_once(k, BENCH_POP_BYTES, &s, &fa, &po, &thp);
			if (rc != 0) {
				snprintf(r->why, sizeof(r->why), "%s", strerror(-rc));
				r->ok = 0;
				break;
			}
			r->ok = 1;
			if (s < r->secs) {
				r->secs = s;
				r->fallocate_secs = fa;
				r->populate_secs = po;
				r->thp_bytes = thp;
			}
		}
	}
}

/* ---- (c) loopback TCP via iperf3 ---- */

#define BENCH_IPERF_MAX_P 3
static const int bench_iperf_streams[BENCH_IPERF_MAX_P] = {1, 2, 4};

struct iperf_result {
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

static int
bench_find_exe(const char *name, char *out, size_t len)
{
	const char *path = getenv("PATH");
	char dirs[4096];
	snprintf(dirs, sizeof(dirs), "%s", path ? path : "/usr/local/bin:/usr/bin:/bin");
	for (char *save = NULL, *d = strtok_r(dirs, ":", &save); d != NULL;
	     d = strtok_r(NULL, ":", &save)) {
		snprintf(out, len, "%s/%s", d, name);
		if (access(out, X_OK) == 0)
			return 0;
	}
	return -ENOENT;
}

/* A port nobody listens on now (bind to port 0, read it back, close). */
static int
bench_free_port(void)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t alen = sizeof(a);
	int port = 0, fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
	    getsockname(fd, (struct sockaddr *)&a, &alen) == 0)
		port = ntohs(a.sin_port);
	else
		port = -errno;
	close(fd);
	return port;
}

/* The number after "key" (JSON, any whitespace before the value), NaN if absent. */
static double
bench_json_after(const char *s, const char *key)
{
	const char *p = strstr(s, key);
	if (p == NULL)
		return NAN;
	p += strlen(key);
	while (*p == ' ' || *p == '\t' || *p == '\n' || *p == ':')
		p++;
	char *end;
	double v = strtod(p, &end);
	return end == p ? NAN : v;
}

/* One line of iperf3's reason for a failure: its JSON "error", else stderr. */
static void
bench_iperf_error(const struct proc *c, char *why, size_t len)
{
	const char *e = strstr(c->outbuf, "\"error\":");
	if (e == NULL && proc_exit_code(c) == 0) {
		snprintf(why, len, "no end.sum_received.bits_per_second in iperf3's output");
		return;
	}
	if (e != NULL) {
		e = strchr(e + 8, '"');
		const char *q = e ? strchr(e + 1, '"') : NULL;
		if (e != NULL && q != NULL) {
			snprintf(why, len, "iperf3: %.*s", (int)(q - e - 1), e + 1);
			return;
		}
	}
	snprintf(why, len, "iperf3 exited %d: %.200s", proc_exit_code(c), c->errbuf);
}

static double
bench_iperf_one(const char *exe, int parallel, int seconds, char *why, size_t whylen)
{
	struct proc *srv = calloc(1, sizeof(*srv)), *cli = calloc(1, sizeof(*cli));
	char port_s[16], par_s[16], sec_s[16];
	double bps = NAN;
	int port = bench_free_port();

	if (srv == NULL || cli == NULL) {
		snprintf(why, whylen, "out of memory");
		goto out;
	}
	if (port <= 0) {
		snprintf(why, whylen, "no free port: %s", strerror(-port));
		goto out;
	}
	snprintf(port_s, sizeof(port_s), "%d", port);
	snprintf(par_s, sizeof(par_s), "%d", parallel);
	snprintf(sec_s, sizeof(sec_s), "%d", seconds);
	char *sargv[] = {(char *)exe, "-s", "-1", "-p", port_s, NULL};
	if (bench_start(srv, sargv, 0) != 0) {
		snprintf(why, whylen, "cannot start iperf3 -s: %s", strerror(errno));
		goto out;
	}
	/* The server listens a moment after it starts; probing it with a bare
	 * connection would use up its one test (-1), so the client retries. */
	for (int attempt = 0; attempt < 50; attempt++) {
		char *cargv[] = {(char *)exe, "-c", "127.0.0.1", "-p",  port_s, "-J", "-t", sec_s,
		                 "-l",        "1M", "-P",        par_s, "-i",   "0",  NULL};
		if (bench_start(cli, cargv, 0) != 0) {
			snprintf(why, whylen, "cannot start iperf3 -c: %s", strerror(errno));
			break;
		}
		if (bench_wait(cli, (seconds + 30) * 1000, NULL) != 0) {
			snprintf(why, whylen, "iperf3 -c did not finish within %d s", seconds + 30);
			break;
		}
		/* Before the server listens: retry.  (iperf 3.12 may exit 0 then.) */
		if (strstr(cli->outbuf, "Connection refused") != NULL) {
			usleep(100000);
			continue;
		}
		const char *sum = strstr(cli->outbuf, "\"sum_received\"");
		bps = sum ? bench_json_after(sum, "\"bits_per_second\"") : NAN;
		if (proc_exit_code(cli) != 0 || !isfinite(bps)) {
			bench_iperf_error(cli, why, whylen);
			bps = NAN;
		}
		break;
	}
	if (!isfinite(bps) && why[0] == '\0')
		snprintf(why, whylen, "iperf3 -s never accepted a connection on port %d", port);
	/* After its one test the server exits by itself; otherwise it is killed. */
	bench_wait(srv, isfinite(bps) ? 5000 : 0, NULL);
out:
	free(srv);
	free(cli);
	return bps;
}

static void
bench_iperf(struct iperf_result *r, int seconds, int nparallel)
{
	memset(r, 0, sizeof(*r));
	r->seconds = seconds;
	if (bench_find_exe("iperf3", r->path, sizeof(r->path)) != 0) {
		snprintf(r->why, sizeof(r->why),
		         "iperf3 not found in PATH (apt-get install iperf3)");
		return;
	}
	r->ok = 1;
	r->n = nparallel;
	for (int i = 0; i < nparallel; i++) {
		int p = bench_iperf_streams[i];
		fprintf(stderr, "iperf3: loopback, %d stream%s, %d s\n", p, p > 1 ? "s" : "",
		        seconds);
		r->runs[i].parallel = p;
		r->runs[i].bps =
		    bench_iperf_one(r->path, p, seconds, r->runs[i].why, sizeof(r->runs[i].why));
	}
}

/* ---- machine ---- */

struct machine {
	struct mem_result mem;
	struct pop_result pop[POP_N];
	struct iperf_result iperf;
};

static double
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

static double bench_load_start;

static void
bench_load_end_json(struct jw *w)
{
	jw_num(w, "loadavg_1m_end", bench_loadavg(), 2);
}

static void
bench_host_json(struct jw *w)
{
	struct utsname u;
	char thp[128] = "";
	FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "re");
	if (f != NULL) {
		if (fgets(thp, sizeof(thp), f) != NULL)
			thp[strcspn(thp, "\n")] = '\0';
		fclose(f);
	}
	jw_open(w, "host", '{');
	jw_raw(w, "cpus_online", "%ld", sysconf(_SC_NPROCESSORS_ONLN));
	jw_str(w, "kernel", uname(&u) == 0 ? u.release : NULL);
	jw_raw(w, "dev_kvm", "%s", access("/dev/kvm", F_OK) == 0 ? "true" : "false");
	jw_str(w, "thp_enabled", thp[0] ? thp : NULL);
	jw_str(w, "build_type", TERN_BUILD_TYPE);
	/* Other work on the machine skews every figure: record how busy it was
	 * (loadavg_1m_end closes the object). */
	jw_num(w, "loadavg_1m_start", bench_load_start, 2);
	jw_close(w, '}');
}

static void
bench_machine_measure(struct machine *m, int iperf_seconds)
{
	fprintf(stderr, "machine: memory read / memcpy / zero-page check, 1 GiB, best of %d\n",
	        BENCH_REPEATS);
	bench_memory(&m->mem, 0);
	bench_populate(m->pop);
	bench_iperf(&m->iperf, iperf_seconds, BENCH_IPERF_MAX_P);
}

static void
bench_machine_json(struct jw *w, const char *key, const struct machine *m, int top)
{
	jw_open(w, key, '{');
	if (top) {
		jw_str(w, "bench", "machine");
		bench_host_json(w);
	}

	jw_open(w, "memory", '{');
	jw_raw(w, "buffer_bytes", "%llu", BENCH_MEM_BYTES);
	jw_raw(w, "best_of", "%d", BENCH_REPEATS);
	if (m->mem.why[0])
		jw_str(w, "error", m->mem.why);
	jw_num(w, "read_bytes_per_s", m->mem.read_bps, 0);
	jw_num(w, "memcpy_bytes_per_s", m->mem.memcpy_bps, 0);
	jw_num(w, "zero_check_bytes_per_s", m->mem.zero_bps, 0);
	jw_num(w, "zero_check_pages_per_s", m->mem.zero_bps / BENCH_PAGE, 0);
	jw_close(w, '}');

	jw_open(w, "populate", '{');
	jw_raw(w, "region_bytes", "%llu", BENCH_POP_BYTES);
	jw_raw(w, "best_of", "%d", BENCH_REPEATS);
	double pages = (double)(BENCH_POP_BYTES / BENCH_PAGE);
	for (int k = 0; k < POP_N; k++) {
		const struct pop_result *r = &m->pop[k];
		jw_open(w, pop_names[k], '{');
		if (!r->ok) {
			jw_str(w, "error", r->why);
		} else {
			jw_num(w, "us_per_page", r->secs * 1e6 / pages, 3);
			jw_num(w, "bytes_per_s", (double)BENCH_POP_BYTES / r->secs, 0);
			if (k == POP_MEMFD_FALLOCATE) {
				jw_num(w, "fallocate_us_per_page", r->fallocate_secs * 1e6 / pages,
				       3);
				jw_num(w, "populate_us_per_page", r->populate_secs * 1e6 / pages,
				       3);
			}
			if (k == POP_ANON_THP)
				jw_raw(w, "thp_bytes", "%" PRIu64, r->thp_bytes);
		}
		jw_close(w, '}');
	}
	jw_close(w, '}');

	if (!m->iperf.ok) {
		jw_raw(w, "iperf3", "null");
		jw_str(w, "iperf3_reason", m->iperf.why);
	} else {
		jw_open(w, "iperf3", '{');
		jw_str(w, "path", m->iperf.path);
		jw_raw(w, "seconds", "%d", m->iperf.seconds);
		jw_str(w, "write_length", "1M");
		jw_open(w, "runs", '[');
		for (int i = 0; i < m->iperf.n; i++) {
			jw_open(w, NULL, '{');
			jw_raw(w, "parallel", "%d", m->iperf.runs[i].parallel);
			jw_num(w, "bits_per_s", m->iperf.runs[i].bps, 0);
			jw_num(w, "gbit_per_s", m->iperf.runs[i].bps / 1e9, 2);
			if (m->iperf.runs[i].why[0])
				jw_str(w, "error", m->iperf.runs[i].why);
			jw_close(w, '}');
		}
		jw_close(w, ']');
		jw_close(w, '}');
	}
	if (top)
		bench_load_end_json(w);
	jw_close(w, '}');
}

/* ---- migrate ---- */

struct bench_opts {
	int iperf_seconds; /* 0: the subcommand's default */
	const char *guest;
	const char *connections;
	const char *chunk_size;
	int runs;
	int verify;
	const char *tern;
	int no_baseline;
	int timeout_s;
	/* Used by link, zero and trace (NULL / 0: none). */
	const char *const *send_extra; /* more tern send arguments, NULL-terminated */
	const char *const *recv_extra; /* more tern receive arguments, NULL-terminated */
	const char *relay_delay;       /* migrate through tern-relay with this --delay */
	uint64_t warm_bytes;           /* warm the page allocator with this much first */
};

struct baseline {
	int have;
	char why[256];
	double iperf_bps;  /* bits/s, one stream; NaN if unknown */
	double memcpy_bps; /* bytes/s; NaN if unknown */
};

struct run_result {
	int ok;
	char error[256];
	int src_exit, dst_exit;
	char *src_json, *dst_json; /* tern's summaries (malloc'd), NULL if none */
	char src_err[BENCH_ERR_TAIL], dst_err[BENCH_ERR_TAIL];
	double total_ms, downtime_ms, payload_bytes, bytes_sent, iterations, guest_build_ms;
	double throughput_bps; /* payload bytes/s over total_ms */
	double wall_ms;
	double src_user_ms, src_sys_ms, dst_user_ms, dst_sys_ms;
	double active_ms_max; /* the longest conns[].active_ms: the transfer phase */
	double pages_zero, pages_skipped, zero_scan_ms;
	double warm_ms; /* the page-allocator warm-up before this run */
};

static double
bench_ms(struct timeval tv)
{
	return (double)tv.tv_sec * 1e3 + (double)tv.tv_usec / 1e3;
}

/* A copy of the first line of out that is a JSON object, NULL if none. */
static char *
bench_json_line(const char *out)
{
	for (const char *l = out; l != NULL && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL)
		if (*l == '{')
			return strndup(l, strcspn(l, "\n"));
	return NULL;
}

static void
bench_tail(const char *s, size_t slen, char *dst, size_t len)
{
	size_t n = slen >= len ? len - 1 : slen;
	memcpy(dst, s + slen - n, n);
	dst[n] = '\0';
}

static double
bench_field(const char *json, const char *name)
{
	long long v = json_num(json, name);
	return v < 0 ? NAN : (double)v;
}

/* The largest value of "key" among the objects of the summary's "conns". */
static double
bench_conns_max(const char *json, const char *key)
{
	char k[64];
	double best = NAN;
	const char *p = strstr(json, "\"conns\":");
	snprintf(k, sizeof(k), "\"%s\":", key);
	while (p != NULL && (p = strstr(p, k)) != NULL) {
		p += strlen(k);
		double v = strtod(p, NULL);
		best = isfinite(best) ? fmax(best, v) : v;
	}
	return best;
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

/*
 * Warms the page allocator.  On this PVM guest the first use of memory the VM
 * never touched costs 10-25 us per page (the hypervisor backs it), while memory
 * freed a moment ago is re-used cheaply: touching and freeing len bytes before
 * a run makes every run start from the same state.  Returns the milliseconds
 * it took (large when memory was cold), NaN if the memory was not available.
 */
static double
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

static void
bench_migrate_once(const struct bench_opts *o, const char *guest, struct run_result *res)
{
	struct proc *r = calloc(1, sizeof(*r)), *s = calloc(1, sizeof(*s));
	struct proc *rl = calloc(1, sizeof(*rl));
	struct rusage ru_s, ru_d;
	char to[64], timeout[32];
	int nargs, port, relay_up = 0;

	memset(res, 0, sizeof(*res));
	res->src_exit = res->dst_exit = -1;
	res->total_ms = res->downtime_ms = res->payload_bytes = res->bytes_sent = NAN;
	res->iterations = res->guest_build_ms = res->throughput_bps = res->wall_ms = NAN;
	res->src_user_ms = res->src_sys_ms = res->dst_user_ms = res->dst_sys_ms = NAN;
	res->active_ms_max = res->pages_zero = res->pages_skipped = res->zero_scan_ms = NAN;
	res->warm_ms = NAN;
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
	port = proc_ready_port(r, 10000);
	if (port <= 0) {
		bench_wait(r, 0, &ru_d);
		res->dst_exit = proc_exit_code(r);
		bench_tail(r->errbuf, r->errlen, res->dst_err, sizeof(res->dst_err));
		snprintf(res->error, sizeof(res->error), "tern receive did not report its port");
		goto out;
	}
	snprintf(to, sizeof(to), "127.0.0.1:%d", port);
	if (o->relay_delay != NULL) {
		char relay[PATH_MAX];
		bench_sibling(o->tern, "tern-relay", relay, sizeof(relay));
		char *largv[] = {relay, "--listen", "127.0.0.1:0",          "--to",
		                 to,    "--delay",  (char *)o->relay_delay, "--ready-fd",
		                 "3",   NULL};
		if (bench_start(rl, largv, 1) != 0 || (port = proc_ready_port(rl, 10000)) <= 0) {
			snprintf(res->error, sizeof(res->error), "cannot start %.200s", relay);
			bench_wait(r, 0, &ru_d);
			goto out;
		}
		relay_up = 1;
		snprintf(to, sizeof(to), "127.0.0.1:%d", port);
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
	/* tern send gives up by itself at --timeout; the margin covers building
	 * the guest, which --timeout does not count. */
	int s_killed = bench_wait(s, (o->timeout_s + 120) * 1000, &ru_s);
	res->wall_ms = (bench_now() - t0) * 1e3;
	res->src_exit = proc_exit_code(s);
	/* A failed source leaves the destination waiting: do not wait long. */
	int d_killed = bench_wait(r, res->src_exit == 0 ? 60000 : 5000, &ru_d);
	res->dst_exit = proc_exit_code(r);

	res->src_json = bench_json_line(s->outbuf);
	res->dst_json = bench_json_line(r->outbuf);
	res->src_user_ms = bench_ms(ru_s.ru_utime);
	res->src_sys_ms = bench_ms(ru_s.ru_stime);
	res->dst_user_ms = bench_ms(ru_d.ru_utime);
	res->dst_sys_ms = bench_ms(ru_d.ru_stime);
	if (res->src_json != NULL) {
		res->total_ms = bench_field(res->src_json, "total_ms");
		res->downtime_ms = bench_field(res->src_json, "downtime_ms");
		res->payload_bytes = bench_field(res->src_json, "payload_bytes");
		res->bytes_sent = bench_field(res->src_json, "bytes_sent");
		res->iterations = bench_field(res->src_json, "iterations");
		res->guest_build_ms = bench_field(res->src_json, "guest_build_ms");
		res->pages_zero = bench_field(res->src_json, "pages_zero");
		res->pages_skipped = bench_field(res->src_json, "pages_skipped");
		res->zero_scan_ms = bench_field(res->src_json, "zero_scan_ms");
		res->active_ms_max = bench_conns_max(res->src_json, "active_ms");
		if (res->total_ms > 0)
			res->throughput_bps = res->payload_bytes / (res->total_ms / 1e3);
	}

	if (s_killed)
		snprintf(res->error, sizeof(res->error), "tern send killed after %d s",
		         o->timeout_s + 120);
	else if (res->src_exit != 0)
		snprintf(res->error, sizeof(res->error), "tern send exited %d", res->src_exit);
	else if (d_killed)
		snprintf(res->error, sizeof(res->error),
		         "tern receive killed: did not exit after "
		         "handoff");
	else if (res->dst_exit != 0)
		snprintf(res->error, sizeof(res->error), "tern receive exited %d", res->dst_exit);
	else if (res->src_json == NULL ||
	         strstr(res->src_json, "\"outcome\":\"completed\"") == NULL)
		snprintf(res->error, sizeof(res->error), "no completed summary from tern send");
	else if (o->verify && json_num(res->src_json, "verified") != 1)
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

static void
bench_baseline(struct baseline *b, const struct bench_opts *o)
{
	struct mem_result mem;
	struct iperf_result ip;
	int secs = o->iperf_seconds ? o->iperf_seconds : 2;

	memset(b, 0, sizeof(*b));
	b->iperf_bps = b->memcpy_bps = NAN;
	if (o->no_baseline) {
		snprintf(b->why, sizeof(b->why), "--no-baseline");
		return;
	}
	b->have = 1;
	fprintf(stderr, "baseline: memcpy 1 GiB, best of %d\n", BENCH_REPEATS);
	bench_memory(&mem, 1);
	b->memcpy_bps = mem.memcpy_bps;
	bench_iperf(&ip, secs, 1);
	if (!ip.ok)
		snprintf(b->why, sizeof(b->why), "%s", ip.why);
	else if (!isfinite(ip.runs[0].bps))
		snprintf(b->why, sizeof(b->why), "%s", ip.runs[0].why);
	b->iperf_bps = ip.ok ? ip.runs[0].bps : NAN;
}

static void
bench_cpu_json(struct jw *w, const char *key, double user, double sys)
{
	jw_open(w, key, '{');
	jw_num(w, "user_ms", user, 0);
	jw_num(w, "sys_ms", sys, 0);
	jw_num(w, "total_ms", user + sys, 0);
	jw_close(w, '}');
}

/* The figures of one run, or the medians (the same names) over the runs. */
static void
bench_figures_json(struct jw *w, const struct run_result *r, const struct baseline *b)
{
	jw_num(w, "total_ms", r->total_ms, 0);
	jw_num(w, "downtime_ms", r->downtime_ms, 0);
	jw_num(w, "payload_bytes", r->payload_bytes, 0);
	jw_num(w, "bytes_sent", r->bytes_sent, 0);
	jw_num(w, "iterations", r->iterations, 1);
	jw_num(w, "guest_build_ms", r->guest_build_ms, 0);
	jw_num(w, "throughput_bytes_per_s", r->throughput_bps, 0);
	jw_num(w, "throughput_gbit_per_s", r->throughput_bps * 8 / 1e9, 3);
	jw_num(w, "ratio_vs_iperf3_1stream", r->throughput_bps * 8 / b->iperf_bps, 4);
	jw_num(w, "ratio_vs_memcpy", r->throughput_bps / b->memcpy_bps, 4);
	jw_num(w, "wall_ms", r->wall_ms, 0);
	bench_cpu_json(w, "source_cpu", r->src_user_ms, r->src_sys_ms);
	bench_cpu_json(w, "destination_cpu", r->dst_user_ms, r->dst_sys_ms);
}

static int
bench_migrate(struct jw *w, const char *key, const struct bench_opts *o, const char *guest,
              const struct baseline *b, int top)
{
	int n = o->runs, nok = 0;
	struct run_result *res = calloc((size_t)n, sizeof(*res));
	if (res == NULL)
		return -ENOMEM;
	for (int i = 0; i < n; i++) {
		fprintf(stderr, "migrate: run %d/%d, %s\n", i + 1, n, guest);
		bench_migrate_once(o, guest, &res[i]);
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

	/* Medians over the runs that completed. */
	struct run_result med;
	double v[64] = {0};
	int m = n < 64 ? n : 64;
#define BENCH_MED(field)                                                                           \
	do {                                                                                       \
		for (int i = 0; i < m; i++)                                                        \
			v[i] = res[i].ok ? res[i].field : NAN;                                     \
		med.field = bench_median(v, m);                                                    \
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
#undef BENCH_MED

	jw_open(w, key, '{');
	jw_str(w, "bench", "migrate");
	if (top)
		bench_host_json(w);
	jw_str(w, "tern", o->tern);
	jw_str(w, "guest", guest);
	jw_str(w, "connections", o->connections ? o->connections : "default");
	jw_str(w, "chunk_size", o->chunk_size ? o->chunk_size : "default");
	jw_raw(w, "verify", "%s", o->verify ? "true" : "false");
	jw_raw(w, "runs_requested", "%d", n);
	jw_raw(w, "runs_ok", "%d", nok);
	if (!b->have) {
		jw_raw(w, "baseline", "null");
	} else {
		jw_open(w, "baseline", '{');
		jw_num(w, "iperf3_1stream_bits_per_s", b->iperf_bps, 0);
		jw_num(w, "memcpy_bytes_per_s", b->memcpy_bps, 0);
		if (b->why[0])
			jw_str(w, "reason", b->why);
		jw_close(w, '}');
	}
	jw_open(w, "median", '{');
	bench_figures_json(w, &med, b);
	jw_close(w, '}');
	jw_open(w, "runs", '[');
	for (int i = 0; i < n; i++) {
		const struct run_result *r = &res[i];
		jw_open(w, NULL, '{');
		jw_raw(w, "run", "%d", i + 1);
		jw_raw(w, "ok", "%s", r->ok ? "true" : "false");
		if (!r->ok) {
			jw_str(w, "error", r->error);
			jw_raw(w, "source_exit", "%d", r->src_exit);
			jw_raw(w, "destination_exit", "%d", r->dst_exit);
			jw_str(w, "source_stderr", r->src_err);
			jw_str(w, "destination_stderr", r->dst_err);
		}
		bench_figures_json(w, r, b);
		/* tern's own summaries, verbatim (compact JSON objects). */
		jw_raw(w, "source", "%s", r->src_json ? r->src_json : "null");
		jw_raw(w, "destination", "%s", r->dst_json ? r->dst_json : "null");
		free(r->src_json);
		free(r->dst_json);
		jw_close(w, '}');
	}
	jw_close(w, ']');
	if (top)
		bench_load_end_json(w);
	jw_close(w, '}');
	free(res);
	return nok == n ? 0 : -1;
}

/* ---- shared by link, zero, dirtylog and trace ---- */

static int bench_bad_usage(const char *fmt, const char *arg);
static int bench_int(const char *s, long lo, long hi, int *out);

struct xopts {
	uint64_t size; /* guest / buffer size */
	int streams[8], nstreams;
	uint64_t chunks[8];
	int nchunks;
	uint64_t sizes[8]; /* dirtylog guest sizes */
	int nsizes;
	int runs;
	int iperf_seconds;
	int timeout_s;
	int no_delay;
	const char *modes; /* zero: --zero-pages modes, comma-separated */
	uint64_t sparse_mem, sparse_data;
	int takes, interval_ms, period_ms;
	const char *guest;         /* converge: the guest (NULL: BENCH_CV_GUEST) */
	const char *max_bandwidth; /* converge: tern send --max-bandwidth (NULL: 50M) */
	const char *tern;
};

/* "4G", "512M", "1T", or plain bytes: a size as tern's spec parser reads it. */
static const char *
bench_size_str(uint64_t v, char *buf, size_t len)
{
	static const char units[] = "KMGT";
	int u = -1;
	while (u < 3 && v >= 1024 && v % 1024 == 0) {
		v /= 1024;
		u++;
	}
	if (u < 0)
		snprintf(buf, len, "%" PRIu64, v);
	else
		snprintf(buf, len, "%" PRIu64 "%c", v, units[u]);
	return buf;
}

/* Runs n migrations of guest; returns how many completed. */
static int
bench_mrun(const struct bench_opts *o, const char *label, const char *guest, int n,
           struct run_result *res)
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

static void
bench_sort(double *v, int n)
{
	for (int i = 1; i < n; i++)
		for (int j = i; j > 0 && v[j - 1] > v[j]; j--) {
			double t = v[j];
			v[j] = v[j - 1];
			v[j - 1] = t;
		}
}

/* {median, min, max} over the finite values of v. */
static void
bench_stat_json(struct jw *w, const char *key, const double *v, int n, int decimals)
{
	double lo = NAN, hi = NAN;
	for (int i = 0; i < n; i++)
		if (isfinite(v[i])) {
			lo = isfinite(lo) ? fmin(lo, v[i]) : v[i];
			hi = isfinite(hi) ? fmax(hi, v[i]) : v[i];
		}
	jw_open(w, key, '{');
	jw_num(w, "median", bench_median(v, n), decimals);
	jw_num(w, "min", lo, decimals);
	jw_num(w, "max", hi, decimals);
	jw_close(w, '}');
}

enum { RATE_WIRE, RATE_TRANSFER };

/* Per run: bytes on the wire over total_ms, or page data over the longest
 * connection's active time (the transfer phase); NaN for failed runs. */
static void
bench_rates(const struct run_result *res, int n, int kind, double *v)
{
	for (int i = 0; i < n; i++) {
		const struct run_result *r = &res[i];
		if (!r->ok)
			v[i] = NAN;
		else if (kind == RATE_WIRE)
			v[i] = r->bytes_sent / (r->total_ms / 1e3);
		else
			v[i] = r->active_ms_max > 0 ? r->payload_bytes / (r->active_ms_max / 1e3)
			                            : NAN;
	}
}

#define BENCH_FIELD(res, n, field, v)                                                              \
	do {                                                                                       \
		for (int i_ = 0; i_ < (n); i_++)                                                   \
			(v)[i_] = (res)[i_].ok ? (res)[i_].field : NAN;                            \
	} while (0)

/* One set of migrations, compactly: medians, min and max; failures in full. */
static void
bench_mset_json(struct jw *w, const char *key, const char *guest, const char *args,
                const struct run_result *res, int n)
{
	double v[64] = {0};
	int nok = 0;
	n = n < 64 ? n : 64;
	for (int i = 0; i < n; i++)
		nok += res[i].ok;
	jw_open(w, key, '{');
	jw_str(w, "guest", guest);
	jw_str(w, "send_args", args);
	jw_raw(w, "runs", "%d", n);
	jw_raw(w, "runs_ok", "%d", nok);
	BENCH_FIELD(res, n, total_ms, v);
	bench_stat_json(w, "total_ms", v, n, 0);
	BENCH_FIELD(res, n, bytes_sent, v);
	jw_num(w, "bytes_sent", bench_median(v, n), 0);
	BENCH_FIELD(res, n, payload_bytes, v);
	jw_num(w, "payload_bytes", bench_median(v, n), 0);
	bench_rates(res, n, RATE_WIRE, v);
	bench_stat_json(w, "wire_bytes_per_s", v, n, 0);
	bench_rates(res, n, RATE_TRANSFER, v);
	bench_stat_json(w, "transfer_bytes_per_s", v, n, 0);
	BENCH_FIELD(res, n, active_ms_max, v);
	jw_num(w, "transfer_ms", bench_median(v, n), 0);
	BENCH_FIELD(res, n, downtime_ms, v);
	jw_num(w, "downtime_ms", bench_median(v, n), 0);
	BENCH_FIELD(res, n, pages_zero, v);
	jw_num(w, "pages_zero", bench_median(v, n), 0);
	BENCH_FIELD(res, n, pages_skipped, v);
	jw_num(w, "pages_skipped", bench_median(v, n), 0);
	BENCH_FIELD(res, n, zero_scan_ms, v);
	jw_num(w, "zero_scan_ms", bench_median(v, n), 0);
	BENCH_FIELD(res, n, src_sys_ms, v);
	jw_num(w, "source_sys_ms", bench_median(v, n), 0);
	BENCH_FIELD(res, n, dst_sys_ms, v);
	jw_num(w, "destination_sys_ms", bench_median(v, n), 0);
	for (int i = 0; i < n; i++)
		v[i] = res[i].warm_ms;
	bench_stat_json(w, "warm_ms", v, n, 0);
	if (nok < n) {
		jw_open(w, "failures", '[');
		for (int i = 0; i < n; i++) {
			if (res[i].ok)
				continue;
			jw_open(w, NULL, '{');
			jw_raw(w, "run", "%d", i + 1);
			jw_str(w, "error", res[i].error);
			jw_str(w, "source_stderr", res[i].src_err);
			jw_str(w, "destination_stderr", res[i].dst_err);
			jw_close(w, '}');
		}
		jw_close(w, ']');
	}
	jw_close(w, '}');
}

static void
bench_mres_free(struct run_result *res, int n)
{
	for (int i = 0; i < n; i++) {
		free(res[i].src_json);
		free(res[i].dst_json);
		res[i].src_json = res[i].dst_json = NULL;
	}
}

static void
bench_opts_from(struct bench_opts *o, const struct xopts *x)
{
	memset(o, 0, sizeof(*o));
	o->tern = x->tern;
	o->timeout_s = x->timeout_s;
	o->runs = x->runs;
	o->warm_bytes = 2 * x->size;
}

/* ---- link: the simplest correct copy, the baseline of issue 4 ---- */

struct copy_report {
	double populate_s, transfer_s; /* measured by the receiver */
	uint64_t sig;
	int err; /* 0 or -errno */
};

struct copy_conn {
	int fd;
	uint8_t *base; /* the slice */
	uint64_t len;
	int err;
};

/* One word per page, XORed: a cheap check that every page arrived where it belongs. */
static uint64_t
bench_copy_sig(const uint8_t *p, uint64_t len)
{
	uint64_t s = 0;
	for (uint64_t off = 0; off < len; off += BENCH_PAGE)
		s ^= *(const uint64_t *)(p + off) * (off / BENCH_PAGE + 1);
	return s;
}

static void *
bench_copy_recv_thread(void *arg)
{
	struct copy_conn *c = arg;
	uint64_t off = 0;
	while (off < c->len) {
		ssize_t n = recv(c->fd, c->base + off, c->len - off, MSG_WAITALL);
		if (n <= 0) {
			c->err = n < 0 ? -errno : -EPIPE;
			break;
		}
		off += (uint64_t)n;
	}
	return NULL;
}

static void *
bench_copy_send_thread(void *arg)
{
	struct copy_conn *c = arg;
	uint64_t off = 0;
	while (off < c->len) {
		size_t want = c->len - off < (4u << 20) ? c->len - off : (4u << 20);
		ssize_t n = send(c->fd, c->base + off, want, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			c->err = n < 0 ? -errno : -EPIPE;
			break;
		}
		off += (uint64_t)n;
	}
	return NULL;
}

/* The slice of stream i of p: page-aligned, contiguous. */
static void
bench_copy_slice(uint64_t size, int p, int i, uint64_t *off, uint64_t *len)
{
	uint64_t pages = size / BENCH_PAGE;
	uint64_t a = pages * (uint64_t)i / (uint64_t)p, b = pages * (uint64_t)(i + 1) / (uint64_t)p;
	*off = a * BENCH_PAGE;
	*len = (b - a) * BENCH_PAGE;
}

/* The receiver (a forked child): a fresh memfd, fallocated and populated
 * first, then every stream received straight into its slice. */
static void
bench_copy_receiver(int lfd, uint64_t size, int p, int wfd)
{
	struct copy_report rep = {0};
	struct copy_conn c[8];
	pthread_t th[8];
	int nth = 0, fd = memfd_create("tern-bench-dst", MFD_CLOEXEC);
	uint8_t *dst = MAP_FAILED;
	double t0 = bench_now();

	if (fd < 0 || ftruncate(fd, (off_t)size) != 0 || fallocate(fd, 0, 0, (off_t)size) != 0) {
		rep.err = -errno;
		goto out;
	}
	dst = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (dst == MAP_FAILED || madvise(dst, size, MADV_POPULATE_WRITE) != 0) {
		rep.err = -errno;
		goto out;
	}
	double t1 = bench_now();
	rep.populate_s = t1 - t0;
	for (int i = 0; i < p; i++) {
		uint32_t idx;
		int cfd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		if (cfd < 0 || recv(cfd, &idx, sizeof(idx), MSG_WAITALL) != sizeof(idx) ||
		    idx >= (uint32_t)p) {
			rep.err = cfd < 0 ? -errno : -EPROTO;
			if (cfd >= 0)
				close(cfd);
			break;
		}
		uint64_t off, len;
		bench_copy_slice(size, p, (int)idx, &off, &len);
		c[nth] = (struct copy_conn){.fd = cfd, .base = dst + off, .len = len};
		if (pthread_create(&th[nth], NULL, bench_copy_recv_thread, &c[nth]) != 0) {
			rep.err = -EAGAIN;
			close(cfd);
			break;
		}
		nth++;
	}
	for (int i = 0; i < nth; i++) {
		pthread_join(th[i], NULL);
		close(c[i].fd);
		if (c[i].err != 0 && rep.err == 0)
			rep.err = c[i].err;
	}
	rep.transfer_s = bench_now() - t1;
	if (rep.err == 0)
		rep.sig = bench_copy_sig(dst, size);
out:
	if (write(wfd, &rep, sizeof(rep)) != sizeof(rep))
		_exit(1);
	_exit(0);
}

struct copy_result {
	int ok;
	char why[128];
	double total_s, populate_s, transfer_s, warm_ms;
};

static void
bench_copy_once(const uint8_t *src, uint64_t size, uint64_t sig, int p, struct copy_result *cr)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t alen = sizeof(a);
	struct copy_conn c[8];
	pthread_t th[8];
	int nth = 0, pfd[2] = {-1, -1}, lfd = -1, rc = 0;
	struct copy_report rep = {.err = -EPIPE};
	pid_t pid = -1;

	memset(cr, 0, sizeof(*cr));
	cr->warm_ms = bench_warm(2 * size);
	double t0 = bench_now();
	lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(lfd, 64) != 0 ||
	    getsockname(lfd, (struct sockaddr *)&a, &alen) != 0 || pipe2(pfd, O_CLOEXEC) != 0) {
		rc = -errno;
		goto out;
	}
	pid = fork();
	if (pid < 0) {
		rc = -errno;
		goto out;
	}
	if (pid == 0) {
		close(pfd[0]);
		bench_copy_receiver(lfd, size, p, pfd[1]);
	}
	bench_track(pid);
	close(pfd[1]);
	pfd[1] = -1;
	for (int i = 0; i < p; i++) {
		uint64_t off, len;
		uint32_t idx = (uint32_t)i;
		int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
		    send(fd, &idx, sizeof(idx), 0) != sizeof(idx)) {
			rc = -errno;
			if (fd >= 0)
				close(fd);
			break;
		}
		bench_copy_slice(size, p, i, &off, &len);
		c[nth] = (struct copy_conn){.fd = fd, .base = (uint8_t *)src + off, .len = len};
		if (pthread_create(&th[nth], NULL, bench_copy_send_thread, &c[nth]) != 0) {
			rc = -EAGAIN;
			close(fd);
			break;
		}
		nth++;
	}
	for (int i = 0; i < nth; i++) {
		pthread_join(th[i], NULL);
		if (c[i].err != 0 && rc == 0)
			rc = c[i].err;
	}
	/* A sender that failed closes its socket: the receiver then fails too. */
	for (int i = 0; i < nth; i++)
		close(c[i].fd);
	if (read(pfd[0], &rep, sizeof(rep)) != sizeof(rep))
		rep.err = -EPIPE;
	cr->total_s = bench_now() - t0;
out:
	if (pid > 0) {
		int st;
		if (rc != 0)
			kill(pid, SIGKILL);
		waitpid(pid, &st, 0);
		bench_untrack(pid);
	}
	if (lfd >= 0)
		close(lfd);
	if (pfd[0] >= 0)
		close(pfd[0]);
	if (pfd[1] >= 0)
		close(pfd[1]);
	if (rc == 0)
		rc = rep.err;
	if (rc != 0) {
		snprintf(cr->why, sizeof(cr->why), "%s", strerror(-rc));
		return;
	}
	if (rep.sig != sig) {
		snprintf(cr->why, sizeof(cr->why), "received data differs from the source");
		return;
	}
	cr->ok = 1;
	cr->populate_s = rep.populate_s;
	cr->transfer_s = rep.transfer_s;
}

/* A memfd of size random bytes (xorshift), populated, for the copy baseline. */
static uint8_t *
bench_random_memfd(uint64_t size)
{
	int fd = memfd_create("tern-bench-src", MFD_CLOEXEC);
	uint8_t *p = MAP_FAILED;
	if (fd >= 0 && ftruncate(fd, (off_t)size) == 0 && fallocate(fd, 0, 0, (off_t)size) == 0)
		p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (fd >= 0)
		close(fd); /* the mapping keeps the memory */
	if (p == MAP_FAILED)
		return NULL;
	madvise(p, size, MADV_POPULATE_WRITE);
	uint64_t x = 0x9e3779b97f4a7c15ull, *q = (uint64_t *)p;
	for (uint64_t i = 0; i < size / 8; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		q[i] = x;
	}
	return p;
}

static void
bench_ratio(struct jw *w, const char *key, double a, double b)
{
	jw_num(w, key, a / b, 3);
}

static int
bench_link(struct jw *w, const char *key, const struct xopts *x, int top)
{
	int n = x->runs, np = x->nstreams, rc = 0;
	char sz[32], guest[128], conns[8][8], chunk_s[8][16];
	struct iperf_result ip;
	struct copy_result *cp = calloc((size_t)(np * n), sizeof(*cp));
	struct run_result *tr = calloc((size_t)(np * n), sizeof(*tr));
	struct run_result *ch = calloc((size_t)(x->nchunks * n), sizeof(*ch));
	struct run_result *dl = calloc((size_t)(3 * n), sizeof(*dl));
	struct bench_opts o;
	double v[64], iperf_bps[8];
	char iperf_why[256] = "";

	if (cp == NULL || tr == NULL || ch == NULL || dl == NULL) {
		rc = -ENOMEM;
		goto out;
	}
	bench_size_str(x->size, sz, sizeof(sz));
	snprintf(guest, sizeof(guest), "simvm:mem=%s,vcpus=1,fill=random", sz);

	/* (a) the link's ceiling */
	memset(&ip, 0, sizeof(ip));
	if (bench_find_exe("iperf3", ip.path, sizeof(ip.path)) != 0) {
		snprintf(ip.why, sizeof(ip.why), "iperf3 not found in PATH");
	} else {
		ip.ok = 1;
		for (int k = 0; k < np; k++) {
			fprintf(stderr, "link: iperf3 -P %d -l 1M, %d s\n", x->streams[k],
			        x->iperf_seconds);
			iperf_bps[k] = bench_iperf_one(ip.path, x->streams[k], x->iperf_seconds,
			                               iperf_why, sizeof(iperf_why));
		}
	}

	/* (b) the simplest correct copy */
	fprintf(stderr, "link: %s of random data into a memfd\n", sz);
	uint8_t *src = bench_random_memfd(x->size);
	if (src == NULL) {
		rc = -errno;
		goto out;
	}
	uint64_t sig = bench_copy_sig(src, x->size);
	for (int k = 0; k < np; k++)
		for (int i = 0; i < n; i++) {
			struct copy_result *c = &cp[k * n + i];
			fprintf(stderr, "link: copy baseline, %d stream(s), run %d/%d\n",
			        x->streams[k], i + 1, n);
			bench_copy_once(src, x->size, sig, x->streams[k], c);
			if (!c->ok)
				fprintf(stderr, "link: copy FAILED: %s\n", c->why);
			else
				fprintf(stderr, "link: copy %.2f GB/s whole, %.2f GB/s transfer\n",
				        x->size / c->total_s / 1e9, x->size / c->transfer_s / 1e9);
		}
	munmap(src, x->size);

	/* (c) tern, P connections */
	bench_opts_from(&o, x);
	for (int k = 0; k < np; k++) {
		snprintf(conns[k], sizeof(conns[k]), "%d", x->streams[k]);
		o.connections = conns[k];
		bench_mrun(&o, "link: tern", guest, n, &tr[k * n]);
	}
	/* chunk size, one connection */
	o.connections = NULL;
	for (int k = 0; k < x->nchunks; k++) {
		o.chunk_size = bench_size_str(x->chunks[k], chunk_s[k], sizeof(chunk_s[k]));
		bench_mrun(&o, "link: chunk", guest, n, &ch[k * n]);
	}
	o.chunk_size = NULL;
	/* (d) 1 ms RTT through tern-relay: P=1 with no delay (the relay's own
	 * cost), P=1 and P=4 with 500 us each way. */
	if (!x->no_delay) {
		o.relay_delay = "0us";
		bench_mrun(&o, "link: relay 0", guest, n, &dl[0]);
		o.relay_delay = "500us";
		bench_mrun(&o, "link: relay 1ms", guest, n, &dl[n]);
		o.connections = "4";
		bench_mrun(&o, "link: relay 1ms", guest, n, &dl[2 * n]);
	}

	jw_open(w, key, '{');
	jw_str(w, "bench", "link");
	if (top)
		bench_host_json(w);
	jw_raw(w, "size_bytes", "%" PRIu64, x->size);
	jw_raw(w, "runs", "%d", n);
	jw_str(w, "guest", guest);
	if (!ip.ok)
		jw_str(w, "iperf3_reason", ip.why);
	else if (iperf_why[0])
		jw_str(w, "iperf3_error", iperf_why);
	jw_open(w, "streams", '[');
	for (int k = 0; k < np; k++) {
		double iperf_Bps = ip.ok ? iperf_bps[k] / 8 : NAN, cw[64], ct[64], cpop[64],
		       warm[64];
		for (int i = 0; i < n; i++) {
			const struct copy_result *c = &cp[k * n + i];
			cw[i] = c->ok ? x->size / c->total_s : NAN;
			ct[i] = c->ok ? x->size / c->transfer_s : NAN;
			cpop[i] = c->ok ? c->populate_s * 1e3 : NAN;
			warm[i] = c->warm_ms;
		}
		double tw[64], tt[64];
		bench_rates(&tr[k * n], n, RATE_WIRE, tw);
		bench_rates(&tr[k * n], n, RATE_TRANSFER, tt);
		jw_open(w, NULL, '{');
		jw_raw(w, "parallel", "%d", x->streams[k]);
		jw_num(w, "iperf3_bytes_per_s", iperf_Bps, 0);
		jw_open(w, "copy", '{');
		bench_stat_json(w, "whole_bytes_per_s", cw, n, 0);
		bench_stat_json(w, "transfer_bytes_per_s", ct, n, 0);
		bench_stat_json(w, "populate_ms", cpop, n, 0);
		bench_stat_json(w, "warm_ms", warm, n, 0);
		for (int i = 0; i < n; i++)
			if (!cp[k * n + i].ok)
				jw_str(w, "error", cp[k * n + i].why);
		jw_close(w, '}');
		char args[32];
		snprintf(args, sizeof(args), "--connections %d", x->streams[k]);
		bench_mset_json(w, "tern", guest, args, &tr[k * n], n);
		jw_open(w, "summary", '{');
		double m_tw = bench_median(tw, n), m_tt = bench_median(tt, n);
		double m_cw = bench_median(cw, n), m_ct = bench_median(ct, n);
		jw_num(w, "iperf3_gbyte_per_s", iperf_Bps / 1e9, 3);
		jw_num(w, "copy_whole_gbyte_per_s", m_cw / 1e9, 3);
		jw_num(w, "copy_transfer_gbyte_per_s", m_ct / 1e9, 3);
		jw_num(w, "tern_whole_gbyte_per_s", m_tw / 1e9, 3);
		jw_num(w, "tern_transfer_gbyte_per_s", m_tt / 1e9, 3);
		bench_ratio(w, "tern_vs_copy_whole", m_tw, m_cw);
		bench_ratio(w, "tern_vs_copy_transfer", m_tt, m_ct);
		bench_ratio(w, "tern_vs_iperf3", m_tw, iperf_Bps);
		jw_close(w, '}');
		jw_close(w, '}');
	}
	jw_close(w, ']');

	jw_open(w, "chunk_size", '{');
	jw_raw(w, "connections", "1");
	double best = NAN;
	const char *best_s = NULL;
	jw_open(w, "sizes", '[');
	for (int k = 0; k < x->nchunks; k++) {
		char args[48];
		snprintf(args, sizeof(args), "--chunk-size %s", chunk_s[k]);
		bench_mset_json(w, NULL, guest, args, &ch[k * n], n);
		bench_rates(&ch[k * n], n, RATE_WIRE, v);
		double m = bench_median(v, n);
		if (isfinite(m) && (!isfinite(best) || m > best)) {
			best = m;
			best_s = chunk_s[k];
		}
	}
	jw_close(w, ']');
	jw_str(w, "fastest", best_s);
	jw_close(w, '}');

	if (!x->no_delay) {
		/* seed 004's stop-and-wait bound per connection: chunk / (chunk/thr + rtt),
		 * with thr the connection's measured no-delay rate and the 1 MiB chunk. */
		const double chunk = 1 << 20, rtt = 1e-3;
		jw_open(w, "delay", '{');
		jw_str(w, "relay",
		       "tern-relay --delay 500us (RTT + 1 ms); a 0us run measures the relay");
		jw_num(w, "chunk_bytes", chunk, 0);
		bench_mset_json(w, "relay_0us_p1", guest, "--connections 1 via relay 0us", &dl[0],
		                n);
		const char *names[2] = {"relay_1ms_p1", "relay_1ms_p4"};
		for (int j = 0; j < 2; j++) {
			int p = j == 0 ? 1 : 4;
			double thr = NAN;
			/* the no-delay throughput at P, per connection */
			for (int k = 0; k < np; k++)
				if (x->streams[k] == p) {
					bench_rates(&tr[k * n], n, RATE_TRANSFER, v);
					thr = bench_median(v, n) / p;
				}
			bench_mset_json(w, names[j], guest,
			                p == 1 ? "--connections 1" : "--connections 4",
			                &dl[(j + 1) * n], n);
			char k1[48], k2[48];
			snprintf(k1, sizeof(k1), "seed004_bound_p%d_bytes_per_s", p);
			snprintf(k2, sizeof(k2), "p%d_transfer_vs_seed004_bound", p);
			double bound = p * chunk / (chunk / thr + rtt);
			jw_num(w, k1, bound, 0);
			bench_rates(&dl[(j + 1) * n], n, RATE_TRANSFER, v);
			bench_ratio(w, k2, bench_median(v, n), bound);
		}
		bench_rates(&dl[0], n, RATE_TRANSFER, v);
		double r0 = bench_median(v, n);
		bench_rates(&dl[n], n, RATE_TRANSFER, v);
		bench_ratio(w, "p1_1ms_vs_relay_0us", bench_median(v, n), r0);
		jw_close(w, '}');
	}
	if (top)
		bench_load_end_json(w);
	jw_close(w, '}');
	for (int i = 0; i < np * n; i++)
		rc |= tr[i].ok ? 0 : -1;
	for (int i = 0; i < x->nchunks * n; i++)
		rc |= ch[i].ok ? 0 : -1;
	for (int i = 0; !x->no_delay && i < 3 * n; i++)
		rc |= dl[i].ok ? 0 : -1;
out:
	if (tr != NULL)
		bench_mres_free(tr, np * n);
	if (ch != NULL)
		bench_mres_free(ch, x->nchunks * n);
	if (dl != NULL)
		bench_mres_free(dl, 3 * n);
	free(cp);
	free(tr);
	free(ch);
	free(dl);
	return rc;
}

/* ---- zero: issue 5 ---- */

static uint64_t
bench_tern_zero_pages(const uint8_t *buf, size_t len)
{
	uint64_t n = 0;
	for (size_t off = 0; off < len; off += BENCH_PAGE)
		n += tern_page_is_zero(buf + off);
	return n;
}

static int
bench_zero(struct jw *w, const char *key, const struct xopts *x, int top)
{
	const char *fills[3] = {"zero", "50", "random"};
	char modes[128], *mv[4], sz[32], smem[32], sdata[32], guest[160];
	int nm = 0, n = x->runs, rc = 0;
	struct bench_opts o;
	struct run_result *res, *sp;
	double v[64];

	snprintf(modes, sizeof(modes), "%s", x->modes);
	for (char *save = NULL, *t = strtok_r(modes, ",", &save); t != NULL && nm < 4;
	     t = strtok_r(NULL, ",", &save))
		mv[nm++] = t;
	res = calloc((size_t)(3 * nm * n), sizeof(*res));
	sp = calloc((size_t)(2 * n), sizeof(*sp));
	if (res == NULL || sp == NULL) {
		free(res);
		free(sp);
		return -ENOMEM;
	}

	/* (a) one core: tern_page_is_zero over populated zero pages (the worst
	 * case, every byte read) against a plain read of the same buffer. */
	double scan = NAN, rd = NAN;
	uint8_t *buf = bench_alloc_populated(BENCH_MEM_BYTES);
	int scan_ok = buf != NULL;
	fprintf(stderr, "zero: scan vs read, 1 GiB, best of %d\n", BENCH_REPEATS);
	for (int r = 0; buf != NULL && r < BENCH_REPEATS; r++) {
		double t0 = bench_now();
		bench_sink = bench_read(buf, BENCH_MEM_BYTES);
		double t1 = bench_now();
		uint64_t z = bench_tern_zero_pages(buf, BENCH_MEM_BYTES);
		double t2 = bench_now();
		scan_ok &= z == BENCH_MEM_BYTES / BENCH_PAGE;
		rd = fmax(rd, BENCH_MEM_BYTES / (t1 - t0));
		scan = fmax(scan, BENCH_MEM_BYTES / (t2 - t1));
	}
	if (buf != NULL)
		munmap(buf, BENCH_MEM_BYTES);

	/* (b) a paused guest (workload idle) of each fill, in each mode */
	bench_opts_from(&o, x);
	bench_size_str(x->size, sz, sizeof(sz));
	const char *extra[3] = {"--zero-pages", NULL, NULL};
	o.send_extra = extra;
	for (int f = 0; f < 3; f++)
		for (int m = 0; m < nm; m++) {
			snprintf(guest, sizeof(guest), "simvm:mem=%s,vcpus=1,fill=%s", sz,
			         fills[f]);
			extra[1] = mv[m];
			bench_mrun(&o, "zero", guest, n, &res[(f * nm + m) * n]);
		}

	/* (c) sparse against dense, detect (tern's default) */
	o.send_extra = NULL;
	bench_size_str(x->sparse_mem, smem, sizeof(smem));
	bench_size_str(x->sparse_data, sdata, sizeof(sdata));
	char sparse_g[128], dense_g[128];
	snprintf(sparse_g, sizeof(sparse_g), "simvm:mem=%s,vcpus=1,fill=random:%s", smem, sdata);
	snprintf(dense_g, sizeof(dense_g), "simvm:mem=%s,vcpus=1,fill=random", sdata);
	o.warm_bytes = 2 * x->sparse_data;
	bench_mrun(&o, "zero: dense", dense_g, n, &sp[0]);
	bench_mrun(&o, "zero: sparse", sparse_g, n, &sp[n]);

	jw_open(w, key, '{');
	jw_str(w, "bench", "zero");
	if (top)
		bench_host_json(w);
	jw_open(w, "scan", '{');
	jw_raw(w, "buffer_bytes", "%llu", BENCH_MEM_BYTES);
	jw_str(w, "contents", "populated zero pages (the worst case: every byte is read)");
	jw_raw(w, "all_pages_found_zero", "%s", scan_ok ? "true" : "false");
	jw_num(w, "tern_page_is_zero_bytes_per_s", scan, 0);
	jw_num(w, "read_bytes_per_s", rd, 0);
	jw_num(w, "scan_vs_read", scan / rd, 3);
	jw_num(w, "target", 0.8, 1);
	jw_close(w, '}');
	jw_open(w, "fills", '[');
	for (int f = 0; f < 3; f++) {
		double base = NAN;
		jw_open(w, NULL, '{');
		jw_str(w, "fill", fills[f]);
		for (int m = 0; m < nm; m++) {
			const struct run_result *r = &res[(f * nm + m) * n];
			snprintf(guest, sizeof(guest), "simvm:mem=%s,vcpus=1,fill=%s", sz,
			         fills[f]);
			char args[64];
			snprintf(args, sizeof(args), "--zero-pages %s", mv[m]);
			bench_mset_json(w, mv[m], guest, args, r, n);
			BENCH_FIELD(r, n, total_ms, v);
			if (m == 0)
				base = bench_median(v, n);
		}
		/* each mode's median time over the first mode's */
		jw_open(w, "time_vs_first_mode", '{');
		for (int m = 1; m < nm; m++) {
			BENCH_FIELD(&res[(f * nm + m) * n], n, total_ms, v);
			jw_num(w, mv[m], base / bench_median(v, n), 3);
		}
		jw_close(w, '}');
		jw_close(w, '}');
	}
	jw_close(w, ']');
	jw_open(w, "sparse", '{');
	bench_mset_json(w, "dense", dense_g, "", &sp[0], n);
	bench_mset_json(w, "sparse", sparse_g, "", &sp[n], n);
	double dv[64], sv[64];
	BENCH_FIELD(&sp[0], n, total_ms, dv);
	BENCH_FIELD(&sp[n], n, total_ms, sv);
	jw_num(w, "sparse_vs_dense_time", bench_median(sv, n) / bench_median(dv, n), 3);
	jw_num(w, "target", 1.5, 1);
	jw_close(w, '}');
	if (top)
		bench_load_end_json(w);
	jw_close(w, '}');
	for (int i = 0; i < 3 * nm * n; i++)
		rc |= res[i].ok ? 0 : -1;
	for (int i = 0; i < 2 * n; i++)
		rc |= sp[i].ok ? 0 : -1;
	bench_mres_free(res, 3 * nm * n);
	bench_mres_free(sp, 2 * n);
	free(res);
	free(sp);
	return rc;
}

/* ---- trace: issue's tracing overhead ---- */

static int
bench_trace(struct jw *w, const char *key, const struct xopts *x, int top)
{
	char sz[32], g0[128], sp[64], dp[64];
	const char *guests[2] = {g0, BENCH_DEMO_GUEST};
	int n = x->runs, rc = 0;
	struct run_result *res = calloc((size_t)(4 * n), sizeof(*res));
	double bytes[4][64];
	struct bench_opts o;

	if (res == NULL)
		return -ENOMEM;
	bench_size_str(x->size, sz, sizeof(sz));
	snprintf(g0, sizeof(g0), "simvm:mem=%s,vcpus=1,fill=random", sz);
	snprintf(sp, sizeof(sp), "/tmp/tern-bench-%d-src.trace", (int)getpid());
	snprintf(dp, sizeof(dp), "/tmp/tern-bench-%d-dst.trace", (int)getpid());
	const char *sx[3] = {"--trace", sp, NULL}, *dx[3] = {"--trace", dp, NULL};
	bench_opts_from(&o, x);
	o.warm_bytes = 2 * (x->size > (1ull << 30) ? x->size : (1ull << 30));
	/* Alternate without/with so that a drift of the machine hits both alike. */
	for (int g = 0; g < 2; g++)
		for (int i = 0; i < n; i++)
			for (int t = 0; t < 2; t++) {
				o.send_extra = t ? sx : NULL;
				o.recv_extra = t ? dx : NULL;
				bench_mrun(&o, t ? "trace: on" : "trace: off", guests[g], 1,
				           &res[(g * 2 + t) * n + i]);
				struct stat st;
				uint64_t b = 0;
				if (t && stat(sp, &st) == 0)
					b += (uint64_t)st.st_size;
				if (t && stat(dp, &st) == 0)
					b += (uint64_t)st.st_size;
				bytes[g * 2 + t][i] = t ? (double)b : NAN;
				unlink(sp);
				unlink(dp);
			}
	jw_open(w, key, '{');
	jw_str(w, "bench", "trace");
	if (top)
		bench_host_json(w);
	jw_open(w, "guests", '[');
	for (int g = 0; g < 2; g++) {
		double off[64], on[64];
		jw_open(w, NULL, '{');
		jw_str(w, "guest", guests[g]);
		bench_mset_json(w, "off", guests[g], "", &res[g * 2 * n], n);
		bench_mset_json(w, "on", guests[g], "--trace on both sides", &res[(g * 2 + 1) * n],
		                n);
		jw_num(w, "trace_bytes_both_sides", bench_median(bytes[g * 2 + 1], n), 0);
		BENCH_FIELD(&res[g * 2 * n], n, total_ms, off);
		BENCH_FIELD(&res[(g * 2 + 1) * n], n, total_ms, on);
		double m0 = bench_median(off, n), m1 = bench_median(on, n);
		jw_num(w, "overhead_pct_total_ms", (m1 - m0) / m0 * 100, 2);
		BENCH_FIELD(&res[g * 2 * n], n, src_user_ms, off);
		BENCH_FIELD(&res[(g * 2 + 1) * n], n, src_user_ms, on);
		m0 = bench_median(off, n);
		m1 = bench_median(on, n);
		jw_num(w, "source_user_ms_off", m0, 0);
		jw_num(w, "source_user_ms_on", m1, 0);
		jw_num(w, "target_pct", 2, 0);
		jw_close(w, '}');
	}
	jw_close(w, ']');
	if (top)
		bench_load_end_json(w);
	jw_close(w, '}');
	for (int i = 0; i < 4 * n; i++)
		rc |= res[i].ok ? 0 : -1;
	bench_mres_free(res, 4 * n);
	free(res);
	return rc;
}

/* ---- dirtylog: issue 3, in process ---- */

static void
bench_sleep_ms(double ms)
{
	struct timespec ts = {.tv_sec = (time_t)(ms / 1e3), .tv_nsec = (long)(fmod(ms, 1e3) * 1e6)};
	nanosleep(&ts, NULL);
}

/* {median, p99, max} in milliseconds of n samples (seconds), sorted in place. */
static void
bench_lat_json(struct jw *w, const char *key, double *s, int n)
{
	bench_sort(s, n);
	jw_open(w, key, '{');
	jw_raw(w, "samples", "%d", n);
	jw_num(w, "median_ms", n ? s[n / 2] * 1e3 : NAN, 3);
	jw_num(w, "p99_ms", n ? s[(int)ceil(0.99 * n) - 1] * 1e3 : NAN, 3);
	jw_num(w, "max_ms", n ? s[n - 1] * 1e3 : NAN, 3);
	jw_close(w, '}');
}

static int
bench_guest(const char *spec, struct tern_guest **g, char *why, size_t len)
{
	struct tern_guest_config cfg;
	int rc = tern_guest_spec_parse(spec, &cfg, why, len);
	return rc != 0 ? rc : tern_guest_create(g, &cfg, TERN_GUEST_SOURCE, why, len);
}

struct dl_size {
	char why[256];
	double *take, *take_harvest, *sync, *period; /* seconds */
	double take_pages, sync_pages, period_pages; /* medians */
	int ntake, nsync, nperiod;
};

/* TAKE latency through the DirtyLogActor, then a synchronous harvest of the
 * same guest at the same interval, then at the actor's period. */
static int
bench_dl_size(const struct xopts *x, const char *spec, struct dl_size *d)
{
	struct tern_guest *g = NULL;
	struct tern_dirty_log_args a = {.period_ms = (uint32_t)x->period_ms};
	struct tern_runtime *rt = NULL;
	struct tern_mailbox *mb = NULL;
	struct tern_actor *act = NULL;
	struct tern_bitmap bm = {0}, *held[2] = {NULL, NULL};
	double pg[1024];
	int rc, n = x->takes;

	d->take = calloc((size_t)n, sizeof(double));
	d->take_harvest = calloc((size_t)n, sizeof(double));
	d->sync = calloc((size_t)n, sizeof(double));
	d->period = calloc((size_t)n, sizeof(double));
	if (d->take == NULL || d->take_harvest == NULL || d->sync == NULL || d->period == NULL)
		return -ENOMEM;
	if ((rc = bench_guest(spec, &g, d->why, sizeof(d->why))) != 0)
		return rc;
	a.guest = g;
	for (int k = 0; k < TERN_DIRTY_MAPS; k++)
		if ((rc = tern_bitmap_init(&a.maps[k], g->npages)) != 0)
			goto out;
	if ((rc = tern_bitmap_init(&bm, g->npages)) != 0)
		goto out;
	/* The working set populated first (it sits at the start of memory,
	 * after the vCPUs' control pages): first touches of fresh pages cost
	 * ~10 us each here and are the guest's cost, not the dirty log's. */
	uint64_t ws = g->cfg.ws_size + (4u << 20);
	if ((rc = tern_guest_populate(g, 0, ws < g->region.size ? ws : g->region.size)) != 0) {
		snprintf(d->why, sizeof(d->why), "populate: %s", tern_strerror(rc));
		goto out;
	}
	bench_sleep_ms(500);
	if ((rc = tern_runtime_create(&rt, NULL)) != 0 ||
	    (rc = tern_mailbox_open(rt, "bench", &mb)) != 0)
		goto out;
	struct tern_exit why;
	if ((rc = tern_spawn(rt, &tern_dirty_log_actor, &a, tern_mailbox_id(mb), &act, &why)) != 0) {
		snprintf(d->why, sizeof(d->why), "spawn dirty-log: %.200s", why.why);
		act = NULL;
		goto out;
	}
	uint32_t id = tern_actor_id(act);
	for (int i = 0; i < n; i++) {
		struct tern_msg m, r;
		/* Realistic intervals: not in step with the actor's period. */
		bench_sleep_ms(x->interval_ms * (0.5 + (double)(i % 7) / 6));
		if (held[1] != NULL) {
			tern_msg_init(&m, TERN_MSG_DIRTY_GIVE);
			m.u.dirty_give.set = (uint64_t)(uintptr_t)held[1];
			if ((rc = tern_send(rt, tern_mailbox_id(mb), id, &m)) != 0)
				goto out;
		}
		held[1] = held[0];
		tern_msg_init(&m, TERN_MSG_DIRTY_TAKE);
		double t0 = bench_now();
		rc = tern_mailbox_request(mb, id, &m, &r, 5000);
		d->take[i] = bench_now() - t0;
		if (rc == 0 && r.type != TERN_MSG_DIRTY_SET)
			rc = -EPROTO;
		if (rc != 0) {
			snprintf(d->why, sizeof(d->why), "DIRTY_TAKE: %s", tern_strerror(rc));
			goto out;
		}
		held[0] = (struct tern_bitmap *)(uintptr_t)r.u.dirty_set.set;
		d->take_harvest[i] = (double)r.u.dirty_set.harvest_ns / 1e9;
		pg[i % 1024] = (double)r.u.dirty_set.pages;
		d->ntake++;
	}
	d->take_pages = bench_median(pg, d->ntake < 64 ? d->ntake : 64);
	{
		struct tern_msg m;
		tern_msg_init(&m, TERN_MSG_DIRTY_STOP);
		tern_send(rt, tern_mailbox_id(mb), id, &m);
		struct tern_exit ex;
		if (tern_actor_join(act, 5000, &ex) == 0)
			act = NULL;
	}
	/* The synchronous alternative: the caller harvests the whole log itself. */
	if ((rc = g->ops->dirty_start(g)) != 0) {
		snprintf(d->why, sizeof(d->why), "dirty_start: %s", g->why);
		goto out;
	}
	for (int pass = 0; pass < 2 && rc == 0; pass++) {
		double *s = pass == 0 ? d->sync : d->period;
		int *ns = pass == 0 ? &d->nsync : &d->nperiod;
		for (int i = 0; i < n; i++) {
			uint64_t pages = 0;
			bench_sleep_ms(pass == 0 ? x->interval_ms * (0.5 + (double)(i % 7) / 6)
			                         : (double)x->period_ms);
			double t0 = bench_now();
			rc = g->ops->dirty_harvest(g, &bm, &pages);
			s[i] = bench_now() - t0;
			if (rc != 0) {
				snprintf(d->why, sizeof(d->why), "dirty_harvest: %s", g->why);
				break;
			}
			tern_bitmap_clear_all(&bm);
			pg[i % 64] = (double)pages;
			(*ns)++;
		}
		*(pass == 0 ? &d->sync_pages : &d->period_pages) =
		    bench_median(pg, *ns < 64 ? *ns : 64);
	}
	g->ops->dirty_stop(g);
out:
	if (act != NULL) {
		tern_actor_kill(act);
		tern_actor_join(act, 5000, NULL);
	}
	if (mb != NULL)
		tern_mailbox_close(mb);
	if (rt != NULL)
		tern_runtime_destroy(rt);
	for (int k = 0; k < TERN_DIRTY_MAPS; k++)
		tern_bitmap_fini(&a.maps[k]);
	tern_bitmap_fini(&bm);
	tern_guest_destroy(g);
	return rc;
}

/* Median harvest time of a fixed dirty set: one vCPU rewrites the same 1000
 * pages between harvests (memtouch ws=1000 pages, seq), guest paused while
 * harvesting; populate: every page of the guest mapped first (the dense case
 * for the bitmap mode, whose cost follows populated memory). */
static double
bench_dl_fixed(const char *mem, const char *mode, int populate, double *pages_out, char *why,
               size_t len)
{
	char spec[160];
	struct tern_guest *g = NULL;
	struct tern_bitmap bm = {0};
	double t[5], res = NAN;
	int rc;

	snprintf(spec, sizeof(spec),
	         "simvm:mem=%s,vcpus=1,fill=zero,workload=memtouch:ws=4000K,rate=0,pattern=seq",
	         mem);
	if (bench_guest(spec, &g, why, len) != 0)
		return NAN;
	if ((rc = g->ops->pause(g)) != 0 ||
	    (populate && (rc = tern_guest_populate(g, 0, g->region.size)) != 0) ||
	    (rc = tern_guest_set_dirty_mode(g, mode, 0, why, len)) != 0 ||
	    (rc = tern_bitmap_init(&bm, g->npages)) != 0 || (rc = g->ops->dirty_start(g)) != 0) {
		if (!why[0])
			snprintf(why, len, "%s: %s", tern_strerror(rc), g->why);
		goto out;
	}
	for (int r = 0; r < 5; r++) {
		uint64_t target = g->stats.workload_steps + 1000, pages = 0;
		while (g->stats.workload_steps < target) {
			if ((rc = g->ops->resume(g)) != 0)
				goto out;
			bench_sleep_ms(2);
			if ((rc = g->ops->pause(g)) != 0)
				goto out;
		}
		double t0 = bench_now();
		if ((rc = g->ops->dirty_harvest(g, &bm, &pages)) != 0) {
			snprintf(why, len, "harvest: %s", g->why);
			goto out;
		}
		t[r] = bench_now() - t0;
		tern_bitmap_clear_all(&bm);
		*pages_out = (double)pages;
	}
	res = bench_median(t, 5) * 1e3;
	g->ops->dirty_stop(g);
out:
	tern_bitmap_fini(&bm);
	tern_guest_destroy(g);
	return res;
}

static int
bench_dirtylog(struct jw *w, const char *key, const struct xopts *x, int top)
{
	struct dl_size d[8];
	char mem[8][32], spec[8][192];
	int rc = 0;

	memset(d, 0, sizeof(d));
	for (int k = 0; k < x->nsizes; k++) {
		bench_size_str(x->sizes[k], mem[k], sizeof(mem[k]));
		snprintf(spec[k], sizeof(spec[k]),
		         "simvm:mem=%s,vcpus=2,fill=zero,workload=memtouch:ws=256M,rate=200M,"
		         "pattern=random",
		         mem[k]);
		fprintf(stderr, "dirtylog: %s, %d TAKEs then %d x 2 harvests\n", spec[k], x->takes,
		        x->takes);
		if (bench_dl_size(x, spec[k], &d[k]) != 0) {
			fprintf(stderr, "dirtylog: FAILED: %s\n", d[k].why);
			rc = -1;
		}
	}
	jw_open(w, key, '{');
	jw_str(w, "bench", "dirtylog");
	if (top)
		bench_host_json(w);
	jw_raw(w, "period_ms", "%d", x->period_ms);
	jw_raw(w, "take_interval_ms", "%d", x->interval_ms);
	jw_open(w, "critical_path", '[');
	for (int k = 0; k < x->nsizes; k++) {
		jw_open(w, NULL, '{');
		jw_str(w, "guest", spec[k]);
		if (d[k].why[0])
			jw_str(w, "error", d[k].why);
		bench_lat_json(w, "take", d[k].take, d[k].ntake);
		bench_lat_json(w, "take_inner_harvest", d[k].take_harvest, d[k].ntake);
		jw_num(w, "take_pages_median", d[k].take_pages, 0);
		bench_lat_json(w, "sync_harvest_same_interval", d[k].sync, d[k].nsync);
		jw_num(w, "sync_pages_median", d[k].sync_pages, 0);
		bench_lat_json(w, "harvest_per_period", d[k].period, d[k].nperiod);
		jw_num(w, "period_pages_median", d[k].period_pages, 0);
		jw_close(w, '}');
		free(d[k].take);
		free(d[k].take_harvest);
		free(d[k].sync);
		free(d[k].period);
	}
	jw_close(w, ']');
	jw_num(w, "target_take_p99_ms", 1, 0);

	jw_open(w, "fixed_dirty_set", '{');
	jw_str(w, "workload", "1 vCPU rewrites the same 1000 pages between harvests, paused");
	jw_open(w, "sizes", '[');
	for (int k = 0; k < x->nsizes; k++) {
		const char *names[3] = {"bitmap_sparse_ms", "bitmap_populated_ms", "ring_ms"};
		jw_open(w, NULL, '{');
		jw_str(w, "mem", mem[k]);
		for (int j = 0; j < 3; j++) {
			char why[256] = "";
			double pages = NAN;
			fprintf(stderr, "dirtylog: fixed dirty set, %s, %s\n", mem[k], names[j]);
			double ms = bench_dl_fixed(mem[k], j == 2 ? "ring" : "bitmap", j == 1,
			                           &pages, why, sizeof(why));
			jw_num(w, names[j], ms, 3);
			if (j == 2)
				jw_num(w, "pages", pages, 0);
			if (why[0]) {
				char k2[48];
				snprintf(k2, sizeof(k2), "%s_error", names[j]);
				jw_str(w, k2, why);
				rc = -1;
			}
		}
		jw_close(w, '}');
	}
	jw_close(w, ']');
	jw_close(w, '}');
	if (top)
		bench_load_end_json(w);
	jw_close(w, '}');
	return rc;
}

/* ---- converge: issue 6, auto-converge against a capped link ---- */

#define BENCH_CV_GUEST "simvm:mem=256M,vcpus=2,fill=random,workload=memtouch:ws=128M,pattern=random"
#define BENCH_CV_NMODES 4
static const char *const bench_cv_modes[BENCH_CV_NMODES] = {"off", "step", "qemu", "rate"};

/* One migration of the converge scenario, read from the sender's summary. */
struct cv_run {
	int measured;  /* tern gave an outcome: completed, or aborted with the source running */
	int completed; /* outcome completed, both processes exited 0 */
	char outcome[16];
	double iterations, total_ms, throttle_pct, throttle_max_pct, downtime_ms;
	double expected_downtime_ms, switchover_retries, wall_ms, warm_ms;
	int stalled;
	char stall_reason[256];
	char error[768]; /* a run that did not complete: tern's error line, or the bench's */
};

/* The string value of "name":"..." in json, backslash escapes undone. */
static void
bench_json_strval(const char *json, const char *name, char *out, size_t len)
{
	char key[64];
	size_t n = 0;
	out[0] = '\0';
	snprintf(key, sizeof(key), "\"%s\":\"", name);
	const char *p = json != NULL ? strstr(json, key) : NULL;
	if (p == NULL)
		return;
	for (p += strlen(key); *p && *p != '"' && n + 1 < len; p++) {
		if (*p == '\\' && p[1] != '\0')
			p++;
		out[n++] = *p;
	}
	out[n] = '\0';
}

/* The last line of s that mentions "failed" (tern's error), else its last line. */
static void
bench_err_line(const char *s, char *out, size_t len)
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
bench_cv_once(const struct bench_opts *o, const char *guest, struct cv_run *cv)
{
	struct run_result r;

	memset(cv, 0, sizeof(*cv));
	bench_migrate_once(o, guest, &r);
	const char *js = r.src_json;
	cv->wall_ms = r.wall_ms;
	cv->warm_ms = r.warm_ms;
	bench_json_strval(js, "outcome", cv->outcome, sizeof(cv->outcome));
	cv->completed = r.ok;
	/* An abort is a result here (no convergence within --timeout), as long as
	 * tern said so itself: exit 1, a summary, the source guest still running. */
	cv->measured = r.ok || (strcmp(cv->outcome, "aborted") == 0 && r.src_exit == 1 &&
	                        json_num(js, "workload_ok") == 1);
	cv->iterations = js ? bench_field(js, "iterations") : NAN;
	cv->throttle_pct = js ? bench_field(js, "throttle_pct") : NAN;
	cv->throttle_max_pct = js ? bench_field(js, "throttle_max_pct") : NAN;
	cv->switchover_retries = js ? bench_field(js, "switchover_retries") : NAN;
	cv->stalled = js ? json_num(js, "stalled") == 1 : 0;
	bench_json_strval(js, "stall_reason", cv->stall_reason, sizeof(cv->stall_reason));
	/* Time and downtime mean something only for a migration that completed. */
	cv->total_ms = r.ok ? r.total_ms : NAN;
	cv->downtime_ms = r.ok ? r.downtime_ms : NAN;
	cv->expected_downtime_ms = r.ok && js ? bench_field(js, "expected_downtime_ms") : NAN;
	if (!r.ok) {
		char line[400];
		bench_err_line(r.src_err, line, sizeof(line));
		if (cv->measured)
			snprintf(cv->error, sizeof(cv->error), "%s", line);
		else
			snprintf(cv->error, sizeof(cv->error), "%s; source: %s", r.error, line);
	}
	free(r.src_json);
	free(r.dst_json);
}

/* The fields of one run, or their medians over the completed runs. */
static void
bench_cv_fields_json(struct jw *w, const struct cv_run *c, int decimals)
{
	jw_num(w, "iterations", c->iterations, decimals);
	jw_num(w, "total_ms", c->total_ms, 0);
	jw_num(w, "throttle_pct", c->throttle_pct, decimals);
	jw_num(w, "throttle_max_pct", c->throttle_max_pct, decimals);
	jw_num(w, "downtime_ms", c->downtime_ms, 0);
	jw_num(w, "expected_downtime_ms", c->expected_downtime_ms, 0);
	jw_num(w, "switchover_retries", c->switchover_retries, decimals);
}

/* Median over the completed runs of a mode; n_done how many there were. */
static void
bench_cv_median(const struct cv_run *runs, int n, struct cv_run *med, int *n_done)
{
	double v[64];
	n = n < 64 ? n : 64;
	memset(med, 0, sizeof(*med));
	*n_done = 0;
	for (int i = 0; i < n; i++)
		*n_done += runs[i].completed;
#define BENCH_CV_MED(field)                                                                        \
	do {                                                                                       \
		for (int i = 0; i < n; i++)                                                        \
			v[i] = runs[i].completed ? runs[i].field : NAN;                            \
		med->field = bench_median(v, n);                                                   \
	} while (0)
	BENCH_CV_MED(iterations);
	BENCH_CV_MED(total_ms);
	BENCH_CV_MED(throttle_pct);
	BENCH_CV_MED(throttle_max_pct);
	BENCH_CV_MED(downtime_ms);
	BENCH_CV_MED(expected_downtime_ms);
	BENCH_CV_MED(switchover_retries);
#undef BENCH_CV_MED
}

static int
bench_converge(struct jw *w, const char *key, const struct xopts *x, int top)
{
	const char *guest = x->guest ? x->guest : BENCH_CV_GUEST;
	const char *bw = x->max_bandwidth ? x->max_bandwidth : "50M";
	int n = x->runs, rc = 0;
	struct cv_run *cv = calloc((size_t)(BENCH_CV_NMODES * n), sizeof(*cv));
	struct tern_guest_config cfg;
	struct bench_opts o;
	char why[256], args[BENCH_CV_NMODES][128];

	if (cv == NULL)
		return -ENOMEM;
	bench_opts_from(&o, x);
	o.warm_bytes =
	    tern_guest_spec_parse(guest, &cfg, why, sizeof(why)) == 0 ? 2 * cfg.mem_size : 0;
	/* Modes alternate run by run, so that a drift of the machine hits all alike. */
	for (int i = 0; i < n; i++)
		for (int m = 0; m < BENCH_CV_NMODES; m++) {
			const char *sx[] = {"--max-bandwidth", bw, "--auto-converge",
			                    bench_cv_modes[m], NULL};
			struct cv_run *c = &cv[m * n + i];
			snprintf(args[m], sizeof(args[m]),
			         "--max-bandwidth %s --timeout %ds --auto-converge %s", bw,
			         x->timeout_s, bench_cv_modes[m]);
			o.send_extra = sx;
			fprintf(stderr, "converge: %s, run %d/%d\n", bench_cv_modes[m], i + 1, n);
			bench_cv_once(&o, guest, c);
			if (c->completed)
				fprintf(stderr,
				        "converge: %s: completed, %.0f iterations, %.0f ms, "
				        "throttle %.0f%% (max %.0f%%), downtime %.0f ms (expected "
				        "%.0f ms)\n",
				        bench_cv_modes[m], c->iterations, c->total_ms,
				        c->throttle_pct, c->throttle_max_pct, c->downtime_ms,
				        c->expected_downtime_ms);
			else
				fprintf(stderr, "converge: %s: %s: %s\n", bench_cv_modes[m],
				        c->measured ? "aborted" : "FAILED", c->error);
			if (!c->measured)
				rc = -1;
		}

	jw_open(w, key, '{');
	jw_str(w, "bench", "converge");
	if (top)
		bench_host_json(w);
	jw_str(w, "tern", x->tern);
	jw_str(w, "guest", guest);
	jw_str(w, "max_bandwidth", bw);
	jw_raw(w, "timeout_s", "%d", x->timeout_s);
	jw_raw(w, "runs_per_mode", "%d", n);
	jw_open(w, "modes", '[');
	double med_it[BENCH_CV_NMODES];
	int done[BENCH_CV_NMODES];
	for (int m = 0; m < BENCH_CV_NMODES; m++) {
		const struct cv_run *runs = &cv[m * n];
		struct cv_run med;
		double v[64];
		int nn = n < 64 ? n : 64, aborted = 0;
		bench_cv_median(runs, n, &med, &done[m]);
		med_it[m] = med.iterations;
		for (int i = 0; i < n; i++)
			aborted += runs[i].measured && !runs[i].completed;
		jw_open(w, NULL, '{');
		jw_str(w, "mode", bench_cv_modes[m]);
		jw_str(w, "send_args", args[m]);
		jw_raw(w, "runs_completed", "%d", done[m]);
		jw_raw(w, "runs_aborted", "%d", aborted);
		jw_raw(w, "runs_failed", "%d", n - done[m] - aborted);
		jw_open(w, "median", '{');
		bench_cv_fields_json(w, &med, 1);
		jw_close(w, '}');
		for (int i = 0; i < nn; i++)
			v[i] = runs[i].completed ? runs[i].total_ms : NAN;
		bench_stat_json(w, "total_ms", v, nn, 0);
		for (int i = 0; i < nn; i++)
			v[i] = runs[i].warm_ms;
		bench_stat_json(w, "warm_ms", v, nn, 0);
		jw_open(w, "runs", '[');
		for (int i = 0; i < n; i++) {
			const struct cv_run *c = &runs[i];
			jw_open(w, NULL, '{');
			jw_raw(w, "run", "%d", i + 1);
			jw_str(w, "outcome",
			       c->completed  ? "completed"
			       : c->measured ? "aborted"
			                     : "failed");
			bench_cv_fields_json(w, c, 0);
			jw_num(w, "wall_ms", c->wall_ms, 0);
			jw_raw(w, "stalled", "%s", c->stalled ? "true" : "false");
			jw_str(w, "stall_reason", c->stall_reason);
			if (!c->completed)
				jw_str(w, "error", c->error);
			jw_close(w, '}');
		}
		jw_close(w, ']');
		jw_close(w, '}');
	}
	jw_close(w, ']');

	/* The issue's target, over the medians of the completed runs. */
	const int step = 1, rate = 3;
	char note[256];
	int held;
	if (done[rate] == 0) {
		held = 0;
		snprintf(note, sizeof(note), "rate did not converge within %d s", x->timeout_s);
	} else if (done[step] == 0) {
		held = 1;
		snprintf(note, sizeof(note),
		         "step did not converge within %d s; rate did in %.0f iterations",
		         x->timeout_s, med_it[rate]);
	} else {
		held = med_it[rate] < med_it[step];
		snprintf(note, sizeof(note), "median iterations: rate %.1f, step %.1f",
		         med_it[rate], med_it[step]);
	}
	jw_open(w, "target", '{');
	jw_str(w, "statement", "rate converges in fewer iterations than step");
	jw_raw(w, "held", "%s", held ? "true" : "false");
	jw_num(w, "rate_iterations_median", med_it[rate], 1);
	jw_num(w, "step_iterations_median", med_it[step], 1);
	jw_str(w, "note", note);
	jw_raw(w, "off_converged", "%s", done[0] ? "true" : "false");
	jw_close(w, '}');
	if (top)
		bench_load_end_json(w);
	jw_close(w, '}');
	free(cv);
	return rc;
}

/* ---- options of link, zero, dirtylog, trace, converge ---- */

static void
bench_xdefaults(struct xopts *x, const char *cmd, int small)
{
	memset(x, 0, sizeof(*x));
	x->size = small ? (512ull << 20) : (1ull << 30);
	x->streams[0] = 1, x->streams[1] = 2, x->streams[2] = 4, x->nstreams = 3;
	x->chunks[0] = 256 << 10, x->chunks[1] = 1 << 20, x->chunks[2] = 4 << 20, x->nchunks = 3;
	x->sizes[0] = 1ull << 30, x->sizes[1] = 4ull << 30, x->sizes[2] = 8ull << 30, x->nsizes = 3;
	x->runs = small && strcmp(cmd, "trace") != 0 ? 1 : 3;
	x->iperf_seconds = 2;
	x->timeout_s = 300;
	x->modes = "detect,skip-unpopulated,off";
	x->sparse_mem = 1ull << 40;
	x->sparse_data = small ? (512ull << 20) : (1ull << 30);
	x->takes = small ? 50 : 100;
	x->interval_ms = 50;
	x->period_ms = 30;
	if (strcmp(cmd, "trace") == 0)
		x->size = 1ull << 30;
	if (strcmp(cmd, "converge") == 0)
		x->timeout_s = 40; /* the scenario's: a guest that never converges gives up */
}

static void
bench_xusage(FILE *f)
{
	fprintf(
	    f,
	    "usage: tern-bench link     [--size 1G] [--streams 1,2,4] [--chunks 256K,1M,4M]\n"
	    "                           [--runs 3] [--iperf-seconds 2] [--no-delay]\n"
	    "       tern-bench zero     [--size 1G] [--modes detect,skip-unpopulated,off]\n"
	    "                           [--sparse-mem 1T] [--sparse-data 1G] [--runs 3]\n"
	    "       tern-bench dirtylog [--sizes 1G,4G,8G] [--takes 100] [--interval-ms 50]\n"
	    "                           [--period-ms 30]\n"
	    "       tern-bench trace    [--size 1G] [--runs 3]\n"
	    "       tern-bench converge [--runs 3] [--guest SPEC] [--max-bandwidth 50M]\n"
	    "                           [--timeout 40s]\n"
	    "  (each also takes --tern PATH and --timeout SECONDS (300; converge: 40))\n"
	    "\n"
	    "link      issue 4: per P streams, iperf3 -P P -l 1M; the simplest correct copy (a\n"
	    "          memfd of --size random bytes sent over P TCP streams, plain send() from\n"
	    "          the mapping, into a fresh memfd the receiver fallocates and populates\n"
	    "          first); tern migrating simvm:mem=SIZE,fill=random over P connections.\n"
	    "          Then tern with each --chunks size (1 connection), and through tern-relay\n"
	    "          at 1 ms RTT with 1 and 4 connections against seed 004's stop-and-wait\n"
	    "          bound (--no-delay skips those).  The issue's size: --size 4G.\n"
	    "zero      issue 5: tern_page_is_zero vs a plain read on 1 GiB of populated zero\n"
	    "          pages (one core); an idle guest of --size with fill=zero, 50 and random\n"
	    "          in every --modes; --sparse-mem with only --sparse-data random against a\n"
	    "          dense --sparse-data guest.  The issue's size: --size 4G.\n"
	    "dirtylog  issue 3, in process: per guest size (fill=zero, memtouch ws=256M,\n"
	    "          rate=200M, 2 vCPUs): DIRTY_TAKE request-to-reply latency through the\n"
	    "          DirtyLogActor (harvesting every --period-ms) at about --interval-ms,\n"
	    "          against synchronous harvests at the same interval and at the period;\n"
	    "          then bitmap (sparse, populated) vs ring harvest of a fixed dirty set.\n"
	    "trace     tracing overhead: idle 1G fill=random and the demo guest, without and\n"
	    "          with --trace on both sides, runs alternating.\n"
	    "converge  issue 6: a guest dirtying memory faster than --max-bandwidth lets\n"
	    "          the link carry, by default\n"
	    "          " BENCH_CV_GUEST ",\n"
	    "          migrated with --auto-converge off, step, qemu and rate, runs\n"
	    "          alternating; per run and median: outcome, iterations, total_ms,\n"
	    "          throttle %% at switchover and max, achieved vs expected downtime,\n"
	    "          switchover retries, stall reason.  Target: rate converges in\n"
	    "          fewer iterations than step.\n"
	    "\n"
	    "Before every migration or copy the page allocator is warmed (2x the guest\n"
	    "size touched and freed; warm_ms in the output): see docs/bench.md.\n");
}

static int
bench_list_sizes(const char *s, uint64_t *out, int max, int *n)
{
	char buf[256];
	snprintf(buf, sizeof(buf), "%s", s);
	*n = 0;
	for (char *save = NULL, *t = strtok_r(buf, ",", &save); t != NULL;
	     t = strtok_r(NULL, ",", &save)) {
		if (*n == max || tern_parse_size(t, &out[*n]) != 0 || out[*n] == 0)
			return -EINVAL;
		(*n)++;
	}
	return *n > 0 ? 0 : -EINVAL;
}

static int
bench_xparse(int argc, char **argv, const char *cmd, struct xopts *x, const char **tern)
{
	enum {
		X_SIZE = 300,
		X_STREAMS,
		X_CHUNKS,
		X_RUNS,
		X_IPERF,
		X_TERN,
		X_TIMEOUT,
		X_NODELAY,
		X_MODES,
		X_SMEM,
		X_SDATA,
		X_SIZES,
		X_TAKES,
		X_INTERVAL,
		X_PERIOD,
		X_GUEST,
		X_MAXBW,
		X_HELP
	};
	static const struct option lo[] = {
	    {"size", required_argument, NULL, X_SIZE},
	    {"streams", required_argument, NULL, X_STREAMS},
	    {"chunks", required_argument, NULL, X_CHUNKS},
	    {"runs", required_argument, NULL, X_RUNS},
	    {"iperf-seconds", required_argument, NULL, X_IPERF},
	    {"tern", required_argument, NULL, X_TERN},
	    {"timeout", required_argument, NULL, X_TIMEOUT},
	    {"no-delay", no_argument, NULL, X_NODELAY},
	    {"modes", required_argument, NULL, X_MODES},
	    {"sparse-mem", required_argument, NULL, X_SMEM},
	    {"sparse-data", required_argument, NULL, X_SDATA},
	    {"sizes", required_argument, NULL, X_SIZES},
	    {"takes", required_argument, NULL, X_TAKES},
	    {"interval-ms", required_argument, NULL, X_INTERVAL},
	    {"period-ms", required_argument, NULL, X_PERIOD},
	    {"guest", required_argument, NULL, X_GUEST},
	    {"max-bandwidth", required_argument, NULL, X_MAXBW},
	    {"help", no_argument, NULL, X_HELP},
	    {NULL, 0, NULL, 0},
	};
	uint64_t tmp[8];
	int opt, n;
	char secs[32], why[256];
	struct tern_guest_config cfg;

	bench_xdefaults(x, cmd, 0);
	optind = 1;
	while ((opt = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		switch (opt) {
		case X_SIZE:
			if (tern_parse_size(optarg, &x->size) != 0 || x->size < (1u << 20) ||
			    x->size % (1u << 20))
				return bench_bad_usage("bad --size '%s': a multiple of 1M", optarg);
			break;
		case X_STREAMS:
			if (bench_list_sizes(optarg, tmp, 8, &n) != 0)
				return bench_bad_usage("bad --streams '%s': e.g. 1,2,4", optarg);
			for (int i = 0; i < n; i++) {
				if (tmp[i] > 8)
					return bench_bad_usage("bad --streams '%s': 1..8 each",
					                       optarg);
				x->streams[i] = (int)tmp[i];
			}
			x->nstreams = n;
			break;
		case X_CHUNKS:
			if (bench_list_sizes(optarg, x->chunks, 8, &x->nchunks) != 0)
				return bench_bad_usage("bad --chunks '%s': e.g. 256K,1M,4M",
				                       optarg);
			break;
		case X_SIZES:
			if (bench_list_sizes(optarg, x->sizes, 8, &x->nsizes) != 0)
				return bench_bad_usage("bad --sizes '%s': e.g. 1G,4G,8G", optarg);
			break;
		case X_SMEM:
			if (tern_parse_size(optarg, &x->sparse_mem) != 0 || x->sparse_mem == 0)
				return bench_bad_usage("bad --sparse-mem '%s'", optarg);
			break;
		case X_SDATA:
			if (tern_parse_size(optarg, &x->sparse_data) != 0 || x->sparse_data == 0)
				return bench_bad_usage("bad --sparse-data '%s'", optarg);
			break;
		case X_RUNS:
			if (bench_int(optarg, 1, 64, &x->runs) != 0)
				return bench_bad_usage("bad --runs '%s': 1..64", optarg);
			break;
		case X_IPERF:
			if (bench_int(optarg, 1, 600, &x->iperf_seconds) != 0)
				return bench_bad_usage("bad --iperf-seconds '%s': 1..600", optarg);
			break;
		case X_TIMEOUT:
			/* "40" or "40s", as tern send takes it */
			snprintf(secs, sizeof(secs), "%s", optarg);
			if (strlen(secs) > 1 && secs[strlen(secs) - 1] == 's')
				secs[strlen(secs) - 1] = '\0';
			if (bench_int(secs, 1, 86400, &x->timeout_s) != 0)
				return bench_bad_usage("bad --timeout '%s': 1..86400", optarg);
			break;
		case X_TAKES:
			if (bench_int(optarg, 1, 100000, &x->takes) != 0)
				return bench_bad_usage("bad --takes '%s': 1..100000", optarg);
			break;
		case X_INTERVAL:
			if (bench_int(optarg, 1, 10000, &x->interval_ms) != 0)
				return bench_bad_usage("bad --interval-ms '%s': 1..10000", optarg);
			break;
		case X_PERIOD:
			if (bench_int(optarg, 1, 10000, &x->period_ms) != 0)
				return bench_bad_usage("bad --period-ms '%s': 1..10000", optarg);
			break;
		case X_NODELAY:
			x->no_delay = 1;
			break;
		case X_GUEST:
			if (strcmp(cmd, "converge") != 0)
				return bench_bad_usage("--guest: only for converge here%s", "");
			if (tern_guest_spec_parse(optarg, &cfg, why, sizeof(why)) != 0)
				return bench_bad_usage("bad --guest: %s", why);
			x->guest = optarg;
			break;
		case X_MAXBW:
			if (tern_parse_size(optarg, &tmp[0]) != 0 || tmp[0] < 4096)
				return bench_bad_usage("bad --max-bandwidth '%s': e.g. 50M",
				                       optarg);
			x->max_bandwidth = optarg;
			break;
		case X_MODES:
			x->modes = optarg;
			break;
		case X_TERN:
			*tern = optarg;
			break;
		case X_HELP:
		case 'h':
			bench_xusage(stdout);
			exit(0);
		default:
			return bench_bad_usage("%s", "unknown option");
		}
	}
	if (optind < argc)
		return bench_bad_usage("unexpected argument '%s'", argv[optind]);
	if (x->sparse_data > x->sparse_mem)
		return bench_bad_usage("--sparse-data larger than --sparse-mem%s", "");
	return 0;
}

/* Runs one of the new subcommands. */
static int
bench_xrun(struct jw *w, const char *key, const char *cmd, const struct xopts *x, int top)
{
	if (strcmp(cmd, "link") == 0)
		return bench_link(w, key, x, top);
	if (strcmp(cmd, "zero") == 0)
		return bench_zero(w, key, x, top);
	if (strcmp(cmd, "dirtylog") == 0)
		return bench_dirtylog(w, key, x, top);
	if (strcmp(cmd, "converge") == 0)
		return bench_converge(w, key, x, top);
	return bench_trace(w, key, x, top);
}

/* ---- command line ---- */

static void
bench_usage(FILE *f)
{
	fprintf(
	    f,
	    "usage: tern-bench machine [--iperf-seconds N]\n"
	    "       tern-bench migrate [options]\n"
	    "       tern-bench all [options]\n"
	    "\n"
	    "tern's benchmark driver.  Every figure is measured against this machine's own\n"
	    "limits in the same run.  Prints one JSON object on stdout; progress on stderr.\n"
	    "\n"
	    "machine   this machine's limits:\n"
	    "          - memory read, memcpy and all-zero-page-check bandwidth on a 1 GiB\n"
	    "            populated anonymous buffer (4 KiB pages, one core, best of %d);\n"
	    "          - page-population cost per 4 KiB page on %llu MiB (best of %d): first\n"
	    "            write to fresh memfd pages, MADV_POPULATE_WRITE on a memfd, fallocate\n"
	    "            then MADV_POPULATE_WRITE, first write to anonymous MADV_HUGEPAGE memory;\n"
	    "          - loopback TCP: iperf3 -l 1M with 1, 2 and 4 streams (\"iperf3\": null\n"
	    "            with a reason when iperf3 is not installed).\n"
	    "migrate   R real migrations, `tern receive` and `tern send` as two processes over\n"
	    "          loopback; per run and median: total_ms, downtime_ms, payload bytes,\n"
	    "          throughput (payload / total time) and its ratios to a single-stream\n"
	    "          iperf3 rate and memcpy bandwidth measured first in the same run, and the\n"
	    "          CPU time (user, sys) of each process.\n"
	    "link, zero, dirtylog, trace, converge\n"
	    "          the benchmarks of issues 4, 5, 3 and 6 and the tracing overhead: see\n"
	    "          `tern-bench link --help` (each has its own options).\n"
	    "all       machine, then migrate with the default guest, then migrate with\n"
	    "          " BENCH_DEMO_GUEST "\n"
	    "          (the migrations use the machine figures as their baseline), then\n"
	    "          link, zero, dirtylog, trace and converge (one run per mode) at\n"
	    "          small sizes (~12 min in all).\n"
	    "\n"
	    "options:\n"
	    "  --iperf-seconds N   iperf3 duration per run (machine, all: 3; migrate baseline: 2)\n"
	    "  --guest SPEC        guest to migrate (migrate only; " BENCH_DEFAULT_GUEST ")\n"
	    "  --connections N     passed to tern send (tern's default: 1)\n"
	    "  --chunk-size SIZE   passed to tern send (tern's default: 1M)\n"
	    "  --runs R            migrations per guest (3)\n"
	    "  --verify            pass --verify to tern send (digest check at switchover)\n"
	    "  --tern PATH         the tern binary (the `tern` next to tern-bench)\n"
	    "  --no-baseline       migrate: skip the memcpy/iperf3 baseline (ratios null)\n"
	    "  --timeout SECONDS   per migration, passed to tern send as --timeout (300)\n"
	    "  -h, --help          this text\n"
	    "\n"
	    "Exit status: 0 all measured, 1 a migration failed (reported in the JSON),\n"
	    "2 bad usage.  See docs/bench.md for what each figure means.\n",
	    BENCH_REPEATS, BENCH_POP_BYTES >> 20, BENCH_REPEATS);
}

static int
bench_bad_usage(const char *fmt, const char *arg)
{
	fprintf(stderr, "tern-bench: ");
	fprintf(stderr, fmt, arg);
	fprintf(stderr, "\nTry 'tern-bench --help'.\n");
	return 2;
}

enum {
	OPT_IPERF = 256,
	OPT_GUEST,
	OPT_CONNS,
	OPT_CHUNK,
	OPT_RUNS,
	OPT_VERIFY,
	OPT_TERN,
	OPT_NO_BASELINE,
	OPT_TIMEOUT,
	OPT_HELP,
};

static const struct option bench_long_opts[] = {
    {"iperf-seconds", required_argument, NULL, OPT_IPERF},
    {"guest", required_argument, NULL, OPT_GUEST},
    {"connections", required_argument, NULL, OPT_CONNS},
    {"chunk-size", required_argument, NULL, OPT_CHUNK},
    {"runs", required_argument, NULL, OPT_RUNS},
    {"verify", no_argument, NULL, OPT_VERIFY},
    {"tern", required_argument, NULL, OPT_TERN},
    {"no-baseline", no_argument, NULL, OPT_NO_BASELINE},
    {"timeout", required_argument, NULL, OPT_TIMEOUT},
    {"help", no_argument, NULL, OPT_HELP},
    {NULL, 0, NULL, 0},
};

static int
bench_int(const char *s, long lo, long hi, int *out)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi)
		return -EINVAL;
	*out = (int)v;
	return 0;
}

static int
bench_parse(int argc, char **argv, const char *cmd, struct bench_opts *o)
{
	int opt, n;
	uint64_t sz;
	char why[256];
	struct tern_guest_config cfg;
	int machine = strcmp(cmd, "machine") == 0, all = strcmp(cmd, "all") == 0;

	optind = 1;
	while ((opt = getopt_long(argc, argv, "h", bench_long_opts, NULL)) != -1) {
		if (machine && opt != OPT_IPERF && opt != OPT_HELP && opt != 'h' && opt != '?')
			return bench_bad_usage("'machine' takes only --iperf-seconds%s", "");
		switch (opt) {
		case OPT_IPERF:
			if (bench_int(optarg, 1, 600, &o->iperf_seconds) != 0)
				return bench_bad_usage("bad --iperf-seconds '%s': 1..600", optarg);
			break;
		case OPT_GUEST:
			if (all)
				return bench_bad_usage("'all' migrates its own two guests%s", "");
			if (tern_guest_spec_parse(optarg, &cfg, why, sizeof(why)) != 0)
				return bench_bad_usage("bad --guest: %s", why);
			o->guest = optarg;
			break;
		case OPT_CONNS:
			if (bench_int(optarg, 1, TERN_MAX_CONNECTIONS, &n) != 0)
				return bench_bad_usage("bad --connections '%s': must be 1..64",
				                       optarg);
			o->connections = optarg;
			break;
		case OPT_CHUNK:
			if (tern_parse_size(optarg, &sz) != 0 || sz < BENCH_PAGE ||
			    sz > (32ull << 20) || sz % BENCH_PAGE)
				return bench_bad_usage(
				    "bad --chunk-size '%s': 4K..32M, page multiple", optarg);
			o->chunk_size = optarg;
			break;
		case OPT_RUNS:
			if (bench_int(optarg, 1, 64, &o->runs) != 0)
				return bench_bad_usage("bad --runs '%s': 1..64", optarg);
			break;
		case OPT_VERIFY:
			o->verify = 1;
			break;
		case OPT_TERN:
			o->tern = optarg;
			break;
		case OPT_NO_BASELINE:
			o->no_baseline = 1;
			break;
		case OPT_TIMEOUT:
			if (bench_int(optarg, 1, 86400, &o->timeout_s) != 0)
				return bench_bad_usage("bad --timeout '%s': seconds, 1..86400",
				                       optarg);
			break;
		case OPT_HELP:
		case 'h':
			bench_usage(stdout);
			exit(0);
		default:
			return bench_bad_usage("%s", "unknown option");
		}
	}
	if (optind < argc)
		return bench_bad_usage("unexpected argument '%s'", argv[optind]);
	return 0;
}

/* dirname(/proc/self/exe)/tern: the tern built with this tern-bench. */
static int
bench_default_tern(char *out, size_t len)
{
	char self[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n <= 0)
		return -errno;
	self[n] = '\0';
	char *slash = strrchr(self, '/');
	if (slash == NULL)
		return -ENOENT;
	*slash = '\0';
	return snprintf(out, len, "%s/tern", self) < (int)len ? 0 : -ENAMETOOLONG;
}

int
main(int argc, char **argv)
{
	struct bench_opts o = {.runs = 3, .timeout_s = 300};
	char tern_path[PATH_MAX];
	struct jw w = {.f = stdout, .first = 1};
	int rc = 0;

	if (argc < 2) {
		bench_usage(stderr);
		return 2;
	}
	const char *cmd = argv[1];
	if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
		bench_usage(stdout);
		fputs("\n", stdout);
		bench_xusage(stdout);
		return 0;
	}
	int xcmd = strcmp(cmd, "link") == 0 || strcmp(cmd, "zero") == 0 ||
	           strcmp(cmd, "dirtylog") == 0 || strcmp(cmd, "trace") == 0 ||
	           strcmp(cmd, "converge") == 0;
	struct xopts x;
	if (!xcmd && strcmp(cmd, "machine") != 0 && strcmp(cmd, "migrate") != 0 &&
	    strcmp(cmd, "all") != 0)
		return bench_bad_usage("unknown command '%s' (machine, migrate, link, zero, "
		                       "dirtylog, trace, converge, all)",
		                       cmd);
	rc = xcmd ? bench_xparse(argc - 1, argv + 1, cmd, &x, &o.tern)
	          : bench_parse(argc - 1, argv + 1, cmd, &o);
	if (rc != 0)
		return rc;
	if (o.tern == NULL) {
		if (bench_default_tern(tern_path, sizeof(tern_path)) != 0)
			return bench_bad_usage("%s",
			                       "cannot find tern next to tern-bench; use --tern");
		o.tern = tern_path;
	}
	if (strcmp(cmd, "machine") != 0 && access(o.tern, X_OK) != 0)
		return bench_bad_usage("no executable tern at '%s' (use --tern PATH)", o.tern);

	bench_load_start = bench_loadavg();
	struct sigaction sa = {.sa_handler = bench_on_signal};
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	if (xcmd) {
		x.tern = o.tern;
		rc = bench_xrun(&w, NULL, cmd, &x, 1) == 0 ? 0 : 1;
	} else if (strcmp(cmd, "machine") == 0) {
		struct machine *m = calloc(1, sizeof(*m));
		if (m == NULL)
			return 1;
		bench_machine_measure(m, o.iperf_seconds ? o.iperf_seconds : 3);
		bench_machine_json(&w, NULL, m, 1);
		free(m);
	} else if (strcmp(cmd, "migrate") == 0) {
		struct baseline b;
		bench_baseline(&b, &o);
		if (o.guest == NULL)
			o.guest = BENCH_DEFAULT_GUEST;
		rc = bench_migrate(&w, NULL, &o, o.guest, &b, 1) == 0 ? 0 : 1;
	} else {
		struct machine *m = calloc(1, sizeof(*m));
		struct baseline b = {.have = 1};
		if (m == NULL)
			return 1;
		bench_machine_measure(m, o.iperf_seconds ? o.iperf_seconds : 3);
		/* The migrations are compared with the limits just measured. */
		b.memcpy_bps = m->mem.memcpy_bps;
		b.iperf_bps = m->iperf.ok ? m->iperf.runs[0].bps : NAN;
		if (!m->iperf.ok)
			snprintf(b.why, sizeof(b.why), "%s", m->iperf.why);
		jw_open(&w, NULL, '{');
		jw_str(&w, "bench", "all");
		bench_host_json(&w);
		bench_machine_json(&w, "machine", m, 0);
		free(m);
		jw_open(&w, "migrate", '[');
		if (bench_migrate(&w, NULL, &o, BENCH_DEFAULT_GUEST, &b, 0) != 0)
			rc = 1;
		if (bench_migrate(&w, NULL, &o, BENCH_DEMO_GUEST, &b, 0) != 0)
			rc = 1;
		jw_close(&w, ']');
		/* The issue benchmarks at small sizes, so that all stays under ~10 min. */
		static const char *const xs[] = {"link", "zero", "dirtylog", "trace", "converge"};
		for (int i = 0; i < 5; i++) {
			bench_xdefaults(&x, xs[i], 1);
			x.tern = o.tern;
			/* converge keeps its own 40 s: its off mode runs into it by design. */
			if (strcmp(xs[i], "converge") != 0)
				x.timeout_s = o.timeout_s;
			if (bench_xrun(&w, xs[i], xs[i], &x, 0) != 0)
				rc = 1;
		}
		bench_load_end_json(&w);
		jw_close(&w, '}');
	}
	fputs("\n", stdout);
	return rc;
}
