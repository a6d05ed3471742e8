/*
 * The msgpack codec of every schema message, generated from TERN_MESSAGES.
 *
 * Encoding packs straight into the caller's buffer through a write callback
 * that fails once the capacity is exceeded, so encoding allocates nothing.
 * Decoding first measures the input with tern_mp_scan (which bounds what
 * msgpack-c may allocate), then unpacks it with msgpack_unpack_next, whose
 * str/bin objects point into the caller's buffer, and checks every field
 * against the schema.
 */
#include <endian.h>
#include <msgpack.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include "messages/mpscan.h"
#include "messages/msg.h"
#include "tern/error.h"

#define MSG_ENVELOPE_LEN 6 /* [type, seq, from, re, time_ns, [fields]] */
#define MSG_PAIR_SIZE 16   /* one RANGES pair: two little-endian u64 */

#define MSG_COUNT_FIELD(type, name) +1
#define MSG_NFIELDS(NAME) (0 TERN_FIELDS_##NAME(MSG_COUNT_FIELD))

/* One put and one get per field type; a type the schema does not use yet
 * must not warn. */
#define MSG_FIELD_CODEC static __attribute__((unused))

void
tern_msg_init(struct tern_msg *m, enum tern_msg_type type)
{
	memset(m, 0, sizeof(*m));
	m->type = (uint32_t)type;
}

const char *
tern_msg_name(uint32_t type)
{
	switch (type) {
#define X(NAME, name, id)                                                                          \
	case TERN_MSG_##NAME:                                                                      \
		return #NAME;
		TERN_MESSAGES(X)
#undef X
	default:
		return "?";
	}
}

bool
tern_msg_known(uint32_t type)
{
	switch (type) {
#define X(NAME, name, id) case TERN_MSG_##NAME:
		TERN_MESSAGES(X)
#undef X
		return true;
	default:
		return false;
	}
}

/* ---- scanning ---- */

static uint64_t
mp_be(const uint8_t *p, size_t k)
{
	uint64_t v = 0;
	for (size_t i = 0; i < k; i++)
		v = (v << 8) | p[i];
	return v;
}

enum mp_kind { MP_FIXED, MP_RAW, MP_EXT, MP_ARRAY, MP_MAP, MP_BAD };

/* The layout of tags 0xc0-0xdf: kind, bytes of length after the tag, and
 * fixed payload bytes. */
static const struct {
	uint8_t kind, k, skip;
} mp_tags[32] = {
    [0xc0 - 0xc0] = {MP_FIXED, 0, 0},  /* nil */
    [0xc1 - 0xc0] = {MP_BAD, 0, 0},    /* never used */
    [0xc2 - 0xc0] = {MP_FIXED, 0, 0},  /* false */
    [0xc3 - 0xc0] = {MP_FIXED, 0, 0},  /* true */
    [0xc4 - 0xc0] = {MP_RAW, 1, 0},    /* bin 8 */
    [0xc5 - 0xc0] = {MP_RAW, 2, 0},    /* bin 16 */
    [0xc6 - 0xc0] = {MP_RAW, 4, 0},    /* bin 32 */
    [0xc7 - 0xc0] = {MP_EXT, 1, 0},    /* ext 8 */
    [0xc8 - 0xc0] = {MP_EXT, 2, 0},    /* ext 16 */
    [0xc9 - 0xc0] = {MP_EXT, 4, 0},    /* ext 32 */
    [0xca - 0xc0] = {MP_FIXED, 0, 4},  /* float 32 */
    [0xcb - 0xc0] = {MP_FIXED, 0, 8},  /* float 64 */
    [0xcc - 0xc0] = {MP_FIXED, 0, 1},  /* uint 8 */
    [0xcd - 0xc0] = {MP_FIXED, 0, 2},  /* uint 16 */
    [0xce - 0xc0] = {MP_FIXED, 0, 4},  /* uint 32 */
    [0xcf - 0xc0] = {MP_FIXED, 0, 8},  /* uint 64 */
    [0xd0 - 0xc0] = {MP_FIXED, 0, 1},  /* int 8 */
    [0xd1 - 0xc0] = {MP_FIXED, 0, 2},  /* int 16 */
    [0xd2 - 0xc0] = {MP_FIXED, 0, 4},  /* int 32 */
    [0xd3 - 0xc0] = {MP_FIXED, 0, 8},  /* int 64 */
    [0xd4 - 0xc0] = {MP_FIXED, 0, 2},  /* fixext 1 */
    [0xd5 - 0xc0] = {MP_FIXED, 0, 3},  /* fixext 2 */
    [0xd6 - 0xc0] = {MP_FIXED, 0, 5},  /* fixext 4 */
    [0xd7 - 0xc0] = {MP_FIXED, 0, 9},  /* fixext 8 */
    [0xd8 - 0xc0] = {MP_FIXED, 0, 17}, /* fixext 16 */
    [0xd9 - 0xc0] = {MP_RAW, 1, 0},    /* str 8 */
    [0xda - 0xc0] = {MP_RAW, 2, 0},    /* str 16 */
    [0xdb - 0xc0] = {MP_RAW, 4, 0},    /* str 32 */
    [0xdc - 0xc0] = {MP_ARRAY, 2, 0},  /* array 16 */
    [0xdd - 0xc0] = {MP_ARRAY, 4, 0},  /* array 32 */
    [0xde - 0xc0] = {MP_MAP, 2, 0},    /* map 16 */
    [0xdf - 0xc0] = {MP_MAP, 4, 0},    /* map 32 */
};

