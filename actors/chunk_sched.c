/*
 * Chunk scheduler (see chunk_sched.h).  The tables are small (a few chunks
 * per connection), so lookups are linear scans.
 */
#include <stdlib.h>
#include <string.h>

#include "actors/chunk_sched.h"
#include "kvm/guest.h"
#include "tern/error.h"

int
tern_chunk_sched_init(struct tern_chunk_sched *cs, uint32_t max_outstanding)
{
	memset(cs, 0, sizeof(*cs));
	cs->max_outstanding = max_outstanding ? max_outstanding : 1;
	cs->cut_done = true; /* no pass yet */
	cs->out = calloc(cs->max_outstanding, sizeof(*cs->out));
	cs->requeue = calloc(cs->max_outstanding, sizeof(*cs->requeue));
	if (cs->out == NULL || cs->requeue == NULL) {
		tern_chunk_sched_fini(cs);
		return TERN_ENOMEM;
	}
	return 0;
}

void
tern_chunk_sched_fini(struct tern_chunk_sched *cs)
{
	free(cs->out);
	free(cs->requeue);
	cs->out = NULL;
	cs->requeue = NULL;
	cs->nout = cs->nrequeue = 0;
}

void
tern_chunk_sched_begin(struct tern_chunk_sched *cs, tern_chunk_cut_fn cut, void *arg)
{
	cs->cut = cut;
	cs->cut_arg = arg;
	cs->cut_done = false;
	cs->have_pending = false;
	cs->put = cs->done = 0;
}

static struct tern_msg_chunk *
cs_find(struct tern_chunk_sched *cs, uint64_t id)
{
	for (uint32_t i = 0; i < cs->nout; i++)
		if (cs->out[i].chunk == id)
			return &cs->out[i];
	return NULL;
}

struct tern_msg_chunk *
tern_chunk_sched_next(struct tern_chunk_sched *cs, bool *resend)
{
	*resend = false;
	if (cs->have_pending) {
		*resend = cs->pending_resend;
		return &cs->pending;
	}
	while (cs->nrequeue > 0) {
		struct tern_msg_chunk *o = cs_find(cs, cs->requeue[cs->nrequeue - 1]);
		if (o == NULL) { /* acknowledged meanwhile after all */
			cs->nrequeue--;
			continue;
		}
		cs->nrequeue--; /* pending from now on, until committed or acknowledged */
		cs->pending = *o;
		cs->have_pending = cs->pending_resend = true;
		*resend = true;
		return &cs->pending;
	}
	/* Bounded: nothing is cut far ahead of the wire. */
	if (cs->cut_done || cs->put - cs->done >= cs->max_outstanding ||
	    cs->nout >= cs->max_outstanding)
		return NULL;
	memset(&cs->pending, 0, sizeof(cs->pending));
	if (!cs->cut(cs->cut_arg, &cs->pending)) {
		cs->cut_done = true;
		return NULL;
	}
	cs->pending.chunk = ++cs->last_id;
	cs->have_pending = true;
	cs->pending_resend = false;
	return &cs->pending;
}

void
tern_chunk_sched_commit(struct tern_chunk_sched *cs)
{
	if (!cs->have_pending)
		return;
	cs->have_pending = false;
	if (cs->pending_resend) {
		/* It is still outstanding; keep the route the caller chose. */
		struct tern_msg_chunk *o = cs_find(cs, cs->pending.chunk);
		if (o != NULL)
			*o = cs->pending;
		return;
	}
	cs->put++;
	cs->out[cs->nout++] = cs->pending;
}

bool
tern_chunk_sched_ack(struct tern_chunk_sched *cs, uint64_t id, struct tern_msg_chunk *c)
{
	struct tern_msg_chunk *o = cs_find(cs, id);
	if (o == NULL)
		return false;
	if (c != NULL)
		*c = *o;
	*o = cs->out[--cs->nout];
	cs->done++;
	/* A requeued chunk acknowledged before it went again needs no resend
	 * (next also skips requeued ids no longer outstanding). */
	if (cs->have_pending && cs->pending_resend && cs->pending.chunk == id)
		cs->have_pending = false;
	return true;
}

bool
tern_chunk_sched_requeue(struct tern_chunk_sched *cs, uint64_t id)
{
	if (cs_find(cs, id) == NULL || cs->nrequeue >= cs->max_outstanding)
		return false;
	if (cs->have_pending && cs->pending_resend && cs->pending.chunk == id)
		return false; /* already about to go again */
	for (uint32_t i = 0; i < cs->nrequeue; i++)
		if (cs->requeue[i] == id)
			return false;
	cs->requeue[cs->nrequeue++] = id;
	return true;
}

bool
tern_chunk_sched_pass_done(const struct tern_chunk_sched *cs)
{
	return cs->cut_done && !cs->have_pending && cs->done == cs->put;
}

uint32_t
tern_chunk_sched_outstanding(const struct tern_chunk_sched *cs)
{
	return cs->nout;
}

bool
tern_chunk_cut(const struct tern_bitmap *set, uint32_t set_id, uint64_t *pos, uint64_t max_pages,
               struct tern_msg_chunk *c)
{
	uint64_t first, count, pages = 0, start = 0, end = 0;
	uint32_t runs = 0;
	while (pages < max_pages && runs < TERN_CHUNK_MAX_RUNS) {
		if (!tern_bitmap_next_run(set, pos, max_pages - pages, &first, &count))
			break;
		if (runs == 0)
			start = first;
		end = first + count;
		pages += count;
		runs++;
	}
	if (pages == 0)
		return false;
	c->gpa = start << TERN_PAGE_SHIFT;
	c->len = (end - start) << TERN_PAGE_SHIFT;
	c->set = set_id;
	c->pages = pages;
	return true;
}
