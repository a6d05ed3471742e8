/*
 * Fencing a dead data connection before its chunks are resent.
 *
 * A connection the source gives up on (no acknowledgement in time, an
 * error, a kill) may still deliver at the destination: bytes already in its
 * socket buffers are read and written into guest memory after the source
 * moved on.  Resending its chunks at once on another connection could let
 * that stale copy land after the fresh one.  So the coordinator holds the
 * chunks, sends W_FENCE on connection 0, and requeues them only when the
 * destination answers that the connection writes nothing more (its actor
 * stopped, no write of it in progress).  Pages of those chunks are sent
 * nowhere else meanwhile: an iteration ends only when all its chunks are
 * acknowledged, and these are not.
 */
#include <stdio.h>

#include "actors/coordinator_int.h"
#include "tern/error.h"

static void
co_requeue(struct co_state *s, const uint64_t *ids, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++)
		tern_feeder_requeue(&s->feed, ids[i]);
}

void
co_conn_down(struct tern_actor *self, struct co_state *s, const struct tern_msg_conn_down *d)
{
	uint32_t n = d->chunks.count;
	struct co_fence *f;

	if (n == 0)
		return;
	if (s->pc && d->conn < s->nconns && n <= TERN_CONN_WINDOW_MAX) {
		/* Postcopy: the guest here is paused for good, so a resent page
		 * is the same page, and the destination places each page once:
		 * a late copy cannot land on a newer one.  No fence needed, and
		 * connection 0's chunks go again too (a recovery resends them). */
		uint64_t ids[TERN_CONN_WINDOW_MAX], unused;
		for (uint32_t i = 0; i < n; i++)
			tern_ranges_get(&d->chunks, i, &ids[i], &unused);
		co_requeue(s, ids, n);
		co_feed(self, s);
		return;
	}
	if (d->conn == 0 || d->conn >= s->nconns || !s->ctl.alive || s->phase >= CO_STATE) {
		/* Connection 0 carries the fence itself: losing it ends the
		 * migration (its exit says so), and nothing is resent. */
		return;
	}
	f = &s->fence[d->conn];
	if (f->pending || n > TERN_CONN_WINDOW_MAX) {
		co_abort(self, s, TERN_EPROTO, "connection %u went down twice (%u chunks)", d->conn,
		         n);
		return;
	}
	for (uint32_t i = 0; i < n; i++) {
		uint64_t unused;
		tern_ranges_get(&d->chunks, i, &f->ids[i], &unused);
	}
	f->n = n;
	f->pending = true;

	struct tern_msg m;
	tern_msg_init(&m, TERN_MSG_W_FENCE);
	m.u.w_fence.conn = d->conn;
	int rc = tern_ctl_send(self, &s->ctl, &m, NULL, 0);
	if (rc != 0)
		co_abort(self, s, rc, "cannot fence connection %u: %s", d->conn, tern_strerror(rc));
}

void
co_fence_done(struct tern_actor *self, struct co_state *s, const struct tern_msg_w_result *r)
{
	uint64_t conn = r->value;

	if (conn == 0 || conn >= s->nconns || !s->fence[conn].pending) {
		co_abort(self, s, TERN_EPROTO,
		         "the destination fenced connection %llu, never asked",
		         (unsigned long long)conn);
		return;
	}
	struct co_fence *f = &s->fence[conn];
	f->pending = false;
	s->a->stats->connections_fenced++;
	co_requeue(s, f->ids, f->n);
	f->n = 0;
	co_feed(self, s);
}