int
tern_mp_scan(const void *buf, size_t len, size_t *end)
{
	const uint8_t *p = buf;
	size_t off = 0;
	/* Objects still to read.  Each needs at least one byte, so pending never
	 * exceeds the bytes left and cannot overflow. */
	uint64_t pending = 1;

	while (pending > 0) {
		uint64_t skip = 0, items = 0;

		if (off >= len)
			return 1;
		uint8_t b = p[off++];
		pending--;
		if (b <= 0x7f || b >= 0xe0) { /* fixint */
			continue;
		} else if (b <= 0x8f) { /* fixmap */
			items = 2u * (b & 0x0fu);
		} else if (b <= 0x9f) { /* fixarray */
			items = b & 0x0fu;
		} else if (b <= 0xbf) { /* fixstr */
			skip = b & 0x1fu;
		} else {
			unsigned kind = mp_tags[b - 0xc0].kind, k = mp_tags[b - 0xc0].k;
			uint64_t n;

			if (kind == MP_BAD)
				return TERN_EMSG;
			skip = mp_tags[b - 0xc0].skip;
			if (k > 0) {
				if (len - off < k)
					return 1;
				n = mp_be(p + off, k);
				off += k;
				if (kind == MP_ARRAY)
					items = n;
				else if (kind == MP_MAP)
					items = 2 * n;
				else
					skip = n + (kind == MP_EXT); /* ext: one type byte */
			}
		}
		if (items > len - off || pending + items > len - off)
			return 1;
		pending += items;
		if (skip > len - off)
			return 1;
		off += (size_t)skip;
	}
	*end = off;
	return 0;
}

/* ---- encoding ---- */

struct msg_out {
	char *buf; /* NULL: only count */
	size_t cap;
	size_t len;
};

static int
msg_write(void *data, const char *p, size_t n)
{
	struct msg_out *o = data;

	if (n > o->cap - o->len)
		return -1;
	if (o->buf != NULL && n > 0)
		memcpy(o->buf + o->len, p, n);
	o->len += n;
	return 0;
}

MSG_FIELD_CODEC int
msg_put_U32(msgpack_packer *pk, const uint32_t *v)
{
	return msgpack_pack_uint32(pk, *v);
}

MSG_FIELD_CODEC int
msg_put_U64(msgpack_packer *pk, const uint64_t *v)
{
	return msgpack_pack_uint64(pk, *v);
}

MSG_FIELD_CODEC int
msg_put_I32(msgpack_packer *pk, const int32_t *v)
{
	return msgpack_pack_int32(pk, *v);
}

MSG_FIELD_CODEC int
msg_put_I64(msgpack_packer *pk, const int64_t *v)
{
	return msgpack_pack_int64(pk, *v);
}

MSG_FIELD_CODEC int
msg_put_F64(msgpack_packer *pk, const double *v)
{
	return msgpack_pack_double(pk, *v);
}

MSG_FIELD_CODEC int
msg_put_BOOL(msgpack_packer *pk, const bool *v)
{
	return *v ? msgpack_pack_true(pk) : msgpack_pack_false(pk);
}

MSG_FIELD_CODEC int
msg_put_STR(msgpack_packer *pk, const char (*s)[TERN_STR_MAX])
{
	size_t n = strnlen(*s, TERN_STR_MAX);

	if (n == TERN_STR_MAX) /* not terminated: the decoder would refuse it */
		return -1;
	if (msgpack_pack_str(pk, n) != 0)
		return -1;
	return msgpack_pack_str_body(pk, *s, n);
}

