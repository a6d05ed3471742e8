/*
 * ReceiverCoordinator (see receiver.h).  Every control request gets a
 * W_RESULT answer, errors included, so the source always learns why.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "actors/guest_call.h"
#include "actors/postcopy.h"
#include "actors/receiver_int.h"
#include "kvm/guest_ready.h"
#include "net/wire.h"
#include "tern/error.h"

const char *const rc_phase_names[] = {
    "listening",       "configured",       "postcopy", "state",   "postcopy-running",
    "postcopy-paused", "postcopy-recover", "verified", "resumed", "aborted"};

void
rc_set_phase(struct tern_actor *self, struct rc_state *s, enum rc_phase p)
{
	s->phase = p;
	tern_actor_state(self, rc_phase_names[p]);
}

/* Sends control frame f (time stamped here) to the source through
 * connection 0. */
static int
rc_send_frame(struct tern_actor *self, struct rc_state *s, struct tern_msg *f)
{
	struct tern_msg out;
	uint8_t buf[1024];
	size_t len;
	f->time_ns = tern_now_ns();
	int rc = tern_msg_encode(f, buf, sizeof(buf), &len);
	if (rc != 0)
		return rc;
	tern_msg_init(&out, TERN_MSG_CTL_OUT);
	out.u.ctl_out.frame = (struct tern_bin){buf, len};
	return tern_actor_send(self, tern_actor_id(s->conns[0]), &out);
}

int
rc_answer(struct tern_actor *self, struct rc_state *s, uint32_t step, int status, uint64_t value,
          const char *why)
{
	struct tern_msg r;
	tern_msg_init(&r, TERN_MSG_W_RESULT);
	r.u.w_result.step = step;
	r.u.w_result.status = status;
	r.u.w_result.value = value;
	snprintf(r.u.w_result.why, sizeof(r.u.w_result.why), "%s", why ? why : "");
	return rc_send_frame(self, s, &r);
}

/* After the postcopy switch a lost link is waited out (postcopy_recv.c),
 * so a destination that gives up for good says so: the source then fails
 * at once instead of dialing a destination that is gone. */
static void
rc_tell_abort(struct tern_actor *self, struct rc_state *s, int code)
{
	struct tern_msg f;
	if (s->phase < RC_POSTCOPY || s->conns[0] == NULL)
		return;
	tern_msg_init(&f, TERN_MSG_W_ABORT);
	f.u.w_abort.code = code;
	snprintf(f.u.w_abort.why, sizeof(f.u.w_abort.why), "%s", s->a->err);
	(void)rc_send_frame(self, s, &f);
}

int
rc_fail(struct tern_actor *self, struct rc_state *s, int code, const char *fmt, ...)
{
	if (s->phase == RC_ABORTED)
		return TERN_ACTOR_DONE;
	/* Nothing is written after an abort (connections check it per frame). */
	atomic_store(&s->a->memory_closed, true);
	va_list ap;
	va_start(ap, fmt);
	terni_verrf(s->a->err, sizeof(s->a->err), fmt, ap);
	va_end(ap);
	rc_tell_abort(self, s, code);
	s->a->result = code;
	snprintf(s->a->stats->outcome, sizeof(s->a->stats->outcome), "%s",
	         s->phase >= RC_POSTCOPY ? "postcopy-failed" : "aborted");
	rc_set_phase(self, s, RC_ABORTED);
	return TERN_ACTOR_DONE;
}

/* A control frame the protocol does not allow now: answered, then the
 * migration ends with a one-line reason naming the frame, the phase and the
 * rule (the source resumes its guest). */
int
rc_out_of_phase(struct tern_actor *self, struct rc_state *s, uint32_t type, const char *rule)
{
	char why[TERN_STR_MAX];
	snprintf(why, sizeof(why), "%s in phase %s (allowed %s)", tern_msg_name(type),
	         rc_phase_names[s->phase], rule);
	(void)rc_answer(self, s, type, TERN_ESTATE, 0, why);
	return rc_fail(self, s, TERN_EPROTO, "protocol violation: %s", why);
}

/* How long a fenced connection's write in progress may take to notice its
 * socket shut: the kill releases it at once; this only bounds a bug. */
#define RC_FENCE_WAIT_NS (5ull * 1000000000ull)

/* W_FENCE: the source gave up on a data connection and will resend what
 * was in flight on it once told that nothing more from it is written. */
