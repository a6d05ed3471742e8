/*
 * Destination ConnectionActor (see conn_recv.h).  Nothing from the network is
 * trusted: sizes and ranges are checked before use, the guest must exist
 * before pages arrive, and control frames are accepted on connection 0 only.
 */
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "actors/conn_recv.h"
#include "net/net.h"
#include "net/wire.h"
#include "tern/error.h"

#define CR_CTL_PAYLOAD_MAX (1u << 20)

struct cr_state {
	struct tern_conn_recv_args *a;
	struct tern_wire_rx *rx;
	uint8_t *ctl; /* control payload buffer */
	uint64_t frames;
	struct iovec iov[TERN_FRAME_MAX_RANGES];
};

static int
cr_init(struct tern_actor *self, void *state, void *arg)
{
	struct cr_state *s = state;
	s->a = arg;
	s->rx = malloc(sizeof(*s->rx));
	s->ctl = malloc(CR_CTL_PAYLOAD_MAX);
	if (s->rx == NULL || s->ctl == NULL)
		return TERN_ENOMEM;
	int rc = tern_net_set_deadline(s->a->fd, s->a->deadline_ms > 0 ? s->a->deadline_ms : 10000);
	if (rc != 0)
		return rc;
	/* A kill shuts it down, releasing a read or write in progress. */
	if ((rc = tern_actor_own_fd(self, s->a->fd)) != 0)
		return rc;
	return tern_actor_watch_fd(self, s->a->fd, POLLIN);
}

/* Tells the source why, then fails: the source aborts and resumes. */
static int
cr_refuse(struct tern_actor *self, struct cr_state *s, int code, const char *why)
{
	struct tern_msg m;
	tern_msg_init(&m, TERN_MSG_W_ABORT);
	m.u.w_abort.code = code;
	snprintf(m.u.w_abort.why, sizeof(m.u.w_abort.why), "connection %u: %s", s->a->conn, why);
	(void)tern_wire_send(s->a->fd, &m, NULL, 0, NULL);
	return tern_actor_fail(self, code, "connection %u: %s", s->a->conn, why);
}

/* Connections share the map: atomic bit updates. */
static void
cr_mark_written(struct tern_bitmap *w, uint64_t gpa, uint64_t len)
{
	uint64_t first = gpa >> TERN_PAGE_SHIFT;
	uint64_t last = (gpa + len + TERN_PAGE_SIZE - 1) >> TERN_PAGE_SHIFT;
	for (uint64_t p = first; p < last; p++)
		__atomic_fetch_or(&w->words[p >> 6], 1ull << (p & 63), __ATOMIC_RELAXED);
}

/* An announced zero range: only the pages that received data before need
 * clearing; the others were never populated here and already read as zero. */
static int
cr_zero(struct cr_state *s, struct tern_guest *g, uint64_t gpa, uint64_t len)
{
	struct tern_bitmap *w = s->a->written;
	uint64_t first = gpa >> TERN_PAGE_SHIFT;
	uint64_t last = (gpa + len + TERN_PAGE_SIZE - 1) >> TERN_PAGE_SHIFT;
	for (uint64_t p = first; p < last;) {
		int on = (__atomic_load_n(&w->words[p >> 6], __ATOMIC_RELAXED) >> (p & 63)) & 1;
		uint64_t q = p + 1;
		while (q < last && (int)((__atomic_load_n(&w->words[q >> 6], __ATOMIC_RELAXED) >>
				       (q & 63)) & 1) == on)
			q++;
		if (on) {
			uint64_t a = p << TERN_PAGE_SHIFT, b = q << TERN_PAGE_SHIFT;
			if (a < gpa)
				a = gpa;
			if (b > gpa + len)
				b = gpa + len;
			int rc = tern_guest_zero(g, a, b - a);
			if (rc != 0)
				return rc;
		}
		p = q;
	}
	return 0;
}

