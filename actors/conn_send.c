/*
 * Source ConnectionActor.  Seed 004 sent one chunk and waited for its ack
 * before the next (stop-and-wait, bounded by chunk / (chunk/throughput +
 * rtt)); here a window of chunks is in flight and each ack returns a credit.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "actors/conn_send.h"
#include "net/hello.h"
#include "net/net.h"
#include "net/tls.h"
#include "net/wire.h"
#include "tern/error.h"

/* Payload iovecs of a frame to start with: data and zero-hole pieces
 * alternate, so a frame of a large chunk with holes may need more; cs_iov
 * doubles the array then. */
#define CS_IOV_START (2 * TERN_FRAME_MAX_RANGES)

struct cs_flight {
	uint64_t chunk;
	uint64_t bytes;
	uint64_t zero_pages;
	uint64_t sent_ns;
};

/* Control answers are small; anything bigger is a protocol violation. */
#define CS_CTL_PAYLOAD_MAX 65536u
/* The buffer page data is copied through on its way to the socket
 * (tern_wire_send_copied): small enough to stay in cache, large enough
 * that a 1 MiB frame takes a few system calls. */
#define CS_COPY_BYTES (512u << 10)

struct cs_state {
	struct tern_conn_send_args *a;
	struct tern_link link;
	int queue_fd;
	int queue_watched;
	struct cs_flight flight[TERN_CONN_WINDOW_MAX];
	uint32_t inflight;
	uint64_t last_progress_ns; /* last ack, or the send that filled an empty window */
	/* Final counters, reported by CONN_STATS from stop. */
	uint64_t wire_bytes, payload, first_send_ns, last_ack_ns;
	struct tern_wire_rx *rx;
	/* Connection 0: a control answer's payload and its header re-encoded
	 * for the coordinator.  On the heap: the peer sizes the payload, and
	 * 64 KiB of header is too much for an actor's stack. */
	uint8_t *ctl, *hdr;
	uint8_t *copy; /* NULL: send straight from guest memory */
	uint8_t ranges[TERN_FRAME_MAX_RANGES * 16];
	uint8_t zranges[TERN_FRAME_MAX_RANGES * 16];
	struct iovec *iov; /* niov_cap of them */
	uint32_t niov_cap;
};

static int
cs_init(struct tern_actor *self, void *state, void *arg)
{
	struct cs_state *s = state;
	struct tern_conn_send_args *a = arg;
	s->a = a;
	tern_link_plain(&s->link, -1);
	if (a->window == 0 || a->window > TERN_CONN_WINDOW_MAX)
		a->window = 4;
	s->rx = malloc(sizeof(*s->rx));
	s->iov = malloc(sizeof(*s->iov) * CS_IOV_START);
	if (s->rx == NULL || s->iov == NULL)
		return TERN_ENOMEM;
	s->niov_cap = CS_IOV_START;
	if (!a->send_direct && a->tls == NULL && (s->copy = malloc(CS_COPY_BYTES)) == NULL)
		return TERN_ENOMEM;
	if (a->conn == 0) {
		s->ctl = malloc(CS_CTL_PAYLOAD_MAX);
		s->hdr = malloc(TERN_WIRE_HEADER_MAX);
		if (s->ctl == NULL || s->hdr == NULL)
			return TERN_ENOMEM;
	}
	char why[TERN_STR_MAX] = "";
	int rc = 0, fd = -1;
	if (a->given_fd >= 0) {
		fd = a->given_fd; /* ours now: cs_stop closes it */
		a->given_fd = -1;
	} else {
		rc = tern_net_connect(a->to, 5000, &fd, why, sizeof(why));
	}
	if (rc != 0)
		return tern_actor_fail(self, rc, "%s", why);
	tern_link_plain(&s->link, fd);
	/* A kill shuts it down, releasing a send or receive in progress. */
	if ((rc = tern_actor_own_fd(self, fd)) != 0)
		return rc;
	(void)tern_net_tune(fd);
	uint64_t t0 = tern_now_ns();
	if (a->tls != NULL &&
	    (rc = tern_tls_handshake(a->tls, fd, a->tls_host, t0 + 5000 * 1000000ull, &s->link, why,
	                             sizeof(why))) != 0)
		return tern_actor_fail(self, rc, "TLS with %s on connection %u: %s", a->to, a->conn,
		                       why);
	rc = tern_wire_hello(&s->link, a->migration, a->conn, a->nconns, a->key, 5000, why,
	                     sizeof(why), &a->peer_time_ns);
	uint64_t t1 = tern_now_ns();
	if (rc != 0)
		return tern_actor_fail(self, rc, "handshake on connection %u with %s failed: %s",
		                       a->conn, a->to, why[0] ? why : tern_strerror(rc));
	/* The destination's CLOCK_MONOTONIC minus ours, assuming the ack was
	 * stamped half-way through the round trip: tern-trace merges the two
	 * sides' traces with it. */
	if (a->conn == 0 && a->peer_time_ns != 0)
		tern_actor_counter(self, "peer_clock_offset_ns",
		                   (double)a->peer_time_ns - ((double)t0 + (double)t1) / 2.0);
	rc = tern_net_set_deadline(s->link.fd, a->deadline_ms > 0 ? a->deadline_ms : 10000);
	if (rc != 0)
		return rc;
	rc = tern_actor_watch_fd(self, s->link.fd, POLLIN);
	if (rc != 0)
		return rc;
	s->queue_fd = tern_queue_fd(a->queue);
	if (s->queue_fd < 0)
		return s->queue_fd;
	rc = tern_actor_watch_fd(self, s->queue_fd, POLLIN);
	if (rc != 0)
		return rc;
	s->queue_watched = 1;
	/* Waiting for acks has no socket deadline: the tick enforces it. */
	tern_actor_set_tick(self, (uint64_t)(a->deadline_ms > 0 ? a->deadline_ms : 10000) *
	                              1000000ull / 4);
	tern_actor_state(self, "connected");
	return 0;
}

