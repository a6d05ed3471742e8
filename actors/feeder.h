/*
 * Feeder: the coordinator's side of the work queues.  It runs one pass at a
 * time (a page set, or the ring-only walk), asks the chunk scheduler
 * (actors/chunk_sched.h) what to put next, routes each chunk to the zero
 * scanners or straight to the connections, and takes the acknowledgements.
 * Not an actor: it runs on the coordinator's thread, and its only runtime
 * calls are non-blocking queue puts.
 */
#ifndef TERN_ACTORS_FEEDER_H
#define TERN_ACTORS_FEEDER_H

#include "actors/actor.h"
#include "actors/chunk_sched.h"
#include "actors/ring_pass.h"
#include "tern/tern.h"

struct tern_feeder {
	struct tern_chunk_sched sched;
	struct tern_ring_pass ring;
	struct tern_queue *queue;      /* to the connections */
	struct tern_queue *scan_queue; /* to the zero scanners (NULL: none) */
	uint32_t from;                 /* the coordinator's id */
	bool zholes;                   /* --zero-pages off: bulk chunks carry the hole map */
	uint64_t chunk_pages;
	struct tern_stats *stats; /* chunks_requeued, pages_scan_skipped */
	/* The pass running (a plain set, or the ring walk). */
	bool running, ring_walk;
	const struct tern_bitmap *set;
	uint32_t set_id, iter;
	uint64_t pos;
	/* Scanning pays only where zero pages are: the recent yield decides
	 * whether a chunk goes through the scanners (with a probe every
	 * FEEDER_ZERO_PROBE chunks). */
	uint64_t zs_pages, zs_zero, zs_chunks;
};

/* tern_feeder_init: 0 or TERN_ENOMEM; fini may be called either way. */
int tern_feeder_init(struct tern_feeder *f, uint32_t max_outstanding, uint64_t chunk_pages);
void tern_feeder_fini(struct tern_feeder *f);

/* tern_feeder_start begins a pass over set (named id) for iteration iter;
 * with ring_walk, the ring-only walk over set instead (f->ring prepared). */
void tern_feeder_start(struct tern_feeder *f, const struct tern_bitmap *set, uint32_t id,
                       uint32_t iter, bool ring_walk);

/* tern_feeder_pump puts chunks until the scheduler has none or a queue is
 * full (retried at the next call).  0, or the queue's error. */
int tern_feeder_pump(struct tern_feeder *f);

/* tern_feeder_pass_done: a pass is running and every chunk of it is
 * acknowledged; the pass is then over (running is cleared). */
bool tern_feeder_pass_done(struct tern_feeder *f);

/* tern_feeder_ack records CHUNK_DONE d.  false for a duplicate. */
bool tern_feeder_ack(struct tern_feeder *f, const struct tern_msg_chunk_done *d);

/* tern_feeder_requeue: a dead connection left chunk id unacknowledged. */
void tern_feeder_requeue(struct tern_feeder *f, uint64_t id);

/* tern_feeder_ring_idle: the ring walk runs and its ring set may take the
 * next dirty set (tern_ring_pass_merge). */
bool tern_feeder_ring_idle(const struct tern_feeder *f);

#endif /* TERN_ACTORS_FEEDER_H */