static int
cr_pages(struct tern_actor *self, struct cr_state *s, const struct tern_msg *m, uint64_t plen)
{
	struct tern_guest *g = atomic_load_explicit(s->a->guest, memory_order_acquire);
	if (g == NULL)
		return cr_refuse(self, s, TERN_EPROTO, "page data before the configuration");
	const struct tern_ranges *r = &m->u.w_pages.ranges;
	const struct tern_ranges *z = &m->u.w_pages.zeros;
	uint64_t total = 0;
	if (r->count + z->count == 0 || r->count > TERN_FRAME_MAX_RANGES ||
	    z->count > TERN_FRAME_MAX_RANGES)
		return cr_refuse(self, s, TERN_EPROTO, "bad range count in page frame");
	/* Every range is checked before any byte is written. */
	for (uint32_t i = 0; i < r->count + z->count; i++) {
		uint64_t gpa, len;
		tern_ranges_get(i < r->count ? r : z, i < r->count ? i : i - r->count, &gpa, &len);
		if (len == 0 || !tern_guest_range_ok(g, gpa, len))
			return cr_refuse(self, s, TERN_ERANGE, "page range outside guest memory");
		if (i < r->count)
			total += len;
	}
	if (total != plen)
		return cr_refuse(self, s, TERN_EPROTO, "page frame length mismatch");
	/* Announced zero: make them read as zero, also when this memory held
	 * something before (a second migration into the same guest). */
	uint64_t zero_pages = 0;
	for (uint32_t i = 0; i < z->count; i++) {
		uint64_t gpa, len;
		tern_ranges_get(z, i, &gpa, &len);
		int rc = cr_zero(s, g, gpa, len);
		if (rc != 0)
			return cr_refuse(self, s, rc, "cannot clear announced zero pages");
		zero_pages += len / TERN_PAGE_SIZE;
	}
	/* Populate ahead (a memfd pays ~10 us per first-touch fault here, a
	 * fraction of that when populated in bulk; anonymous huge pages are
	 * cheap to fault), then one scatter receive straight into place. */
	for (uint32_t i = 0; i < r->count; i++) {
		uint64_t gpa, len;
		tern_ranges_get(r, i, &gpa, &len);
		if (s->a->populate && g->region.fd >= 0)
			(void)tern_guest_populate(g, gpa, len); /* an optimisation only */
		s->iov[i] = (struct iovec){ tern_guest_hva(g, gpa), len };
	}
	int rc = tern_wire_recv_iov(s->a->fd, s->iov, (int)r->count);
	if (rc != 0)
		return tern_actor_fail(self, rc, "connection %u: receiving pages: %s", s->a->conn,
		    tern_strerror(rc));
	for (uint32_t i = 0; i < r->count; i++) {
		uint64_t gpa, len;
		tern_ranges_get(r, i, &gpa, &len);
		cr_mark_written(s->a->written, gpa, len);
	}
	atomic_fetch_add_explicit(&s->a->payload, plen, memory_order_relaxed);
	struct tern_msg ack;
	tern_msg_init(&ack, TERN_MSG_W_ACK);
	ack.u.w_ack.chunk = m->u.w_pages.chunk;
	uint64_t wire = 0;
	rc = tern_wire_send(s->a->fd, &ack, NULL, 0, &wire);
	atomic_fetch_add_explicit(&s->a->bytes, wire, memory_order_relaxed);
	if (rc != 0)
		return tern_actor_fail(self, rc, "connection %u: sending ack: %s", s->a->conn,
		    tern_strerror(rc));
	tern_actor_event(self, "send", "W_ACK");
	struct tern_msg in;
	tern_msg_init(&in, TERN_MSG_PAGES_IN);
	in.u.pages_in.conn = s->a->conn;
	in.u.pages_in.bytes = plen;
	in.u.pages_in.frames = ++s->frames;
	in.u.pages_in.zero_pages = zero_pages;
	return tern_actor_send(self, s->a->receiver, &in);
}

