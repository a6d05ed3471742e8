/*
 * The source's postcopy recovery (docs/postcopy.md, "Recovery").
 *
 * After the switch neither side alone holds the whole guest, so a lost
 * link must not end the migration: the source keeps its frozen copy, the
 * destination keeps every page it placed, and both wait for the link to
 * come back (QEMU's postcopy-paused).  Here:
 *
 *   link lost (connection 0 gone, too few data connections, or no answer
 *   in time): every connection is cut -> postcopy-paused
 *   -> once each has exited (its unacknowledged chunks requeued: placing a
 *      page twice is harmless there, the destination keeps the first), dial
 *      again, every connection, with the same migration id and key, backing
 *      off from 200 ms to 2 s between tries
 *   -> postcopy-recover: W_RESUME on the new connection 0; only the
 *      destination that paused this migration answers it
 *   -> the stream goes on where it stopped (or the digest and the handoff
 *      request are sent again if the stream was over).
 *
 * Chunks queued but never taken wait in the work queue for the new
 * connections; requests the destination made meanwhile are asked again by
 * it.  Nothing is resent that was acknowledged: an acknowledged chunk is in
 * place there.  Past --recover-timeout the migration fails as before
 * (postcopy-failed: this guest stays paused).
 */
#include <stdio.h>
#include <string.h>

#include "actors/coordinator_int.h"
#include "tern/error.h"

#define PC_RETRY_FIRST_NS 200000000ull
#define PC_RETRY_MAX_NS 2000000000ull

bool
co_pc_recoverable(const struct co_state *s)
{
	const struct tern_send_opts *o = s->a->opts;
	if (!s->pc || o->no_recover || o->to == NULL || o->nfds != 0)
		return false;
	/* From the stream on: before it the destination has not run the guest,
	 * and its state load is the answer the source waits for. */
	return s->phase == CO_PC_STREAM || s->phase == CO_PC_PAUSED || s->phase == CO_PC_RECOVER ||
	       s->phase == CO_DIGEST || s->phase == CO_HANDOFF;
}

static bool
co_is_conn(const struct tern_child *k)
{
	return k->desc == &tern_conn_send_actor;
}

/* Cuts every connection still running: a kill shuts its socket, and its
 * stop hands back the chunks it had in flight (CONN_DOWN). */
static void
co_pc_cut(struct co_state *s)
{
	for (uint32_t i = 0; i < s->kids.n; i++) {
		struct tern_child *k = &s->kids.c[i];
		if (co_is_conn(k) && k->actor != NULL && !k->exited)
			tern_actor_kill(k->actor);
	}
}

void
co_pc_lost(struct tern_actor *self, struct co_state *s, const char *why)
{
	if (s->phase == CO_PC_PAUSED)
		return;
	uint64_t now = tern_now_ns();
	if (s->phase != CO_PC_RECOVER) {
		/* A failed recovery keeps the first loss's time, phase and
		 * reason; what went wrong with it is the last try's. */
		s->pc_lost_ns = now;
		s->pc_lost_phase = s->phase;
		s->pc_tries = 0;
		s->a->stats->postcopy_pauses++;
		snprintf(s->pc_why, sizeof(s->pc_why), "%s", why);
		s->pc_retry[0] = '\0';
	} else {
		snprintf(s->pc_retry, sizeof(s->pc_retry), "try %u: %s", s->pc_tries, why);
	}
	s->pc_retry_ns = now + PC_RETRY_FIRST_NS;
	s->ctl.deadline_ns = 0; /* nothing is awaited on a dead link */
	s->ctl.alive = false;
	co_pc_cut(s);
	tern_actor_counter(self, "postcopy_pauses", (double)s->a->stats->postcopy_pauses);
	co_set_phase(self, s, CO_PC_PAUSED);
}

/* Joins the connections that exited; true when none is left running. */
static bool
co_pc_conns_gone(struct co_state *s)
{
	bool gone = true;
	for (uint32_t i = 0; i < s->kids.n; i++) {
		struct tern_child *k = &s->kids.c[i];
		if (!co_is_conn(k) || k->actor == NULL)
			continue;
		if (!k->exited) {
			gone = false;
			continue;
		}
		(void)tern_actor_join(k->actor, -1, NULL);
		k->actor = NULL; /* its slot takes a new connection */
	}
	return gone;
}

/* Dials every connection again; on failure the ones made are cut and the
 * next try waits. */
static void
co_pc_redial(struct tern_actor *self, struct co_state *s, uint64_t now)
{
	s->pc_tries++;
	for (uint32_t i = 0; i < s->nconns; i++) {
		struct tern_child *k;
		struct tern_exit ex;
		int rc =
		    tern_children_spawn(self, &s->kids, &tern_conn_send_actor, &s->a->conns[i],
		                        i == 0 ? TERN_CHILD_FATAL : TERN_CHILD_DATA, i, &k, &ex);
		if (rc != 0) {
			uint64_t wait = PC_RETRY_FIRST_NS << (s->pc_tries < 4 ? s->pc_tries : 4);
			snprintf(s->pc_retry, sizeof(s->pc_retry), "try %u: %.200s", s->pc_tries,
			         ex.why[0] ? ex.why : tern_strerror(rc));
			tern_actor_state(self, s->pc_retry);
			co_pc_cut(s); /* the ones this try made */
			s->pc_retry_ns = now + (wait < PC_RETRY_MAX_NS ? wait : PC_RETRY_MAX_NS);
			co_progress(self, s);
			return;
		}
		if (i == 0)
			s->ctl.conn0 = tern_children_id(k);
	}
	s->ctl.alive = true;
	s->alive = s->nconns;
	co_set_phase(self, s, CO_PC_RECOVER);
	struct tern_msg f;
	tern_msg_init(&f, TERN_MSG_W_RESUME);
	int rc = tern_ctl_send(self, &s->ctl, &f, NULL, 0);
	if (rc != 0)
		co_pc_lost(self, s, "the new connection 0 went at once");
}

void
co_pc_recover_tick(struct tern_actor *self, struct co_state *s, uint64_t now)
{
	uint32_t ms = s->a->opts->recover_timeout_ms ? s->a->opts->recover_timeout_ms
	                                             : TERN_RECOVER_TIMEOUT_MS;
	uint64_t limit = (uint64_t)ms * 1000000ull;
	if (now - s->pc_lost_ns >= limit) {
		/* As the failure would have been then: a lost handoff answer
		 * stays unknown. */
		s->phase = s->pc_lost_phase;
		co_abort(
		    self, s, TERN_ETIMEDOUT,
		    "postcopy: the link was lost (%.200s) and did not come back in %u ms%s%.200s%s",
		    s->pc_why, ms, s->pc_retry[0] ? " (last " : "", s->pc_retry,
		    s->pc_retry[0] ? ")" : "");
		return;
	}
	if (co_pc_conns_gone(s) && now >= s->pc_retry_ns)
		co_pc_redial(self, s, now);
}

void
co_pc_resumed(struct tern_actor *self, struct co_state *s, const struct tern_msg_w_result *r)
{
	struct tern_stats *st = s->a->stats;
	st->postcopy_recover_ms += (tern_now_ns() - s->pc_lost_ns) / 1000000;
	s->pc_lost_ns = 0;
	tern_actor_counter(self, "postcopy_missing_at_resume", (double)r->value);
	if (s->feed.running) {
		co_set_phase(self, s, CO_PC_STREAM);
		co_feed(self, s);
		return;
	}
	/* Every chunk was acknowledged before the link went: what followed
	 * the stream goes again. */
	co_pc_streamed(self, s);
}
