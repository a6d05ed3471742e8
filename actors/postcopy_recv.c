/*
 * The destination's postcopy switch and end, in the ReceiverCoordinator
 * (docs/postcopy.md; the state it keeps: postcopy.h).
 */
#include <stdio.h>
#include <stdlib.h>

#include "actors/guest_call.h"
#include "actors/receiver_int.h"
#include "tern/error.h"

/* W_POSTCOPY: a slice of the stale set, whose new pages are discarded at
 * once.  The set comes in two rounds, each answered when it reaches the end
 * of memory: the dirty set while the source guest still runs (the slow
 * discards happen then), then, with the guest paused, the final one (last):
 * then faults are served.  From the first slice on no page may be written in
 * place (the source sends it only once every frame was acknowledged). */
int
rc_postcopy(struct tern_actor *self, struct rc_state *s, struct tern_guest *g,
            const struct tern_msg_w_postcopy *f, const struct tern_bin *p)
{
	char why[TERN_STR_MAX] = "";
	int rc;
	if (s->phase != RC_CONFIGURED)
		return rc_out_of_phase(self, s, TERN_MSG_W_POSTCOPY,
		                       "after W_CONFIG, before W_STATE");
	if (s->pc == NULL) {
		/* Joined before the first discard: a page it populated after
		 * that would read as zero instead of faulting for its data. */
		tern_populate_ahead_stop(&s->a->ahead);
		if ((s->pc = calloc(1, sizeof(*s->pc))) == NULL || tern_pc_dst_init(s->pc, g) != 0)
			return rc_fail(self, s, TERN_ENOMEM, "out of memory for postcopy");
		atomic_store(&s->a->pc, s->pc);
		if (atomic_load(&s->a->writers) != 0) {
			(void)rc_answer(self, s, TERN_MSG_W_POSTCOPY, TERN_EPROTO, 0,
			                "page data still arriving");
			return rc_fail(self, s, TERN_EPROTO,
			               "protocol violation: W_POSTCOPY while page data was still "
			               "arriving");
		}
		tern_actor_state(self, "postcopy: discarding stale pages");
	}
	uint64_t t0 = tern_now_ns();
	if ((rc = tern_pc_dst_stale(s->pc, f->first, f->count, p->ptr, p->len, why, sizeof(why))) !=
	    0) {
		(void)rc_answer(self, s, TERN_MSG_W_POSTCOPY, rc, 0, why);
		return rc_fail(self, s, rc, "%s%s", rc == TERN_EPROTO ? "protocol violation: " : "",
		               why);
	}
	tern_actor_counter(self, "postcopy_discard_us", (double)(tern_now_ns() - t0) / 1e3);
	if (f->first + f->count < g->npages)
		return 0; /* more slices of this round */
	if (!f->last)     /* the first round: the source may pause its guest now */
		return rc_answer(self, s, TERN_MSG_W_POSTCOPY, 0, s->pc->stale_pages, NULL);
	if (s->verify) {
		/* Every page that is not stale is final now: its digest, before
		 * the guest can change it (in the downtime, as --verify is). */
		uint64_t v0 = tern_now_ns();
		rc = tern_guest_page_digest(g, &s->pc->stale, &s->pc->nonstale_digest);
		s->a->stats->verify_ms += (tern_now_ns() - v0) / 1000000;
		if (rc != 0) {
			(void)rc_answer(self, s, TERN_MSG_W_POSTCOPY, rc, 0, "digest failed");
			return rc_fail(self, s, rc, "digest failed: %s", tern_strerror(rc));
		}
		s->pc->verify = true;
	}
	if ((rc = tern_pc_dst_start(s->pc, why, sizeof(why))) != 0) {
		(void)rc_answer(self, s, TERN_MSG_W_POSTCOPY, rc, 0, why);
		return rc_fail(self, s, rc, "cannot start postcopy: %s", why);
	}
	s->fargs.pc = s->pc;
	atomic_store(&s->fargs.conn0, tern_actor_id(s->conns[0]));
	struct tern_exit ex;
	if ((rc = tern_spawn(tern_actor_rt(self), &tern_pc_faults_actor, &s->fargs,
	                     tern_actor_id(self), &s->faults, &ex)) != 0) {
		s->faults = NULL;
		(void)rc_answer(self, s, TERN_MSG_W_POSTCOPY, rc, 0, "no fault handler");
		return rc_fail(self, s, rc, "cannot start the postcopy fault handler: %s", ex.why);
	}
	atomic_store_explicit(&s->pc->running, true, memory_order_release);
	s->a->stats->postcopy = 1;
	rc_set_phase(self, s, RC_POSTCOPY);
	return rc_answer(self, s, TERN_MSG_W_POSTCOPY, 0, s->pc->stale_pages, NULL);
}

