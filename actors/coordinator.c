/*
 * Coordinator: the source's pre-copy phase machine (see coordinator.h).
 *
 * Every iteration sends one page set: the feeder (actors/feeder.h) cuts it
 * into chunks and puts them on the work queues as the connections
 * acknowledge earlier ones.  When every chunk of an iteration is
 * acknowledged (the destination has written it), the coordinator takes the
 * next dirty set from the DirtyLogActor and decides: iterate again, or
 * switch over when the expected downtime, measured wire bandwidth against
 * the dirty bytes left, fits the limit.
 *
 * Start-up, children and statistics: coordinator_setup.c.  The chunk
 * scheduler: chunk_sched.c; the ring-only walk: ring_pass.c; the throttle
 * policy and stall detection: converge.c; control frames: control.c.
 *
 * Every step below that can end the migration calls co_abort or reaches a
 * final phase; none returns a status.  handle and tick return co_status, so
 * "over" has one meaning: the phase is final (and the children have gone).
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "actors/coordinator_int.h"
#include "actors/guest_call.h"
#include "tern/error.h"

const char *const co_phase_names[] = {
    "setup",   "bulk",      "iterate",         "switchover",      "state",
    "verify",  "postcopy",  "postcopy-stream", "postcopy-paused", "postcopy-recover",
    "handoff", "completed", "aborting",        "aborted"};

/* How long an abort waits for the destination to acknowledge W_ABORT before
 * closing the connections (so it learns why rather than seeing a reset). */
#define CO_ABORT_WAIT_NS 1000000000ull

static bool
co_over(const struct co_state *s)
{
	return s->phase == CO_COMPLETED || s->phase == CO_ABORTED;
}

/* What handle and tick return: once the migration is over, the children's
 * final counters are collected before the coordinator stops. */
static int
co_status(struct tern_actor *self, struct co_state *s)
{
	return co_over(s) ? co_close(self, s) : 0;
}

void
co_set_phase(struct tern_actor *self, struct co_state *s, enum co_phase p)
{
	s->phase = p;
	tern_actor_state(self, co_phase_names[p]);
	/* Every phase reaches the driver: a manager following the migration
	 * sees the switchover however short it is. */
	co_progress(self, s);
}

/* Resumes the source guest, retried (guest_call.h).  After a failure the
 * guest stays marked paused and no later path here tries again: the session
 * makes the last attempt and reports the outcome. */
int
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
void
co_resume_source(struct tern_actor *self, struct co_state *s)
{
	/* After a postcopy switch the destination's guest has run: this one
	 * must never run again. */
	if (!s->paused || s->resume_failed || s->a->stats->handoff_unknown || s->pc)
		return;
	int rc = co_resume(self, s);
	size_t n = strlen(s->a->err);
	if (rc != 0 && n > 0)
		snprintf(s->a->err + n, sizeof(s->a->err) - n,
		         "; the coordinator's %d resume tries failed: %s", TERN_RESUME_TRIES,
		         tern_strerror(rc));
}

/* Ends the migration with the source guest running (unless the handoff may
 * have happened): the phase becomes aborting (the destination was told and
 * its answer is awaited) or aborted.  A migration already over stays so. */
