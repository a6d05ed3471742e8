/*
 * The source's side of postcopy (docs/postcopy.md).  When pre-copy has not
 * converged after --postcopy-after iterations, or stalls with
 * --postcopy-on-stall, the coordinator switches instead of iterating on:
 *
 *   pause the guest for good, take the last dirty set: the stale set, the
 *   pages whose copy on the destination is out of date
 *   -> W_POSTCOPY (the stale set, in slices): the destination makes those
 *      pages missing and starts serving faults on them
 *   -> the device state, as at a switchover: the destination loads it and
 *      runs the guest at once
 *   -> the stale set streams on the data connections as an iteration,
 *      while W_PAGE_REQ requests are answered at once with W_URGENT on
 *      connection 0, ahead of the stream
 *   -> every chunk acknowledged (each stale page is in place there):
 *      W_COMPLETE.
 *
 * From the switch on neither side alone holds the whole guest: this side
 * never resumes its guest again (the destination's has run), and a failure
 * is reported as such ("postcopy-failed").  The guest here is paused, so
 * its memory no longer changes: any copy of a page sent after the switch is
 * the final one, and the destination places each page once.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "actors/coordinator_int.h"
#include "actors/guest_call.h"
#include "tern/error.h"

/* Stale-set bitmap per W_POSTCOPY: 4 Mi pages (16 GiB of guest) in 512 KiB,
 * under the destination's control payload limit. */
#define PC_SLICE_PAGES (1ull << 22)
/* Most a page request may ask for: a faulting page and the pages after it. */
#define PC_REQ_MAX_RANGES 16u
#define PC_REQ_MAX_BYTES (256u << 10)

bool
co_pc_due(const struct co_state *s, char *why, size_t whylen)
{
	const struct tern_send_opts *o = s->a->opts;
	if (s->pc_requested) {
		snprintf(why, whylen, "requested (migrate-start-postcopy)");
		return true;
	}
	if (o->postcopy_on_stall && s->a->stats->stalled) {
		snprintf(why, whylen, "stalled: %s", s->a->stats->stall_reason);
		return true;
	}
	if (o->postcopy_after != 0 && s->iter >= o->postcopy_after) {
		snprintf(why, whylen, "not converged after %u iterations", s->iter);
		return true;
	}
	return false;
}

/* Sends set (one round of the stale set, in slices; last: the final). */
static int
co_pc_send_stale(struct tern_actor *self, struct co_state *s, const struct tern_bitmap *set,
                 bool last)
{
	uint64_t n = s->g->npages;
	for (uint64_t first = 0; first < n; first += PC_SLICE_PAGES) {
		uint64_t count = n - first < PC_SLICE_PAGES ? n - first : PC_SLICE_PAGES;
		struct tern_msg f;
		tern_msg_init(&f, TERN_MSG_W_POSTCOPY);
		f.u.w_postcopy.first = first;
		f.u.w_postcopy.count = count;
		f.u.w_postcopy.last = last;
		int rc = tern_ctl_send(self, &s->ctl, &f, set->words + first / 64,
		                       (size_t)((count + 63) / 64) * sizeof(uint64_t));
		if (rc != 0) {
			co_abort(self, s, rc, "cannot send the stale set: %s", tern_strerror(rc));
			return rc;
		}
	}
	return 0;
}

/* Rounds of discards while the guest runs: each sends the pages written
 * since the last (the destination discards those it had), until a round is
 * small enough to be the paused one. */
#define PC_ROUNDS_MAX 5
#define PC_ROUND_SMALL 512 /* pages */

/* Takes the pages written since the last set, adds the new ones to the
 * stale set (s->final) and sends them as a round. */
