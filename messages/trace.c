/*
 * Trace files: a header and then one msgpack record per actor event.
 *
 * Writers share one fd behind a mutex and emit each record with a single
 * write(2) from a stack buffer, so a process killed at any moment leaves
 * whole records except possibly the last.  The reader loads the file and
 * treats an incomplete final record as the end of the stream.
 */
#include <errno.h>
#include <fcntl.h>
#include <msgpack.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "messages/mpscan.h"
#include "messages/trace.h"
#include "tern/error.h"

#define TRACE_MAGIC "tern-trace"
#define TRACE_VERSION 1
#define TRACE_HDR_LEN 6
#define TRACE_REC_LEN 10
/* Bound of one encoded header or record (the largest is ~400 bytes).  An
 * incomplete record with more than this left in the file is corruption, not
 * truncation. */
#define TRACE_REC_MAX 1024

/* Records are batched: one write(2) per record cost tens of microseconds
 * here and slowed a traced migration by over 10%.  The batch goes out when
 * it is full, TRACE_FLUSH_NS after its first record, on every state change,
 * spawn and exit (rare, and what a post-mortem needs most), and at close; a
 * killed process loses at most the records of the last few milliseconds,
 * and whole records only (a batch holds whole records). */
#define TRACE_BATCH (64 * 1024)
#define TRACE_FLUSH_NS 20000000ull

struct tern_trace {
	uv_mutex_t mu; /* serialises the batch and write(2) */
	int fd;
	size_t len;
	uint64_t first_ns; /* when the oldest unwritten record was added */
	char batch[TRACE_BATCH];
};

struct tern_trace_reader {
	char *buf;
	size_t len;
	size_t off;
	msgpack_unpacked up;
};

/* ---- writing ---- */

struct trace_out {
	char buf[TRACE_REC_MAX];
	size_t len;
};

static int
trace_put(void *data, const char *p, size_t n)
{
	struct trace_out *o = data;

	if (n > sizeof(o->buf) - o->len)
		return -1;
	memcpy(o->buf + o->len, p, n);
	o->len += n;
	return 0;
}

/* Strings are truncated to their field size: a trace is best effort, and a
 * long name must not cost the record. */
static int
trace_put_str(msgpack_packer *pk, const char *s, size_t size)
{
	size_t n = strnlen(s, size - 1);

	if (msgpack_pack_str(pk, n) != 0)
		return -1;
	return msgpack_pack_str_body(pk, s, n);
}

