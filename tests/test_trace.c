/*
 * messages/trace: concurrent writers, reading back, truncated and corrupt
 * files.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "messages/trace.h"
#include "tern/error.h"

#define NTHREADS 4
#define PER_THREAD 2000

static char dir[64];

static void
setup(void)
{
	snprintf(dir, sizeof(dir), "/tmp/tern-trace-XXXXXX");
	cr_assert(mkdtemp(dir) != NULL);
}

static void
teardown(void)
{
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	cr_assert_eq(system(cmd), 0);
}

static void
path_of(char *out, size_t n, const char *name)
{
	snprintf(out, n, "%s/%s", dir, name);
}

/* expected fills the record thread `actor` writes as its i-th. */
static void
expected(struct tern_trace_record *r, uint32_t actor, uint64_t i)
{
	memset(r, 0, sizeof(*r));
	r->kind = 1 + (uint32_t)(i % 6);
	r->mono_ns = 1000000 + i;
	r->actor = actor;
	snprintf(r->actor_name, sizeof(r->actor_name), "worker-%u", actor);
	r->peer = actor + 100;
	r->type = TERN_MSG_CHUNK;
	r->seq = i;
	r->re = i * 3;
	r->value = UINT64_MAX - i;
	snprintf(r->text, sizeof(r->text), "t%u-%llu", actor, (unsigned long long)i);
}

static void
assert_record_eq(const struct tern_trace_record *a, const struct tern_trace_record *b)
{
	cr_assert_eq(a->kind, b->kind);
	cr_assert_eq(a->mono_ns, b->mono_ns);
	cr_assert_eq(a->actor, b->actor);
	cr_assert_str_eq(a->actor_name, b->actor_name);
	cr_assert_eq(a->peer, b->peer);
	cr_assert_eq(a->type, b->type);
	cr_assert_eq(a->seq, b->seq);
	cr_assert_eq(a->re, b->re);
	cr_assert_eq(a->value, b->value);
	cr_assert_str_eq(a->text, b->text);
}

struct writer {
	struct tern_trace *t;
	uint32_t actor;
	int rv;
	uv_thread_t tid;
};

static void
writer_main(void *arg)
{
	struct writer *w = arg;
	struct tern_trace_record r;

	for (uint64_t i = 0; i < PER_THREAD && w->rv == 0; i++) {
		expected(&r, w->actor, i);
		w->rv = tern_trace_write(w->t, &r);
	}
}

Test(trace, concurrent_writers, .init = setup, .fini = teardown)
{
	char path[128];
	struct tern_trace *t;
	struct writer w[NTHREADS];
	struct tern_trace_reader *rd;
	struct tern_trace_header h;
	struct tern_trace_record rec, want;
	uint64_t next[NTHREADS] = {0};
	int rv;

	path_of(path, sizeof(path), "t.trace");
	cr_assert_eq(tern_trace_open(&t, path, "source"), 0);
	for (int i = 0; i < NTHREADS; i++) {
		w[i] = (struct writer){.t = t, .actor = (uint32_t)i + 1};
		cr_assert_eq(uv_thread_create(&w[i].tid, writer_main, &w[i]), 0);
	}
	for (int i = 0; i < NTHREADS; i++) {
		cr_assert_eq(uv_thread_join(&w[i].tid), 0);
		cr_assert_eq(w[i].rv, 0);
	}
	tern_trace_close(t);

	cr_assert_eq(tern_trace_reader_open(&rd, path, &h), 0);
	cr_assert_str_eq(h.side, "source");
	cr_assert_eq(h.pid, getpid());
	cr_assert_gt(h.wall_ns, 1600000000ull * 1000000000ull);
	cr_assert_leq(h.mono_ns, tern_now_ns());
	size_t total = 0;
	while ((rv = tern_trace_reader_next(rd, &rec)) == 1) {
		cr_assert(rec.actor >= 1 && rec.actor <= NTHREADS, "actor %u", rec.actor);
		/* One thread's records appear in the order it wrote them. */
		uint64_t i = next[rec.actor - 1]++;
		expected(&want, rec.actor, i);
		assert_record_eq(&rec, &want);
		total++;
	}
	cr_assert_eq(rv, 0);
	cr_assert_eq(total, NTHREADS * PER_THREAD);
	for (int i = 0; i < NTHREADS; i++)
		cr_assert_eq(next[i], PER_THREAD);
	cr_assert_eq(tern_trace_reader_next(rd, &rec), 0); /* stays at the end */
	tern_trace_reader_close(rd);
}

