/*
 * Feeder (see feeder.h).
 */
#include "actors/feeder.h"
#include "actors/set_table.h"
#include "tern/error.h"

#define FEEDER_VIA_SCAN 0x100u   /* feeder-only flag: this chunk went to the scanners */
#define FEEDER_DIRECT 0x200u     /* feeder-only flag: this chunk skipped them */
#define FEEDER_ZERO_WARMUP 8192u /* pages always scanned before judging the yield */
#define FEEDER_ZERO_PROBE 16u

int
tern_feeder_init(struct tern_feeder *f, uint32_t max_outstanding, uint64_t chunk_pages)
{
	f->chunk_pages = chunk_pages;
	return tern_chunk_sched_init(&f->sched, max_outstanding);
}

void
tern_feeder_fini(struct tern_feeder *f)
{
	tern_chunk_sched_fini(&f->sched);
	tern_ring_pass_fini(&f->ring);
}

static bool
feeder_cut(void *arg, struct tern_msg_chunk *c)
{
	struct tern_feeder *f = arg;
	bool ok = f->ring_walk ? tern_ring_pass_cut(&f->ring, c)
	                       : tern_chunk_cut(f->set, f->set_id, &f->pos, f->chunk_pages, c);
	if (!ok)
		return false;
	c->iter = f->iter;
	if (f->zholes && c->set == TERN_SET_BULK)
		c->flags = TERN_CHUNK_ZHOLES;
	return true;
}

void
tern_feeder_start(struct tern_feeder *f, const struct tern_bitmap *set, uint32_t id, uint32_t iter,
                  bool ring_walk)
{
	f->running = true;
	f->ring_walk = ring_walk;
	f->set = set;
	f->set_id = id;
	f->iter = iter;
	f->pos = 0;
	if (ring_walk)
		tern_ring_pass_begin(&f->ring, (struct tern_bitmap *)set, f->chunk_pages);
	tern_chunk_sched_begin(&f->sched, feeder_cut, f);
}

/* Where chunk c goes: the scanners (detect mode, while they find zero
 * pages: at least 1% of the recent pages) or the connections directly.
 * Fully random memory then costs one probe chunk in sixteen.  The choice is
 * kept in the chunk's flags: a chunk put again (after a full queue, or a
 * connection's death) keeps its route. */
static struct tern_queue *
feeder_route(struct tern_feeder *f, struct tern_msg_chunk *c)
{
	if (f->scan_queue == NULL)
		return f->queue;
	if (c->flags & FEEDER_VIA_SCAN)
		return f->scan_queue;
	if (c->flags & FEEDER_DIRECT)
		return f->queue;
	bool useful = f->zs_pages < FEEDER_ZERO_WARMUP || f->zs_zero * 100 >= f->zs_pages;
	if (useful || f->zs_chunks++ % FEEDER_ZERO_PROBE == 0) {
		c->flags |= FEEDER_VIA_SCAN;
		return f->scan_queue;
	}
	c->flags |= FEEDER_DIRECT;
	f->stats->pages_scan_skipped += c->pages;
	return f->queue;
}

int
tern_feeder_pump(struct tern_feeder *f)
{
	if (!f->running)
		return 0; /* no pass (setup, or between sets) */
	struct tern_msg_chunk *c;
	bool resend;
	while ((c = tern_chunk_sched_next(&f->sched, &resend)) != NULL) {
		struct tern_queue *q = feeder_route(f, c);
		struct tern_msg m;
		tern_msg_init(&m, TERN_MSG_CHUNK);
		m.u.chunk = *c;
		int rc = tern_queue_put(q, f->from, &m, 0);
		if (rc == TERN_ETIMEDOUT)
			return 0; /* full: retried on the next ack or tick */
		if (rc != 0)
			return rc;
		if (resend)
			f->stats->chunks_requeued++;
		tern_chunk_sched_commit(&f->sched);
	}
	return 0;
}

bool
tern_feeder_pass_done(struct tern_feeder *f)
{
	if (!f->running || !tern_chunk_sched_pass_done(&f->sched))
		return false;
	f->running = false;
	if (f->ring_walk)
		tern_ring_pass_end(&f->ring); /* plain iterations from here */
	f->ring_walk = false;
	return true;
}

bool
tern_feeder_ack(struct tern_feeder *f, const struct tern_msg_chunk_done *d)
{
	struct tern_msg_chunk c;
	if (!tern_chunk_sched_ack(&f->sched, d->chunk, &c))
		return false; /* a resent chunk acknowledged twice */
	tern_ring_pass_acked(&f->ring, &c);
	if (c.flags & FEEDER_VIA_SCAN) {
		f->zs_pages += c.pages;
		f->zs_zero += d->zero_pages;
		if (f->zs_pages > 65536) { /* a decaying window */
			f->zs_pages /= 2;
			f->zs_zero /= 2;
		}
	}
	return true;
}

void
tern_feeder_requeue(struct tern_feeder *f, uint64_t id)
{
	(void)tern_chunk_sched_requeue(&f->sched, id);
}

bool
tern_feeder_ring_idle(const struct tern_feeder *f)
{
	return f->running && f->ring_walk && !f->sched.cut_done &&
	       tern_ring_pass_wants_merge(&f->ring);
}
