/*
 * `machine`: this machine's limits, measured in the same run as what is
 * compared with them (docs/bench.md): memory bandwidth and the zero-page
 * check, page population, loopback TCP by iperf3.  Also the baseline of
 * `migrate` (memcpy and one iperf3 stream).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tools/bench/bench.h"
/* proc.h names a default tern for the tests; tern-bench finds its own. */
#ifndef TERN_CLI_PATH
#define TERN_CLI_PATH "tern"
#endif
#include "tests/proc.h"

/* ---- (a) memory bandwidth ---- */

typedef uint64_t bench_v2 __attribute__((vector_size(16)));
volatile uint64_t bench_sink;

/* Anonymous memory with every page-table entry installed, in 4 KiB pages as
 * tern's memfd guests use (no THP, even where THP is "always"). */
uint8_t *
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

uint64_t
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

/* An all-zero page is the worst case of the zero check (the whole page is
 * read), hence a buffer of zero pages. */
void
bench_memory(struct bench_mem *m, int quick)
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

void
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

static const int bench_iperf_streams[BENCH_IPERF_MAX_P] = {1, 2, 4};

int
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

/* What one iperf3 -J client reported: end.sum_received.bits_per_second
 * (NaN if absent) and its "error" ("" if none). */
static double
bench_iperf_parse(const json_t *report, const char **error)
{
	json_t *e = json_object_get(report, "error");
	json_t *bps = json_object_get(
	    json_object_get(json_object_get(report, "end"), "sum_received"), "bits_per_second");
	*error = json_is_string(e) ? json_string_value(e) : "";
	return json_is_number(bps) ? json_number_value(bps) : NAN;
}

double
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
		const char *error = "";
		json_t *report = json_loads(cli->outbuf, 0, NULL);
		bps = bench_iperf_parse(report, &error);
		/* Before the server listens: retry.  (iperf 3.12 may exit 0 then.) */
		if (strstr(error, "Connection refused") != NULL ||
		    (report == NULL && strstr(cli->outbuf, "Connection refused") != NULL)) {
			json_decref(report);
			bps = NAN;
			usleep(100000);
			continue;
		}
		if (proc_exit_code(cli) != 0 || !isfinite(bps)) {
			if (error[0])
				snprintf(why, whylen, "iperf3: %s", error);
			else if (proc_exit_code(cli) == 0)
				snprintf(why, whylen,
				         "no end.sum_received.bits_per_second in iperf3's output");
			else
				snprintf(why, whylen, "iperf3 exited %d: %.200s",
				         proc_exit_code(cli), cli->errbuf);
			bps = NAN;
		}
		json_decref(report);
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

void
bench_iperf(struct bench_iperf *r, int seconds, int nparallel)
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

/* ---- the report ---- */

static void
bench_memory_json(json_t *report, const struct bench_mem *mem)
{
	json_t *o = bench_set_obj(report, "memory");
	bench_set_int(o, "buffer_bytes", BENCH_MEM_BYTES);
	bench_set_int(o, "best_of", BENCH_REPEATS);
	if (mem->why[0])
		bench_set_str(o, "error", mem->why);
	bench_set_num(o, "read_bytes_per_s", mem->read_bps, 0);
	bench_set_num(o, "memcpy_bytes_per_s", mem->memcpy_bps, 0);
	bench_set_num(o, "zero_check_bytes_per_s", mem->zero_bps, 0);
	bench_set_num(o, "zero_check_pages_per_s", mem->zero_bps / BENCH_PAGE, 0);
}

static void
bench_populate_json(json_t *report, const struct pop_result *pop)
{
	json_t *o = bench_set_obj(report, "populate");
	bench_set_int(o, "region_bytes", BENCH_POP_BYTES);
	bench_set_int(o, "best_of", BENCH_REPEATS);
	double pages = (double)(BENCH_POP_BYTES / BENCH_PAGE);
	for (int k = 0; k < POP_N; k++) {
		const struct pop_result *r = &pop[k];
		json_t *p = bench_set_obj(o, pop_names[k]);
		if (!r->ok) {
			bench_set_str(p, "error", r->why);
			continue;
		}
		bench_set_num(p, "us_per_page", r->secs * 1e6 / pages, 3);
		bench_set_num(p, "bytes_per_s", (double)BENCH_POP_BYTES / r->secs, 0);
		if (k == POP_MEMFD_FALLOCATE) {
			bench_set_num(p, "fallocate_us_per_page", r->fallocate_secs * 1e6 / pages,
			              3);
			bench_set_num(p, "populate_us_per_page", r->populate_secs * 1e6 / pages, 3);
		}
		if (k == POP_ANON_THP)
			bench_set_int(p, "thp_bytes", (long long)r->thp_bytes);
	}
}