/* A destination that stopped reading (or answering) is detected here. */
static int
cs_tick(struct tern_actor *self, void *state)
{
	struct cs_state *s = state;
	uint64_t limit = (uint64_t)(s->a->deadline_ms > 0 ? s->a->deadline_ms : 10000) * 1000000ull;
	if (s->inflight > 0 && tern_now_ns() - s->last_progress_ns > limit)
		return tern_actor_fail(
		    self, TERN_ETIMEDOUT,
		    "connection %u: no acknowledgement from the destination for %d ms", s->a->conn,
		    s->a->deadline_ms);
	return 0;
}

/* What one W_PAGES frame carries.  [start, end) is the last data range: a
 * data run that starts at its end extends it. */
struct cs_frame {
	uint32_t ndata, nzero, niov;
	uint64_t bytes, zero_pages, start, end;
};

/* Read-only zeros for holes sent as data (--zero-pages off): never read
 * through the guest mapping, where reading a hole would allocate it. */
static const uint8_t cs_zeros[1u << 20];

/* cs_iov appends an iovec; guest memory that continues the previous one
 * (zero pages sent as data next to written ones) extends it. */
static int
cs_iov(struct cs_state *s, struct cs_frame *f, const void *base, uint64_t len, int merge)
{
	struct iovec *last = f->niov > 0 ? &s->iov[f->niov - 1] : NULL;
	if (merge && last != NULL && (const uint8_t *)last->iov_base + last->iov_len == base) {
		last->iov_len += len;
		return 0;
	}
	if (f->niov == s->niov_cap) {
		struct iovec *v = realloc(s->iov, sizeof(*v) * 2 * s->niov_cap);
		if (v == NULL)
			return TERN_ENOMEM;
		s->iov = v;
		s->niov_cap *= 2;
	}
	s->iov[f->niov++] = (struct iovec){(void *)base, len};
	return 0;
}

/* cs_add_data adds pages [first, first+count) as data: a hole's from
 * cs_zeros, others from the guest mapping.  Data that continues the
 * previous data range (a hole sent as data next to written pages, or zero
 * pages that found no zero range) extends it, so the ranges of a frame
 * never outnumber the chunk's runs plus its zero ranges (cs_build). */