static int
rc_fence(struct tern_actor *self, struct rc_state *s, uint32_t k)
{
	if (s->phase != RC_CONFIGURED)
		return rc_out_of_phase(self, s, TERN_MSG_W_FENCE, "while pages are sent");
	if (k == 0 || k >= s->a->nconns) {
		char why[96];
		snprintf(why, sizeof(why), "cannot fence connection %u of %u", k, s->a->nconns);
		(void)rc_answer(self, s, TERN_MSG_W_FENCE, TERN_EPROTO, k, why);
		return rc_fail(self, s, TERN_EPROTO, "protocol violation: %s", why);
	}
	struct tern_conn_recv_args *c = &s->a->conns[k];
	atomic_store(&c->fenced, true);
	if (s->conns[k] != NULL)
		tern_actor_kill(s->conns[k]); /* releases a read in progress */
	uint64_t until = tern_now_ns() + RC_FENCE_WAIT_NS;
	while (atomic_load(&c->writing) != 0) {
		if (tern_now_ns() > until) {
			(void)rc_answer(self, s, TERN_MSG_W_FENCE, TERN_ETIMEDOUT, k,
			                "the connection's write did not end");
			return rc_fail(self, s, TERN_ETIMEDOUT,
			               "connection %u could not be fenced: a write did not end", k);
		}
		if (tern_actor_sleep(self, 1000000) != 0)
			return TERN_EKILLED;
	}
	tern_actor_state(self, "fenced a connection");
	rc_set_phase(self, s, s->phase);
	return rc_answer(self, s, TERN_MSG_W_FENCE, 0, k, NULL);
}

/* At the end of memory the data connections have nothing left to do: they
 * are stopped and joined before the state is loaded and the guest can
 * resume, so no thread of this migration but connection 0's still reads
 * from the network when the guest runs.  Their exits, arriving later, are
 * known as retired (not lost). */
static void
rc_retire_data(struct rc_state *s)
{
	for (uint32_t i = 1; i < s->a->nconns; i++) {
		if (s->conns[i] == NULL)
			continue;
		s->retired[i] = tern_actor_id(s->conns[i]);
		tern_actor_stop_join(&s->conns[i], 2000, NULL);
	}
}

static bool
rc_is_retired(const struct rc_state *s, uint32_t id)
{
	for (uint32_t i = 0; i < s->a->nconns; i++)
		if (s->retired[i] == id)
			return true;
	return false;
}

/* The end of memory, for every connection at once, at the first frame of
 * the state: the source sends it only when every page frame was
 * acknowledged, so a frame still being written is a lie (seq_cst: see
 * tern_conn_recv_args).  Then the data connections are retired. */
int
rc_end_memory(struct tern_actor *self, struct rc_state *s, uint32_t type)
{
	if (s->memory_ended)
		return 0;
	atomic_store(&s->a->memory_closed, true);
	tern_populate_ahead_cancel(&s->a->ahead); /* nothing more arrives: stop populating */
	if (atomic_load(&s->a->writers) != 0) {
		(void)rc_answer(self, s, type, TERN_EPROTO, 0, "page data still arriving");
		return rc_fail(self, s, TERN_EPROTO,
		               "protocol violation: %s while page data was still arriving",
		               tern_msg_name(type));
	}
	rc_retire_data(s);
	s->memory_ended = true;
	return 0;
}

/* W_STATE_PART: the next TERN_STATE_PART bytes of a large state, in order,
 * held until W_STATE brings the rest (at most TERN_STATE_MAX in all). */
static int
rc_state_part(struct tern_actor *self, struct rc_state *s, uint64_t offset,
              const struct tern_bin *p)
{
	char why[TERN_STR_MAX];
	if (s->phase != RC_CONFIGURED && s->phase != RC_POSTCOPY)
		return rc_out_of_phase(self, s, TERN_MSG_W_STATE_PART, "after W_CONFIG, in order");
	if (offset != s->blob_len || p->len != TERN_STATE_PART ||
	    s->blob_len + p->len >= TERN_STATE_MAX) {
		snprintf(
		    why, sizeof(why),
		    "state part of %llu bytes at offset %llu (expected %u bytes at %llu, under "
		    "%u in all)",
		    (unsigned long long)p->len, (unsigned long long)offset, TERN_STATE_PART,
		    (unsigned long long)s->blob_len, TERN_STATE_MAX);
		(void)rc_answer(self, s, TERN_MSG_W_STATE_PART, TERN_EPROTO, 0, why);
		return rc_fail(self, s, TERN_EPROTO, "protocol violation: %s", why);
	}
	int rc = s->pc != NULL ? 0 : rc_end_memory(self, s, TERN_MSG_W_STATE_PART);
	if (rc != 0)
		return rc;
	uint8_t *more = realloc(s->blob, s->blob_len + p->len);
	if (more == NULL)
		return rc_fail(self, s, TERN_ENOMEM, "out of memory for the guest state");
	s->blob = more;
	memcpy(s->blob + s->blob_len, p->ptr, p->len);
	s->blob_len += p->len;
	return 0;
}

