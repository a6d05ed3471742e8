/*
 * The source's device state at switchover: saved through the guest's ops
 * into a buffer that grows while the VMM says -ENOSPC (doubling, up to
 * TERN_STATE_MAX), then sent on connection 0 as parts of TERN_STATE_PART
 * (W_STATE_PART, unanswered) and W_STATE with the total length and the
 * last part, which the destination answers once it has loaded the whole.
 * So a VMM's state is not bounded by one frame or one control payload.
 */
#include <errno.h>
#include <stdlib.h>

#include "actors/coordinator_int.h"
#include "actors/guest_call.h"
#include "tern/error.h"

/* co_save_state fills s->state_buf, growing it as the guest asks. */
static int
co_save_state(struct co_state *s, size_t *len)
{
	for (;;) {
		int rc = s->g->ops->state_save(s->g, s->state_buf, s->state_cap, len);

		if (rc != -ENOSPC || s->state_cap >= TERN_STATE_MAX)
			return rc;
		uint8_t *bigger = realloc(s->state_buf, s->state_cap * 2);
		if (bigger == NULL)
			return TERN_ENOMEM;
		s->state_buf = bigger;
		s->state_cap *= 2;
		s->g->why[0] = '\0'; /* the refusal was a question, not a failure */
	}
}

void
co_send_state(struct tern_actor *self, struct co_state *s)
{
	struct tern_msg f;
	size_t len = 0, off = 0;
	int rc = tern_guest_fault_hit("save", tern_runtime_trace(tern_actor_rt(self)));

	uint64_t t0 = tern_now_ns();
	if (rc == 0)
		rc = co_save_state(s, &len);
	s->a->stats->state_save_ms = (tern_now_ns() - t0) / 1000000;
	s->a->stats->state_bytes = len;
	if (rc != 0) {
		co_abort(self, s, rc, "cannot save guest state%s: %s",
		         rc == -ENOSPC ? " (larger than 256 MiB)" : "",
		         s->g->why[0] ? s->g->why : tern_strerror(rc));
		return;
	}
	co_set_phase(self, s, CO_STATE);
	for (; len - off > TERN_STATE_PART; off += TERN_STATE_PART) {
		tern_msg_init(&f, TERN_MSG_W_STATE_PART);
		f.u.w_state_part.offset = off;
		if ((rc = tern_ctl_send(self, &s->ctl, &f, s->state_buf + off, TERN_STATE_PART)) !=
		    0)
			break;
	}
	tern_msg_init(&f, TERN_MSG_W_STATE);
	f.u.w_state.len = len;
	if (rc == 0)
		rc = tern_ctl_send(self, &s->ctl, &f, s->state_buf + off, len - off);
	if (rc != 0)
		co_abort(self, s, rc, "cannot send the state: %s", tern_strerror(rc));
}