Test(trace, counter_and_defaults, .init = setup, .fini = teardown)
{
	char path[128];
	struct tern_trace *t;
	struct tern_trace_reader *rd;
	struct tern_trace_record r, got;
	double v = 12345.678, back;
	uint64_t before = tern_now_ns();

	path_of(path, sizeof(path), "c.trace");
	cr_assert_eq(tern_trace_open(&t, path, "destination"), 0);
	cr_assert_eq(tern_trace_counter(t, 7, "dirty", "dirty_rate_pps", v), 0);
	memset(&r, 0, sizeof(r));
	r.kind = TERN_TRACE_STATE;
	memset(r.actor_name, 'n', sizeof(r.actor_name)); /* unterminated: truncated */
	snprintf(r.text, sizeof(r.text), "Iterate(3)");
	cr_assert_eq(tern_trace_write(t, &r), 0);
	tern_trace_close(t);

	cr_assert_eq(tern_trace_reader_open(&rd, path, NULL), 0);
	cr_assert_eq(tern_trace_reader_next(rd, &got), 1);
	cr_assert_eq(got.kind, TERN_TRACE_COUNTER);
	cr_assert_eq(got.actor, 7);
	cr_assert_str_eq(got.actor_name, "dirty");
	cr_assert_str_eq(got.text, "dirty_rate_pps");
	memcpy(&back, &got.value, sizeof(back));
	cr_assert_eq(back, v);
	cr_assert_geq(got.mono_ns, before); /* filled in when 0 */
	cr_assert_eq(tern_trace_reader_next(rd, &got), 1);
	cr_assert_eq(got.kind, TERN_TRACE_STATE);
	cr_assert_eq(strlen(got.actor_name), sizeof(got.actor_name) - 1);
	cr_assert_str_eq(got.text, "Iterate(3)");
	cr_assert_eq(tern_trace_reader_next(rd, &got), 0);
	tern_trace_reader_close(rd);
}

Test(trace, null_trace_is_a_noop)
{
	struct tern_trace_record r;

	memset(&r, 0, sizeof(r));
	cr_assert_eq(tern_trace_write(NULL, &r), 0);
	cr_assert_eq(tern_trace_counter(NULL, 1, "a", "b", 1.0), 0);
	tern_trace_close(NULL);
	tern_trace_reader_close(NULL);
}

static void *
slurp(const char *path, size_t *len)
{
	struct stat st;
	int fd = open(path, O_RDONLY);
	cr_assert(fd >= 0);
	cr_assert_eq(fstat(fd, &st), 0);
	void *b = malloc((size_t)st.st_size);
	cr_assert(b != NULL);
	cr_assert_eq(read(fd, b, (size_t)st.st_size), st.st_size);
	close(fd);
	*len = (size_t)st.st_size;
	return b;
}

static void
spit(const char *path, const void *b, size_t len)
{
	int fd = open(path, O_CREAT | O_TRUNC | O_WRONLY, 0644);
	cr_assert(fd >= 0);
	cr_assert_eq(write(fd, b, len), (ssize_t)len);
	close(fd);
}

static off_t
file_size(const char *path)
{
	struct stat st;
	cr_assert_eq(stat(path, &st), 0);
	return st.st_size;
}

/* count_records reads path and returns how many records it yields, with the
 * final return code in *end. */
static int
count_records(const char *path, int *end)
{
	struct tern_trace_reader *rd;
	struct tern_trace_record rec, want;
	int n = 0, rv;

	cr_assert_eq(tern_trace_reader_open(&rd, path, NULL), 0);
	while ((rv = tern_trace_reader_next(rd, &rec)) == 1) {
		expected(&want, 1, (uint64_t)n);
		assert_record_eq(&rec, &want);
		n++;
	}
	*end = rv;
	tern_trace_reader_close(rd);
	return n;
}