static int
cs_add_data(struct cs_state *s, struct cs_frame *f, uint64_t first, uint64_t count, int hole)
{
	uint64_t gpa = first << TERN_PAGE_SHIFT, len = count << TERN_PAGE_SHIFT;
	int rc;
	if (f->ndata > 0 && f->end == gpa) {
		tern_ranges_put(s->ranges, f->ndata - 1, f->start, gpa + len - f->start);
	} else {
		if (f->ndata == TERN_FRAME_MAX_RANGES)
			return TERN_EINVAL;
		tern_ranges_put(s->ranges, f->ndata++, gpa, len);
		f->start = gpa;
	}
	f->end = gpa + len;
	f->bytes += len;
	if (!hole) {
		/* A run lies inside one region (gaps are never dirty): one mapping. */
		if (!tern_guest_range_ok(s->a->guest, gpa, len))
			return TERN_EINVAL;
		return cs_iov(s, f, tern_guest_hva(s->a->guest, gpa), len, 1);
	}
	for (uint64_t off = 0; off < len; off += sizeof(cs_zeros)) {
		uint64_t n = len - off < sizeof(cs_zeros) ? len - off : sizeof(cs_zeros);
		/* The same bytes each time: never merged. */
		if ((rc = cs_iov(s, f, cs_zeros, n, 0)) != 0)
			return rc;
	}
	return 0;
}

/* Builds the data ranges (with their iovecs) and the zero announcements of
 * the dirty pages of chunk c.  With a zero map, each dirty run is split where
 * the map changes; should a pathological layout exhaust the zero ranges, the
 * remaining zero pages simply go as data.
 *
 * Whatever the chunk size, the data ranges fit a frame: a data range begins
 * at a run (at most TERN_CHUNK_MAX_RUNS of them, chunk_sched.c) or after a
 * zero range, and a zero range is announced only while fewer than
 * CS_ZERO_SPLIT_MAX data ranges exist.  So at most CS_ZERO_SPLIT_MAX - 1
 * before the last zero range, one after it and one per later run: fewer
 * than TERN_FRAME_MAX_RANGES.  Holes sent as data (--zero-pages off)
 * extend the data range beside them and split nothing. */
#define CS_ZERO_SPLIT_MAX (TERN_FRAME_MAX_RANGES - TERN_CHUNK_MAX_RUNS)
/* Bits of the zero map: atomic loads, since scanners of neighbouring chunks
 * update other bits of the same words. */
static int
cs_zbit(const struct tern_bitmap *zmap, uint64_t p)
{
	return (int)((__atomic_load_n(&zmap->words[p >> 6], __ATOMIC_RELAXED) >> (p & 63)) & 1);
}

/* cs_zsame_until returns the first page from p (before stop) whose zero-map
 * bit is not z, or stop: a word at a time. */
static uint64_t
cs_zsame_until(const struct tern_bitmap *zmap, uint64_t p, uint64_t stop, int z)
{
	while (p < stop) {
		uint64_t w = __atomic_load_n(&zmap->words[p >> 6], __ATOMIC_RELAXED);
		uint64_t differ = (z ? ~w : w) & (~0ull << (p & 63));

		if (differ != 0) {
			uint64_t q = (p & ~63ull) + (uint64_t)__builtin_ctzll(differ);
			return q < stop ? q : stop;
		}
		p = (p | 63) + 1;
	}
	return stop;
}