/* Postcopy, state loaded: the guest runs here from now on, while the
 * pages it misses arrive. */
int
rc_pc_run(struct tern_actor *self, struct rc_state *s, struct tern_guest *g)
{
	int rc = tern_guest_resume_checked(g, tern_runtime_trace(tern_actor_rt(self)));
	if (rc != 0) {
		(void)rc_answer(self, s, TERN_MSG_W_STATE, rc, 0, "resume failed");
		return rc_fail(self, s, rc, "cannot resume the guest: %s", tern_strerror(rc));
	}
	rc_set_phase(self, s, RC_PC_RUNNING);
	return rc_answer(self, s, TERN_MSG_W_STATE, 0, g->stats.last_resume_ns, NULL);
}

/* Postcopy's W_COMPLETE: every stale page must be in place; then memory
 * ends as at a switchover and the fault handler goes. */
int
rc_pc_complete(struct tern_actor *self, struct rc_state *s)
{
	uint64_t missing = tern_pc_dst_missing(s->pc);
	if (missing != 0) {
		char why[96];
		snprintf(why, sizeof(why), "%llu stale pages never arrived",
		         (unsigned long long)missing);
		(void)rc_answer(self, s, TERN_MSG_W_COMPLETE, TERN_EPROTO, 0, why);
		return rc_fail(self, s, TERN_EPROTO, "protocol violation: %s", why);
	}
	int rc = rc_end_memory(self, s, TERN_MSG_W_COMPLETE);
	if (rc != 0)
		return rc;
	tern_actor_stop_join(&s->faults, 2000, NULL);
	tern_pc_dst_stats(s->pc, s->a->stats);
	s->a->stats->total_ms = (tern_now_ns() - s->a->start_ns) / 1000000;
	s->a->result = 0;
	snprintf(s->a->stats->outcome, sizeof(s->a->stats->outcome), "completed");
	rc_set_phase(self, s, RC_RESUMED);
	(void)rc_answer(self, s, TERN_MSG_W_COMPLETE, 0, 0, NULL);
	return TERN_ACTOR_DONE;
}

/* W_DIGEST after the stream (--verify): the pages that were not stale at
 * the switch, with every page placed since, must be the source's memory --
 * the guest may have changed them here since, which is why the digest is of
 * what was placed, not of what is there now. */
int
rc_pc_digest(struct tern_actor *self, struct rc_state *s, uint64_t digest)
{
	char why[160];
	if (!s->pc->verify)
		return rc_out_of_phase(self, s, TERN_MSG_W_DIGEST, "only with --verify");
	uint64_t missing = tern_pc_dst_missing(s->pc);
	uint64_t d = s->pc->nonstale_digest ^ tern_uffd_missing_hashed(s->pc->uffd);
	if (missing != 0 || d != digest) {
		snprintf(why, sizeof(why),
		         "postcopy memory digest mismatch: source %016llx, destination %016llx "
		         "(%llu stale pages missing)",
		         (unsigned long long)digest, (unsigned long long)d,
		         (unsigned long long)missing);
		(void)rc_answer(self, s, TERN_MSG_W_DIGEST, TERN_EVERIFY, 0, why);
		return rc_fail(self, s, TERN_EVERIFY, "%s", why);
	}
	s->a->stats->verified = 1;
	return rc_answer(self, s, TERN_MSG_W_DIGEST, 0, 0, NULL);
}

/* ---- Recovery (docs/postcopy.md): the link lost after the switch ---- */