static int
trace_write_all(int fd, const char *p, size_t n)
{
	/* A regular file takes the whole record in one call; the loop only
	 * covers signals and a full disk. */
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (w == 0)
			return -EIO;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

static int
trace_flush_locked(struct tern_trace *t)
{
	int rv = t->len ? trace_write_all(t->fd, t->batch, t->len) : 0;
	t->len = 0;
	return rv;
}

static int
trace_emit(struct tern_trace *t, const struct trace_out *o, bool urgent)
{
	int rv = 0;
	uint64_t now = tern_now_ns();

	uv_mutex_lock(&t->mu);
	if (t->len + o->len > sizeof(t->batch))
		rv = trace_flush_locked(t);
	if (t->len == 0)
		t->first_ns = now;
	memcpy(t->batch + t->len, o->buf, o->len);
	t->len += o->len;
	if (rv == 0 && (urgent || now - t->first_ns >= TRACE_FLUSH_NS))
		rv = trace_flush_locked(t);
	uv_mutex_unlock(&t->mu);
	return rv;
}

int
tern_trace_open(struct tern_trace **tp, const char *path, const char *side)
{
	struct tern_trace *t;
	struct trace_out o = {.len = 0};
	msgpack_packer pk;
	struct timespec wall;
	int rv;

	*tp = NULL;
	if (path == NULL || side == NULL)
		return -EINVAL;
	if ((t = calloc(1, sizeof(*t))) == NULL)
		return -ENOMEM;
	if ((rv = uv_mutex_init(&t->mu)) != 0) { /* -errno, as libuv's codes on Unix */
		free(t);
		return rv;
	}
	t->fd = open(path, O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0644);
	if (t->fd < 0) {
		rv = -errno;
		goto fail;
	}

	clock_gettime(CLOCK_REALTIME, &wall);
	msgpack_packer_init(&pk, &o, trace_put);
	if (msgpack_pack_array(&pk, TRACE_HDR_LEN) != 0 ||
	    trace_put_str(&pk, TRACE_MAGIC, sizeof(TRACE_MAGIC)) != 0 ||
	    msgpack_pack_uint32(&pk, TRACE_VERSION) != 0 ||
	    trace_put_str(&pk, side, sizeof(((struct tern_trace_header *)0)->side)) != 0 ||
	    msgpack_pack_int64(&pk, (int64_t)getpid()) != 0 ||
	    msgpack_pack_uint64(&pk, (uint64_t)wall.tv_sec * 1000000000u +
	                                 (uint64_t)wall.tv_nsec) != 0 ||
	    msgpack_pack_uint64(&pk, tern_now_ns()) != 0) {
		rv = -EOVERFLOW; /* cannot happen: the header is ~70 bytes */
		goto fail;
	}
	if ((rv = trace_emit(t, &o, true)) != 0)
		goto fail;
	*tp = t;
	return 0;

fail:
	if (t->fd >= 0)
		close(t->fd);
	uv_mutex_destroy(&t->mu);
	free(t);
	return rv;
}

int
tern_trace_flush(struct tern_trace *t)
{
	if (t == NULL)
		return 0;
	uv_mutex_lock(&t->mu);
	int rv = trace_flush_locked(t);
	uv_mutex_unlock(&t->mu);
	return rv;
}

void
tern_trace_close(struct tern_trace *t)
{
	if (t == NULL)
		return;
	uv_mutex_lock(&t->mu);
	(void)trace_flush_locked(t);
	uv_mutex_unlock(&t->mu);
	close(t->fd);
	uv_mutex_destroy(&t->mu);
	free(t);
}

int
tern_trace_write(struct tern_trace *t, const struct tern_trace_record *r)
{
	struct trace_out o = {.len = 0};
	msgpack_packer pk;

	if (t == NULL)
		return 0;
	msgpack_packer_init(&pk, &o, trace_put);
	if (msgpack_pack_array(&pk, TRACE_REC_LEN) != 0 || msgpack_pack_uint32(&pk, r->kind) != 0 ||
	    msgpack_pack_uint64(&pk, r->mono_ns != 0 ? r->mono_ns : tern_now_ns()) != 0 ||
	    msgpack_pack_uint32(&pk, r->actor) != 0 ||
	    trace_put_str(&pk, r->actor_name, sizeof(r->actor_name)) != 0 ||
	    msgpack_pack_uint32(&pk, r->peer) != 0 || msgpack_pack_uint32(&pk, r->type) != 0 ||
	    msgpack_pack_uint64(&pk, r->seq) != 0 || msgpack_pack_uint64(&pk, r->re) != 0 ||
	    msgpack_pack_uint64(&pk, r->value) != 0 ||
	    trace_put_str(&pk, r->text, sizeof(r->text)) != 0)
		return -EOVERFLOW; /* cannot happen: a record is < 400 bytes */
	return trace_emit(t, &o,
	                  r->kind == TERN_TRACE_STATE || r->kind == TERN_TRACE_EXIT ||
	                      r->kind == TERN_TRACE_SPAWN);
}

int
tern_trace_counter(struct tern_trace *t, uint32_t actor, const char *actor_name, const char *name,
                   double value)
{
	struct tern_trace_record r;

	if (t == NULL)
		return 0;
	memset(&r, 0, sizeof(r));
	r.kind = TERN_TRACE_COUNTER;
	r.actor = actor;
	if (actor_name != NULL)
		snprintf(r.actor_name, sizeof(r.actor_name), "%s", actor_name);
	if (name != NULL)
		snprintf(r.text, sizeof(r.text), "%s", name);
	memcpy(&r.value, &value, sizeof(r.value));
	return tern_trace_write(t, &r);
}

/* ---- reading ---- */

static int
trace_get_u64(const msgpack_object *o, uint64_t max, uint64_t *v)
{
	if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER || o->via.u64 > max)
		return -1;
	*v = o->via.u64;
	return 0;
}

static int
trace_get_u32(const msgpack_object *o, uint32_t *v)
{
	uint64_t w;

	if (trace_get_u64(o, UINT32_MAX, &w) != 0)
		return -1;
	*v = (uint32_t)w;
	return 0;
}

static int
trace_get_str(const msgpack_object *o, char *dst, size_t size)
{
	uint32_t n = o->via.str.size;

	if (o->type != MSGPACK_OBJECT_STR || n >= size)
		return -1;
	if (n > 0)
		memcpy(dst, o->via.str.ptr, n);
	dst[n] = '\0';
	return 0;
}

/* trace_next unpacks the next object into r->up and returns 1, or 0 at the
 * end of the data (a truncated tail included), TERN_EMSG on corruption. */
static int
trace_next(struct tern_trace_reader *r)
{
	size_t left = r->len - r->off, end;
	int rv;

	if (left == 0)
		return 0;
	rv = tern_mp_scan(r->buf + r->off, left, &end);
	if (rv == 1 && left < TRACE_REC_MAX) {
		r->off = r->len; /* the writer was killed inside its last record */
		return 0;
	}
	if (rv != 0 || end > TRACE_REC_MAX)
		return TERN_EMSG;
	rv = msgpack_unpack_next(&r->up, r->buf, r->off + end, &r->off);
	if (rv != MSGPACK_UNPACK_SUCCESS && rv != MSGPACK_UNPACK_EXTRA_BYTES)
		return TERN_EMSG;
	return 1;
}