/* W_STATE: the state's total length and its last part; loaded whole. */
static int
rc_state(struct tern_actor *self, struct rc_state *s, struct tern_guest *g, uint64_t total,
         const struct tern_bin *p)
{
	if (s->phase != RC_CONFIGURED && s->phase != RC_POSTCOPY)
		return rc_out_of_phase(self, s, TERN_MSG_W_STATE, "once, after W_CONFIG");
	if (s->blob_len + p->len != total) {
		(void)rc_answer(self, s, TERN_MSG_W_STATE, TERN_EPROTO, 0, "state length mismatch");
		return rc_fail(self, s, TERN_EPROTO,
		               "protocol violation: W_STATE announces %llu bytes, carries %llu",
		               (unsigned long long)total,
		               (unsigned long long)(s->blob_len + p->len));
	}
	/* Postcopy: memory stays open, missing pages still arrive. */
	int rc = s->pc != NULL ? 0 : rc_end_memory(self, s, TERN_MSG_W_STATE);
	if (rc != 0)
		return rc;
	const void *blob = p->ptr;
	if (s->blob_len > 0) {
		uint8_t *all = realloc(s->blob, total);
		if (all == NULL)
			return rc_fail(self, s, TERN_ENOMEM, "out of memory for the guest state");
		s->blob = all;
		memcpy(s->blob + s->blob_len, p->ptr, p->len);
		blob = s->blob;
	}
	rc = tern_guest_fault_hit("load", tern_runtime_trace(tern_actor_rt(self)));
	if (rc == 0)
		rc = g->ops->state_load(g, blob, total);
	free(s->blob);
	s->blob = NULL;
	s->blob_len = 0;
	if (rc != 0) {
		/* The guest's own reason, to both sides. */
		const char *why = g->why[0] ? g->why : tern_strerror(rc);
		(void)rc_answer(self, s, TERN_MSG_W_STATE, rc, 0, why);
		return rc_fail(self, s, rc, "guest state rejected: %s", why);
	}
	if (s->pc != NULL)
		return rc_pc_run(self, s, g);
	rc_set_phase(self, s, RC_STATE);
	return rc_answer(self, s, TERN_MSG_W_STATE, 0, 0, NULL);
}