static bool
rc_pc_recoverable(const struct rc_state *s)
{
	const struct tern_recv_opts *o = s->a->opts;
	return (s->phase == RC_PC_RUNNING || s->phase == RC_PC_RELINKED) && !o->no_recover &&
	       o->nfds == 0;
}

/* Connection 0 is gone, or the source went silent.  Before the guest runs
 * here, or without recovery, that ends the migration.  Otherwise every
 * connection is cut and joined, and the driver listens again: the guest
 * keeps running on the pages it has (a vCPU that touches a missing one
 * waits in the kernel, as under QEMU's postcopy-paused), and the source
 * keeps its frozen copy. */
int
rc_pc_lost(struct tern_actor *self, struct rc_state *s, int code, const char *why)
{
	if (!rc_pc_recoverable(s))
		return rc_fail(self, s, code, "%s", why);
	/* Requests wait from now on (a send to a dead connection would be
	 * lost); the relink asks them again. */
	atomic_store(&s->fargs.conn0, 0);
	for (uint32_t i = 0; i < s->a->nconns; i++) {
		if (s->conns[i] == NULL)
			continue;
		s->retired[i] = tern_actor_id(s->conns[i]);
		tern_actor_kill(s->conns[i]);
		tern_actor_stop_join(&s->conns[i], 2000, NULL);
		tern_link_close(&s->a->conns[i].link);
		atomic_store(&s->a->conns[i].fenced, false);
	}
	if (s->phase == RC_PC_RUNNING) {
		/* Lost again before W_RESUME: still the same pause. */
		s->pc_lost_ns = tern_now_ns();
		s->a->stats->postcopy_pauses++;
	}
	tern_actor_counter(self, "postcopy_pauses", (double)s->a->stats->postcopy_pauses);
	rc_set_phase(self, s, RC_PC_PAUSED);
	struct tern_msg m;
	tern_msg_init(&m, TERN_MSG_PC_PAUSED);
	snprintf(m.u.pc_paused.why, sizeof(m.u.pc_paused.why), "%s", why);
	int rc = tern_actor_send(self, s->a->driver, &m);
	if (rc != 0)
		return rc_fail(self, s, rc, "%s (and nobody listens for the source again)", why);
	return 0;
}

/* The driver's answer: the source's new connections, or none in time. */
int
rc_pc_relinked(struct tern_actor *self, struct rc_state *s, const struct tern_msg_pc_relinked *r)
{
	if (s->phase != RC_PC_PAUSED)
		return rc_fail(self, s, TERN_EPROTO, "PC_RELINKED in phase %s",
		               rc_phase_names[s->phase]);
	if (r->status != 0) {
		s->phase = RC_PC_RUNNING; /* failed from postcopy: postcopy-failed */
		return rc_fail(self, s, r->status, "postcopy: the link was lost and %s", r->why);
	}
	int rc = rc_spawn_conns(self, s);
	if (rc != 0)
		return rc_fail(self, s, rc, "cannot restart the connections: %s",
		               tern_strerror(rc));
	s->last_heard_ns = tern_now_ns();
	rc_set_phase(self, s, RC_PC_RELINKED);
	/* The fault handler's requests go through the new connection 0, and
	 * what it asked for and never got is asked again. */
	struct tern_msg m;
	tern_msg_init(&m, TERN_MSG_PC_RELINK);
	m.u.pc_relink.conn0 = tern_actor_id(s->conns[0]);
	if ((rc = tern_actor_send(self, tern_actor_id(s->faults), &m)) != 0)
		return rc_fail(self, s, rc, "the postcopy fault handler is gone");
	return 0;
}

/* W_RESUME: the source that paused with us goes on.  Anyone else (a
 * destination that never paused) refuses it as out of phase. */
int
rc_pc_resume(struct tern_actor *self, struct rc_state *s)
{
	if (s->phase != RC_PC_RELINKED)
		return rc_out_of_phase(self, s, TERN_MSG_W_RESUME,
		                       "after a postcopy link loss, once the source is back");
	s->a->stats->postcopy_recover_ms += (tern_now_ns() - s->pc_lost_ns) / 1000000;
	rc_set_phase(self, s, RC_PC_RUNNING);
	return rc_answer(self, s, TERN_MSG_W_RESUME, 0, tern_pc_dst_missing(s->pc), NULL);
}
