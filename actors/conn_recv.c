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
#include "actors/page_frame.h"
#include "actors/postcopy.h"
#include "net/net.h"
#include "net/wire.h"
#include "tern/error.h"

#define CR_CTL_PAYLOAD_MAX (1u << 20)

struct cr_state {
	struct tern_conn_recv_args *a;
	struct tern_wire_rx *rx;
	uint8_t *ctl; /* control payload buffer (connection 0) */
	uint8_t *hdr; /* a control header re-encoded for the receiver: 64 KiB,
	               * too much for the stack */
	uint64_t frames;
	/* A frame, once begun, must end by this (absolute): a peer dribbling
	 * bytes would otherwise hold the actor in one frame forever, since a
	 * socket timeout restarts with every byte. */
	uint64_t frame_ns, until;
	struct iovec iov[TERN_FRAME_MAX_RANGES];
	uint8_t *bounce; /* postcopy: payloads land here, then are placed */
	uint64_t bounce_len;
};

static int
cr_init(struct tern_actor *self, void *state, void *arg)
{
	struct cr_state *s = state;
	s->a = arg;
	s->rx = malloc(sizeof(*s->rx));
	if (s->a->conn == 0) {
		s->ctl = malloc(CR_CTL_PAYLOAD_MAX);
		s->hdr = malloc(TERN_WIRE_HEADER_MAX);
		if (s->ctl == NULL || s->hdr == NULL)
			return TERN_ENOMEM;
	}
	if (s->rx == NULL)
		return TERN_ENOMEM;
	int deadline_ms = s->a->deadline_ms > 0 ? s->a->deadline_ms : 10000;
	/* Twice the idle limit: generous for a whole 64 MiB frame on a slow
	 * link, and under the receiver's silence limit (three times), so a
	 * trickle is reported as such. */
	s->frame_ns = 2ull * (uint64_t)deadline_ms * 1000000ull;
	int rc = tern_net_set_deadline(s->a->link.fd, deadline_ms);
	if (rc != 0)
		return rc;
	/* A kill shuts it down, releasing a read or write in progress. */
	if ((rc = tern_actor_own_fd(self, s->a->link.fd)) != 0)
		return rc;
	return tern_actor_watch_fd(self, s->a->link.fd, POLLIN);
}

/* Tells the source why, then fails: the source aborts and resumes.  The
 * receiver learns it was a violation (args->violation) and aborts the
 * migration, whichever connection it came on. */
static int
cr_refuse(struct tern_actor *self, struct cr_state *s, int code, const char *why)
{
	struct tern_msg m;
	snprintf(s->a->why, sizeof(s->a->why), "connection %u: %s", s->a->conn, why);
	/* Release: the receiver reads why after seeing the flag. */
	atomic_store_explicit(&s->a->violation, true, memory_order_release);
	tern_msg_init(&m, TERN_MSG_W_ABORT);
	m.u.w_abort.code = code;
	snprintf(m.u.w_abort.why, sizeof(m.u.w_abort.why), "connection %u: %s", s->a->conn, why);
	(void)tern_wire_send(&s->a->link, &m, NULL, 0, NULL);
	return tern_actor_fail(self, code, "connection %u: %s", s->a->conn, why);
}

/* A failed read: a frame over its deadline says so (a trickle is silence). */
static int
cr_io_fail(struct tern_actor *self, struct cr_state *s, int rc, const char *what)
{
	if (rc == TERN_ETIMEDOUT)
		return tern_actor_fail(
		    self, rc,
		    "connection %u: %s: the frame took over %llu ms (a trickle counts as silence)",
		    s->a->conn, what, (unsigned long long)(s->frame_ns / 1000000));
	return tern_actor_fail(self, rc, "connection %u: %s: %s", s->a->conn, what,
	                       tern_strerror(rc));
}

/* Enters a page write unless memory is closed or this connection fenced
 * (see tern_conn_recv_args: seq_cst on both sides, so the receiver closing
 * memory or fencing either sees this writer or this writer sees the
 * barrier).  Returns 0, or which barrier stopped it. */
enum cr_barrier { CR_OPEN, CR_CLOSED, CR_FENCED };