static int
msg_put_raw(msgpack_packer *pk, const void *p, size_t n)
{
	/* The bound also keeps n within msgpack's 32-bit bin length. */
	if (n > TERN_MSG_MAX || (p == NULL && n > 0))
		return -1;
	if (msgpack_pack_bin(pk, n) != 0)
		return -1;
	return msgpack_pack_bin_body(pk, p, n);
}

MSG_FIELD_CODEC int
msg_put_BIN(msgpack_packer *pk, const struct tern_bin *v)
{
	return msg_put_raw(pk, v->ptr, v->len);
}

MSG_FIELD_CODEC int
msg_put_RANGES(msgpack_packer *pk, const struct tern_ranges *v)
{
	if (v->count > TERN_MSG_MAX / MSG_PAIR_SIZE)
		return -1;
	return msg_put_raw(pk, v->pairs, (size_t)v->count * MSG_PAIR_SIZE);
}

static int
msg_pack(const struct tern_msg *m, struct msg_out *o)
{
	msgpack_packer pk;

	if (!tern_msg_known(m->type))
		return TERN_EMSG;
	msgpack_packer_init(&pk, o, msg_write);
	if (msgpack_pack_array(&pk, MSG_ENVELOPE_LEN) != 0 ||
	    msgpack_pack_uint32(&pk, m->type) != 0 || msgpack_pack_uint64(&pk, m->seq) != 0 ||
	    msgpack_pack_uint32(&pk, m->from) != 0 || msgpack_pack_uint64(&pk, m->re) != 0 ||
	    msgpack_pack_uint64(&pk, m->time_ns) != 0)
		return TERN_EMSG;

	switch (m->type) {
#define MSG_ENCODE_FIELD(type, name)                                                               \
	if (msg_put_##type(&pk, &b->name) != 0)                                                    \
		return TERN_EMSG;
#define X(NAME, name, id)                                                                          \
	case TERN_MSG_##NAME: {                                                                    \
		const struct tern_msg_##name *b = &m->u.name;                                      \
		(void)b;                                                                           \
		if (msgpack_pack_array(&pk, MSG_NFIELDS(NAME)) != 0)                               \
			return TERN_EMSG;                                                          \
		TERN_FIELDS_##NAME(MSG_ENCODE_FIELD) return 0;                                     \
	}
		TERN_MESSAGES(X)
#undef X
#undef MSG_ENCODE_FIELD
	default:
		return TERN_EMSG;
	}
}

int
tern_msg_encode(const struct tern_msg *m, void *buf, size_t cap, size_t *len)
{
	struct msg_out o = {
	    .buf = buf,
	    .cap = cap < TERN_MSG_MAX ? cap : TERN_MSG_MAX,
	    .len = 0,
	};
	int rv;

	*len = 0;
	if (buf == NULL)
		return TERN_EMSG;
	if ((rv = msg_pack(m, &o)) != 0)
		return rv;
	*len = o.len;
	return 0;
}

size_t
tern_msg_encoded_size(const struct tern_msg *m)
{
	struct msg_out o = {.buf = NULL, .cap = TERN_MSG_MAX, .len = 0};

	if (msg_pack(m, &o) != 0)
		return 0;
	return o.len;
}

/* ---- decoding ---- */

MSG_FIELD_CODEC int
msg_get_U64(const msgpack_object *o, uint64_t *v)
{
	if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
		return -1;
	*v = o->via.u64;
	return 0;
}

MSG_FIELD_CODEC int
msg_get_U32(const msgpack_object *o, uint32_t *v)
{
	if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER || o->via.u64 > UINT32_MAX)
		return -1;
	*v = (uint32_t)o->via.u64;
	return 0;
}

MSG_FIELD_CODEC int
msg_get_I64(const msgpack_object *o, int64_t *v)
{
	if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER && o->via.u64 <= INT64_MAX)
		*v = (int64_t)o->via.u64;
	else if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
		*v = o->via.i64;
	else
		return -1;
	return 0;
}

MSG_FIELD_CODEC int
msg_get_I32(const msgpack_object *o, int32_t *v)
{
	int64_t w;

	if (msg_get_I64(o, &w) != 0 || w < INT32_MIN || w > INT32_MAX)
		return -1;
	*v = (int32_t)w;
	return 0;
}

MSG_FIELD_CODEC int
msg_get_F64(const msgpack_object *o, double *v)
{
	if (o->type != MSGPACK_OBJECT_FLOAT32 && o->type != MSGPACK_OBJECT_FLOAT64)
		return -1;
	*v = o->via.f64;
	return 0;
}

MSG_FIELD_CODEC int
msg_get_BOOL(const msgpack_object *o, bool *v)
{
	if (o->type != MSGPACK_OBJECT_BOOLEAN)
		return -1;
	*v = o->via.boolean;
	return 0;
}