void
co_abort(struct tern_actor *self, struct co_state *s, int code, const char *fmt, ...)
{
	if (s->phase >= CO_COMPLETED)
		return;
	char why[TERN_STR_MAX];
	va_list ap;
	va_start(ap, fmt);
	terni_verrf(why, sizeof(why), fmt, ap);
	va_end(ap);
	/* Postcopy: a control frame that finds connection 0 gone is a lost
	 * link, which pauses while it may come back. */
	if (code == TERN_ECLOSED && co_pc_recoverable(s)) {
		co_pc_lost(self, s, why);
		return;
	}
	snprintf(s->a->err, sizeof(s->a->err), "%s", why);
	s->a->result = code;
	bool tell = false;
	if (s->phase == CO_HANDOFF) {
		/* W_COMPLETE went out: the destination may already run the guest.
		 * Resuming here could run it twice, so it stays paused. */
		s->a->stats->handoff_unknown = 1;
	} else {
		tell = tern_ctl_abort(self, &s->ctl, code, s->a->err);
	}
	co_resume_source(self, s);
	snprintf(s->a->stats->outcome, sizeof(s->a->stats->outcome), "%s",
	         s->pc ? "postcopy-failed" : "aborted");
	if (s->pc) {
		size_t n = strlen(s->a->err);
		snprintf(s->a->err + n, sizeof(s->a->err) - n,
		         " (after the postcopy switch: the guest here stays paused, the "
		         "destination's is incomplete)");
	}
	s->a->stats->throttle_pct = s->throttle_pct;
	if (tell) {
		s->abort_deadline_ns = tern_now_ns() + CO_ABORT_WAIT_NS;
		co_set_phase(self, s, CO_ABORTING);
		return;
	}
	co_set_phase(self, s, CO_ABORTED);
}

void
co_send_ctl(struct tern_actor *self, struct co_state *s, struct tern_msg *f, const void *payload,
            size_t plen, const char *what)
{
	int rc = tern_ctl_send(self, &s->ctl, f, payload, plen);
	if (rc != 0)
		co_abort(self, s, rc, "cannot send %s: %s", what, tern_strerror(rc));
}

static void co_iteration_done(struct tern_actor *self, struct co_state *s);

/* Puts what the queues take now; the iteration ends when its last chunk is
 * acknowledged. */
void
co_feed(struct tern_actor *self, struct co_state *s)
{
	int rc = tern_feeder_pump(&s->feed);
	if (rc != 0)
		co_abort(self, s, rc, "work queue failed: %s", tern_strerror(rc));
	else if (tern_feeder_pass_done(&s->feed))
		co_iteration_done(self, s);
}

/* Sends set id (lent: given back when the iteration is done). */
void
co_start_iteration(struct tern_actor *self, struct co_state *s, uint32_t id, bool lent)
{
	s->lent = lent ? id : 0;
	s->iter_bytes = 0;
	s->iter_start_ns = tern_now_ns();
	s->remaining = tern_bitmap_count(co_set(s, id)) * TERN_PAGE_SIZE;
	bool walk = s->phase == CO_BULK && s->a->opts->ring_only;
	tern_feeder_start(&s->feed, co_set(s, id), id, s->iter, walk);
	tern_actor_counter(self, "iteration", (double)s->iter);
	tern_actor_event(self, "iteration", NULL);
	co_feed(self, s);
}

/* Milliseconds to send bytes and the device state (the VMM's estimate of
 * its size) at the measured bandwidth, plus the vCPU pause and a round trip
 * for the state and the confirmation. */
static uint64_t
co_expected_ms(const struct co_state *s, uint64_t bytes)
{
	uint64_t state = tern_guest_state_size(s->g);
	s->a->stats->state_bytes_expected = state;
	bytes += state;
	if (bytes == 0)
		return s->g->stats.last_pause_ns / 1000000 + 1;
	if (s->bw_bps == 0)
		return UINT64_MAX;
	return bytes * 1000 / s->bw_bps + s->g->stats.last_pause_ns / 1000000 + 1;
}

uint64_t
co_limit_ms(const struct co_state *s)
{
	if (s->limit_ms != 0)
		return s->limit_ms; /* changed while running */
	return s->a->opts->downtime_limit_ms ? s->a->opts->downtime_limit_ms : 300;
}

/* Pauses the guest and sends set id | the last harvest, unless (strict) the
 * freshest numbers say it would overshoot the limit. */
