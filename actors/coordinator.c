/*
 * Coordinator: the source's pre-copy state machine (see coordinator.h).
 *
 * Every iteration sends one dirty set: the coordinator cuts it into chunks
 * (windows of the bitmap holding at most chunk_size of dirty pages and
 * TERN_CHUNK_MAX_RUNS runs) and feeds them to the shared work queue as the
 * connections acknowledge earlier ones, keeping a bounded number outstanding.
 * When every chunk of an iteration is acknowledged (the destination has
 * written it), it takes the next dirty set from the DirtyLogActor and decides:
 * iterate again, or switch over when the expected downtime, measured wire
 * bandwidth against the dirty bytes left, fits the limit.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "actors/converge.h"
#include "actors/coordinator.h"
#include "actors/guest_call.h"
#include "net/wire.h"
#include "tern/error.h"

enum co_phase {
	CO_SETUP,      /* waiting for W_CONFIG's result */
	CO_BULK,       /* iteration 0: every populated page */
	CO_ITERATE,    /* dirty sets */
	CO_FINAL,      /* guest paused, sending the last dirty set */
	CO_STATE,      /* waiting for W_STATE's result */
	CO_DIGEST,     /* waiting for W_DIGEST's result */
	CO_HANDOFF,    /* W_COMPLETE sent: the destination resumes */
	CO_COMPLETED,
	CO_ABORTING, /* W_ABORT sent, source running: waiting for the answer */
	CO_ABORTED,
};

static const char *co_phase_names[] = { "setup", "bulk", "iterate", "switchover", "state",
	"verify", "handoff", "completed", "aborting", "aborted" };

/* How long an abort waits for the destination to acknowledge W_ABORT before
 * closing the connections (so it learns why rather than seeing a reset). */
#define CO_ABORT_WAIT_NS 1000000000ull

#define CO_STATE_MAX (1u << 20)

struct co_state {
	struct tern_coordinator_args *a;
	struct tern_guest *g;
	struct tern_queue *queue;      /* to the connections */
	struct tern_queue *scan_queue; /* to the zero scanners (detect mode) */
	struct tern_actor *scanners[TERN_MAX_SCANNERS];
	uint32_t nscanners;
	struct tern_bitmap zmap;       /* zero pages (detect) or holes (off) */
	int zero_mode;
	/* Scanning pays only where zero pages are: the recent yield decides
	 * whether a chunk goes through the scanners or straight to the
	 * connections (with a probe every CO_ZERO_PROBE chunks). */
	uint64_t zs_pages, zs_zero, zs_chunks;
	struct tern_actor *dirty_log;
	struct tern_actor *conns[TERN_MAX_CONNECTIONS];
	uint32_t nconns;
	enum co_phase phase;
	int paused;
	int resume_failed; /* every try failed: the session has the last word */
	int await_dirty;   /* the last set was empty: take again at the next tick */
	uint32_t limit_ms; /* downtime limit set while running (0: the option's) */
	uint32_t fds_handed; /* given sockets passed to connection actors */

	/* the set being sent */
	struct tern_bitmap bulk;
	struct tern_bitmap *cur;
	int cur_lent; /* cur belongs to the DirtyLogActor */
	uint64_t pos, chunk_pages, next_chunk;
	int cut_done, have_pending;
	struct tern_msg pending;
	uint64_t put, done, max_outstanding;

	/* iteration accounting */
	uint32_t iter;
	uint64_t iter_start_ns, iter_bytes, iter_pages;
	uint64_t bw_bps, cum_bytes, cum_ns;
	uint64_t dirty_pps, remaining;
	uint64_t start_ns, pause_ns, verify_ns, expected_ms, last_progress_ns;
	uint64_t state_len;
	uint8_t *state_buf;
	int conn0_alive;
	uint64_t abort_deadline_ns;
	uint64_t ctl_deadline_ns; /* a control request awaits its W_RESULT */

	/* Chunks put on the queue and not yet acknowledged, by id, so that a
	 * dead connection's chunks can be given to the others. */
	struct co_out {
		uint64_t id;
		struct tern_msg chunk;
	} *out;
	uint32_t nout;
	uint64_t *requeue; /* ids to put again, before new chunks */
	uint32_t nrequeue;
	uint32_t alive;    /* connections alive */
	int conn_dead[TERN_MAX_CONNECTIONS];

	/* Ring-only bulk pass. */
	int ring_pass, ring_active, pass_done;
	struct tern_bitmap rsend; /* ring pages behind the walk, being sent */
	uint64_t rpos, ring_budget, ring_step;
	uint32_t ring_out; /* chunks of rsend not yet acknowledged */

	/* Convergence: the throttle, its policy, stall detection. */
	struct tern_actor *throttle;
	int guard_ready, held;
	uint32_t throttle_pct;
	struct tern_converge_config conv;
	struct tern_converge_state conv_state;
	struct tern_converge_sample samples[64];
	uint32_t nsamples;
};

static void
co_progress(struct tern_actor *self, struct co_state *s)
{
	struct tern_stats *st = s->a->stats;
	uint64_t now = tern_now_ns();
	s->last_progress_ns = now;
	struct tern_msg m;
	tern_msg_init(&m, TERN_MSG_PROGRESS);
	struct tern_msg_progress *p = &m.u.progress;
	p->iter = s->iter;
	if (st->stalled && s->phase == CO_ITERATE)
		snprintf(p->state, sizeof(p->state), "stalled: %s", st->stall_reason);
	else if (s->throttle_pct && s->phase == CO_ITERATE)
		snprintf(p->state, sizeof(p->state), "iterate, throttle %u%%", s->throttle_pct);
	else
		snprintf(p->state, sizeof(p->state), "%s", co_phase_names[s->phase]);
	p->transferred = st->payload_bytes;
	p->remaining = s->remaining;
	p->dirty_pps = s->dirty_pps;
	p->bw_bps = s->bw_bps;
	p->eta_ms = s->bw_bps ? s->remaining * 1000 / s->bw_bps : 0;
	p->elapsed_ms = (now - s->start_ns) / 1000000;
	(void)tern_actor_send(self, s->a->driver, &m);
	tern_actor_counter(self, "remaining_bytes", (double)s->remaining);
	tern_actor_counter(self, "bandwidth_bps", (double)s->bw_bps);
}

static void
co_set_phase(struct tern_actor *self, struct co_state *s, enum co_phase p)
{
	s->phase = p;
	tern_actor_state(self, co_phase_names[p]);
	/* Every phase reaches the driver: a manager following the migration
	 * sees the switchover however short it is. */
	co_progress(self, s);
}

static int co_send_ctl(struct tern_actor *self, struct co_state *s, struct tern_msg *frame,
    const void *payload, size_t plen);

/* Resumes the source guest, retried (guest_call.h).  After a failure the
 * guest stays marked paused and no later path here tries again: the session
 * makes the last attempt and reports the outcome. */
static int
co_resume(struct tern_actor *self, struct co_state *s)
{
	int rc = tern_guest_resume_retry(s->g, self, tern_runtime_trace(tern_actor_rt(self)));
	if (rc == 0) {
		s->paused = 0;
	} else {
		s->resume_failed = 1;
		tern_actor_state(self, "source resume failed");
	}
	return rc;
}