static void
co_pc_round(struct tern_actor *self, struct co_state *s, uint32_t id, bool last)
{
	const struct tern_bitmap *set = co_set(s, id);
	uint64_t fresh = 0;
	for (uint64_t i = 0; i < s->final.nwords; i++) {
		fresh += (uint64_t)__builtin_popcountll(set->words[i] & ~s->final.words[i]);
		s->final.words[i] |= set->words[i];
	}
	s->pc_fresh = fresh;
	s->pc_rounds++;
	/* The destination punches a hole per run of new pages before it
	 * answers (~50 us a page here): time it may take on a slow host. */
	s->ctl.discard_ns = fresh * 500000ull;
	int rc = co_pc_send_stale(self, s, set, last);
	if (co_give(self, s, id) != 0 && rc == 0)
		co_abort(self, s, TERN_EACTOR, "dirty-log actor gone");
}

/* The switch, first round: with the guest still running, the destination
 * discards the pages of the dirty set just taken (slow: a hole punched per
 * run), which will all be sent again.  Its answers bring co_pc_next. */
void
co_pc_switch(struct tern_actor *self, struct co_state *s, uint32_t id, const char *why)
{
	snprintf(s->a->stats->postcopy_reason, sizeof(s->a->stats->postcopy_reason), "%s", why);
	tern_bitmap_clear_all(&s->final);
	s->pc_rounds = 0;
	tern_actor_state(self, "postcopy: the destination discards stale pages");
	co_set_phase(self, s, CO_POSTCOPY);
	co_pc_round(self, s, id, false);
}

/* A round was discarded there: another while the guest runs, or pause for
 * good, add the last harvest, and send it as the final round. */
void
co_pc_next(struct tern_actor *self, struct co_state *s)
{
	struct tern_stats *st = s->a->stats;
	uint32_t id;
	uint64_t pages;
	int rc;
	if (s->pc_fresh > PC_ROUND_SMALL && s->pc_rounds < PC_ROUNDS_MAX) {
		if ((rc = co_take(self, s, 0, &id, &pages)) != 0) {
			co_abort(self, s, rc, "dirty-log harvest failed: %s", tern_strerror(rc));
			return;
		}
		co_pc_round(self, s, id, false);
		return;
	}
	/* The throttle must not resume the guest behind our back: held for
	 * good, as the guest never runs here again. */
	if (s->guard_ready && !s->held) {
		(void)tern_throttle_guard_hold(&s->a->guard);
		s->held = 1;
	}
	s->pause_ns = tern_now_ns();
	s->paused = 1;
	rc = tern_guest_pause_checked(s->g, tern_runtime_trace(tern_actor_rt(self)));
	if (rc != 0) {
		co_abort(self, s, rc, "cannot pause the guest for postcopy: %s", tern_strerror(rc));
		return;
	}
	st->pause_latency_us = s->g->stats.last_pause_ns / 1000;
	if ((rc = co_take(self, s, 1, &id, &pages)) != 0) {
		co_abort(self, s, rc, "final dirty-log harvest failed: %s", tern_strerror(rc));
		return;
	}
	/* From here on a failure must not resume this guest. */
	s->pc = true;
	s->pc_start_ns = tern_now_ns();
	st->postcopy = 1;
	/* With data connections, connection 0 becomes the urgent lane: a
	 * requested page then never waits behind background chunks in a
	 * socket buffer (QEMU's preempt channel). */
	if (s->alive > 1)
		atomic_store(&s->a->urgent_lane, true);
	tern_actor_state(self, "postcopy: paused, final round");
	co_pc_round(self, s, id, true);
	st->postcopy_pages = tern_bitmap_count(&s->final);
	st->final_pages = st->postcopy_pages;
	st->throttle_pct = s->throttle_pct;
	tern_actor_counter(self, "postcopy_pages", (double)st->postcopy_pages);
}

/* Checks a request against what a destination may ask for: whole pages of
 * guest memory, a few at a time. */