static int
cs_build(struct cs_state *s, const struct tern_msg_chunk *c, struct cs_frame *f)
{
	const struct tern_bitmap *set = tern_set_get(s->a->sets, c->set);
	const struct tern_bitmap *zmap =
	    c->flags & (TERN_CHUNK_ZSCANNED | TERN_CHUNK_ZHOLES) ? s->a->sets->zmap : NULL;
	uint64_t pos = c->gpa >> TERN_PAGE_SHIFT;
	uint64_t end = (c->gpa + c->len) >> TERN_PAGE_SHIFT;
	uint64_t first, count;
	int rc;
	*f = (struct cs_frame){0};
	if (set == NULL || !tern_guest_space_ok(s->a->guest, c->gpa, c->len) || end > set->nbits ||
	    (zmap != NULL && end > zmap->nbits))
		return TERN_ERANGE;
	int split = zmap != NULL;
	while (pos < end && tern_bitmap_next_run(set, &pos, end - pos, &first, &count)) {
		if (first >= end)
			break;
		if (first + count > end)
			count = end - first;
		if (!split) {
			if ((rc = cs_add_data(s, f, first, count, 0)) != 0)
				return rc;
			continue;
		}
		for (uint64_t p = first, stop = first + count; p < stop;) {
			int z = cs_zbit(zmap, p);
			uint64_t q = cs_zsame_until(zmap, p + 1, stop, z);
			if (z && (c->flags & TERN_CHUNK_ZSCANNED) &&
			    f->nzero < TERN_FRAME_MAX_RANGES && f->ndata < CS_ZERO_SPLIT_MAX) {
				tern_ranges_put(s->zranges, f->nzero++, p << TERN_PAGE_SHIFT,
				                (q - p) << TERN_PAGE_SHIFT);
				f->zero_pages += q - p;
			} else if ((rc = cs_add_data(s, f, p, q - p,
			                             z && (c->flags & TERN_CHUNK_ZHOLES))) != 0) {
				return rc;
			}
			p = q;
		}
	}
	return 0;
}

/* Waits for this chunk's slot under --max-bandwidth (a kill ends it). */
static int
cs_rate_wait(struct tern_actor *self, struct tern_rate_limit *l, uint64_t bytes)
{
	uint64_t bps = l != NULL ? atomic_load_explicit(&l->bytes_per_s, memory_order_relaxed) : 0;
	if (bps == 0 || bytes == 0)
		return 0;
	uint64_t cost = (uint64_t)((double)bytes * 1e9 / (double)bps);
	uint64_t now = tern_now_ns(), start, next = atomic_load(&l->next_ns);
	do {
		/* An idle cap does not bank credit beyond one chunk's worth. */
		start = next > now ? next : now;
	} while (!atomic_compare_exchange_weak(&l->next_ns, &next, start + cost));
	return start > now ? tern_actor_sleep(self, start - now) : 0;
}

static int
cs_send_chunk(struct tern_actor *self, struct cs_state *s, const struct tern_msg_chunk *c)
{
	struct cs_frame f;
	int rc = cs_build(s, c, &f);
	/* In flight from before the first byte: if anything fails, CONN_DOWN
	 * hands this chunk back too. */
	uint64_t now = tern_now_ns();
	if (s->first_send_ns == 0)
		s->first_send_ns = now;
	if (s->inflight == 0)
		s->last_progress_ns = now;
	s->flight[s->inflight++] = (struct cs_flight){c->chunk, f.bytes, f.zero_pages, now};
	if (rc != 0)
		return tern_actor_fail(self, rc, "bad chunk %llu", (unsigned long long)c->chunk);
	struct tern_msg m;
	tern_msg_init(&m, TERN_MSG_W_PAGES);
	m.u.w_pages.chunk = c->chunk;
	m.u.w_pages.ranges = (struct tern_ranges){s->ranges, f.ndata};
	m.u.w_pages.zeros = (struct tern_ranges){s->zranges, f.nzero};
	if ((rc = cs_rate_wait(self, s->a->limit, f.bytes)) != 0)
		return rc;
	uint64_t wire = 0;
	rc = tern_wire_send_copied(&s->link, &m, s->iov, (int)f.niov, s->copy,
	                           s->copy ? CS_COPY_BYTES : 0, &wire);
	s->wire_bytes += wire;
	if (rc != 0)
		return tern_actor_fail(self, rc, "connection %u: sending chunk failed: %s",
		                       s->a->conn, tern_strerror(rc));
	tern_actor_event(self, "send", "W_PAGES");
	return 0;
}

/* Pull work while there is window room; stop watching the queue when full so
 * that the other connections get the work. */
