/*
 * The migration wire (wire.h): frames over a link (net/link.h: plain TCP or
 * TLS; the handshake is in hello.c).
 *
 * A frame goes out as one gather write of [prefix+header, payload...]: no
 * copy of the payload (it is guest memory) on a plain link.  Deadlines are
 * the socket's SO_SNDTIMEO/SO_RCVTIMEO (tern_net_set_deadline) or absolute
 * ones (the _until reads): either way TERN_ETIMEDOUT here.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/net.h"
#include "net/wire.h"
#include "tern/error.h"

#define WIRE_PREFIX 16
#define WIRE_TYPE_MIN 0x1000u
#define WIRE_TYPE_MAX 0x1fffu
/* Payload iovecs gathered on the stack: a page frame's data runs fit (one
 * per range, split at most once), so the data path never allocates; more
 * (a caller's own) are allocated. */
#define WIRE_IOV (2 * TERN_FRAME_MAX_RANGES)
/* Prefix + header on the stack: a W_PAGES of TERN_CHUNK_MAX_RUNS ranges
 * fits; larger headers (up to TERN_WIRE_HEADER_MAX) are allocated. */
#define WIRE_TXBUF (WIRE_PREFIX + 512 + 2 * 16 * TERN_FRAME_MAX_RANGES)

/* Sequence numbers for frames sent with seq 0: unique per process is all
 * the receiver needs (it matches replies by `re`), so relaxed is enough. */
static _Atomic uint64_t wire_seq;

static void
wire_put32(uint8_t *p, uint32_t v)
{
	for (int i = 3; i >= 0; i--, v >>= 8)
		p[i] = (uint8_t)v;
}

static void
wire_put64(uint8_t *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--, v >>= 8)
		p[i] = (uint8_t)v;
}

static uint64_t
wire_get(const uint8_t *p, int n)
{
	uint64_t v = 0;

	for (int i = 0; i < n; i++)
		v = v << 8 | p[i];
	return v;
}

/* wire_sendv writes head, then the payload iovecs. */
static int
wire_sendv(struct tern_link *l, uint8_t *head, size_t headlen, const struct iovec *payload,
           int iovcnt, uint64_t *bytes)
{
	struct iovec stack[WIRE_IOV + 1], *iov = stack;
	int rv;

	if (iovcnt > WIRE_IOV && (iov = malloc(sizeof(*iov) * ((size_t)iovcnt + 1))) == NULL)
		return TERN_ENOMEM;
	iov[0] = (struct iovec){head, headlen};
	if (iovcnt > 0)
		memcpy(iov + 1, payload, sizeof(*iov) * (size_t)iovcnt);
	rv = tern_link_writev(l, iov, iovcnt + 1, bytes);
	if (iov != stack)
		free(iov);
	return rv;
}

/* wire_head encodes the prefix and header of a frame of m with plen bytes
 * of payload into stackbuf (WIRE_TXBUF bytes) or, when larger, a buffer it
 * allocates (*buf; the caller frees it when it is not stackbuf). */
static int
wire_head(const struct tern_msg *m, uint64_t plen, uint8_t *stackbuf, uint8_t **buf,
          size_t *headlen)
{
	struct tern_msg h;
	size_t need, hlen = 0;

	*buf = stackbuf;
	if (m->type < WIRE_TYPE_MIN || m->type > WIRE_TYPE_MAX)
		return TERN_EMSG; /* the receiver would reject it */
	if (plen > TERN_WIRE_PAYLOAD_MAX)
		return TERN_EMSG;
	h = *m;
	if (h.seq == 0)
		h.seq = atomic_fetch_add_explicit(&wire_seq, 1, memory_order_relaxed) + 1;
	if (h.time_ns == 0)
		h.time_ns = tern_now_ns();
	need = tern_msg_encoded_size(&h);
	if (need == 0 || need > TERN_WIRE_HEADER_MAX)
		return TERN_EMSG;
	if (need > WIRE_TXBUF - WIRE_PREFIX) {
		*buf = malloc(WIRE_PREFIX + need);
		if (*buf == NULL)
			return TERN_ENOMEM;
	}
	int rv = tern_msg_encode(&h, *buf + WIRE_PREFIX, need, &hlen);
	if (rv == 0 && (hlen == 0 || hlen > TERN_WIRE_HEADER_MAX))
		rv = TERN_EMSG;
	if (rv != 0)
		return rv;
	wire_put32(*buf, TERN_WIRE_FRAME_MAGIC);
	wire_put32(*buf + 4, (uint32_t)hlen);
	wire_put64(*buf + 8, plen);
	*headlen = WIRE_PREFIX + hlen;
	return 0;
}

static int
wire_payload_len(const struct iovec *payload, int iovcnt, uint64_t *plen)
{
	*plen = 0;
	if (iovcnt < 0 || (iovcnt > 0 && payload == NULL))
		return TERN_EINVAL;
	for (int i = 0; i < iovcnt; i++)
		*plen += payload[i].iov_len;
	return 0;
}