static void
co_switchover(struct tern_actor *self, struct co_state *s, uint32_t id)
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
	if (rc != 0) {
		co_abort(self, s, rc, "cannot pause the guest: %s", tern_strerror(rc));
		return;
	}
	s->a->stats->pause_latency_us = s->g->stats.last_pause_ns / 1000;
	/* The last harvest: what the guest wrote since the set was taken.  Both
	 * lent sets go back at once; the final set is ours. */
	uint32_t last;
	uint64_t pages;
	rc = co_take(self, s, 1, &last, &pages);
	if (rc != 0) {
		co_abort(self, s, rc, "final dirty-log harvest failed: %s", tern_strerror(rc));
		return;
	}
	memcpy(s->final.words, co_set(s, id)->words, s->final.nwords * sizeof(uint64_t));
	tern_bitmap_or(&s->final, co_set(s, last));
	if (co_give(self, s, id) != 0 || co_give(self, s, last) != 0) {
		co_abort(self, s, TERN_EACTOR, "dirty-log actor gone");
		return;
	}
	uint64_t final_pages = tern_bitmap_count(&s->final);
	uint64_t expected = co_expected_ms(s, final_pages * TERN_PAGE_SIZE);
	/* Strict: with the freshest numbers, the pause must fit the limit.
	 * If the guest wrote more than predicted, run it again and iterate
	 * rather than overshoot (the complaint users of QEMU and CH make). */
	if (!s->a->opts->switchover_loose && expected > co_limit_ms(s)) {
		/* Never iterate on with a paused guest: a failed resume ends it. */
		if ((rc = co_resume(self, s)) != 0) {
			co_abort(self, s, rc,
			         "resuming the source guest after the strict switchover check "
			         "failed %d times: %s",
			         TERN_RESUME_TRIES, tern_strerror(rc));
			return;
		}
		if (s->held) {
			tern_throttle_guard_unhold(&s->a->guard);
			s->held = 0;
		}
		s->a->stats->switchover_retries++;
		tern_actor_counter(self, "switchover_retry_expected_ms", (double)expected);
		co_set_phase(self, s, CO_ITERATE);
		co_start_iteration(self, s, TERN_SET_FINAL, false);
		return;
	}
	s->a->stats->expected_downtime_ms = expected;
	s->a->stats->final_pages = final_pages;
	s->a->stats->throttle_pct = s->throttle_pct;
	co_start_iteration(self, s, TERN_SET_FINAL, false);
}

static void co_next_pass(struct tern_actor *self, struct co_state *s, uint64_t now);

static void
co_iteration_done(struct tern_actor *self, struct co_state *s)
{
	uint64_t now = tern_now_ns(), ns = now - s->iter_start_ns;
	s->a->stats->iterations++;
	s->cum_bytes += s->iter_bytes;
	s->cum_ns += ns;
	/* Small iterations measure latency, not bandwidth: trust them only
	 * above 4 MiB, else use everything sent so far. */
	if (s->iter_bytes >= (4u << 20) && ns > 0)
		s->bw_bps = (uint64_t)((double)s->iter_bytes * 1e9 / (double)ns);
	else if (s->cum_ns > 0 && s->cum_bytes > 0)
		s->bw_bps = (uint64_t)((double)s->cum_bytes * 1e9 / (double)s->cum_ns);
	s->remaining = 0;
	co_progress(self, s);
	if (s->lent && co_give(self, s, s->lent) != 0) {
		co_abort(self, s, TERN_EACTOR, "dirty-log actor gone");
		return;
	}
	s->lent = 0;
	if (s->phase == CO_PC_PAUSED || s->phase == CO_PC_RECOVER)
		return; /* co_pc_resumed goes on from here */
	if (s->phase == CO_PC_STREAM) {
		co_pc_streamed(self, s);
		return;
	}
	if (s->phase == CO_FINAL) {
		co_send_state(self, s);
		return;
	}
	co_next_pass(self, s, now);
}

/* co_next_pass takes the dirty set and decides: switch over, or iterate on
 * it.  An empty set that still does not fit the limit (the pages written
 * since the last background sweep are only projected) is not iterated on:
 * that would spin through empty passes.  It waits for the next sweep
 * instead (co_tick calls again). */
