/*
 * Trace records: a msgpack stream, one record per actor event.
 *
 * File layout (documented in docs/trace.md):
 *   header:  ["tern-trace", 1, side, pid, wall_ns, mono_ns]
 *   record:  [kind, mono_ns, actor, actor_name, peer, type, seq, re, value, text]
 * kind is enum tern_trace_kind; unused fields are 0 / "".  Records are
 * written in batches of whole records (at most 20 ms old; state changes,
 * spawns and exits at once), so a killed process leaves whole records except
 * possibly a torn last one, which readers skip, and loses at most its last
 * few milliseconds of message records.
 */
#ifndef TERN_MESSAGES_TRACE_H
#define TERN_MESSAGES_TRACE_H

#include <stdint.h>

#include "messages/msg.h"

enum tern_trace_kind {
	TERN_TRACE_SPAWN = 1,   /* actor started; text = actor name */
	TERN_TRACE_SEND = 2,    /* actor sent message type/seq to peer */
	TERN_TRACE_RECV = 3,    /* actor received; value = handling time ns */
	TERN_TRACE_STATE = 4,   /* state change; text = new state */
	TERN_TRACE_EXIT = 5,    /* actor exited; value = reason, text = why */
	TERN_TRACE_COUNTER = 6, /* named counter; text = name, value = bits of double */
	TERN_TRACE_FAULT = 7,   /* an injected fault fired; text = the trigger */
};

struct tern_trace_record {
	uint32_t kind;
	uint64_t mono_ns;
	uint32_t actor;
	char actor_name[64];
	uint32_t peer;
	uint32_t type;
	uint64_t seq;
	uint64_t re;
	uint64_t value;
	char text[TERN_STR_MAX];
};

struct tern_trace_header {
	char side[32];
	int64_t pid;
	uint64_t wall_ns;
	uint64_t mono_ns;
};

struct tern_trace;

/* tern_trace_open creates (truncates) path and writes the header.  side is
 * "source" or "destination".  Returns 0 or -errno. */
int tern_trace_open(struct tern_trace **t, const char *path, const char *side);

/* tern_trace_flush writes the records batched so far.  0 or -errno. */
int tern_trace_flush(struct tern_trace *t);

/* tern_trace_close flushes and closes; NULL is accepted. */
void tern_trace_close(struct tern_trace *t);

/* tern_trace_write appends one record (mono_ns filled in when 0).  Safe to
 * call from any thread; t may be NULL (no-op).  Returns 0 or -errno. */
int tern_trace_write(struct tern_trace *t, const struct tern_trace_record *r);

/* tern_trace_counter records a named value (e.g. "dirty_rate_pps"). */
int tern_trace_counter(struct tern_trace *t, uint32_t actor, const char *actor_name,
                       const char *name, double value);

/* Reading, for tern-trace and tests. */
struct tern_trace_reader;

/* tern_trace_reader_open opens path and parses the header.  A file that is
 * not a trace gives TERN_EMSG. */
int tern_trace_reader_open(struct tern_trace_reader **r, const char *path,
                           struct tern_trace_header *hdr);

/* tern_trace_reader_next returns 1 with *rec filled, 0 at the end of the
 * stream (including a truncated last record), TERN_EMSG on corruption. */
int tern_trace_reader_next(struct tern_trace_reader *r, struct tern_trace_record *rec);

void tern_trace_reader_close(struct tern_trace_reader *r);

#endif /* TERN_MESSAGES_TRACE_H */
