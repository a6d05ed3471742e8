/*
 * The source's control-frame protocol (see control.h).
 */
#include <stdio.h>

#include "actors/control.h"
#include "tern/error.h"

int
tern_ctl_send(struct tern_actor *self, struct tern_ctl *c, struct tern_msg *frame,
              const void *payload, size_t plen)
{
	uint8_t buf[4096]; /* W_CONFIG: strings and up to 64 regions */
	size_t len;
	frame->time_ns = tern_now_ns();
	int rc = tern_msg_encode(frame, buf, sizeof(buf), &len);
	if (rc != 0)
		return rc;
	struct tern_msg out;
	tern_msg_init(&out, TERN_MSG_CTL_OUT);
	out.u.ctl_out.frame = (struct tern_bin){buf, len};
	out.u.ctl_out.payload = (struct tern_bin){payload, plen};
	uint64_t limit = c->timeout_ns;
	if (frame->type == TERN_MSG_W_DIGEST)
		limit += c->digest_ns;
	if (frame->type == TERN_MSG_W_POSTCOPY)
		limit += c->discard_ns;
	/* Requested pages are not answered: the deadline stays the pending
	 * request's. */
	if (frame->type != TERN_MSG_W_URGENT)
		c->deadline_ns = frame->type == TERN_MSG_W_ABORT ? 0 : tern_now_ns() + limit;
	return tern_actor_send(self, c->conn0, &out);
}

int
tern_ctl_recv(struct tern_actor *self, struct tern_ctl *c, const struct tern_msg *m,
              struct tern_msg *frame)
{
	int rc = tern_msg_decode(m->u.ctl_in.frame.ptr, m->u.ctl_in.frame.len, frame);
	if (rc != 0)
		return rc;
	tern_actor_event(self, "recv", tern_msg_name(frame->type));
	if (frame->type == TERN_MSG_W_RESULT)
		c->deadline_ns = 0;
	return 0;
}

bool
tern_ctl_abort(struct tern_actor *self, struct tern_ctl *c, int code, const char *why)
{
	if (c->conn0 == 0 || !c->alive)
		return false;
	struct tern_msg ab;
	tern_msg_init(&ab, TERN_MSG_W_ABORT);
	ab.u.w_abort.code = code;
	snprintf(ab.u.w_abort.why, sizeof(ab.u.w_abort.why), "%s", why);
	return tern_ctl_send(self, c, &ab, NULL, 0) == 0;
}

bool
tern_ctl_expired(const struct tern_ctl *c, uint64_t now)
{
	return c->deadline_ns != 0 && now > c->deadline_ns;
}
