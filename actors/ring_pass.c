/*
 * Ring-only bulk pass (see ring_pass.h).
 */
#include "actors/ring_pass.h"
#include "actors/chunk_sched.h"
#include "actors/set_table.h"

int
tern_ring_pass_init(struct tern_ring_pass *rp, uint64_t npages, uint64_t step)
{
	rp->step = step ? step : 1024;
	return tern_bitmap_init(&rp->ring, npages);
}

void
tern_ring_pass_fini(struct tern_ring_pass *rp)
{
	tern_bitmap_fini(&rp->ring);
	rp->on = false;
}

void
tern_ring_pass_begin(struct tern_ring_pass *rp, struct tern_bitmap *walk, uint64_t chunk_pages)
{
	rp->on = true;
	rp->active = rp->walk_done = false;
	rp->walk = walk;
	rp->walk_pos = rp->ring_pos = 0;
	rp->budget = 0;
	rp->chunk_pages = chunk_pages;
	rp->out = 0;
}

static bool
rp_cut_ring(struct tern_ring_pass *rp, struct tern_msg_chunk *c)
{
	if (!tern_chunk_cut(&rp->ring, TERN_SET_RING, &rp->ring_pos, rp->chunk_pages, c))
		return false;
	rp->out++;
	rp->pages += c->pages;
	return true;
}

bool
tern_ring_pass_cut(void *arg, struct tern_msg_chunk *c)
{
	struct tern_ring_pass *rp = arg;
	if (rp->active && rp->budget < rp->step) {
		if (rp_cut_ring(rp, c)) {
			rp->budget += c->pages;
			return true;
		}
		rp->active = false;
	}
	if (tern_chunk_cut(rp->walk, TERN_SET_BULK, &rp->walk_pos, rp->chunk_pages, c)) {
		rp->budget = 0; /* the forced background step */
		return true;
	}
	rp->walk_done = true;
	if (rp->active && rp_cut_ring(rp, c))
		return true;
	rp->active = false;
	return false;
}

bool
tern_ring_pass_wants_merge(const struct tern_ring_pass *rp)
{
	return rp->on && !rp->active && rp->out == 0;
}

void
tern_ring_pass_merge(struct tern_ring_pass *rp, const struct tern_bitmap *d)
{
	/* Words past the one the walk is in have not been cut yet: they join
	 * the walk.  The rest is behind it and goes through the ring set. */
	uint64_t cw = rp->walk_done ? d->nwords : rp->walk_pos >> 6;
	uint64_t any = 0;
	for (uint64_t w = 0; w < d->nwords; w++) {
		if (w > cw) {
			rp->walk->words[w] |= d->words[w];
			rp->ring.words[w] = 0;
		} else {
			rp->ring.words[w] = d->words[w];
			any |= d->words[w];
		}
	}
	rp->ring_pos = 0;
	rp->active = any != 0;
}

void
tern_ring_pass_acked(struct tern_ring_pass *rp, const struct tern_msg_chunk *c)
{
	if (c->set == TERN_SET_RING && rp->out > 0)
		rp->out--; /* at 0 the ring set may be refilled */
}

void
tern_ring_pass_end(struct tern_ring_pass *rp)
{
	rp->on = false;
}