static enum cr_barrier
cr_write_begin(struct cr_state *s)
{
	atomic_fetch_add(s->a->writers, 1);
	atomic_fetch_add(&s->a->writing, 1);
	enum cr_barrier b = atomic_load(s->a->memory_closed) ? CR_CLOSED
	                    : atomic_load(&s->a->fenced)     ? CR_FENCED
	                                                     : CR_OPEN;
	if (b != CR_OPEN) {
		atomic_fetch_sub(&s->a->writing, 1);
		atomic_fetch_sub(s->a->writers, 1);
	}
	return b;
}

static void
cr_write_end(struct cr_state *s)
{
	atomic_fetch_sub(&s->a->writing, 1);
	atomic_fetch_sub(s->a->writers, 1);
}

static int cr_ack(struct tern_actor *self, struct cr_state *s, uint64_t chunk, uint64_t plen,
                  uint64_t zero_pages);
static int cr_place(struct tern_actor *self, struct cr_state *s, struct tern_pc_dst *pc,
                    const struct tern_msg_w_pages *f, uint64_t plen, uint64_t *zero_pages);

static int
cr_pages(struct tern_actor *self, struct cr_state *s, const struct tern_msg *m, uint64_t plen)
{
	struct tern_guest *g = atomic_load_explicit(s->a->guest, memory_order_acquire);
	if (g == NULL)
		return cr_refuse(self, s, TERN_EPROTO, "page data before the configuration");
	const struct tern_msg_w_pages *f = &m->u.w_pages;
	const char *why = NULL;
	/* Every range is checked before any byte is written. */
	int rc = tern_page_frame_check(g, f, plen, &why);
	if (rc != 0)
		return cr_refuse(self, s, rc, why);
	enum cr_barrier barrier = cr_write_begin(s);
	if (barrier == CR_FENCED)
		return tern_actor_fail(self, TERN_ECLOSED, "connection %u: fenced", s->a->conn);
	if (barrier == CR_CLOSED)
		return cr_refuse(
		    self, s, TERN_EPROTO,
		    "page data after the end of memory (W_STATE or the end of the migration)");
	/* After the postcopy switch pages are placed, never written in place
	 * (the guest runs on them). */
	struct tern_pc_dst *pc = atomic_load(s->a->pc);
	if (pc != NULL) {
		uint64_t zero_pages = 0;
		rc = cr_place(self, s, pc, f, plen, &zero_pages);
		cr_write_end(s);
		return rc != 0 ? rc : cr_ack(self, s, f->chunk, plen, zero_pages);
	}
	/* Announced zero: make them read as zero, also when this memory held
	 * something before (a second migration into the same guest). */
	uint64_t zero_pages = 0;
	if ((rc = tern_page_frame_zero(g, s->a->written, f, &zero_pages)) != 0) {
		cr_write_end(s);
		return cr_refuse(self, s, rc, "cannot clear announced zero pages");
	}
	/* Pages marked written (before the data lands: a frame cut off by a
	 * lost data connection leaves no unmarked page holding data) and
	 * populated ahead, then one scatter receive straight into place. */
	/* Blocks the populate-ahead stage (or --prealloc) made ready need
	 * nothing more; the others are populated here, ahead of the data. */
	bool populate = s->a->populate && tern_populate_ahead_take(s->a->ahead, f);
	tern_page_frame_iov(g, s->a->written, f, populate, s->iov);
	rc = tern_wire_recv_iov_until(&s->a->link, s->iov, (int)f->ranges.count, s->until);
	if (rc != 0) {
		cr_write_end(s);
		return cr_io_fail(self, s, rc, "receiving pages");
	}
	/* Before the ack: the source sends W_STATE only once every frame was
	 * acknowledged, so a correct source never meets a writer there. */
	cr_write_end(s);
	return cr_ack(self, s, m->u.w_pages.chunk, plen, zero_pages);
}

