/*
 * tern-bench: the project's benchmark driver (a separate program from the
 * tests, as in libuv).
 *
 *   tern-bench machine [--iperf-seconds N]
 *   tern-bench migrate [--guest SPEC] [--connections N] [--chunk-size S]
 *                      [--runs R] [--verify] [--tern PATH] [--no-baseline]
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
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
	               -1, 0);
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
		char *largv[] = {relay,        "--listen", "127.0.0.1:0", "--to", to, "--delay",
		                 (char *)o->relay_delay, "--ready-fd", "3", NULL};
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
	    "all       machine, then migrate with the default guest, then migrate with\n"
	    "          " BENCH_DEMO_GUEST "\n"
	    "          (the migrations use the machine figures as their baseline).\n"
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
		return 0;
	}
	if (strcmp(cmd, "machine") != 0 && strcmp(cmd, "migrate") != 0 && strcmp(cmd, "all") != 0)
		return bench_bad_usage("unknown command '%s' (machine, migrate, all)", cmd);
	rc = bench_parse(argc - 1, argv + 1, cmd, &o);
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

	if (strcmp(cmd, "machine") == 0) {
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
		bench_load_end_json(&w);
		jw_close(&w, '}');
	}
	fputs("\n", stdout);
	return rc;
}
