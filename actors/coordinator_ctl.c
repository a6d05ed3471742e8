/*
 * Coordinator (see coordinator_int.h): the destination's control frames.
 * Each W_RESULT moves the phase machine on from the request it answers
 * (configuration, the postcopy rounds, state, digest, handoff, fences, a
 * postcopy recovery); a page request goes to postcopy_src.c; a W_ABORT ends
 * the migration with the destination's reason.
 */
#include <stdio.h>

#include "actors/coordinator_int.h"
#include "tern/error.h"

static void
co_result(struct tern_actor *self, struct co_state *s, const struct tern_msg_w_result *r)
{
	struct tern_stats *st = s->a->stats;
	/* An answer that the handoff failed (the destination could not resume
	 * its guest: its vCPUs stay paused, tern/guest.h) is definite: the
	 * source can run again, unlike a lost answer (handoff_unknown). */
	if (r->status != 0 && s->phase == CO_HANDOFF && r->step == TERN_MSG_W_COMPLETE)
		co_set_phase(self, s, CO_STATE);
	if (r->status != 0) {
		co_abort(self, s, r->status == TERN_EVERIFY ? TERN_EVERIFY : TERN_EPEER,
		         "destination refused %s: %s", tern_msg_name(r->step),
		         r->why[0] ? r->why : tern_strerror(r->status));
		return;
	}
	if (r->step == TERN_MSG_W_FENCE) {
		co_fence_done(self, s, r);
		return;
	}
	if (r->step == TERN_MSG_W_RESUME && s->phase == CO_PC_RECOVER) {
		co_pc_resumed(self, s, r);
		return;
	}
	struct tern_msg f;
	switch (s->phase) {
	case CO_SETUP:
		if (r->step != TERN_MSG_W_CONFIG)
			break;
		co_set_phase(self, s, CO_BULK);
		st->pages_skipped =
		    tern_guest_mem_bytes(s->g) / TERN_PAGE_SIZE - tern_bitmap_count(&s->bulk);
		co_start_iteration(self, s, TERN_SET_BULK, false);
		return;
	case CO_POSTCOPY:
		if (r->step != TERN_MSG_W_POSTCOPY)
			break;
		if (!s->pc)
			co_pc_next(self, s); /* a round is discarded there */
		else
			co_send_state(self, s);
		return;
	case CO_STATE:
		if (r->step != TERN_MSG_W_STATE)
			break;
		if (s->pc) {
			/* The destination runs the guest now: the pause is over
			 * for it; the stale pages follow. */
			st->downtime_ms = (tern_now_ns() - s->pause_ns) / 1000000;
			co_set_phase(self, s, CO_PC_STREAM);
			co_start_iteration(self, s, TERN_SET_FINAL, false);
			return;
		}
		if (s->a->opts->verify) {
			uint64_t t0 = tern_now_ns(), digest;
			int rc = tern_guest_digest(s->g, &digest);
			if (rc != 0) {
				co_abort(self, s, rc, "digest failed: %s", tern_strerror(rc));
				return;
			}
			s->verify_ns += tern_now_ns() - t0;
			tern_msg_init(&f, TERN_MSG_W_DIGEST);
			f.u.w_digest.digest = digest;
			co_set_phase(self, s, CO_DIGEST);
			co_send_ctl(self, s, &f, NULL, 0, "the digest");
			return;
		}
		/* fallthrough */
	case CO_DIGEST:
		if (s->phase == CO_DIGEST) {
			if (r->step != TERN_MSG_W_DIGEST)
				break;
			s->verify_ns += r->value; /* the destination's hashing time */
			st->verified = 1;
		}
		tern_msg_init(&f, TERN_MSG_W_COMPLETE);
		co_set_phase(self, s, CO_HANDOFF);
		co_send_ctl(self, s, &f, NULL, 0, "the handoff request");
		return;
	case CO_HANDOFF: {
		if (r->step != TERN_MSG_W_COMPLETE)
			break;
		uint64_t now = tern_now_ns();
		if (!s->pc) /* postcopy: measured when the destination resumed */
			st->downtime_ms = (now - s->pause_ns - s->verify_ns) / 1000000;
		st->verify_ms = s->verify_ns / 1000000;
		st->total_ms = (now - s->start_ns) / 1000000;
		snprintf(st->outcome, sizeof(st->outcome), "completed");
		s->a->result = 0;
		return co_set_phase(self, s, CO_COMPLETED);
	}
	default:
		break;
	}
	co_abort(self, s, TERN_EPROTO, "unexpected result for %s in phase %s",
	         tern_msg_name(r->step), co_phase_names[s->phase]);
}

void
co_ctl_in(struct tern_actor *self, struct co_state *s, const struct tern_msg *m)
{
	struct tern_msg f;
	if (tern_ctl_recv(self, &s->ctl, m, &f) != 0) {
		co_abort(self, s, TERN_EMSG, "malformed control frame from the destination");
		return;
	}
	if (f.type == TERN_MSG_W_RESULT) {
		co_result(self, s, &f.u.w_result);
		return;
	}
	if (f.type == TERN_MSG_W_PAGE_REQ) {
		co_pc_request(self, s, &f.u.w_page_req);
		return;
	}
	if (f.type == TERN_MSG_W_ABORT) {
		co_abort(self, s, TERN_EPEER, "destination aborted: %s", f.u.w_abort.why);
		return;
	}
	co_abort(self, s, TERN_EPROTO, "unexpected %s frame from the destination",
	         tern_msg_name(f.type));
}