static int
trace_read_file(struct tern_trace_reader *r, const char *path)
{
	struct stat st;
	int fd, rv = 0;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return -errno;
	if (fstat(fd, &st) != 0) {
		rv = -errno;
		goto out;
	}
	if ((r->buf = malloc(st.st_size > 0 ? (size_t)st.st_size : 1)) == NULL) {
		rv = -ENOMEM;
		goto out;
	}
	/* Read to the end rather than trusting st_size: a live trace grows. */
	while (r->len < (size_t)st.st_size) {
		ssize_t n = read(fd, r->buf + r->len, (size_t)st.st_size - r->len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rv = -errno;
			goto out;
		}
		if (n == 0)
			break;
		r->len += (size_t)n;
	}
out:
	close(fd);
	return rv;
}

int
tern_trace_reader_open(struct tern_trace_reader **rp, const char *path,
                       struct tern_trace_header *hdr)
{
	struct tern_trace_reader *r;
	struct tern_trace_header h;
	const msgpack_object *e;
	char magic[sizeof(TRACE_MAGIC)];
	uint64_t version;
	int rv;

	*rp = NULL;
	memset(&h, 0, sizeof(h));
	if (path == NULL)
		return -EINVAL;
	if ((r = calloc(1, sizeof(*r))) == NULL)
		return -ENOMEM;
	msgpack_unpacked_init(&r->up);
	if ((rv = trace_read_file(r, path)) != 0)
		goto fail;

	rv = trace_next(r);
	if (rv != 1) {
		rv = TERN_EMSG; /* empty, truncated or not msgpack */
		goto fail;
	}
	rv = TERN_EMSG;
	if (r->up.data.type != MSGPACK_OBJECT_ARRAY || r->up.data.via.array.size != TRACE_HDR_LEN)
		goto fail;
	e = r->up.data.via.array.ptr;
	if (trace_get_str(&e[0], magic, sizeof(magic)) != 0 || strcmp(magic, TRACE_MAGIC) != 0)
		goto fail;
	if (trace_get_u64(&e[1], UINT64_MAX, &version) != 0)
		goto fail;
	if (version != TRACE_VERSION) {
		rv = TERN_EVERSION;
		goto fail;
	}
	if (trace_get_str(&e[2], h.side, sizeof(h.side)) != 0 ||
	    trace_get_u64(&e[4], UINT64_MAX, &h.wall_ns) != 0 ||
	    trace_get_u64(&e[5], UINT64_MAX, &h.mono_ns) != 0)
		goto fail;
	if (e[3].type == MSGPACK_OBJECT_POSITIVE_INTEGER && e[3].via.u64 <= INT64_MAX)
		h.pid = (int64_t)e[3].via.u64;
	else if (e[3].type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
		h.pid = e[3].via.i64;
	else
		goto fail;

	if (hdr != NULL)
		*hdr = h;
	*rp = r;
	return 0;

fail:
	tern_trace_reader_close(r);
	return rv;
}

int
tern_trace_reader_next(struct tern_trace_reader *r, struct tern_trace_record *rec)
{
	const msgpack_object *e;
	int rv;

	memset(rec, 0, sizeof(*rec));
	if ((rv = trace_next(r)) != 1)
		return rv;
	if (r->up.data.type != MSGPACK_OBJECT_ARRAY || r->up.data.via.array.size != TRACE_REC_LEN)
		goto bad;
	e = r->up.data.via.array.ptr;
	if (trace_get_u32(&e[0], &rec->kind) != 0 || rec->kind < TERN_TRACE_SPAWN ||
	    rec->kind > TERN_TRACE_FAULT || trace_get_u64(&e[1], UINT64_MAX, &rec->mono_ns) != 0 ||
	    trace_get_u32(&e[2], &rec->actor) != 0 ||
	    trace_get_str(&e[3], rec->actor_name, sizeof(rec->actor_name)) != 0 ||
	    trace_get_u32(&e[4], &rec->peer) != 0 || trace_get_u32(&e[5], &rec->type) != 0 ||
	    trace_get_u64(&e[6], UINT64_MAX, &rec->seq) != 0 ||
	    trace_get_u64(&e[7], UINT64_MAX, &rec->re) != 0 ||
	    trace_get_u64(&e[8], UINT64_MAX, &rec->value) != 0 ||
	    trace_get_str(&e[9], rec->text, sizeof(rec->text)) != 0)
		goto bad;
	return 1;

bad:
	memset(rec, 0, sizeof(*rec));
	return TERN_EMSG;
}

void
tern_trace_reader_close(struct tern_trace_reader *r)
{
	if (r == NULL)
		return;
	msgpack_unpacked_destroy(&r->up);
	free(r->buf);
	free(r);
}