static bool
co_pc_request_ok(const struct co_state *s, const struct tern_msg_w_page_req *r, uint64_t *total)
{
	*total = 0;
	if (r->ranges.count == 0 || r->ranges.count > PC_REQ_MAX_RANGES)
		return false;
	for (uint32_t i = 0; i < r->ranges.count; i++) {
		uint64_t off, len;
		tern_ranges_get(&r->ranges, i, &off, &len);
		if (off % TERN_PAGE_SIZE != 0 || len % TERN_PAGE_SIZE != 0 || len == 0 ||
		    len > PC_REQ_MAX_BYTES || !tern_guest_range_ok(s->g, off, len))
			return false;
		*total += len;
	}
	return *total <= PC_REQ_MAX_BYTES;
}

void
co_pc_request(struct tern_actor *self, struct co_state *s, const struct tern_msg_w_page_req *r)
{
	uint64_t total;
	/* Any time after the pause: the destination's state load may fault
	 * too (its answer is what the source is waiting for then). */
	/* Paused: the link that brought it is gone; the destination asks
	 * again once it is back. */
	if (s->phase == CO_PC_PAUSED)
		return;
	if (!s->pc || s->phase >= CO_COMPLETED) {
		co_abort(self, s, TERN_EPROTO, "a page request in phase %s",
		         co_phase_names[s->phase]);
		return;
	}
	if (!co_pc_request_ok(s, r, &total)) {
		co_abort(self, s, TERN_EPROTO,
		         "protocol violation: a page request outside guest memory or over %u bytes",
		         PC_REQ_MAX_BYTES);
		return;
	}
	if (s->pc_buf == NULL && (s->pc_buf = malloc(PC_REQ_MAX_BYTES)) == NULL) {
		co_abort(self, s, TERN_ENOMEM, "out of memory for a page request");
		return;
	}
	/* The guest is paused for good: these bytes are final. */
	uint64_t at = 0;
	for (uint32_t i = 0; i < r->ranges.count; i++) {
		uint64_t off, len;
		tern_ranges_get(&r->ranges, i, &off, &len);
		memcpy(s->pc_buf + at, tern_guest_hva(s->g, off), len);
		at += len;
	}
	struct tern_msg f;
	tern_msg_init(&f, TERN_MSG_W_URGENT);
	f.u.w_urgent.ranges = r->ranges;
	f.u.w_urgent.t = r->t;
	int rc = tern_ctl_send(self, &s->ctl, &f, s->pc_buf, total);
	if (rc != 0) {
		co_abort(self, s, rc, "cannot send requested pages: %s", tern_strerror(rc));
		return;
	}
	s->a->stats->postcopy_urgent_pages += total / TERN_PAGE_SIZE;
	tern_actor_counter(self, "postcopy_urgent_pages",
	                   (double)s->a->stats->postcopy_urgent_pages);
}

void
co_pc_streamed(struct tern_actor *self, struct co_state *s)
{
	struct tern_msg f;
	s->a->stats->postcopy_ms = (tern_now_ns() - s->pc_start_ns) / 1000000;
	if (s->a->opts->verify) {
		/* The guest here is frozen since the switch: its memory is what
		 * the destination must have received, page by page. */
		uint64_t t0 = tern_now_ns(), digest;
		int rc = tern_guest_page_digest(s->g, NULL, &digest);
		s->verify_ns += tern_now_ns() - t0;
		if (rc != 0) {
			co_abort(self, s, rc, "digest failed: %s", tern_strerror(rc));
			return;
		}
		tern_msg_init(&f, TERN_MSG_W_DIGEST);
		f.u.w_digest.digest = digest;
		co_set_phase(self, s, CO_DIGEST);
		rc = tern_ctl_send(self, &s->ctl, &f, NULL, 0);
		if (rc != 0)
			co_abort(self, s, rc, "cannot send the digest: %s", tern_strerror(rc));
		return;
	}
	tern_msg_init(&f, TERN_MSG_W_COMPLETE);
	co_set_phase(self, s, CO_HANDOFF);
	int rc = tern_ctl_send(self, &s->ctl, &f, NULL, 0);
	if (rc != 0)
		co_abort(self, s, rc, "cannot send the handoff request: %s", tern_strerror(rc));
}