int
tern_wire_send(struct tern_link *l, const struct tern_msg *m, const struct iovec *payload,
               int iovcnt, uint64_t *bytes)
{
	uint8_t stackbuf[WIRE_TXBUF], *buf;
	uint64_t plen;
	size_t headlen;
	int rv = wire_payload_len(payload, iovcnt, &plen);

	if (rv != 0)
		return rv;
	rv = wire_head(m, plen, stackbuf, &buf, &headlen);
	if (rv == 0)
		rv = wire_sendv(l, buf, headlen, payload, iovcnt, bytes);
	if (buf != stackbuf)
		free(buf);
	return rv;
}

/* wire_fill copies the next bytes of the payload (from iovec *i, offset
 * *off in it) into buf, up to len; returns how many. */
static size_t
wire_fill(const struct iovec *payload, int iovcnt, int *i, size_t *off, uint8_t *buf, size_t len)
{
	size_t n = 0;
	while (n < len && *i < iovcnt) {
		size_t left = payload[*i].iov_len - *off, take = len - n < left ? len - n : left;
		memcpy(buf + n, (const uint8_t *)payload[*i].iov_base + *off, take);
		n += take;
		*off += take;
		if (*off == payload[*i].iov_len) {
			(*i)++;
			*off = 0;
		}
	}
	return n;
}

int
tern_wire_send_copied(struct tern_link *l, const struct tern_msg *m, const struct iovec *payload,
                      int iovcnt, uint8_t *copy, size_t copylen, uint64_t *bytes)
{
	uint8_t stackbuf[WIRE_TXBUF], *buf;
	uint64_t plen;
	size_t headlen, off = 0;
	int rv = wire_payload_len(payload, iovcnt, &plen), i = 0;

	/* TLS encrypts from user space already: nothing to gain. */
	if (rv != 0 || copy == NULL || copylen == 0 || tern_link_is_tls(l))
		return rv != 0 ? rv : tern_wire_send(l, m, payload, iovcnt, bytes);
	rv = wire_head(m, plen, stackbuf, &buf, &headlen);
	if (rv == 0) {
		/* The header goes with the first piece: one system call for a
		 * frame that fits. */
		struct iovec v[2] = {{buf, headlen}, {copy, 0}};
		v[1].iov_len = wire_fill(payload, iovcnt, &i, &off, copy, copylen);
		rv = tern_link_writev(l, v, v[1].iov_len ? 2 : 1, bytes);
		while (rv == 0 && i < iovcnt) {
			v[1].iov_len = wire_fill(payload, iovcnt, &i, &off, copy, copylen);
			rv = tern_link_writev(l, &v[1], 1, bytes);
		}
	}
	if (buf != stackbuf)
		free(buf);
	return rv;
}

/* wire_read reads exactly len bytes, by deadline_ns if not 0.  Returns 0,
 * TERN_ECLOSED at EOF with *got telling how far it came, TERN_ETIMEDOUT or
 * -errno. */
static int
wire_read(struct tern_link *l, void *dst, uint64_t len, uint64_t *got, uint64_t deadline_ns)
{
	return tern_link_read(l, dst, len, got, deadline_ns);
}

static const char *
wire_read_why(int rv)
{
	switch (rv) {
	case TERN_ECLOSED:
		return "connection closed";
	case TERN_EPROTO:
		return "connection closed inside a frame";
	case TERN_ETIMEDOUT:
		return "no frame before the deadline";
	default:
		return tern_strerror(rv);
	}
}

/* wire_sanitize makes a peer's string safe to print: every byte outside
 * printable ASCII (terminal escapes, other controls, and the C1 controls a
 * UTF-8 terminal may honour) becomes '?'.  Tokens are compared raw. */
static void
wire_sanitize(char *str)
{
	for (unsigned char *p = (unsigned char *)str; *p != '\0'; p++)
		if (*p < 0x20 || *p >= 0x7f)
			*p = '?';
}

/* wire_sanitize_msg cleans the strings of a frame the peer sent that tern
 * prints or logs (reasons, the migration id, the guest spec), in one place
 * for both sides. */
static void
wire_sanitize_msg(struct tern_msg *m)
{
	switch (m->type) {
	case TERN_MSG_W_HELLO:
		wire_sanitize(m->u.w_hello.migration);
		break;
	case TERN_MSG_W_HELLO_ACK:
		wire_sanitize(m->u.w_hello_ack.why);
		break;
	case TERN_MSG_W_CONFIG:
		wire_sanitize(m->u.w_config.guest);
		break;
	case TERN_MSG_W_RESULT:
		wire_sanitize(m->u.w_result.why);
		break;
	case TERN_MSG_W_ABORT:
		wire_sanitize(m->u.w_abort.why);
		break;
	default:
		break;
	}
}

/* wire_recv_header is tern_wire_recv_header with a reason for the error,
 * which the handshake passes on to the user. */