Test(trace, truncated_last_record, .init = setup, .fini = teardown)
{
	char path[128], cut[128];
	struct tern_trace *t;
	struct tern_trace_record r;
	enum { NREC = 5 };
	size_t start[NREC], len;
	int end;

	path_of(path, sizeof(path), "full.trace");
	path_of(cut, sizeof(cut), "cut.trace");
	cr_assert_eq(tern_trace_open(&t, path, "source"), 0);
	for (int i = 0; i < NREC; i++) {
		start[i] = (size_t)file_size(path);
		expected(&r, 1, (uint64_t)i);
		cr_assert_eq(tern_trace_write(t, &r), 0);
		cr_assert_eq(tern_trace_flush(t), 0); /* so that file_size finds the boundaries */
	}
	tern_trace_close(t);

	uint8_t *b = slurp(path, &len);
	cr_assert_gt(len, start[NREC - 1] + 10);
	for (size_t at = start[NREC - 1]; at < len; at++) {
		spit(cut, b, at);
		cr_assert_eq(count_records(cut, &end), NREC - 1, "cut at %zu", at);
		cr_assert_eq(end, 0);
	}
	spit(cut, b, len);
	cr_assert_eq(count_records(cut, &end), NREC);
	cr_assert_eq(end, 0);

	/* A bad record in the middle is corruption, not the end: a byte that
	 * is not msgpack, then a record of the wrong shape. */
	b[start[2]] = 0xc1;
	spit(cut, b, len);
	cr_assert_eq(count_records(cut, &end), 2);
	cr_assert_eq(end, TERN_EMSG);
	b[start[2]] = 0x99; /* array of 9 instead of 10 */
	spit(cut, b, len);
	cr_assert_eq(count_records(cut, &end), 2);
	cr_assert_eq(end, TERN_EMSG);
	free(b);
}

Test(trace, not_a_trace, .init = setup, .fini = teardown)
{
	char path[128];
	struct tern_trace_reader *rd = (void *)1;
	/* ["tern-trace", 2, ...] and ["tern-trade", 1, ...] */
	static const uint8_t v2[] = {0x96, 0xaa, 't', 'e',  'r',  'n', '-',  't',  'r',
	                             'a',  'c',  'e', 0x02, 0xa1, 's', 0x01, 0x01, 0x01};
	static const uint8_t wrong[] = {0x96, 0xaa, 't', 'e',  'r',  'n', '-',  't',  'r',
	                                'a',  'd',  'e', 0x01, 0xa1, 's', 0x01, 0x01, 0x01};
	static const uint8_t ok[] = {0x96, 0xaa, 't', 'e',  'r',  'n', '-',  't',  'r',
	                             'a',  'c',  'e', 0x01, 0xa1, 's', 0x01, 0x01, 0x01};

	path_of(path, sizeof(path), "x");
	spit(path, "hello, world\n", 13);
	cr_assert_eq(tern_trace_reader_open(&rd, path, NULL), TERN_EMSG);
	cr_assert_null(rd);
	spit(path, "", 0);
	cr_assert_eq(tern_trace_reader_open(&rd, path, NULL), TERN_EMSG);
	spit(path, wrong, sizeof(wrong));
	cr_assert_eq(tern_trace_reader_open(&rd, path, NULL), TERN_EMSG);
	spit(path, v2, sizeof(v2));
	cr_assert_eq(tern_trace_reader_open(&rd, path, NULL), TERN_EVERSION);
	spit(path, ok, sizeof(ok) - 1); /* truncated header */
	cr_assert_eq(tern_trace_reader_open(&rd, path, NULL), TERN_EMSG);
	spit(path, ok, sizeof(ok));
	cr_assert_eq(tern_trace_reader_open(&rd, path, NULL), 0);
	tern_trace_reader_close(rd);

	path_of(path, sizeof(path), "missing");
	cr_assert_eq(tern_trace_reader_open(&rd, path, NULL), -ENOENT);
	path_of(path, sizeof(path), "no/such/dir");
	struct tern_trace *t = (void *)1;
	cr_assert_eq(tern_trace_open(&t, path, "source"), -ENOENT);
	cr_assert_null(t);
}