static int
cs_pull(struct tern_actor *self, struct cs_state *s)
{
	if (s->a->conn == 0 && s->a->urgent_lane != NULL && atomic_load(s->a->urgent_lane)) {
		/* Postcopy: control and requested pages only, from now on. */
		if (s->queue_watched) {
			tern_actor_unwatch_fd(self, s->queue_fd);
			s->queue_watched = 0;
		}
		return 0;
	}
	while (s->inflight < s->a->window) {
		struct tern_msg m;
		int rc = tern_queue_take(s->a->queue, tern_actor_id(self), &m, 0);
		if (rc == TERN_ETIMEDOUT)
			break;
		if (rc == TERN_ECLOSED)
			return TERN_ACTOR_DONE;
		if (rc != 0)
			return tern_actor_fail(self, rc, "work queue failed");
		if (m.type != TERN_MSG_CHUNK)
			return tern_actor_fail(self, TERN_EPROTO, "unexpected work item");
		rc = cs_send_chunk(self, s, &m.u.chunk);
		if (rc != 0)
			return rc;
	}
	if (s->inflight >= s->a->window && s->queue_watched) {
		tern_actor_unwatch_fd(self, s->queue_fd);
		s->queue_watched = 0;
	}
	return 0;
}

static int
cs_ack(struct tern_actor *self, struct cs_state *s, const struct tern_msg_w_ack *ack)
{
	uint32_t i;
	for (i = 0; i < s->inflight; i++)
		if (s->flight[i].chunk == ack->chunk)
			break;
	if (i == s->inflight)
		return tern_actor_fail(self, TERN_EPROTO,
		                       "connection %u: ack for chunk %llu not sent", s->a->conn,
		                       (unsigned long long)ack->chunk);
	if (ack->status != 0)
		return tern_actor_fail(self, ack->status, "destination refused chunk %llu: %s",
		                       (unsigned long long)ack->chunk, tern_strerror(ack->status));
	struct cs_flight f = s->flight[i];
	s->flight[i] = s->flight[--s->inflight];
	s->last_progress_ns = tern_now_ns();
	s->payload += f.bytes;
	s->last_ack_ns = tern_now_ns();
	tern_actor_counter(self, "conn_payload_bytes", (double)s->payload);
	struct tern_msg d;
	tern_msg_init(&d, TERN_MSG_CHUNK_DONE);
	d.u.chunk_done.chunk = f.chunk;
	d.u.chunk_done.conn = s->a->conn;
	d.u.chunk_done.bytes = f.bytes;
	d.u.chunk_done.wire_ns = tern_now_ns() - f.sent_ns;
	d.u.chunk_done.zero_pages = f.zero_pages;
	int rc = tern_actor_send(self, s->a->coordinator, &d);
	if (rc != 0)
		return rc;
	if (!s->queue_watched) {
		rc = tern_actor_watch_fd(self, s->queue_fd, POLLIN);
		if (rc != 0)
			return rc;
		s->queue_watched = 1;
	}
	return cs_pull(self, s);
}

static int
cs_read(struct tern_actor *self, struct cs_state *s)
{
	struct tern_msg m;
	uint64_t plen;
	int rc = tern_wire_recv_header(&s->link, s->rx, &m, &plen);
	/* A close between frames with nothing in flight ends the connection
	 * normally (after a handoff the destination closes first); the
	 * coordinator decides whether that was too early. */
	if (rc == TERN_ECLOSED && s->inflight == 0) {
		tern_actor_state(self, "closed by the destination");
		return TERN_ACTOR_DONE;
	}
	if (rc != 0)
		return tern_actor_fail(self, rc, "connection %u: %s", s->a->conn,
		                       rc == TERN_ECLOSED ? "the destination closed the connection"
		                                          : tern_strerror(rc));
	tern_actor_event(self, "recv", tern_msg_name(m.type));
	if (tern_actor_killed(self))
		return TERN_EKILLED;
	if (m.type == TERN_MSG_W_ACK && plen == 0)
		return cs_ack(self, s, &m.u.w_ack);
	if (m.type == TERN_MSG_W_ABORT && s->a->conn != 0)
		return tern_actor_fail(self, TERN_EPEER, "connection %u: destination: %s",
		                       s->a->conn, m.u.w_abort.why);
	/* Control answers are small; anything big is a protocol violation. */
	if (s->a->conn != 0 || plen > CS_CTL_PAYLOAD_MAX)
		return tern_actor_fail(self, TERN_EPROTO, "connection %u: unexpected %s frame",
		                       s->a->conn, tern_msg_name(m.type));
	if (plen && (rc = tern_wire_recv_exact(&s->link, s->ctl, plen)) != 0)
		return tern_actor_fail(self, rc, "connection 0: %s", tern_strerror(rc));
	size_t hlen;
	rc = tern_msg_encode(&m, s->hdr, TERN_WIRE_HEADER_MAX, &hlen);
	if (rc != 0)
		return rc;
	struct tern_msg in;
	tern_msg_init(&in, TERN_MSG_CTL_IN);
	in.u.ctl_in.frame = (struct tern_bin){s->hdr, hlen};
	in.u.ctl_in.payload = (struct tern_bin){s->ctl, plen};
	return tern_actor_send(self, s->a->coordinator, &in);
}

