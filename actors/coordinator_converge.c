/*
 * Coordinator (see coordinator_int.h): convergence.  The throttle's
 * requests, the policy that decides them at the end of each iteration
 * (actors/converge.h), and the parameters a driver changes while the
 * migration runs (PARAMS: downtime limit, bandwidth cap, auto-converge and
 * its settings, the postcopy request).
 */
#include <stdio.h>
#include <string.h>

#include "actors/coordinator_int.h"
#include "tern/error.h"

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
	if (tern_actor_send(self, tern_children_id(s->throttle), &m) == 0) {
		s->throttle_pct = pct;
		if (pct > s->a->stats->throttle_max_pct)
			s->a->stats->throttle_max_pct = pct;
	}
}

void
co_converge(struct tern_actor *self, struct co_state *s, uint64_t dirty_bytes, uint64_t now)
{
	struct tern_stats *st = s->a->stats;
	struct tern_converge_in in = {
	    .now_ns = now,
	    .dirty_bytes = dirty_bytes,
	    .sent_bytes = s->iter_bytes,
	    .dirty_bps = (double)s->dirty_pps * TERN_PAGE_SIZE,
	    .bw_bps = (double)s->bw_bps,
	    .downtime_s = (double)co_limit_ms(s) / 1000.0,
	    .current_pct = s->throttle_pct,
	};
	co_throttle(self, s, tern_converge_ctl_pct(&s->conv, &in));
	tern_actor_counter(self, "throttle_pct", (double)s->throttle_pct);
	char why[sizeof(st->stall_reason)];
	bool stalled = tern_converge_ctl_stalled(&s->conv, &in, why, sizeof(why));
	if (stalled && !st->stalled) {
		snprintf(st->stall_reason, sizeof(st->stall_reason), "%s", why);
		tern_actor_state(self, "stalled");
	}
	st->stalled = stalled;
}

/* Auto-converge changed on the running migration: mode, and the throttle
 * settings (0: keep, or the new mode's default); switching on starts the
 * throttle actor, off lets the guest run at full speed at once. */
static void
co_converge_set(struct tern_actor *self, struct co_state *s, int mode, uint32_t initial,
                uint32_t increment, uint32_t max)
{
	struct tern_converge_ctl keep = s->conv;
	bool same = mode == keep.mode;
	/* 0 keeps the setting in force, or takes a new mode's own default. */
	tern_converge_ctl_init(&s->conv, mode,
	                       initial ? initial
	                       : same  ? keep.conv.initial_pct
	                               : 0,
	                       increment ? increment
	                       : same    ? keep.conv.increment_pct
	                                 : 0,
	                       max    ? max
	                       : same ? keep.conv.max_pct
	                              : 0,
	                       0);
	/* The stall watch goes on over the same samples. */
	s->conv.window_ns = keep.window_ns;
	s->conv.nsamples = keep.nsamples;
	memcpy(s->conv.samples, keep.samples, sizeof(keep.samples));
	if (same)
		s->conv.st = keep.st;
	tern_actor_counter(self, "auto_converge", (double)mode);
	if (mode == TERN_CONVERGE_OFF) {
		co_throttle(self, s, 0); /* full speed at once */
		return;
	}
	if (s->throttle == NULL && co_start_throttle(self, s) != 0) {
		/* Optional: the migration goes on without it, and says so. */
		tern_actor_state(self, "auto-converge switched on, but the throttle did not start");
		return;
	}
	if (s->throttle_pct > s->conv.conv.max_pct)
		co_throttle(self, s, s->conv.conv.max_pct);
}

void
co_params(struct tern_actor *self, struct co_state *s, const struct tern_msg_params *p)
{
	/* Takes effect at the next switchover decision and chunk. */
	if (p->downtime_limit_ms != 0)
		s->limit_ms = p->downtime_limit_ms;
	if (p->max_bandwidth != 0)
		atomic_store_explicit(&s->a->limit.bytes_per_s,
		                      p->max_bandwidth == UINT64_MAX ? 0 : p->max_bandwidth,
		                      memory_order_relaxed);
	tern_actor_counter(self, "downtime_limit_ms", (double)co_limit_ms(s));
	if (p->start_postcopy && !s->pc_requested) {
		s->pc_requested = true;
		tern_actor_state(self, "postcopy requested");
	}
	if (p->converge > TERN_CONVERGE_RATE + 1)
		return; /* not a mode: the driver validated it, nothing to apply */
	if (p->converge != 0 || p->throttle_initial != 0 || p->throttle_increment != 0 ||
	    p->throttle_max != 0)
		co_converge_set(self, s, p->converge != 0 ? (int)p->converge - 1 : s->conv.mode,
		                p->throttle_initial, p->throttle_increment, p->throttle_max);
}