static int
rc_ctl(struct tern_actor *self, struct rc_state *s, const struct tern_msg *m)
{
	struct tern_msg f;
	int rc = tern_msg_decode(m->u.ctl_in.frame.ptr, m->u.ctl_in.frame.len, &f);
	if (rc != 0)
		return rc_fail(self, s, rc, "malformed control frame");
	/* Frames are events of the receiver too (TERN_FAULT=receiver@recv:W_STATE). */
	tern_actor_event(self, "recv", tern_msg_name(f.type));
	if (tern_actor_killed(self))
		return TERN_EKILLED;
	struct tern_guest *g = atomic_load_explicit(&s->a->guest, memory_order_acquire);
	const struct tern_bin *p = &m->u.ctl_in.payload;
	switch (f.type) {
	case TERN_MSG_W_CONFIG:
		return rc_config(self, s, &f.u.w_config);
	case TERN_MSG_W_STATE_PART:
		return rc_state_part(self, s, f.u.w_state_part.offset, p);
	case TERN_MSG_W_STATE:
		return rc_state(self, s, g, f.u.w_state.len, p);
	case TERN_MSG_W_DIGEST: {
		if (s->phase == RC_PC_RUNNING)
			return rc_pc_digest(self, s, f.u.w_digest.digest);
		if (s->phase != RC_STATE)
			return rc_out_of_phase(self, s, f.type, "once, after W_STATE");
		uint64_t t0 = tern_now_ns(), d = 0;
		rc = tern_guest_digest(g, &d);
		uint64_t ns = tern_now_ns() - t0;
		if (rc == 0 && d != f.u.w_digest.digest) {
			char why[128];
			snprintf(why, sizeof(why),
			         "memory digest mismatch: source %016" PRIx64
			         ", destination %016" PRIx64,
			         f.u.w_digest.digest, d);
			(void)rc_answer(self, s, f.type, TERN_EVERIFY, ns, why);
			return rc_fail(self, s, TERN_EVERIFY, "%s", why);
		}
		if (rc != 0) {
			(void)rc_answer(self, s, f.type, rc, ns, "digest failed");
			return rc_fail(self, s, rc, "digest failed: %s", tern_strerror(rc));
		}
		s->a->stats->verified = 1;
		s->a->stats->verify_ms = ns / 1000000;
		rc_set_phase(self, s, RC_VERIFIED);
		return rc_answer(self, s, f.type, 0, ns, NULL);
	}
	case TERN_MSG_W_POSTCOPY:
		return rc_postcopy(self, s, g, &f.u.w_postcopy, p);
	case TERN_MSG_W_COMPLETE:
		if (s->phase == RC_PC_RUNNING)
			return rc_pc_complete(self, s);
		if (s->phase != RC_STATE && s->phase != RC_VERIFIED)
			return rc_out_of_phase(self, s, f.type,
			                       "once, after W_STATE (and W_DIGEST)");
		/* Through guest_call: TERN_FAULT=guest@resume can fail it. */
		rc = tern_guest_resume_checked(g, tern_runtime_trace(tern_actor_rt(self)));
		if (rc != 0) {
			(void)rc_answer(self, s, f.type, rc, 0, "resume failed");
			return rc_fail(self, s, rc, "cannot resume the guest: %s",
			               tern_strerror(rc));
		}
		s->a->stats->total_ms = (tern_now_ns() - s->a->start_ns) / 1000000;
		s->a->result = 0;
		snprintf(s->a->stats->outcome, sizeof(s->a->stats->outcome), "completed");
		rc_set_phase(self, s, RC_RESUMED);
		(void)rc_answer(self, s, f.type, 0, g->stats.last_resume_ns, NULL);
		return TERN_ACTOR_DONE;
	case TERN_MSG_W_FENCE:
		return rc_fence(self, s, f.u.w_fence.conn);
	case TERN_MSG_W_RESUME:
		return rc_pc_resume(self, s);
	case TERN_MSG_W_ABORT:
		(void)rc_answer(self, s, f.type, 0, 0, NULL);
		return rc_fail(self, s, TERN_ECANCELED, "the source aborted the migration: %s",
		               f.u.w_abort.why);
	default:
		(void)rc_answer(self, s, f.type, TERN_EPROTO, 0, "unexpected request");
		return rc_fail(self, s, TERN_EPROTO, "unexpected %s", tern_msg_name(f.type));
	}
}

static int
rc_handle(struct tern_actor *self, void *state, const struct tern_msg *m)
{
	struct rc_state *s = state;
	if (m->type == TERN_MSG_CTL_IN || m->type == TERN_MSG_PAGES_IN)
		s->last_heard_ns = tern_now_ns();
	switch (m->type) {
	case TERN_MSG_CTL_IN: {
		int rc = rc_ctl(self, s, m);
		/* Time spent on a request (a postcopy discard, a state load) is
		 * not the source's silence. */
		s->last_heard_ns = tern_now_ns();
		return rc;
	}
	case TERN_MSG_PAGES_IN:
		s->a->stats->payload_bytes += m->u.pages_in.bytes;
		s->a->stats->pages_sent += m->u.pages_in.bytes / TERN_PAGE_SIZE;
		s->a->stats->pages_zero += m->u.pages_in.zero_pages;
		return 0;
	case TERN_MSG_SYS_EXIT: {
		if (rc_is_retired(s, m->u.sys_exit.actor))
			return 0;
		if (s->faults != NULL && m->u.sys_exit.actor == tern_actor_id(s->faults))
			return rc_fail(
			    self, s, m->u.sys_exit.code ? m->u.sys_exit.code : TERN_EACTOR,
			    "the postcopy fault handler %s: %s",
			    m->u.sys_exit.reason == TERN_EXIT_KILLED ? "was killed" : "ended",
			    m->u.sys_exit.why);
		/* A violation on any connection ends the migration with its
		 * reason, also when another connection's end (the source
		 * hanging up after being told) arrives first. */
		for (uint32_t i = 0; i < s->a->nconns; i++) {
			struct tern_conn_recv_args *c = &s->a->conns[i];
			if (atomic_load_explicit(&c->violation, memory_order_acquire))
				return rc_fail(self, s, TERN_EPROTO, "protocol violation: %s",
				               c->why);
		}
		for (uint32_t i = 1; i < s->a->nconns; i++) {
			if (s->conns[i] != NULL &&
			    m->u.sys_exit.actor == tern_actor_id(s->conns[i])) {
				/* A data connection died: the source resends its
				 * chunks on the others (or aborts if too few are
				 * left, which arrives on connection 0). */
				s->a->stats->connections_lost++;
				s->a->stats->conn[i].lost = 1;
				return 0;
			}
		}
		return rc_pc_lost(self, s, m->u.sys_exit.code ? m->u.sys_exit.code : TERN_ECLOSED,
		                  m->u.sys_exit.why[0]
		                      ? m->u.sys_exit.why
		                      : "the source closed the control connection");
	}
	case TERN_MSG_PC_RELINKED:
		return rc_pc_relinked(self, s, &m->u.pc_relinked);
	default:
		return rc_fail(self, s, TERN_EPROTO, "unexpected message %s",
		               tern_msg_name(m->type));
	}
}