static int
cs_on_fd(struct tern_actor *self, void *state, int fd, short revents)
{
	struct cs_state *s = state;
	if (fd == s->link.fd) {
		/* TLS may hold a whole frame already read from the socket:
		 * poll would not say so. */
		int rc;
		do
			rc = cs_read(self, s);
		while (rc == 0 && tern_link_pending(&s->link));
		return rc;
	}
	if (revents & (POLLNVAL | POLLERR))
		return TERN_ACTOR_DONE; /* the queue was closed */
	return cs_pull(self, s);
}

static int
cs_handle(struct tern_actor *self, void *state, const struct tern_msg *m)
{
	struct cs_state *s = state;
	if (m->type != TERN_MSG_CTL_OUT)
		return tern_actor_fail(self, TERN_EPROTO, "unexpected message %s",
		                       tern_msg_name(m->type));
	uint64_t wire = 0;
	int rc = tern_wire_forward(&s->link, m->u.ctl_out.frame.ptr, m->u.ctl_out.frame.len,
	                           m->u.ctl_out.payload.ptr, m->u.ctl_out.payload.len, &wire);
	s->wire_bytes += wire;
	if (rc != 0)
		return tern_actor_fail(self, rc, "connection 0: sending a control frame: %s",
		                       tern_strerror(rc));
	return 0;
}

static void
cs_stop(struct tern_actor *self, void *state)
{
	struct cs_state *s = state;
	if (s->a != NULL && s->inflight > 0) {
		/* Hand the unacknowledged chunks back (best effort: if the
		 * coordinator is gone there is nobody left to resend them). */
		uint8_t pairs[TERN_CONN_WINDOW_MAX * 16];
		struct tern_msg d;
		tern_msg_init(&d, TERN_MSG_CONN_DOWN);
		d.u.conn_down.conn = s->a->conn;
		for (uint32_t i = 0; i < s->inflight; i++)
			tern_ranges_put(pairs, i, s->flight[i].chunk, 0);
		d.u.conn_down.chunks = (struct tern_ranges){pairs, s->inflight};
		(void)tern_actor_send(self, s->a->coordinator, &d);
		s->inflight = 0;
	}
	if (s->a != NULL) {
		/* Before the runtime's SYS_EXIT (same sender, same receiver: in
		 * order), so the coordinator has them when it sees the exit. */
		struct tern_msg st;
		tern_msg_init(&st, TERN_MSG_CONN_STATS);
		st.u.conn_stats.conn = s->a->conn;
		st.u.conn_stats.wire_bytes = s->wire_bytes;
		st.u.conn_stats.first_send_ns = s->first_send_ns;
		st.u.conn_stats.last_ack_ns = s->last_ack_ns;
		(void)tern_actor_send(self, s->a->coordinator, &st);
	}
	tern_link_close(&s->link);
	free(s->rx);
	free(s->ctl);
	free(s->hdr);
	free(s->copy);
	free(s->iov);
	s->rx = NULL;
	s->copy = NULL;
	s->iov = NULL;
}

const struct tern_actor_desc tern_conn_send_actor = {
    .name = "conn-send",
    .state_size = sizeof(struct cs_state),
    .init = cs_init,
    .handle = cs_handle,
    .on_fd = cs_on_fd,
    .tick = cs_tick,
    .stop = cs_stop,
};