/* After a failure the source guest must run again (unless the destination
 * may run it).  A resume that fails is added to the failure's reason, never
 * dropped. */
static void
co_resume_source(struct tern_actor *self, struct co_state *s)
{
	if (!s->paused || s->resume_failed || s->a->stats->handoff_unknown)
		return;
	int rc = co_resume(self, s);
	size_t n = strlen(s->a->err);
	if (rc != 0 && n > 0)
		snprintf(s->a->err + n, sizeof(s->a->err) - n,
		    "; the coordinator's %d resume tries failed: %s", TERN_RESUME_TRIES,
		    tern_strerror(rc));
}

/* Ends the migration with the source guest running (unless the handoff may
 * have happened).  Returns TERN_ACTOR_DONE: the coordinator's work is over. */
static int
co_abort(struct tern_actor *self, struct co_state *s, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int
co_abort(struct tern_actor *self, struct co_state *s, int code, const char *fmt, ...)
{
	if (s->phase >= CO_COMPLETED)
		return TERN_ACTOR_DONE;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(s->a->err, sizeof(s->a->err), fmt, ap);
	va_end(ap);
	s->a->result = code;
	int tell = 0;
	if (s->phase == CO_HANDOFF) {
		/* W_COMPLETE went out: the destination may already run the guest.
		 * Resuming here could run it twice, so it stays paused. */
		s->a->stats->handoff_unknown = 1;
	} else if (s->conns[0] != NULL && s->conn0_alive) {
		struct tern_msg ab;
		tern_msg_init(&ab, TERN_MSG_W_ABORT);
		ab.u.w_abort.code = code;
		snprintf(ab.u.w_abort.why, sizeof(ab.u.w_abort.why), "%s", s->a->err);
		tell = co_send_ctl(self, s, &ab, NULL, 0) == 0;
	}
	co_resume_source(self, s);
	snprintf(s->a->stats->outcome, sizeof(s->a->stats->outcome), "aborted");
	s->a->stats->throttle_pct = s->throttle_pct;
	if (tell) {
		s->abort_deadline_ns = tern_now_ns() + CO_ABORT_WAIT_NS;
		co_set_phase(self, s, CO_ABORTING);
		return 0;
	}
	co_set_phase(self, s, CO_ABORTED);
	return TERN_ACTOR_DONE;
}

static int
co_send_ctl(struct tern_actor *self, struct co_state *s, struct tern_msg *frame,
    const void *payload, size_t plen)
{
	uint8_t buf[1024];
	size_t len;
	frame->time_ns = tern_now_ns();
	int rc = tern_msg_encode(frame, buf, sizeof(buf), &len);
	if (rc != 0)
		return rc;
	struct tern_msg out;
	tern_msg_init(&out, TERN_MSG_CTL_OUT);
	out.u.ctl_out.frame = (struct tern_bin){ buf, len };
	out.u.ctl_out.payload = (struct tern_bin){ payload, plen };
	/* Every request but W_ABORT expects an answer within the I/O timeout
	 * (the digest also needs time to hash the destination's memory). */
	uint64_t limit = (uint64_t)(s->a->opts->io_timeout_ms ? s->a->opts->io_timeout_ms : 10000) *
	    1000000ull;
	if (frame->type == TERN_MSG_W_DIGEST)
		limit += s->g->region.size; /* 1 ns per byte: >= 1 GB/s hashing */
	s->ctl_deadline_ns = frame->type == TERN_MSG_W_ABORT ? 0 : tern_now_ns() + limit;
	return tern_actor_send(self, tern_actor_id(s->conns[0]), &out);
}

static int
co_bulk_extent(uint64_t start, uint64_t end, void *arg)
{
	struct co_state *s = arg;
	uint64_t first = start >> TERN_PAGE_SHIFT;
	uint64_t last = (end + TERN_PAGE_SIZE - 1) >> TERN_PAGE_SHIFT;
	if (s->zero_mode == TERN_ZERO_OFF) {
		for (uint64_t p = first; p < last; p++)
			s->zmap.words[p >> 6] &= ~(1ull << (p & 63));
	} else {
		tern_bitmap_set_range(&s->bulk, first, last - first);
	}
	return 0;
}

/* The bulk set: every page that may hold data.  Never-populated pages read
 * as zero on a fresh destination; they are skipped without being read (on a
 * memfd, reading a hole would allocate it; on anonymous memory it faults).
 * With --zero-pages off every page goes, and the hole map tells the
 * connections to send holes from a zero buffer instead of the mapping. */
static int
co_build_bulk(struct co_state *s)
{
	int rc = tern_bitmap_init(&s->bulk, s->g->npages);
	if (rc != 0)
		return rc;
	if (s->zero_mode == TERN_ZERO_OFF) {
		tern_bitmap_set_all(&s->bulk);
		tern_bitmap_set_all(&s->zmap);
	}
	return tern_guest_extents(s->g, co_bulk_extent, s);
}

/* Cuts the next chunk of cur starting at pos.  Returns 1 with *c filled, 0
 * when the set is exhausted. */
static int
co_cut_set(struct co_state *s, struct tern_bitmap *set, uint64_t *pos, struct tern_msg *c)
{
	uint64_t first, count, pages = 0, start = 0, end = 0;
	uint32_t runs = 0;
	while (pages < s->chunk_pages && runs < TERN_CHUNK_MAX_RUNS) {
		if (!tern_bitmap_next_run(set, pos, s->chunk_pages - pages, &first, &count))
			break;
		if (runs == 0)
			start = first;
		end = first + count;
		pages += count;
		runs++;
	}
	if (pages == 0)
		return 0;
	tern_msg_init(c, TERN_MSG_CHUNK);
	c->u.chunk.iter = s->iter;
	c->u.chunk.chunk = ++s->next_chunk;
	c->u.chunk.gpa = start << TERN_PAGE_SHIFT;
	c->u.chunk.len = (end - start) << TERN_PAGE_SHIFT;
	c->u.chunk.set = (uint64_t)(uintptr_t)set;
	c->u.chunk.pages = pages;
	if (s->zero_mode == TERN_ZERO_OFF && set == &s->bulk && s->zmap.words != NULL) {
		c->u.chunk.flags = TERN_CHUNK_ZHOLES;
		c->u.chunk.zmap = (uint64_t)(uintptr_t)&s->zmap;
	}
	return 1;
}

/*
 * Ring-only bulk pass (seed 001): one walk over memory from first to last
 * page, while the pages the vCPUs' dirty rings report behind the walk are
 * sent as they arrive; after every ring_step ring pages one chunk of the walk
 * is forced, so the pass always completes however fast the guest writes.
 * Pages reported ahead of the walk are simply added to it.  No bitmap is
 * harvested from the kernel: the rings list exactly the pages written.
 */
static int
co_cut(struct co_state *s, struct tern_msg *c)
{
	if (!s->ring_pass)
		return co_cut_set(s, s->cur, &s->pos, c);
	if (s->ring_active && s->ring_budget < s->ring_step) {
		if (co_cut_set(s, &s->rsend, &s->rpos, c)) {
			s->ring_budget += c->u.chunk.pages;
			s->ring_out++;
			s->a->stats->ring_pass_pages += c->u.chunk.pages;
			return 1;
		}
		s->ring_active = 0;
	}
	if (co_cut_set(s, &s->bulk, &s->pos, c)) {
		s->ring_budget = 0; /* the forced background step */
		return 1;
	}
	s->pass_done = 1;
	if (s->ring_active && co_cut_set(s, &s->rsend, &s->rpos, c)) {
		s->ring_out++;
		s->a->stats->ring_pass_pages += c->u.chunk.pages;
		return 1;
	}
	s->ring_active = 0;
	return 0;
}

static int co_take(struct tern_actor *self, struct co_state *s, int final,
    struct tern_bitmap **set, uint64_t *pages);
static int co_give(struct tern_actor *self, struct co_state *s, struct tern_bitmap *set);

/* Collects the ring pages reported since the last time: behind the walk
 * they go to the ring set (idle now: all its chunks were acknowledged),
 * ahead of it into the walk itself (words no chunk has reached yet). */
static int
co_ring_refill(struct tern_actor *self, struct co_state *s)
{
	if (!s->ring_pass || s->ring_active || s->ring_out > 0 || s->cut_done)
		return 0;
	struct tern_bitmap *d;
	uint64_t pages;
	int rc = co_take(self, s, 0, &d, &pages);
	if (rc != 0)
		return rc;
	uint64_t cw = s->pass_done ? d->nwords : s->pos >> 6;
	uint64_t any = 0;
	for (uint64_t w = 0; w < d->nwords; w++) {
		if (w > cw) {
			s->bulk.words[w] |= d->words[w];
			s->rsend.words[w] = 0;
		} else {
			s->rsend.words[w] = d->words[w];
			any |= d->words[w];
		}
	}
	s->rpos = 0;
	s->ring_active = any != 0;
	return co_give(self, s, d);
}

static int co_iteration_done(struct tern_actor *self, struct co_state *s);

static struct co_out *
co_out_find(struct co_state *s, uint64_t id)
{
	for (uint32_t i = 0; i < s->nout; i++)
		if (s->out[i].id == id)
			return &s->out[i];
	return NULL;
}

static void
co_out_remove(struct co_state *s, uint64_t id)
{
	struct co_out *o = co_out_find(s, id);
	if (o != NULL)
		*o = s->out[--s->nout];
}

static struct tern_queue *co_route(struct co_state *s, struct tern_msg *c);

/* Puts back the chunks of a dead connection (they stay outstanding). */
static int
co_requeue(struct tern_actor *self, struct co_state *s)
{
	while (s->nrequeue > 0) {
		struct co_out *o = co_out_find(s, s->requeue[s->nrequeue - 1]);
		if (o == NULL) { /* acknowledged meanwhile after all */
			s->nrequeue--;
			continue;
		}
		int rc = tern_queue_put(co_route(s, &o->chunk), tern_actor_id(self), &o->chunk, 0);
		if (rc == TERN_ETIMEDOUT)
			return 0;
		if (rc != 0)
			return co_abort(self, s, rc, "work queue failed: %s", tern_strerror(rc));
		s->nrequeue--;
		s->a->stats->chunks_requeued++;
	}
	return 0;
}

#define CO_CHUNK_VIA_SCAN 0x100u /* coordinator-only: this chunk went to the scanners */
#define CO_ZERO_WARMUP 8192u      /* pages always scanned before judging the yield */
#define CO_ZERO_PROBE 16u

/* Where chunk c goes: the scanners (detect mode, while they find zero
 * pages: at least 1% of the recent pages) or the connections directly.
 * Fully random memory then costs one probe chunk in sixteen. */
static struct tern_queue *
co_route(struct co_state *s, struct tern_msg *c)
{
	if (s->scan_queue == NULL)
		return s->queue;
	if (c->u.chunk.flags & CO_CHUNK_VIA_SCAN)
		return s->scan_queue; /* a resend keeps its route */
	bool useful = s->zs_pages < CO_ZERO_WARMUP || s->zs_zero * 100 >= s->zs_pages;
	if (useful || s->zs_chunks++ % CO_ZERO_PROBE == 0) {
		c->u.chunk.flags |= CO_CHUNK_VIA_SCAN;
		return s->scan_queue;
	}
	s->a->stats->pages_scan_skipped += c->u.chunk.pages;
	return s->queue;
}

static int
co_feed(struct tern_actor *self, struct co_state *s)
{
	if (s->cur == NULL)
		return 0; /* no iteration running (setup, or between sets) */
	int rc = co_requeue(self, s);
	if (rc != 0 || s->nrequeue > 0)
		return rc;
	while (s->put - s->done < s->max_outstanding) {
		if (!s->have_pending) {
			if (s->cut_done || !co_cut(s, &s->pending)) {
				s->cut_done = 1;
				break;
			}
			s->have_pending = 1;
		}
		rc = tern_queue_put(co_route(s, &s->pending), tern_actor_id(self), &s->pending, 0);
		if (rc == TERN_ETIMEDOUT)
			break; /* full: retried on the next ack or tick */
		if (rc != 0)
			return co_abort(self, s, rc, "work queue failed: %s", tern_strerror(rc));
		s->have_pending = 0;
		s->put++;
		s->iter_pages += s->pending.u.chunk.pages;
		s->out[s->nout++] = (struct co_out){ s->pending.u.chunk.chunk, s->pending };
	}
	if (s->cut_done && !s->have_pending && s->done == s->put)
		return co_iteration_done(self, s);
	return 0;
}

static int
co_start_iteration(struct tern_actor *self, struct co_state *s, struct tern_bitmap *set,
    int lent)
{
	s->cur = set;
	s->cur_lent = lent;
	s->pos = 0;
	s->cut_done = 0;
	s->have_pending = 0;
	s->put = s->done = 0;
	s->iter_bytes = s->iter_pages = 0;
	s->iter_start_ns = tern_now_ns();
	s->remaining = tern_bitmap_count(set) * TERN_PAGE_SIZE;
	tern_actor_counter(self, "iteration", (double)s->iter);
	tern_actor_event(self, "iteration", NULL);
	return co_feed(self, s);
}

static int
co_take(struct tern_actor *self, struct co_state *s, int final, struct tern_bitmap **set,
    uint64_t *pages)
{
	struct tern_msg m, r;
	tern_msg_init(&m, TERN_MSG_DIRTY_TAKE);
	m.u.dirty_take.final = final;
	int rc = tern_actor_request(self, tern_actor_id(s->dirty_log), &m, &r, 5000);
	if (rc != 0)
		return rc;
	if (r.type != TERN_MSG_DIRTY_SET)
		return TERN_EPROTO;
	*set = (struct tern_bitmap *)(uintptr_t)r.u.dirty_set.set;
	*pages = r.u.dirty_set.pages;
	s->dirty_pps = r.u.dirty_set.rate_pps;
	return 0;
}

static int
co_give(struct tern_actor *self, struct co_state *s, struct tern_bitmap *set)
{
	struct tern_msg m;
	tern_msg_init(&m, TERN_MSG_DIRTY_GIVE);
	m.u.dirty_give.set = (uint64_t)(uintptr_t)set;
	return tern_actor_send(self, tern_actor_id(s->dirty_log), &m);
}

/* Asks the ThrottleActor for pct (its reply is ignored: the actor reports
 * the achieved share in the trace). */
static void
co_throttle(struct tern_actor *self, struct co_state *s, uint32_t pct)
{
	if (s->throttle == NULL || pct == s->throttle_pct)
		return;
	struct tern_msg m;
	tern_msg_init(&m, TERN_MSG_THROTTLE_SET);
	m.u.throttle_set.pct = pct;
	if (tern_actor_send(self, tern_actor_id(s->throttle), &m) == 0) {
		s->throttle_pct = pct;
		if (pct > s->a->stats->throttle_max_pct)
			s->a->stats->throttle_max_pct = pct;
	}
}

/* Milliseconds to send bytes at the measured bandwidth, plus the vCPU pause
 * and a round trip for the state and the confirmation. */
static uint64_t
co_expected_ms(const struct co_state *s, uint64_t bytes)
{
	if (bytes == 0)
		return s->g->stats.last_pause_ns / 1000000 + 1;
	if (s->bw_bps == 0)
		return UINT64_MAX;
	return bytes * 1000 / s->bw_bps + s->g->stats.last_pause_ns / 1000000 + 1;
}

static uint64_t
co_limit_ms(const struct co_state *s)
{
	if (s->limit_ms != 0)
		return s->limit_ms; /* changed while running */
	return s->a->opts->downtime_limit_ms ? s->a->opts->downtime_limit_ms : 300;
}

static int
co_switchover(struct tern_actor *self, struct co_state *s, struct tern_bitmap *set)
{
	co_set_phase(self, s, CO_FINAL);
	/* The throttle must neither be pausing the guest now nor resume it
	 * behind our back: hold it for the rest of the switchover. */
	if (s->guard_ready && !s->held) {
		(void)tern_throttle_guard_hold(&s->a->guard);
		s->held = 1;
	}
	s->pause_ns = tern_now_ns();
	/* Marked paused before the call: a pause that fails half way may have
	 * stopped some vCPUs, and the abort's resume (idempotent) restarts them. */
	s->paused = 1;
	int rc = tern_guest_pause_checked(s->g, tern_runtime_trace(tern_actor_rt(self)));
	if (rc != 0)
		return co_abort(self, s, rc, "cannot pause the guest: %s", tern_strerror(rc));
	s->a->stats->pause_latency_us = s->g->stats.last_pause_ns / 1000;
	/* The last harvest: what the guest wrote since the set was taken. */
	struct tern_bitmap *last;
	uint64_t pages;
	rc = co_take(self, s, 1, &last, &pages);
	if (rc != 0)
		return co_abort(self, s, rc, "final dirty-log harvest failed: %s",
		    tern_strerror(rc));
	tern_bitmap_or(set, last);
	if ((rc = co_give(self, s, last)) != 0)
		return co_abort(self, s, rc, "dirty-log actor gone");
	uint64_t final_pages = tern_bitmap_count(set);
	uint64_t expected = co_expected_ms(s, final_pages * TERN_PAGE_SIZE);
	/* Strict: with the freshest numbers, the pause must fit the limit.
	 * If the guest wrote more than predicted, run it again and iterate
	 * rather than overshoot (the complaint users of QEMU and CH make). */
	if (!s->a->opts->switchover_loose && expected > co_limit_ms(s)) {
		/* Never iterate on with a paused guest: a failed resume ends it. */
		if ((rc = co_resume(self, s)) != 0) {
			(void)co_give(self, s, set);
			return co_abort(self, s, rc,
			    "resuming the source guest after the strict switchover check "
			    "failed %d times: %s", TERN_RESUME_TRIES, tern_strerror(rc));
		}
		if (s->held) {
			tern_throttle_guard_unhold(&s->a->guard);
			s->held = 0;
		}
		s->a->stats->switchover_retries++;
		tern_actor_counter(self, "switchover_retry_expected_ms", (double)expected);
		co_set_phase(self, s, CO_ITERATE);
		return co_start_iteration(self, s, set, 1);
	}
	s->a->stats->expected_downtime_ms = expected;
	s->a->stats->final_pages = final_pages;
	s->a->stats->throttle_pct = s->throttle_pct;
	return co_start_iteration(self, s, set, 1);
}

/* Decides the throttle for the next iteration and watches for a stall. */
static void
co_converge(struct tern_actor *self, struct co_state *s, uint64_t dirty_bytes, uint64_t now)
{
	const struct tern_send_opts *o = s->a->opts;
	struct tern_stats *st = s->a->stats;
	double dirty_bps = (double)s->dirty_pps * TERN_PAGE_SIZE, bw = (double)s->bw_bps;
	uint32_t pct = s->throttle_pct;
	switch (o->auto_converge) {
	case TERN_CONVERGE_STEP:
	case TERN_CONVERGE_QEMU:
		pct = tern_converge_step(&s->conv, &s->conv_state, dirty_bytes, s->iter_bytes);
		break;
	case TERN_CONVERGE_RATE: {
		struct tern_converge_rate_in in = {
			.dirty_bps = dirty_bps,
			.current_pct = s->throttle_pct,
			.bw_bps = bw,
			.downtime_s = (double)co_limit_ms(s) / 1000.0,
			.remaining = dirty_bytes,
			.iterations = 1,
		};
		pct = tern_converge_rate_pct(&in);
		/* Never below what already failed to converge. */
		if (pct < s->throttle_pct)
			pct = s->throttle_pct;
		break;
	}
	default:
		break;
	}
	co_throttle(self, s, pct);
	tern_actor_counter(self, "throttle_pct", (double)s->throttle_pct);

	/* Stall: remaining bytes no longer shrinking over the window. */
	if (s->nsamples == sizeof(s->samples) / sizeof(s->samples[0])) {
		memmove(s->samples, s->samples + 1, sizeof(s->samples) - sizeof(s->samples[0]));
		s->nsamples--;
	}
	s->samples[s->nsamples++] = (struct tern_converge_sample){ now, dirty_bytes };
	uint64_t window = (uint64_t)(o->stall_window_ms ? o->stall_window_ms : 5000) * 1000000ull;
	char why[sizeof(st->stall_reason)];
	bool stalled = tern_converge_stalled(s->samples, s->nsamples, window, dirty_bps, bw, why,
	    sizeof(why));
	if (stalled && !st->stalled) {
		snprintf(st->stall_reason, sizeof(st->stall_reason), "%s", why);
		tern_actor_state(self, "stalled");
	}
	st->stalled = stalled;
}

static int
co_send_state(struct tern_actor *self, struct co_state *s)
{
	size_t len = 0;
	int rc = tern_guest_fault_hit("save", tern_runtime_trace(tern_actor_rt(self)));
	if (rc == 0)
		rc = s->g->ops->state_save(s->g, s->state_buf, CO_STATE_MAX, &len);
	if (rc != 0)
		return co_abort(self, s, rc, "cannot save guest state: %s",
		    s->g->why[0] ? s->g->why : tern_strerror(rc));
	s->state_len = len;
	struct tern_msg f;
	tern_msg_init(&f, TERN_MSG_W_STATE);
	f.u.w_state.len = len;
	co_set_phase(self, s, CO_STATE);
	rc = co_send_ctl(self, s, &f, s->state_buf, len);
	if (rc != 0)
		return co_abort(self, s, rc, "cannot send the state: %s", tern_strerror(rc));
	return 0;
}

static int co_next_pass(struct tern_actor *self, struct co_state *s, uint64_t now);

static int
co_iteration_done(struct tern_actor *self, struct co_state *s)
{
	uint64_t now = tern_now_ns(), ns = now - s->iter_start_ns;
	struct tern_stats *st = s->a->stats;
	st->iterations++;
	s->cum_bytes += s->iter_bytes;
	s->cum_ns += ns;
	/* Small iterations measure latency, not bandwidth: trust them only
	 * above 4 MiB, else use everything sent so far. */
	if (s->iter_bytes >= (4u << 20) && ns > 0)
		s->bw_bps = (uint64_t)((double)s->iter_bytes * 1e9 / (double)ns);
	else if (s->cum_ns > 0 && s->cum_bytes > 0)
		s->bw_bps = (uint64_t)((double)s->cum_bytes * 1e9 / (double)s->cum_ns);
	s->remaining = 0;
	s->ring_pass = 0; /* the walk is over: plain iterations from here */
	co_progress(self, s);

	if (s->phase == CO_FINAL) {
		if (s->cur_lent && co_give(self, s, s->cur) != 0)
			return co_abort(self, s, TERN_EACTOR, "dirty-log actor gone");
		s->cur = NULL;
		return co_send_state(self, s);
	}
	if (s->cur_lent && co_give(self, s, s->cur) != 0)
		return co_abort(self, s, TERN_EACTOR, "dirty-log actor gone");
	s->cur = NULL;
	return co_next_pass(self, s, now);
}

/* co_next_pass takes the dirty set and decides: switch over, or iterate on
 * it.  An empty set that still does not fit the limit (the pages written
 * since the last background sweep are only projected) is not iterated on:
 * that would spin through empty passes.  It waits for the next sweep
 * instead (co_tick calls again). */
static int
co_next_pass(struct tern_actor *self, struct co_state *s, uint64_t now)
{
	struct tern_stats *st = s->a->stats;
	struct tern_bitmap *set;
	uint64_t pages;
	s->await_dirty = 0;
	int rc = co_take(self, s, 0, &set, &pages);
	if (rc != 0)
		return co_abort(self, s, rc, "dirty-log harvest failed: %s", tern_strerror(rc));
	uint64_t bytes = pages * TERN_PAGE_SIZE;
	s->remaining = bytes;
	uint64_t limit = co_limit_ms(s);
	/* The set is what the background sweeps found; the pages written since
	 * the last sweep are not in it yet.  Project them from the dirty rate
	 * over one period, so a set taken just before a sweep does not look
	 * smaller than the guest's real backlog. */
	uint32_t period = s->a->opts->dirty_period_ms ? s->a->opts->dirty_period_ms : 30;
	uint64_t pending = s->dirty_pps * TERN_PAGE_SIZE * period / 1000;
	uint64_t expected = co_expected_ms(s, bytes + pending);
	s->iter++;
	if (expected <= limit) {
		s->expected_ms = expected;
		return co_switchover(self, s, set);
	}
	co_converge(self, s, bytes, now);
	uint64_t elapsed_ms = (now - s->start_ns) / 1000000;
	if (s->a->opts->timeout_ms && elapsed_ms >= s->a->opts->timeout_ms) {
		char why[sizeof(st->stall_reason)];
		tern_converge_reason((double)s->dirty_pps * TERN_PAGE_SIZE, (double)s->bw_bps, why,
		    sizeof(why));
		(void)co_give(self, s, set);
		return co_abort(self, s, TERN_ECONVERGE,
		    "did not converge in %" PRIu64 " ms: %" PRIu64 " dirty bytes at %" PRIu64
		    " B/s would take %" PRIu64 " ms, limit %" PRIu64 " ms; %s (throttle %u%%)",
		    elapsed_ms, bytes, s->bw_bps, expected == UINT64_MAX ? 0 : expected, limit, why,
		    s->throttle_pct);
	}
	if (s->phase != CO_ITERATE)
		co_set_phase(self, s, CO_ITERATE);
	if (pages == 0) {
		s->iter--; /* no pass was made */
		if (co_give(self, s, set) != 0)
			return co_abort(self, s, TERN_EACTOR, "dirty-log actor gone");
		s->await_dirty = 1;
		return 0;
	}
	return co_start_iteration(self, s, set, 1);
}

static int
co_result(struct tern_actor *self, struct co_state *s, const struct tern_msg_w_result *r)
{
	struct tern_stats *st = s->a->stats;
	/* An answer that the handoff failed (the destination could not resume
	 * its guest: its vCPUs stay paused, tern/guest.h) is definite: the
	 * source can run again, unlike a lost answer (handoff_unknown). */
	if (r->status != 0 && s->phase == CO_HANDOFF && r->step == TERN_MSG_W_COMPLETE)
		co_set_phase(self, s, CO_STATE);
	if (r->status != 0)
		return co_abort(self, s, r->status == TERN_EVERIFY ? TERN_EVERIFY : TERN_EPEER,
		    "destination refused %s: %s", tern_msg_name(r->step),
		    r->why[0] ? r->why : tern_strerror(r->status));
	switch (s->phase) {
	case CO_SETUP:
		if (r->step != TERN_MSG_W_CONFIG)
			break;
		co_set_phase(self, s, CO_BULK);
		st->pages_skipped = s->g->npages - tern_bitmap_count(&s->bulk);
		s->ring_pass = s->a->opts->ring_only;
		return co_start_iteration(self, s, &s->bulk, 0);
	case CO_STATE:
		if (r->step != TERN_MSG_W_STATE)
			break;
		if (s->a->opts->verify) {
			struct tern_msg f;
			uint64_t t0 = tern_now_ns(), digest;
			int rc = tern_guest_digest(s->g, &digest);
			if (rc != 0)
				return co_abort(self, s, rc, "digest failed: %s", tern_strerror(rc));
			s->verify_ns += tern_now_ns() - t0;
			tern_msg_init(&f, TERN_MSG_W_DIGEST);
			f.u.w_digest.digest = digest;
			co_set_phase(self, s, CO_DIGEST);
			rc = co_send_ctl(self, s, &f, NULL, 0);
			if (rc != 0)
				return co_abort(self, s, rc, "cannot send the digest");
			return 0;
		}
		/* fallthrough */
	case CO_DIGEST: {
		if (s->phase == CO_DIGEST) {
			if (r->step != TERN_MSG_W_DIGEST)
				break;
			s->verify_ns += r->value; /* the destination's hashing time */
			st->verified = 1;
		}
		struct tern_msg f;
		tern_msg_init(&f, TERN_MSG_W_COMPLETE);
		co_set_phase(self, s, CO_HANDOFF);
		int rc = co_send_ctl(self, s, &f, NULL, 0);
		if (rc != 0)
			return co_abort(self, s, rc, "cannot send the handoff request");
		return 0;
	}
	case CO_HANDOFF: {
		if (r->step != TERN_MSG_W_COMPLETE)
			break;
		uint64_t now = tern_now_ns();
		st->downtime_ms = (now - s->pause_ns - s->verify_ns) / 1000000;
		st->verify_ms = s->verify_ns / 1000000;
		st->total_ms = (now - s->start_ns) / 1000000;
		snprintf(st->outcome, sizeof(st->outcome), "completed");
		s->a->result = 0;
		co_set_phase(self, s, CO_COMPLETED);
		return TERN_ACTOR_DONE;
	}
	default:
		break;
	}
	return co_abort(self, s, TERN_EPROTO, "unexpected result for %s in phase %s",
	    tern_msg_name(r->step), co_phase_names[s->phase]);
}

static int
co_ctl_in(struct tern_actor *self, struct co_state *s, const struct tern_msg *m)
{
	struct tern_msg f;
	int rc = tern_msg_decode(m->u.ctl_in.frame.ptr, m->u.ctl_in.frame.len, &f);
	if (rc != 0)
		return co_abort(self, s, rc, "malformed control frame from the destination");
	tern_actor_event(self, "recv", tern_msg_name(f.type));
	if (f.type == TERN_MSG_W_RESULT) {
		s->ctl_deadline_ns = 0;
		return co_result(self, s, &f.u.w_result);
	}
	if (f.type == TERN_MSG_W_ABORT)
		return co_abort(self, s, TERN_EPEER, "destination aborted: %s", f.u.w_abort.why);
	return co_abort(self, s, TERN_EPROTO, "unexpected %s frame from the destination",
	    tern_msg_name(f.type));
}

static int
co_handle(struct tern_actor *self, void *state, const struct tern_msg *m)
{
	struct co_state *s = state;
	if (m->type == TERN_MSG_SYS_EXIT && s->conns[0] != NULL &&
	    m->u.sys_exit.actor == tern_actor_id(s->conns[0]))
		s->conn0_alive = 0;
	if (s->phase == CO_ABORTING) {
		/* Only the answer to W_ABORT (or losing connection 0) matters now. */
		if (m->type == TERN_MSG_SYS_EXIT && !s->conn0_alive)
			return TERN_ACTOR_DONE;
		if (m->type == TERN_MSG_CTL_IN)
			return TERN_ACTOR_DONE;
		return 0;
	}
	if (m->type == TERN_MSG_THROTTLE_STATE)
		return 0; /* the throttle's acknowledgement; its trace says the rest */
	if (m->type == TERN_MSG_SYS_EXIT && s->throttle != NULL &&
	    m->u.sys_exit.actor == tern_actor_id(s->throttle)) {
		/* The throttle died: its guard has the vCPUs running; carry on
		 * without throttling. */
		int rc = tern_throttle_guard_release(&s->a->guard);
		(void)tern_actor_join(s->throttle, 2000, NULL);
		s->throttle = NULL;
		tern_actor_state(self, "throttle lost");
		if (rc != 0) {
			/* Its pause outlived it: never iterate on with a paused guest. */
			s->paused = 1;
			if ((rc = co_resume(self, s)) != 0)
				return co_abort(self, s, rc,
				    "the throttle died with the guest paused, and resuming it "
				    "failed %d times: %s", TERN_RESUME_TRIES, tern_strerror(rc));
		}
		return 0;
	}
	switch (m->type) {
	case TERN_MSG_PARAMS:
		/* Takes effect at the next switchover decision and chunk. */
		if (m->u.params.downtime_limit_ms != 0)
			s->limit_ms = m->u.params.downtime_limit_ms;
		if (m->u.params.max_bandwidth != 0)
			atomic_store_explicit(&s->a->limit.bytes_per_s,
			    m->u.params.max_bandwidth == UINT64_MAX ? 0 : m->u.params.max_bandwidth,
			    memory_order_relaxed);
		tern_actor_counter(self, "downtime_limit_ms", (double)co_limit_ms(s));
		return 0;
	case TERN_MSG_CANCEL:
		if (s->phase == CO_HANDOFF) {
			/* The destination may run the guest already: finish. */
			tern_actor_state(self, "cancel refused: handoff in progress");
			return 0;
		}
		return co_abort(self, s, TERN_ECANCELED, "cancelled: %s", m->u.cancel.why);
	case TERN_MSG_CHUNK_DONE: {
		struct co_out *o = co_out_find(s, m->u.chunk_done.chunk);
		if (o == NULL)
			return 0; /* a resent chunk acknowledged twice */
		if (o->chunk.u.chunk.set == (uint64_t)(uintptr_t)&s->rsend && s->ring_out > 0)
			s->ring_out--; /* at 0 the ring set may be refilled */
		if (o->chunk.u.chunk.flags & CO_CHUNK_VIA_SCAN) {
			s->zs_pages += o->chunk.u.chunk.pages;
			s->zs_zero += m->u.chunk_done.zero_pages;
			if (s->zs_pages > 65536) { /* a decaying window */
				s->zs_pages /= 2;
				s->zs_zero /= 2;
			}
		}
	}
		co_out_remove(s, m->u.chunk_done.chunk);
		s->done++;
		s->iter_bytes += m->u.chunk_done.bytes;
		s->a->stats->payload_bytes += m->u.chunk_done.bytes;
		s->a->stats->pages_sent += m->u.chunk_done.bytes / TERN_PAGE_SIZE;
		s->a->stats->pages_zero += m->u.chunk_done.zero_pages;
		if (s->remaining >= m->u.chunk_done.zero_pages * TERN_PAGE_SIZE)
			s->remaining -= m->u.chunk_done.zero_pages * TERN_PAGE_SIZE;
		if (s->remaining >= m->u.chunk_done.bytes)
			s->remaining -= m->u.chunk_done.bytes;
		return co_feed(self, s);
	case TERN_MSG_CTL_IN:
		return co_ctl_in(self, s, m);
	case TERN_MSG_CONN_DOWN: {
		const struct tern_msg_conn_down *d = &m->u.conn_down;
		for (uint32_t i = 0; i < d->chunks.count && s->nrequeue < s->max_outstanding; i++) {
			uint64_t id, unused;
			tern_ranges_get(&d->chunks, i, &id, &unused);
			if (co_out_find(s, id) != NULL)
				s->requeue[s->nrequeue++] = id;
		}
		return co_feed(self, s);
	}
	case TERN_MSG_SYS_EXIT: {
		const struct tern_msg_sys_exit *e = &m->u.sys_exit;
		for (uint32_t i = 1; i < s->nconns; i++) {
			if (s->conns[i] == NULL || e->actor != tern_actor_id(s->conns[i]) ||
			    s->conn_dead[i])
				continue;
			/* A data connection died: the others take its work. */
			s->conn_dead[i] = 1;
			s->alive--;
			s->a->stats->connections_lost++;
			s->a->stats->conn[i].lost = 1;
			uint32_t need = s->a->opts->connections_min ? s->a->opts->connections_min
								    : s->nconns;
			if (s->alive < need)
				return co_abort(self, s, e->code ? e->code : TERN_EACTOR,
				    "%u of %u connections left (need %u): %s", s->alive, s->nconns,
				    need, e->why[0] ? e->why : "a connection exited");
			tern_actor_counter(self, "connections_alive", (double)s->alive);
			return co_feed(self, s);
		}
		return co_abort(self, s, e->code ? e->code : TERN_EACTOR, "%s: %s",
		    e->name, e->why[0] ? e->why : "exited");
	}
	default:
		return co_abort(self, s, TERN_EPROTO, "unexpected message %s",
		    tern_msg_name(m->type));
	}
}

static int
co_tick(struct tern_actor *self, void *state)
{
	struct co_state *s = state;
	uint64_t now = tern_now_ns();
	if (s->phase == CO_ABORTING)
		return now >= s->abort_deadline_ns ? TERN_ACTOR_DONE : 0;
	if (s->phase == CO_BULK && s->ring_pass) {
		int rc = co_ring_refill(self, s);
		if (rc != 0)
			return co_abort(self, s, rc, "ring harvest failed: %s", tern_strerror(rc));
	}
	if (s->phase == CO_BULK || s->phase == CO_ITERATE || s->phase == CO_FINAL) {
		int rc = s->await_dirty ? co_next_pass(self, s, now) : co_feed(self, s);
		if (rc != 0)
			return rc;
	}
	if (now - s->last_progress_ns >= 500000000ull)
		co_progress(self, s);
	if (s->ctl_deadline_ns != 0 && now > s->ctl_deadline_ns)
		return co_abort(self, s, TERN_ETIMEDOUT,
		    "the destination did not answer in %s (I/O timeout)", co_phase_names[s->phase]);
	uint64_t elapsed_ms = (now - s->start_ns) / 1000000;
	/* Past the timeout before switchover: give up with the source running.
	 * A stalled iteration (a peer that stopped acking) is caught here too. */
	if (s->a->opts->timeout_ms && elapsed_ms >= s->a->opts->timeout_ms &&
	    s->phase <= CO_ITERATE) {
		char why[160];
		/* Mid-iteration the bandwidth so far is the freshest figure. */
		uint64_t ins = now - s->iter_start_ns;
		double bw = s->bw_bps ? (double)s->bw_bps
				      : (ins ? (double)s->iter_bytes * 1e9 / (double)ins : 0);
		if (s->phase == CO_BULK)
			snprintf(why, sizeof(why),
			    "the first pass over memory was not done: %.1f MB sent at %.1f MB/s",
			    (double)s->iter_bytes / 1e6, bw / 1e6);
		else
			tern_converge_reason((double)s->dirty_pps * TERN_PAGE_SIZE, bw, why,
			    sizeof(why));
		return co_abort(self, s, TERN_ECONVERGE,
		    "did not converge: timed out after %" PRIu64 " ms in %s (iteration %u, %" PRIu64
		    " bytes remaining); %s (throttle %u%%)",
		    elapsed_ms, co_phase_names[s->phase], s->iter, s->remaining, why,
		    s->throttle_pct);
	}
	return 0;
}

static int
co_init(struct tern_actor *self, void *state, void *arg)
{
	struct co_state *s = state;
	struct tern_coordinator_args *a = arg;
	const struct tern_send_opts *o = a->opts;
	struct tern_exit why;
	s->a = a;
	a->fds_owned = 1; /* co_stop closes the given sockets not handed on */
	s->g = a->guest;
	s->start_ns = tern_now_ns();
	s->last_progress_ns = s->start_ns;
	s->nconns = o->nfds ? o->nfds : o->connections ? o->connections : 1;
	uint64_t chunk = o->chunk_size ? o->chunk_size : (1u << 20);
	s->chunk_pages = chunk / TERN_PAGE_SIZE ? chunk / TERN_PAGE_SIZE : 1;
	a->result = TERN_ECANCELED;
	a->stats->connections = s->nconns;
	co_set_phase(self, s, CO_SETUP);

	s->state_buf = malloc(CO_STATE_MAX);
	if (s->state_buf == NULL)
		return TERN_ENOMEM;
	int rc;
	s->zero_mode = o->zero_pages;
	if ((rc = tern_queue_open(tern_actor_rt(self), "chunks", &s->queue)) != 0)
		return rc;
	if (s->zero_mode == TERN_ZERO_DETECT || s->zero_mode == TERN_ZERO_OFF) {
		if ((rc = tern_bitmap_init(&s->zmap, s->g->npages)) != 0)
			return rc;
	}
	if (s->zero_mode == TERN_ZERO_DETECT) {
		s->nscanners = o->zero_scanners ? o->zero_scanners : 1;
		if (s->nscanners > TERN_MAX_SCANNERS)
			s->nscanners = TERN_MAX_SCANNERS;
		if ((rc = tern_queue_open(tern_actor_rt(self), "scan", &s->scan_queue)) != 0)
			return rc;
		for (uint32_t i = 0; i < s->nscanners; i++) {
			struct tern_zero_scan_args *z = &a->scanners[i];
			z->guest = s->g;
			z->in = s->scan_queue;
			z->out = s->queue;
			z->zmap = &s->zmap;
			if ((rc = tern_spawn(tern_actor_rt(self), &tern_zero_scan_actor, z,
				 tern_actor_id(self), &s->scanners[i], &why)) != 0) {
				s->scanners[i] = NULL;
				return tern_actor_fail(self, rc, "cannot start a zero scanner: %s",
				    why.why);
			}
		}
	}
	a->dirty.guest = s->g;
	a->dirty.period_ms = o->dirty_period_ms;
	a->dirty.mode = o->dirty_log;
	a->dirty.ring_size = o->ring_size;
	if ((rc = tern_spawn(tern_actor_rt(self), &tern_dirty_log_actor, &a->dirty,
		 tern_actor_id(self), &s->dirty_log, &why)) != 0) {
		s->dirty_log = NULL;
		return tern_actor_fail(self, rc, "%s", why.why);
	}
	if (o->ring_only) {
		if (o->dirty_log == NULL || strcmp(o->dirty_log, "ring") != 0) {
			return tern_actor_fail(self, TERN_EINVAL, "--ring-only needs --dirty-log ring");
		}
		if ((rc = tern_bitmap_init(&s->rsend, s->g->npages)) != 0)
			return rc;
		s->ring_step = o->ring_step ? o->ring_step : 1024;
	}
	atomic_init(&a->limit.bytes_per_s, o->max_bandwidth);
	atomic_init(&a->limit.next_ns, 0);
	if (o->auto_converge != TERN_CONVERGE_OFF) {
		if (o->auto_converge == TERN_CONVERGE_QEMU)
			tern_converge_defaults_qemu(&s->conv);
		else
			tern_converge_defaults_seed(&s->conv);
		if (o->throttle_initial)
			s->conv.initial_pct = o->throttle_initial;
		if (o->throttle_increment)
			s->conv.increment_pct = o->throttle_increment;
		if (o->throttle_max)
			s->conv.max_pct = o->throttle_max;
		if ((rc = tern_throttle_guard_init(&a->guard, s->g)) != 0)
			return rc;
		s->guard_ready = 1;
		a->throttle.guest = s->g;
		a->throttle.guard = &a->guard;
		a->throttle.result = &a->throttle_result;
		a->throttle.realtime = true;
		if ((rc = tern_spawn(tern_actor_rt(self), &tern_throttle_actor, &a->throttle,
			 tern_actor_id(self), &s->throttle, &why)) != 0) {
			s->throttle = NULL;
			return tern_actor_fail(self, rc, "cannot start the throttle: %s", why.why);
		}
	}
	/* Only now, with every later write tracked, may the bulk set be read
	 * off the memfd: a hole written before tracking started and after the
	 * scan would be in neither set — a lost page. */
	if ((rc = co_build_bulk(s)) != 0) {
		return tern_actor_fail(self, rc, "cannot map guest memory: %s", tern_strerror(rc));
	}
	for (uint32_t i = 0; i < s->nconns; i++) {
		struct tern_conn_send_args *c = &a->conns[i];
		c->guest = s->g;
		c->queue = s->queue;
		c->to = o->to != NULL ? o->to : "the given socket";
		c->given_fd = o->nfds ? o->fds[i] : -1;
		s->fds_handed = i + 1;
		c->migration = a->migration;
		c->auth = o->auth;
		c->conn = i;
		c->nconns = s->nconns;
		c->coordinator = tern_actor_id(self);
		c->window = 4;
		c->limit = &a->limit; /* a cap may come later (PARAMS) */
		c->deadline_ms = o->io_timeout_ms ? (int)o->io_timeout_ms : 10000;
		rc = tern_spawn(tern_actor_rt(self), &tern_conn_send_actor, c, tern_actor_id(self),
		    &s->conns[i], &why);
		if (rc != 0) {
			s->conns[i] = NULL;
			return tern_actor_fail(self, rc, "%s", why.why);
		}
	}
	/* Enough outstanding to keep every connection's window and every
	 * scanner busy, no more: nothing queued far ahead of the wire. */
	s->max_outstanding = (uint64_t)s->nconns * a->conns[0].window + 2 + 2ull * s->nscanners;
	s->conn0_alive = 1;
	s->alive = s->nconns;
	s->out = calloc(s->max_outstanding, sizeof(*s->out));
	s->requeue = calloc(s->max_outstanding, sizeof(*s->requeue));
	if (s->out == NULL || s->requeue == NULL)
		return TERN_ENOMEM;

	struct tern_msg f;
	tern_msg_init(&f, TERN_MSG_W_CONFIG);
	f.u.w_config.mem_size = s->g->region.size;
	f.u.w_config.page_size = TERN_PAGE_SIZE;
	f.u.w_config.vcpus = s->g->cfg.vcpus;
	f.u.w_config.verify = o->verify != 0;
	rc = tern_guest_spec_format(&s->g->cfg, f.u.w_config.guest, sizeof(f.u.w_config.guest));
	if (rc != 0)
		return rc;
	if ((rc = co_send_ctl(self, s, &f, NULL, 0)) != 0)
		return rc;
	tern_actor_set_tick(self, 20000000ull);
	return 0;
}

static void
co_stop_child(struct tern_actor **a)
{
	tern_actor_stop_join(a, 2000, NULL);
}

static void
co_stop(struct tern_actor *self, void *state)
{
	struct co_state *s = state;
	struct tern_coordinator_args *a = s->a;
	if (a == NULL)
		return;
	/* Ended (killed, failed) while waiting for the handoff's answer: the
	 * destination may run the guest, so the source one must stay paused. */
	if (s->phase == CO_HANDOFF)
		a->stats->handoff_unknown = 1;
	/* Killed or failed before the handoff: the source guest runs again. */
	if (s->phase != CO_COMPLETED)
		co_resume_source(self, s);
	/* Given sockets no connection actor took: still ours to close. */
	for (uint32_t i = s->fds_handed; i < a->opts->nfds; i++)
		close(a->opts->fds[i]);
	s->fds_handed = a->opts->nfds;
	if (s->scan_queue != NULL)
		tern_queue_close(s->scan_queue);
	if (s->queue != NULL)
		tern_queue_close(s->queue);
	for (uint32_t i = 0; i < s->nscanners; i++) {
		co_stop_child(&s->scanners[i]);
		struct tern_zero_scan_args *z = &a->scanners[i];
		a->stats->pages_scanned += atomic_load(&z->pages);
		a->stats->zero_scan_ms += atomic_load(&z->scan_ns) / 1000000;
	}
	for (uint32_t i = 0; i < s->nconns; i++)
		co_stop_child(&s->conns[i]);
	co_stop_child(&s->dirty_log);
	if (s->throttle != NULL)
		co_stop_child(&s->throttle);
	if (s->guard_ready) {
		/* Whatever happened to the throttle, the vCPUs it paused run. */
		if (s->held)
			tern_throttle_guard_unhold(&a->guard);
		if (tern_throttle_guard_release(&a->guard) != 0 && s->phase != CO_COMPLETED) {
			s->paused = 1; /* the throttle's pause outlived it */
			co_resume_source(self, s);
		}
		tern_throttle_guard_fini(&a->guard);
		s->guard_ready = 0;
	}
	for (uint32_t i = 0; i < s->nconns; i++) {
		struct tern_conn_send_args *c = &a->conns[i];
		struct tern_conn_stats *cs = &a->stats->conn[i];
		cs->bytes = atomic_load(&c->bytes);
		cs->payload = atomic_load(&c->payload);
		cs->chunks = atomic_load(&c->chunks);
		uint64_t f = atomic_load(&c->first_send_ns), l = atomic_load(&c->last_ack_ns);
		cs->active_ms = f && l > f ? (l - f) / 1000000 : 0;
		a->stats->bytes_sent += cs->bytes;
	}
	free(s->out);
	free(s->requeue);
	s->out = NULL;
	s->requeue = NULL;
	a->stats->downtime_limit_ms = (uint32_t)co_limit_ms(s);
	/* Every outcome reports how long it ran, not only a completed one. */
	if (a->stats->total_ms == 0 && s->start_ns != 0)
		a->stats->total_ms = (tern_now_ns() - s->start_ns) / 1000000;
	a->stats->dirty_rate_pps = s->dirty_pps;
	a->stats->bandwidth_bps = s->bw_bps;
	a->stats->transfer_ms = s->cum_ns / 1000000;
	tern_bitmap_fini(&s->bulk);
	tern_bitmap_fini(&s->zmap);
	tern_bitmap_fini(&s->rsend);
	free(s->state_buf);
	s->state_buf = NULL;
}

const struct tern_actor_desc tern_coordinator_actor = {
	.name = "coordinator",
	.state_size = sizeof(struct co_state),
	.init = co_init,
	.handle = co_handle,
	.tick = co_tick,
	.stop = co_stop,
};