static int
cr_control(struct tern_actor *self, struct cr_state *s, const struct tern_msg *m, uint64_t plen)
{
	if (s->a->conn != 0)
		return cr_refuse(self, s, TERN_EPROTO, "control frame on a data connection");
	if (plen > CR_CTL_PAYLOAD_MAX)
		return cr_refuse(self, s, TERN_EPROTO, "control payload too large");
	int rc = plen ? tern_wire_recv_exact(s->a->fd, s->ctl, plen) : 0;
	if (rc != 0)
		return tern_actor_fail(self, rc, "connection 0: %s", tern_strerror(rc));
	uint8_t hdr[TERN_WIRE_HEADER_MAX];
	size_t hlen;
	if ((rc = tern_msg_encode(m, hdr, sizeof(hdr), &hlen)) != 0)
		return rc;
	struct tern_msg in;
	tern_msg_init(&in, TERN_MSG_CTL_IN);
	in.u.ctl_in.frame = (struct tern_bin){ hdr, hlen };
	in.u.ctl_in.payload = (struct tern_bin){ s->ctl, plen };
	return tern_actor_send(self, s->a->receiver, &in);
}

static int
cr_on_fd(struct tern_actor *self, void *state, int fd, short revents)
{
	struct cr_state *s = state;
	struct tern_msg m;
	uint64_t plen;
	int rc = tern_wire_recv_header(s->a->fd, s->rx, &m, &plen);
	if (rc == TERN_ECLOSED) {
		/* Between frames: a normal end (the receiver decides whether it
		 * came too early). */
		tern_actor_state(self, "closed by the source");
		return TERN_ACTOR_DONE;
	}
	if (rc == TERN_EMSG || rc == TERN_EPROTO)
		return cr_refuse(self, s, rc, "malformed frame");
	if (rc != 0)
		return tern_actor_fail(self, rc, "connection %u: %s", s->a->conn,
		    tern_strerror(rc));
	tern_actor_event(self, "recv", tern_msg_name(m.type));
	if (tern_actor_killed(self))
		return TERN_EKILLED;
	switch (m.type) {
	case TERN_MSG_W_PAGES:
		return cr_pages(self, s, &m, plen);
	case TERN_MSG_W_CONFIG:
	case TERN_MSG_W_STATE:
	case TERN_MSG_W_DIGEST:
	case TERN_MSG_W_COMPLETE:
	case TERN_MSG_W_ABORT:
		return cr_control(self, s, &m, plen);
	default:
		return cr_refuse(self, s, TERN_EPROTO, "unexpected frame type");
	}
}

static int
cr_handle(struct tern_actor *self, void *state, const struct tern_msg *m)
{
	struct cr_state *s = state;
	if (m->type != TERN_MSG_CTL_OUT)
		return tern_actor_fail(self, TERN_EPROTO, "unexpected message %s",
		    tern_msg_name(m->type));
	uint64_t wire = 0;
	int rc = tern_wire_forward(s->a->fd, m->u.ctl_out.frame.ptr, m->u.ctl_out.frame.len,
	    m->u.ctl_out.payload.ptr, m->u.ctl_out.payload.len, &wire);
	atomic_fetch_add_explicit(&s->a->bytes, wire, memory_order_relaxed);
	if (rc != 0)
		return tern_actor_fail(self, rc, "connection 0: sending a control frame: %s",
		    tern_strerror(rc));
	return 0;
}

static void
cr_stop(struct tern_actor *self, void *state)
{
	struct cr_state *s = state;
	if (s->a != NULL && s->a->fd >= 0) {
		/* The runtime forgot it before stop (tern_actor_own_fd). */
		close(s->a->fd);
		s->a->fd = -1;
	}
	free(s->rx);
	free(s->ctl);
}

const struct tern_actor_desc tern_conn_recv_actor = {
	.name = "conn-recv",
	.state_size = sizeof(struct cr_state),
	.init = cr_init,
	.handle = cr_handle,
	.on_fd = cr_on_fd,
	.stop = cr_stop,
};