/* A source that went silent (stopped, or its host died without a reset)
 * is detected here: reading has no deadline between frames.  The limit is
 * generous because the source may be hashing a large guest for --verify. */
static int
rc_tick(struct tern_actor *self, void *state)
{
	struct rc_state *s = state;
	char why[64];
	if (s->phase == RC_PC_PAUSED || s->phase >= RC_RESUMED ||
	    tern_now_ns() - s->last_heard_ns <= s->idle_limit_ns)
		return 0;
	snprintf(why, sizeof(why), "nothing heard from the source for %llu ms",
	         (unsigned long long)(s->idle_limit_ns / 1000000));
	return rc_pc_lost(self, s, TERN_ETIMEDOUT, why);
}

static int
rc_init(struct tern_actor *self, void *state, void *arg)
{
	struct rc_state *s = state;
	struct tern_receiver_args *a = arg;
	s->a = a;
	a->result = TERN_ECANCELED;
	rc_set_phase(self, s, RC_LISTENING);
	s->last_heard_ns = tern_now_ns();
	s->idle_limit_ns =
	    3ull * (a->opts->io_timeout_ms ? a->opts->io_timeout_ms : 10000) * 1000000ull;
	tern_actor_set_tick(self, s->idle_limit_ns / 10);
	return rc_spawn_conns(self, s);
}

int
rc_spawn_conns(struct tern_actor *self, struct rc_state *s)
{
	struct tern_receiver_args *a = s->a;
	int rc = 0;
	for (uint32_t i = 0; i < a->nconns; i++) {
		struct tern_conn_recv_args *c = &a->conns[i];
		c->conn = i;
		c->receiver = tern_actor_id(self);
		c->guest = &a->guest;
		c->written = &a->written;
		c->ahead = &a->ahead;
		c->memory_closed = &a->memory_closed;
		c->writers = &a->writers;
		c->pc = &a->pc;
		c->populate = !a->opts->no_populate;
		c->deadline_ms = a->opts->io_timeout_ms ? (int)a->opts->io_timeout_ms : 10000;
		if (rc == 0) {
			/* The actor owns the fd from here on, failed or not. */
			rc = tern_spawn(tern_actor_rt(self), &tern_conn_recv_actor, c,
			                tern_actor_id(self), &s->conns[i], NULL);
			if (rc != 0)
				s->conns[i] = NULL;
		} else {
			tern_link_close(&c->link);
		}
	}
	return rc;
}

static void
rc_stop(struct tern_actor *self, void *state)
{
	struct rc_state *s = state;
	free(s->blob);
	s->blob = NULL;
	if (s->a == NULL)
		return;
	atomic_store(&s->a->recover_cancel, true); /* a wait for the source ends */
	/* The fault handler before the connections it sends through, and
	 * both before the userfaultfd goes. */
	if (s->faults != NULL)
		tern_actor_stop_join(&s->faults, 2000, NULL);
	for (uint32_t i = 0; i < s->a->nconns; i++) {
		if (s->conns[i] != NULL)
			tern_actor_stop_join(&s->conns[i], 2000, NULL);
		struct tern_conn_stats *cs = &s->a->stats->conn[i];
		cs->bytes = atomic_load(&s->a->conns[i].bytes);
		cs->payload = atomic_load(&s->a->conns[i].payload);
		s->a->stats->bytes_sent += cs->bytes;
	}
	if (s->pc != NULL) {
		if (s->phase != RC_RESUMED)
			tern_pc_dst_stats(s->pc, s->a->stats);
		atomic_store(&s->a->pc, NULL);
		tern_pc_dst_fini(s->pc);
		free(s->pc);
		s->pc = NULL;
	}
	/* After the connections: none takes a block any more. */
	tern_populate_ahead_fini(&s->a->ahead);
}

const struct tern_actor_desc tern_receiver_actor = {
    .name = "receiver",
    .state_size = sizeof(struct rc_state),
    .init = rc_init,
    .handle = rc_handle,
    .tick = rc_tick,
    .stop = rc_stop,
};