static void
bench_iperf_json(json_t *report, const struct bench_iperf *ip)
{
	if (!ip->ok) {
		bench_set(report, "iperf3", json_null());
		bench_set_str(report, "iperf3_reason", ip->why);
		return;
	}
	json_t *o = bench_set_obj(report, "iperf3");
	bench_set_str(o, "path", ip->path);
	bench_set_int(o, "seconds", ip->seconds);
	bench_set_str(o, "write_length", "1M");
	json_t *runs = bench_set_arr(o, "runs");
	for (int i = 0; i < ip->n; i++) {
		json_t *r = bench_push_obj(runs);
		bench_set_int(r, "parallel", ip->runs[i].parallel);
		bench_set_num(r, "bits_per_s", ip->runs[i].bps, 0);
		bench_set_num(r, "gbit_per_s", ip->runs[i].bps / 1e9, 2);
		if (ip->runs[i].why[0])
			bench_set_str(r, "error", ip->runs[i].why);
	}
}

int
bench_machine_run(const struct bench_cfg *cfg, json_t *report, struct bench_baseline *b)
{
	struct bench_mem mem;
	struct pop_result pop[POP_N];
	struct bench_iperf *ip = calloc(1, sizeof(*ip));
	if (ip == NULL)
		return -1;
	fprintf(stderr, "machine: memory read / memcpy / zero-page check, 1 GiB, best of %d\n",
	        BENCH_REPEATS);
	bench_memory(&mem, 0);
	bench_populate(pop);
	bench_iperf(ip, cfg->iperf_seconds ? cfg->iperf_seconds : 3, BENCH_IPERF_MAX_P);
	bench_memory_json(report, &mem);
	bench_populate_json(report, pop);
	bench_iperf_json(report, ip);
	if (b != NULL) {
		/* `all` compares its migrations with the limits just measured. */
		memset(b, 0, sizeof(*b));
		b->have = 1;
		b->memcpy_bps = mem.memcpy_bps;
		b->iperf_bps = ip->ok ? ip->runs[0].bps : NAN;
		if (!ip->ok)
			snprintf(b->why, sizeof(b->why), "%s", ip->why);
	}
	free(ip);
	return 0;
}

int
bench_machine(const struct bench_cfg *cfg, json_t *report)
{
	return bench_machine_run(cfg, report, NULL);
}

void
bench_baseline(struct bench_baseline *b, const struct bench_cfg *cfg)
{
	struct bench_mem mem;
	struct bench_iperf *ip = calloc(1, sizeof(*ip));
	int secs = cfg->iperf_seconds ? cfg->iperf_seconds : 2;

	memset(b, 0, sizeof(*b));
	b->iperf_bps = b->memcpy_bps = NAN;
	if (cfg->no_baseline || ip == NULL) {
		snprintf(b->why, sizeof(b->why), "%s", ip ? "--no-baseline" : "out of memory");
		free(ip);
		return;
	}
	b->have = 1;
	fprintf(stderr, "baseline: memcpy 1 GiB, best of %d\n", BENCH_REPEATS);
	bench_memory(&mem, 1);
	b->memcpy_bps = mem.memcpy_bps;
	bench_iperf(ip, secs, 1);
	if (!ip->ok)
		snprintf(b->why, sizeof(b->why), "%s", ip->why);
	else if (!isfinite(ip->runs[0].bps))
		snprintf(b->why, sizeof(b->why), "%s", ip->runs[0].why);
	b->iperf_bps = ip->ok ? ip->runs[0].bps : NAN;
	free(ip);
}