static void
co_next_pass(struct tern_actor *self, struct co_state *s, uint64_t now)
{
	struct tern_stats *st = s->a->stats;
	uint32_t id;
	uint64_t pages;
	s->await_dirty = 0;
	int rc = co_take(self, s, 0, &id, &pages);
	if (rc != 0) {
		co_abort(self, s, rc, "dirty-log harvest failed: %s", tern_strerror(rc));
		return;
	}
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
		co_switchover(self, s, id);
		return;
	}
	co_converge(self, s, bytes, now);
	char pcwhy[96];
	if (co_pc_due(s, pcwhy, sizeof(pcwhy))) {
		co_pc_switch(self, s, id, pcwhy);
		return;
	}
	uint64_t elapsed_ms = (now - s->start_ns) / 1000000;
	if (s->a->opts->timeout_ms && elapsed_ms >= s->a->opts->timeout_ms) {
		char why[sizeof(st->stall_reason)];
		tern_converge_reason((double)s->dirty_pps * TERN_PAGE_SIZE, (double)s->bw_bps, why,
		                     sizeof(why));
		(void)co_give(self, s, id);
		co_abort(self, s, TERN_ECONVERGE,
		         "did not converge in %" PRIu64 " ms: %" PRIu64 " dirty bytes at %" PRIu64
		         " B/s would take %" PRIu64 " ms, limit %" PRIu64 " ms; %s (throttle %u%%)",
		         elapsed_ms, bytes, s->bw_bps, expected == UINT64_MAX ? 0 : expected, limit,
		         why, s->throttle_pct);
		return;
	}
	if (s->phase != CO_ITERATE)
		co_set_phase(self, s, CO_ITERATE);
	if (pages == 0) {
		s->iter--; /* no pass was made */
		if (co_give(self, s, id) != 0) {
			co_abort(self, s, TERN_EACTOR, "dirty-log actor gone");
			return;
		}
		s->await_dirty = 1;
		return;
	}
	co_start_iteration(self, s, id, true);
}

static void
co_chunk_done(struct tern_actor *self, struct co_state *s, const struct tern_msg_chunk_done *d)
{
	if (!tern_feeder_ack(&s->feed, d))
		return; /* a resent chunk acknowledged twice */
	struct tern_stats *st = s->a->stats;
	s->iter_bytes += d->bytes;
	st->payload_bytes += d->bytes;
	st->pages_sent += d->bytes / TERN_PAGE_SIZE;
	st->pages_zero += d->zero_pages;
	if (s->remaining >= d->zero_pages * TERN_PAGE_SIZE)
		s->remaining -= d->zero_pages * TERN_PAGE_SIZE;
	if (s->remaining >= d->bytes)
		s->remaining -= d->bytes;
	co_feed(self, s);
}

static int
co_handle(struct tern_actor *self, void *state, const struct tern_msg *m)
{
	struct co_state *s = state;
	struct tern_child *k = NULL;
	if (m->type == TERN_MSG_SYS_EXIT) {
		k = tern_children_exit(&s->kids, &m->u.sys_exit);
		if (k != NULL && tern_children_id(k) == s->ctl.conn0)
			s->ctl.alive = false;
	}
	if (co_collect(s, m) || co_over(s))
		return co_status(self, s);
	if (s->phase == CO_ABORTING) {
		/* Only the answer to W_ABORT (or losing connection 0) matters now. */
		if ((m->type == TERN_MSG_SYS_EXIT && !s->ctl.alive) || m->type == TERN_MSG_CTL_IN)
			co_set_phase(self, s, CO_ABORTED);
		return co_status(self, s);
	}
	switch (m->type) {
	case TERN_MSG_THROTTLE_STATE:
		break; /* the throttle's acknowledgement; its trace says the rest */
	case TERN_MSG_PARAMS:
		co_params(self, s, &m->u.params);
		break;
	case TERN_MSG_CANCEL:
		if (s->phase == CO_HANDOFF || s->pc) {
			/* The destination may run the guest already: finish. */
			tern_actor_state(self, "cancel refused: handoff or postcopy in progress");
			break;
		}
		co_abort(self, s, TERN_ECANCELED, "cancelled: %s", m->u.cancel.why);
		break;
	case TERN_MSG_CHUNK_DONE:
		co_chunk_done(self, s, &m->u.chunk_done);
		break;
	case TERN_MSG_CTL_IN:
		co_ctl_in(self, s, m);
		break;
	case TERN_MSG_CONN_DOWN:
		co_conn_down(self, s, &m->u.conn_down);
		break;
	case TERN_MSG_SYS_EXIT:
		co_child_exit(self, s, k, &m->u.sys_exit);
		break;
	default:
		co_abort(self, s, TERN_EPROTO, "unexpected message %s", tern_msg_name(m->type));
	}
	return co_status(self, s);
}

