/*
 * Messages: the in-memory form of every schema entry and its msgpack codec.
 *
 * Encoding: one msgpack array [type, seq, from, re, time_ns, [field...]],
 * fields in schema order.  RANGES travel as msgpack bin of little-endian u64
 * (gpa, len) pairs; BIN as msgpack bin; STR as msgpack str.
 *
 * Decoding validates everything: the envelope shape, a known type, the field
 * count, each field's msgpack type, integer ranges (U32/I32 must fit), STR
 * length (< TERN_STR_MAX), RANGES length (a multiple of 16).  Any violation
 * returns TERN_EMSG and leaves *out released.  Decoded BIN and RANGES borrow
 * from the input buffer: keep it alive while using them.
 */
#ifndef TERN_MESSAGES_MSG_H
#define TERN_MESSAGES_MSG_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "messages/schema.h"

#define TERN_STR_MAX 256
/* Upper bound of one encoded message (actor mailbox or wire header). */
#define TERN_MSG_MAX (1u << 20)

enum tern_msg_type {
	TERN_MSG_NONE = 0,
#define X(NAME, name, id) TERN_MSG_##NAME = (id),
	TERN_MESSAGES(X)
#undef X
};

struct tern_bin {
	const void *ptr;
	size_t len;
};

struct tern_ranges {
	const void *pairs; /* count * 16 bytes of little-endian u64 (gpa, len) */
	uint32_t count;
};

#define TERN_CTYPE_U32 uint32_t
#define TERN_CTYPE_U64 uint64_t
#define TERN_CTYPE_I32 int32_t
#define TERN_CTYPE_I64 int64_t
#define TERN_CTYPE_F64 double
#define TERN_CTYPE_BOOL bool
#define TERN_CTYPE_BIN struct tern_bin
#define TERN_CTYPE_RANGES struct tern_ranges
#define TERN_FIELD_DECL_STR(name) char name[TERN_STR_MAX];
#define TERN_FIELD_DECL_U32(name) TERN_CTYPE_U32 name;
#define TERN_FIELD_DECL_U64(name) TERN_CTYPE_U64 name;
#define TERN_FIELD_DECL_I32(name) TERN_CTYPE_I32 name;
#define TERN_FIELD_DECL_I64(name) TERN_CTYPE_I64 name;
#define TERN_FIELD_DECL_F64(name) TERN_CTYPE_F64 name;
#define TERN_FIELD_DECL_BOOL(name) TERN_CTYPE_BOOL name;
#define TERN_FIELD_DECL_BIN(name) TERN_CTYPE_BIN name;
#define TERN_FIELD_DECL_RANGES(name) TERN_CTYPE_RANGES name;
#define TERN_FIELD_DECL(type, name) TERN_FIELD_DECL_##type(name)

/* One struct per message: struct tern_msg_ping { uint64_t value; ... }. */
#define X(NAME, name, id)                                                                          \
	struct tern_msg_##name {                                                                   \
		char _empty; /* keeps field-less messages valid C */                               \
		TERN_FIELDS_##NAME(TERN_FIELD_DECL)                                                \
	};
TERN_MESSAGES(X)
#undef X

struct tern_msg {
	uint32_t type;    /* enum tern_msg_type */
	uint64_t seq;     /* sender's sequence number, set by the sender */
	uint32_t from;    /* sender's actor id (0: not an actor) */
	uint64_t re;      /* seq of the request this replies to, 0 otherwise */
	uint64_t time_ns; /* CLOCK_MONOTONIC at send */
	union {
#define X(NAME, name, id) struct tern_msg_##name name;
		TERN_MESSAGES(X)
#undef X
	} u;
};

/* tern_msg_init zeroes *m and sets its type. */
void tern_msg_init(struct tern_msg *m, enum tern_msg_type type);

/* tern_msg_name returns the schema name of a type ("W_HELLO"), or "?". */
const char *tern_msg_name(uint32_t type);

/* tern_msg_known reports whether type is in the schema. */
bool tern_msg_known(uint32_t type);

/* tern_msg_encode writes m into buf (capacity cap).  On success returns 0 and
 * sets *len.  TERN_EMSG when it does not fit or m->type is unknown. */
int tern_msg_encode(const struct tern_msg *m, void *buf, size_t cap, size_t *len);

/* tern_msg_encoded_size returns the encoded size of m (0 if unknown type). */
size_t tern_msg_encoded_size(const struct tern_msg *m);

/* tern_msg_decode parses exactly len bytes of buf into *out (trailing bytes
 * are an error).  Returns 0, or TERN_EMSG with *out zeroed.  BIN and RANGES
 * fields point into buf. */
int tern_msg_decode(const void *buf, size_t len, struct tern_msg *out);

/* tern_ranges_get reads pair i (i < r->count) of r. */
void tern_ranges_get(const struct tern_ranges *r, uint32_t i, uint64_t *gpa, uint64_t *len);

/* tern_ranges_put writes pair i into a caller-owned buffer of count*16 bytes. */
void tern_ranges_put(void *pairs, uint32_t i, uint64_t gpa, uint64_t len);

/* tern_now_ns returns CLOCK_MONOTONIC in nanoseconds. */
uint64_t tern_now_ns(void);

/* terni_errf formats a one-line reason into err (a caller's buffer of
 * errlen bytes); err may be NULL or errlen 0, then it does nothing. */
void terni_errf(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* terni_verrf is terni_errf with a va_list, for helpers that take their own
 * format (co_abort, tern_actor_fail); ap is consumed as by vsnprintf. */
void terni_verrf(char *err, size_t errlen, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

#endif /* TERN_MESSAGES_MSG_H */