MSG_FIELD_CODEC int
msg_get_STR(const msgpack_object *o, char (*s)[TERN_STR_MAX])
{
	uint32_t n = o->via.str.size;

	/* An embedded NUL would silently shorten the C string. */
	if (o->type != MSGPACK_OBJECT_STR || n >= TERN_STR_MAX ||
	    (n > 0 && memchr(o->via.str.ptr, 0, n) != NULL))
		return -1;
	if (n > 0)
		memcpy(*s, o->via.str.ptr, n);
	(*s)[n] = '\0';
	return 0;
}

MSG_FIELD_CODEC int
msg_get_BIN(const msgpack_object *o, struct tern_bin *v)
{
	if (o->type != MSGPACK_OBJECT_BIN)
		return -1;
	v->ptr = o->via.bin.ptr;
	v->len = o->via.bin.size;
	return 0;
}

MSG_FIELD_CODEC int
msg_get_RANGES(const msgpack_object *o, struct tern_ranges *v)
{
	/* bin sizes are 32-bit, so size / 16 always fits count. */
	if (o->type != MSGPACK_OBJECT_BIN || o->via.bin.size % MSG_PAIR_SIZE != 0)
		return -1;
	v->pairs = o->via.bin.ptr;
	v->count = o->via.bin.size / MSG_PAIR_SIZE;
	return 0;
}

static int
msg_from_object(const msgpack_object *o, struct tern_msg *out)
{
	const msgpack_object *e, *f;
	uint32_t nf, i = 0;

	if (o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size != MSG_ENVELOPE_LEN)
		return TERN_EMSG;
	e = o->via.array.ptr;
	if (msg_get_U32(&e[0], &out->type) != 0 || msg_get_U64(&e[1], &out->seq) != 0 ||
	    msg_get_U32(&e[2], &out->from) != 0 || msg_get_U64(&e[3], &out->re) != 0 ||
	    msg_get_U64(&e[4], &out->time_ns) != 0 || e[5].type != MSGPACK_OBJECT_ARRAY)
		return TERN_EMSG;
	f = e[5].via.array.ptr;
	nf = e[5].via.array.size;

	switch (out->type) {
#define MSG_DECODE_FIELD(type, name)                                                               \
	if (msg_get_##type(&f[i++], &b->name) != 0)                                                \
		return TERN_EMSG;
#define X(NAME, name, id)                                                                          \
	case TERN_MSG_##NAME: {                                                                    \
		struct tern_msg_##name *b = &out->u.name;                                          \
		(void)b;                                                                           \
		if (nf != MSG_NFIELDS(NAME))                                                       \
			return TERN_EMSG;                                                          \
		TERN_FIELDS_##NAME(MSG_DECODE_FIELD) return 0;                                     \
	}
		TERN_MESSAGES(X)
#undef X
#undef MSG_DECODE_FIELD
	default:
		return TERN_EMSG;
	}
}

int
tern_msg_decode(const void *buf, size_t len, struct tern_msg *out)
{
	msgpack_unpacked up;
	size_t end, off = 0;
	int rv = TERN_EMSG;

	memset(out, 0, sizeof(*out));
	if (buf == NULL || len == 0 || len > TERN_MSG_MAX)
		return TERN_EMSG;
	if (tern_mp_scan(buf, len, &end) != 0 || end != len)
		return TERN_EMSG;

	msgpack_unpacked_init(&up);
	switch (msgpack_unpack_next(&up, buf, len, &off)) {
	case MSGPACK_UNPACK_SUCCESS:
	case MSGPACK_UNPACK_EXTRA_BYTES:
		if (off == len)
			rv = msg_from_object(&up.data, out);
		break;
	default:
		break;
	}
	msgpack_unpacked_destroy(&up);
	if (rv != 0)
		memset(out, 0, sizeof(*out));
	return rv;
}

/* ---- helpers ---- */

void
tern_ranges_get(const struct tern_ranges *r, uint32_t i, uint64_t *gpa, uint64_t *len)
{
	const char *p = (const char *)r->pairs + (size_t)i * MSG_PAIR_SIZE;
	uint64_t v[2];

	memcpy(v, p, sizeof(v));
	*gpa = le64toh(v[0]);
	*len = le64toh(v[1]);
}

void
tern_ranges_put(void *pairs, uint32_t i, uint64_t gpa, uint64_t len)
{
	uint64_t v[2] = {htole64(gpa), htole64(len)};

	memcpy((char *)pairs + (size_t)i * MSG_PAIR_SIZE, v, sizeof(v));
}

uint64_t
tern_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}