/* Past the timeout before switchover: give up with the source running.  A
 * stalled iteration (a peer that stopped acking) is caught here too. */
static void
co_timeout(struct tern_actor *self, struct co_state *s, uint64_t now, uint64_t elapsed_ms)
{
	char why[160];
	/* Mid-iteration the bandwidth so far is the freshest figure. */
	uint64_t ins = now - s->iter_start_ns;
	double bw =
	    s->bw_bps ? (double)s->bw_bps : (ins ? (double)s->iter_bytes * 1e9 / (double)ins : 0);
	if (s->phase == CO_BULK)
		snprintf(why, sizeof(why),
		         "the first pass over memory was not done: %.1f MB sent at %.1f MB/s",
		         (double)s->iter_bytes / 1e6, bw / 1e6);
	else
		tern_converge_reason((double)s->dirty_pps * TERN_PAGE_SIZE, bw, why, sizeof(why));
	co_abort(self, s, TERN_ECONVERGE,
	         "did not converge: timed out after %" PRIu64 " ms in %s (iteration %u, %" PRIu64
	         " bytes remaining); %s (throttle %u%%)",
	         elapsed_ms, co_phase_names[s->phase], s->iter, s->remaining, why, s->throttle_pct);
}

static int
co_tick(struct tern_actor *self, void *state)
{
	struct co_state *s = state;
	uint64_t now = tern_now_ns();
	if (co_over(s))
		return co_status(self, s);
	if (s->phase == CO_ABORTING) {
		if (now >= s->abort_deadline_ns)
			co_set_phase(self, s, CO_ABORTED);
		return co_status(self, s);
	}
	if (s->phase == CO_PC_PAUSED) {
		co_pc_recover_tick(self, s, now);
		if (!co_over(s) && now - s->last_progress_ns >= 500000000ull)
			co_progress(self, s);
		return co_status(self, s);
	}
	if (s->phase == CO_BULK) {
		int rc = co_ring_refill(self, s);
		if (rc != 0)
			co_abort(self, s, rc, "ring harvest failed: %s", tern_strerror(rc));
	}
	if (s->phase == CO_BULK || s->phase == CO_ITERATE || s->phase == CO_FINAL ||
	    s->phase == CO_PC_STREAM) {
		if (s->await_dirty)
			co_next_pass(self, s, now);
		else
			co_feed(self, s);
	}
	if (co_over(s))
		return co_status(self, s);
	if (now - s->last_progress_ns >= 500000000ull)
		co_progress(self, s);
	uint64_t elapsed_ms = (now - s->start_ns) / 1000000;
	if (tern_ctl_expired(&s->ctl, now) && co_pc_recoverable(s))
		co_pc_lost(self, s, "the destination did not answer in time");
	else if (tern_ctl_expired(&s->ctl, now))
		co_abort(self, s, TERN_ETIMEDOUT,
		         "the destination did not answer in %s (I/O timeout)",
		         co_phase_names[s->phase]);
	else if (s->a->opts->timeout_ms && elapsed_ms >= s->a->opts->timeout_ms &&
	         s->phase <= CO_ITERATE)
		co_timeout(self, s, now, elapsed_ms);
	return co_status(self, s);
}

const struct tern_actor_desc tern_coordinator_actor = {
    .name = "coordinator",
    .state_size = sizeof(struct co_state),
    .init = co_init,
    .handle = co_handle,
    .tick = co_tick,
    .stop = co_stop,
};