static int
wire_recv_header(struct tern_link *l, struct tern_wire_rx *rx, struct tern_msg *m,
                 uint64_t *payload_len, uint64_t deadline_ns, int eof_rv, char *why, size_t whylen)
{
	uint8_t pre[WIRE_PREFIX];
	uint64_t got = 0, plen;
	uint32_t magic, hlen;
	int rv;

	*payload_len = 0;
	memset(m, 0, sizeof(*m));
	rv = wire_read(l, pre, sizeof(pre), &got, deadline_ns);
	rx->bytes += got;
	if (rv == TERN_ECLOSED && got > 0)
		rv = TERN_EPROTO;
	if (rv != 0) {
		terni_errf(why, whylen, "%s", wire_read_why(rv));
		return rv == TERN_EPROTO ? eof_rv : rv;
	}
	magic = (uint32_t)wire_get(pre, 4);
	hlen = (uint32_t)wire_get(pre + 4, 4);
	plen = wire_get(pre + 8, 8);
	if (magic != TERN_WIRE_FRAME_MAGIC) {
		terni_errf(why, whylen, "bad frame magic 0x%08x", magic);
		return TERN_EPROTO;
	}
	if (hlen == 0 || hlen > TERN_WIRE_HEADER_MAX) {
		terni_errf(why, whylen, "frame header length %u outside 1..%u", hlen,
		           TERN_WIRE_HEADER_MAX);
		return TERN_EPROTO;
	}
	if (plen > TERN_WIRE_PAYLOAD_MAX) {
		terni_errf(why, whylen, "frame payload length %llu over the limit %llu",
		           (unsigned long long)plen, (unsigned long long)TERN_WIRE_PAYLOAD_MAX);
		return TERN_EPROTO;
	}
	rv = wire_read(l, rx->buf, hlen, &got, deadline_ns);
	rx->bytes += got;
	if (rv == TERN_ECLOSED)
		rv = TERN_EPROTO;
	if (rv != 0) {
		terni_errf(why, whylen, "%s", wire_read_why(rv));
		return rv == TERN_EPROTO ? eof_rv : rv;
	}
	if (tern_msg_decode(rx->buf, hlen, m) != 0) {
		terni_errf(why, whylen, "undecodable frame header");
		return TERN_EMSG;
	}
	if (m->type < WIRE_TYPE_MIN || m->type > WIRE_TYPE_MAX) {
		terni_errf(why, whylen, "%s (0x%x) is not a wire frame", tern_msg_name(m->type),
		           m->type);
		memset(m, 0, sizeof(*m));
		return TERN_EMSG;
	}
	wire_sanitize_msg(m);
	*payload_len = plen;
	return 0;
}

int
tern_wire_recv_header(struct tern_link *l, struct tern_wire_rx *rx, struct tern_msg *m,
                      uint64_t *payload_len)
{
	return wire_recv_header(l, rx, m, payload_len, 0, TERN_EPROTO, NULL, 0);
}

int
tern_wire_recv_header_until(struct tern_link *l, struct tern_wire_rx *rx, struct tern_msg *m,
                            uint64_t *payload_len, uint64_t deadline_ns, char *why, size_t whylen)
{
	return wire_recv_header(l, rx, m, payload_len, deadline_ns, -ECONNRESET, why, whylen);
}

int
tern_wire_recv_exact(struct tern_link *l, void *dst, uint64_t len)
{
	return tern_wire_recv_exact_until(l, dst, len, 0);
}

int
tern_wire_recv_exact_until(struct tern_link *l, void *dst, uint64_t len, uint64_t deadline_ns)
{
	int rv = wire_read(l, dst, len, NULL, deadline_ns);

	return rv == TERN_ECLOSED ? TERN_EPROTO : rv;
}

int
tern_wire_forward(struct tern_link *l, const void *frame, size_t len, const void *payload,
                  size_t plen, uint64_t *bytes)
{
	struct tern_msg m;
	int rc = tern_msg_decode(frame, len, &m);
	if (rc != 0)
		return rc;
	struct iovec iov = {(void *)payload, plen};
	return tern_wire_send(l, &m, &iov, plen ? 1 : 0, bytes);
}

int
tern_wire_recv_iov(struct tern_link *l, struct iovec *iov, int n)
{
	return tern_wire_recv_iov_until(l, iov, n, 0);
}

int
tern_wire_recv_iov_until(struct tern_link *l, struct iovec *iov, int n, uint64_t deadline_ns)
{
	return tern_link_readv(l, iov, n, deadline_ns);
}

int
tern_wire_discard(struct tern_link *l, uint64_t len)
{
	uint8_t scratch[16384];

	while (len > 0) {
		uint64_t n = len < sizeof(scratch) ? len : sizeof(scratch);
		int rv = tern_wire_recv_exact(l, scratch, n);

		if (rv != 0)
			return rv;
		len -= n;
	}
	return 0;
}

int
tern_wire_send_result(struct tern_link *l, uint32_t step, int status, const char *why,
                      uint64_t value)
{
	struct tern_msg m;

	tern_msg_init(&m, TERN_MSG_W_RESULT);
	m.u.w_result.step = step;
	m.u.w_result.status = status;
	snprintf(m.u.w_result.why, TERN_STR_MAX, "%s", why != NULL ? why : "");
	m.u.w_result.value = value;
	return tern_wire_send(l, &m, NULL, 0, NULL);
}
