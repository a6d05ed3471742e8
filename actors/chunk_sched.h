/*
 * Chunk scheduler: which chunk to put on the work queue next, and which
 * chunks are still unacknowledged.  A pure data structure: no actor calls,
 * no runtime, no clock, so every rule below is unit-tested on its own
 * (tests/test_chunk_sched.c).
 *
 * A pass cuts one source (a callback filling chunk windows; plain sets use
 * tern_chunk_cut) into chunks and keeps at most max_outstanding of them
 * unacknowledged.  The caller loops:
 *
 *     while ((c = tern_chunk_sched_next(cs, &resend)) != NULL) {
 *         if (put c fails because the queue is full) break;  (c stays next)
 *         tern_chunk_sched_commit(cs);
 *     }
 *
 * and reports every acknowledgement (tern_chunk_sched_ack) and every chunk a
 * dead connection left unacknowledged (tern_chunk_sched_requeue): those go
 * again, before any new chunk, and stay outstanding until acknowledged.  The
 * pass is over (tern_chunk_sched_pass_done) when the source is exhausted and
 * every chunk cut from it is acknowledged.
 */
#ifndef TERN_ACTORS_CHUNK_SCHED_H
#define TERN_ACTORS_CHUNK_SCHED_H

#include <stdbool.h>
#include <stdint.h>

#include "kvm/bitmap.h"
#include "messages/msg.h"

/* A source of chunks.  Fills c's window (gpa, len, pages, set and whatever
 * else the caller wants: iter, flags) and returns true, or returns false
 * when exhausted.  The scheduler assigns c->chunk. */
typedef bool (*tern_chunk_cut_fn)(void *arg, struct tern_msg_chunk *c);

struct tern_chunk_sched {
	uint32_t max_outstanding;
	uint64_t last_id; /* ids are unique over the whole migration, from 1 */
	tern_chunk_cut_fn cut;
	void *cut_arg;
	bool cut_done;     /* the source is exhausted */
	bool have_pending; /* pending was cut and is not yet committed */
	bool pending_resend;
	struct tern_msg_chunk pending;
	uint64_t put, done; /* this pass: new chunks committed, acknowledged */
	/* Unacknowledged chunks (any pass), so a dead connection's can be put
	 * again: at most max_outstanding. */
	struct tern_msg_chunk *out;
	uint32_t nout;
	uint64_t *requeue; /* ids to put again, before new chunks */
	uint32_t nrequeue;
};

/* tern_chunk_sched_init allocates room for max_outstanding (>= 1) chunks.
 * 0 or TERN_ENOMEM; fini may be called either way (and on a zeroed cs). */
int tern_chunk_sched_init(struct tern_chunk_sched *cs, uint32_t max_outstanding);
void tern_chunk_sched_fini(struct tern_chunk_sched *cs);

/* tern_chunk_sched_begin starts a pass over a new source.  Chunks of an
 * earlier pass still outstanding stay so (and may still be requeued). */
void tern_chunk_sched_begin(struct tern_chunk_sched *cs, tern_chunk_cut_fn cut, void *arg);

/* tern_chunk_sched_next returns the chunk to put now: a requeued one first,
 * else the one cut earlier and not committed, else a new cut while fewer
 * than max_outstanding chunks of the pass are unacknowledged.  NULL when
 * there is none.  The chunk stays the next one until committed; the caller
 * may change its flags (a route) before.  *resend says it was put before. */
struct tern_msg_chunk *tern_chunk_sched_next(struct tern_chunk_sched *cs, bool *resend);

/* tern_chunk_sched_commit records that the chunk last returned by next was
 * put on the queue: it is outstanding until acknowledged. */
void tern_chunk_sched_commit(struct tern_chunk_sched *cs);

/* tern_chunk_sched_ack records the acknowledgement of chunk id.  Returns
 * true with *c (may be NULL) the chunk, or false for an id that is not
 * outstanding (a resent chunk acknowledged twice). */
bool tern_chunk_sched_ack(struct tern_chunk_sched *cs, uint64_t id, struct tern_msg_chunk *c);

/* tern_chunk_sched_requeue makes outstanding chunk id go again, before any
 * new chunk.  Returns false (nothing done) for an id not outstanding. */
bool tern_chunk_sched_requeue(struct tern_chunk_sched *cs, uint64_t id);

/* tern_chunk_sched_pass_done: the source is exhausted and every chunk cut
 * in this pass is acknowledged. */
bool tern_chunk_sched_pass_done(const struct tern_chunk_sched *cs);

/* tern_chunk_sched_outstanding: chunks put and not yet acknowledged. */
uint32_t tern_chunk_sched_outstanding(const struct tern_chunk_sched *cs);

/* tern_chunk_cut cuts the next chunk of set (named set_id) at *pos: a window
 * [gpa, gpa+len) holding at most max_pages dirty pages in at most
 * TERN_CHUNK_MAX_RUNS runs.  Fills c's gpa, len, pages and set, moves *pos
 * past it and returns true; false when no page is left at or after *pos. */
bool tern_chunk_cut(const struct tern_bitmap *set, uint32_t set_id, uint64_t *pos,
                    uint64_t max_pages, struct tern_msg_chunk *c);

#endif /* TERN_ACTORS_CHUNK_SCHED_H */
