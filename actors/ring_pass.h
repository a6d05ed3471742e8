/*
 * Ring-only bulk pass (seed 001, --ring-only): one walk over memory from
 * first to last page, while the pages the vCPUs' dirty rings report behind
 * the walk are sent as they arrive; after every `step` ring pages one chunk
 * of the walk is forced, so the pass always completes however fast the
 * guest writes.  Pages reported ahead of the walk are simply added to it.
 * No bitmap is harvested from the kernel: the rings list exactly the pages
 * written.
 *
 * A pure data structure (no actor calls): the coordinator takes the dirty
 * sets and hands them to tern_ring_pass_merge, and uses tern_ring_pass_cut
 * as the chunk scheduler's source (actors/chunk_sched.h).
 */
#ifndef TERN_ACTORS_RING_PASS_H
#define TERN_ACTORS_RING_PASS_H

#include <stdbool.h>
#include <stdint.h>

#include "kvm/bitmap.h"
#include "messages/msg.h"

struct tern_ring_pass {
	bool on;                  /* the pass is running */
	bool active;              /* ring holds pages not yet cut */
	bool walk_done;           /* the walk reached the end of memory */
	struct tern_bitmap *walk; /* the bulk set (TERN_SET_BULK), extended ahead */
	uint64_t walk_pos;
	struct tern_bitmap ring; /* ring pages behind the walk (TERN_SET_RING) */
	uint64_t ring_pos;
	uint64_t budget; /* ring pages cut since the last forced walk step */
	uint64_t step;
	uint64_t chunk_pages;
	uint32_t out;   /* ring chunks not yet acknowledged */
	uint64_t pages; /* ring pages cut over the pass (statistics) */
};

/* tern_ring_pass_init allocates the ring set for npages; step 0 means 1024.
 * 0 or TERN_ENOMEM; fini may be called either way (and on a zeroed rp). */
int tern_ring_pass_init(struct tern_ring_pass *rp, uint64_t npages, uint64_t step);
void tern_ring_pass_fini(struct tern_ring_pass *rp);

/* tern_ring_pass_begin starts the walk over walk (kept, extended by merge),
 * in chunks of at most chunk_pages. */
void tern_ring_pass_begin(struct tern_ring_pass *rp, struct tern_bitmap *walk,
                          uint64_t chunk_pages);

/* tern_ring_pass_cut is a tern_chunk_cut_fn over rp: ring pages first while
 * under the step budget, else the next walk chunk, else (the walk done) the
 * ring pages left.  false when both are exhausted. */
bool tern_ring_pass_cut(void *rp, struct tern_msg_chunk *c);

/* tern_ring_pass_wants_merge: the ring set is idle (every chunk cut from it
 * acknowledged), so a new dirty set can be merged. */
bool tern_ring_pass_wants_merge(const struct tern_ring_pass *rp);

/* tern_ring_pass_merge takes the pages of dirty (same size as the walk):
 * words behind the walk go to the ring set, words no chunk has reached yet
 * into the walk itself.  dirty is only read. */
void tern_ring_pass_merge(struct tern_ring_pass *rp, const struct tern_bitmap *dirty);

/* tern_ring_pass_acked records the acknowledgement of chunk c. */
void tern_ring_pass_acked(struct tern_ring_pass *rp, const struct tern_msg_chunk *c);

/* tern_ring_pass_end: the walk is over; plain iterations from here. */
void tern_ring_pass_end(struct tern_ring_pass *rp);

#endif /* TERN_ACTORS_RING_PASS_H */