/* Acknowledges a frame written (or placed) and tells the receiver. */
static int
cr_ack(struct tern_actor *self, struct cr_state *s, uint64_t chunk, uint64_t plen,
       uint64_t zero_pages)
{
	atomic_fetch_add_explicit(&s->a->payload, plen, memory_order_relaxed);
	struct tern_msg ack;
	tern_msg_init(&ack, TERN_MSG_W_ACK);
	ack.u.w_ack.chunk = chunk;
	uint64_t wire = 0;
	int rc = tern_wire_send(&s->a->link, &ack, NULL, 0, &wire);
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

/* Reads a payload of plen bytes into the bounce buffer. */
static int
cr_bounce_in(struct tern_actor *self, struct cr_state *s, uint64_t plen)
{
	if (plen > s->bounce_len) {
		uint8_t *b = realloc(s->bounce, plen);
		if (b == NULL)
			return tern_actor_fail(self, TERN_ENOMEM, "connection %u: out of memory",
			                       s->a->conn);
		s->bounce = b;
		s->bounce_len = plen;
	}
	int rc = plen ? tern_wire_recv_exact_until(&s->a->link, s->bounce, plen, s->until) : 0;
	return rc != 0 ? cr_io_fail(self, s, rc, "receiving pages") : 0;
}

/* Postcopy: places a checked frame's pages (data from the payload, zero
 * ranges as zeros), whole pages only: each page once, never over one the
 * guest may have written since (postcopy.h). */
static int
cr_place(struct tern_actor *self, struct cr_state *s, struct tern_pc_dst *pc,
         const struct tern_msg_w_pages *f, uint64_t plen, uint64_t *zero_pages)
{
	if (!atomic_load_explicit(&pc->running, memory_order_acquire))
		return cr_refuse(self, s, TERN_EPROTO, "page data during the postcopy switch");
	int rc = cr_bounce_in(self, s, plen);
	if (rc != 0)
		return rc;
	uint64_t pos = 0, off, len;
	for (int zero = 0; zero < 2; zero++) {
		const struct tern_ranges *r = zero ? &f->zeros : &f->ranges;
		for (uint32_t i = 0; i < r->count; i++) {
			tern_ranges_get(r, i, &off, &len);
			if (off % TERN_PAGE_SIZE != 0 || len % TERN_PAGE_SIZE != 0)
				return cr_refuse(self, s, TERN_EPROTO,
				                 "a postcopy page range that is not whole pages");
			rc = tern_pc_dst_place(pc, off, zero ? NULL : s->bounce + pos, len, NULL);
			if (rc != 0)
				return tern_actor_fail(self, rc, "connection %u: placing pages: %s",
				                       s->a->conn, tern_strerror(rc));
			if (zero)
				*zero_pages += len / TERN_PAGE_SIZE;
			else
				pos += len;
		}
	}
	return 0;
}

/* W_URGENT (connection 0): pages a fault asked for, placed at once; not
 * acknowledged. */
static int
cr_urgent(struct tern_actor *self, struct cr_state *s, const struct tern_msg *m, uint64_t plen)
{
	struct tern_guest *g = atomic_load_explicit(s->a->guest, memory_order_acquire);
	struct tern_pc_dst *pc = atomic_load(s->a->pc);
	if (s->a->conn != 0 || g == NULL || pc == NULL)
		return cr_refuse(self, s, TERN_EPROTO, "requested pages without a postcopy switch");
	const struct tern_msg_w_pages f = {.ranges = m->u.w_urgent.ranges};
	const char *why = NULL;
	int rc = tern_page_frame_check(g, &f, plen, &why);
	if (rc != 0)
		return cr_refuse(self, s, rc, why);
	if (plen > CR_CTL_PAYLOAD_MAX)
		return cr_refuse(self, s, TERN_EPROTO, "requested pages over the control limit");
	if (cr_write_begin(s) != CR_OPEN)
		return cr_refuse(self, s, TERN_EPROTO, "requested pages after the end of memory");
	uint64_t unused = 0;
	rc = cr_place(self, s, pc, &f, plen, &unused);
	cr_write_end(s);
	if (rc != 0)
		return rc;
	atomic_fetch_add(&pc->urgent_pages, plen / TERN_PAGE_SIZE);
	tern_pc_dst_latency(pc, m->u.w_urgent.t);
	atomic_fetch_add_explicit(&s->a->payload, plen, memory_order_relaxed);
	return 0;
}

static int
cr_control(struct tern_actor *self, struct cr_state *s, const struct tern_msg *m, uint64_t plen)
{
	if (s->a->conn != 0)
		return cr_refuse(self, s, TERN_EPROTO, "control frame on a data connection");
	if (plen > CR_CTL_PAYLOAD_MAX)
		return cr_refuse(self, s, TERN_EPROTO, "control payload too large");
	int rc = plen ? tern_wire_recv_exact_until(&s->a->link, s->ctl, plen, s->until) : 0;
	if (rc != 0)
		return cr_io_fail(self, s, rc, "receiving a control payload");
	size_t hlen;
	if ((rc = tern_msg_encode(m, s->hdr, TERN_WIRE_HEADER_MAX, &hlen)) != 0)
		return rc;
	struct tern_msg in;
	tern_msg_init(&in, TERN_MSG_CTL_IN);
	in.u.ctl_in.frame = (struct tern_bin){s->hdr, hlen};
	in.u.ctl_in.payload = (struct tern_bin){s->ctl, plen};
	return tern_actor_send(self, s->a->receiver, &in);
}

static int
cr_frame(struct tern_actor *self, struct cr_state *s)
{
	struct tern_msg m;
	uint64_t plen;
	s->until = tern_now_ns() + s->frame_ns;
	char why[TERN_STR_MAX] = "";
	int rc =
	    tern_wire_recv_header_until(&s->a->link, s->rx, &m, &plen, s->until, why, sizeof(why));
	if (rc == TERN_ECLOSED) {
		/* Between frames: a normal end (the receiver decides whether it
		 * came too early). */
		tern_actor_state(self, "closed by the source");
		return TERN_ACTOR_DONE;
	}
	if (rc == TERN_EMSG || rc == TERN_EPROTO) {
		char line[TERN_STR_MAX + 32];
		snprintf(line, sizeof(line), "malformed frame: %s", why);
		return cr_refuse(self, s, rc, line);
	}
	if (rc != 0)
		return cr_io_fail(self, s, rc, "receiving a frame header");
	tern_actor_event(self, "recv", tern_msg_name(m.type));
	if (tern_actor_killed(self))
		return TERN_EKILLED;
	switch (m.type) {
	case TERN_MSG_W_PAGES:
		return cr_pages(self, s, &m, plen);
	case TERN_MSG_W_URGENT:
		return cr_urgent(self, s, &m, plen);
	case TERN_MSG_W_CONFIG:
	case TERN_MSG_W_STATE:
	case TERN_MSG_W_DIGEST:
	case TERN_MSG_W_COMPLETE:
	case TERN_MSG_W_FENCE:
	case TERN_MSG_W_STATE_PART:
	case TERN_MSG_W_POSTCOPY:
	case TERN_MSG_W_RESUME:
	case TERN_MSG_W_ABORT:
		return cr_control(self, s, &m, plen);
	default:
		return cr_refuse(self, s, TERN_EPROTO, "unexpected frame type");
	}
}

static int
cr_on_fd(struct tern_actor *self, void *state, int fd, short revents)
{
	struct cr_state *s = state;
	int rc;

	/* TLS may hold a whole frame already read from the socket: poll
	 * would not say so. */
	do
		rc = cr_frame(self, s);
	while (rc == 0 && tern_link_pending(&s->a->link));
	return rc;
}

static int
cr_handle(struct tern_actor *self, void *state, const struct tern_msg *m)
{
	struct cr_state *s = state;
	if (m->type != TERN_MSG_CTL_OUT)
		return tern_actor_fail(self, TERN_EPROTO, "unexpected message %s",
		                       tern_msg_name(m->type));
	uint64_t wire = 0;
	int rc = tern_wire_forward(&s->a->link, m->u.ctl_out.frame.ptr, m->u.ctl_out.frame.len,
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
	if (s->a != NULL)
		tern_link_close(&s->a->link); /* the runtime forgot it before stop */
	free(s->rx);
	free(s->bounce);
	free(s->ctl);
	free(s->hdr);
}

const struct tern_actor_desc tern_conn_recv_actor = {
    .name = "conn-recv",
    .state_size = sizeof(struct cr_state),
    .init = cr_init,
    .handle = cr_handle,
    .on_fd = cr_on_fd,
    .stop = cr_stop,
};
