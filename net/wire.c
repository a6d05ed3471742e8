/*
 * The migration wire (wire.h): frames over a blocking TCP socket and the
 * connection handshake.
 *
 * A frame goes out with one sendmsg loop over [prefix+header, payload...]:
 * no copy of the payload (it is guest memory), and MSG_NOSIGNAL so that a
 * vanished peer is -EPIPE, never a SIGPIPE that kills the VMM.  Deadlines are
 * the kernel's SO_SNDTIMEO/SO_RCVTIMEO (tern_net_set_deadline): a blocking
 * call that makes no progress for that long fails with EAGAIN, which is
 * TERN_ETIMEDOUT here.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>

#include "net/net.h"
#include "net/wire.h"
#include "tern/error.h"

#define WIRE_PREFIX 16
#define WIRE_TYPE_MIN 0x1000u
#define WIRE_TYPE_MAX 0x1fffu
/* Payload iovecs handed to one sendmsg; more are sent in later rounds. */
#define WIRE_IOV 64
/* Prefix + header on the stack: a W_PAGES of TERN_CHUNK_MAX_RUNS ranges
 * fits; larger headers (up to TERN_WIRE_HEADER_MAX) are allocated. */
#define WIRE_TXBUF (WIRE_PREFIX + 512 + 2 * 16 * TERN_FRAME_MAX_RANGES)
/* One recv is bounded so that its byte count fits ssize_t comfortably. */
#define WIRE_RECV_MAX (1u << 30)

/* Sequence numbers for frames sent with seq 0: unique per process is all
 * the receiver needs (it matches replies by `re`), so relaxed is enough. */
static _Atomic uint64_t wire_seq;

/* wire_errno maps a failed socket call: with a kernel timeout set, EAGAIN
 * on a blocking socket means the deadline passed. */
static int
wire_errno(void)
{
	if (errno == EAGAIN || errno == EWOULDBLOCK)
		return TERN_ETIMEDOUT;
	return -errno;
}

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

/* wire_sendv writes head and then the payload iovecs, all of it, resuming
 * after partial writes and signals. */
static int
wire_sendv(int fd, const uint8_t *head, size_t headlen, const struct iovec *payload, int iovcnt,
           uint64_t *bytes)
{
	size_t hoff = 0; /* bytes of head written */
	int i = 0;       /* current payload iovec ... */
	size_t off = 0;  /* ... and bytes of it written */

	for (;;) {
		struct iovec iov[WIRE_IOV + 1];
		int n = 0;

		if (hoff < headlen)
			iov[n++] = (struct iovec){(void *)(head + hoff), headlen - hoff};
		for (int j = i; j < iovcnt && n < WIRE_IOV + 1; j++) {
			size_t o = j == i ? off : 0;

			if (payload[j].iov_len > o)
				iov[n++] = (struct iovec){(char *)payload[j].iov_base + o,
				                          payload[j].iov_len - o};
		}
		if (n == 0)
			return 0;

		struct msghdr mh = {.msg_iov = iov, .msg_iovlen = (size_t)n};
		ssize_t w = sendmsg(fd, &mh, MSG_NOSIGNAL);

		if (w < 0) {
			if (errno == EINTR)
				continue;
			return wire_errno();
		}
		if (bytes != NULL)
			*bytes += (uint64_t)w;

		size_t left = (size_t)w, h = headlen - hoff;

		h = left < h ? left : h;
		hoff += h;
		left -= h;
		while (left > 0) {
			size_t avail = payload[i].iov_len - off;

			if (left < avail) {
				off += left;
				left = 0;
			} else {
				left -= avail;
				i++;
				off = 0;
			}
		}
	}
}

int
tern_wire_send(int fd, const struct tern_msg *m, const struct iovec *payload, int iovcnt,
               uint64_t *bytes)
{
	uint8_t stackbuf[WIRE_TXBUF], *buf = stackbuf;
	struct tern_msg h;
	uint64_t plen = 0;
	size_t need, hlen = 0;
	int rv;

	if (m->type < WIRE_TYPE_MIN || m->type > WIRE_TYPE_MAX)
		return TERN_EMSG; /* the receiver would reject it */
	if (iovcnt < 0 || (iovcnt > 0 && payload == NULL))
		return TERN_EINVAL;
	for (int i = 0; i < iovcnt; i++)
		plen += payload[i].iov_len;
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
	if (need > sizeof(stackbuf) - WIRE_PREFIX) {
		buf = malloc(WIRE_PREFIX + need);
		if (buf == NULL)
			return TERN_ENOMEM;
	}
	rv = tern_msg_encode(&h, buf + WIRE_PREFIX, need, &hlen);
	if (rv == 0 && (hlen == 0 || hlen > TERN_WIRE_HEADER_MAX))
		rv = TERN_EMSG;
	if (rv == 0) {
		wire_put32(buf, TERN_WIRE_FRAME_MAGIC);
		wire_put32(buf + 4, (uint32_t)hlen);
		wire_put64(buf + 8, plen);
		rv = wire_sendv(fd, buf, WIRE_PREFIX + hlen, payload, iovcnt, bytes);
	}
	if (buf != stackbuf)
		free(buf);
	return rv;
}

/* wire_until bounds the next receive by an absolute deadline (CLOCK_MONOTONIC
 * ns): the kernel timeout restarts on every call, so a peer trickling a byte
 * at a time would otherwise stretch the handshake without limit. */
static int
wire_until(int fd, uint64_t deadline_ns)
{
	uint64_t now = tern_now_ns(), left;
	struct timeval tv;

	if (now >= deadline_ns)
		return TERN_ETIMEDOUT;
	left = deadline_ns - now;
	tv.tv_sec = (time_t)(left / 1000000000u);
	tv.tv_usec = (suseconds_t)(left % 1000000000u / 1000u);
	if (tv.tv_sec == 0 && tv.tv_usec == 0)
		tv.tv_usec = 1; /* zero would mean no timeout at all */
	if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) != 0)
		return -errno;
	return 0;
}

/* wire_read reads exactly len bytes, by deadline_ns if not 0.  Returns 0,
 * TERN_ECLOSED at EOF with *got telling how far it came, TERN_ETIMEDOUT or
 * -errno. */
static int
wire_read(int fd, void *dst, uint64_t len, uint64_t *got, uint64_t deadline_ns)
{
	uint8_t *p = dst;
	uint64_t done = 0;
	int rv = 0;

	while (done < len) {
		size_t want = len - done < WIRE_RECV_MAX ? (size_t)(len - done) : WIRE_RECV_MAX;

		if (deadline_ns != 0 && (rv = wire_until(fd, deadline_ns)) != 0)
			break;

		ssize_t n = recv(fd, p + done, want, MSG_WAITALL);

		if (n > 0) {
			done += (uint64_t)n;
			continue;
		}
		if (n == 0) {
			rv = TERN_ECLOSED;
			break;
		}
		if (errno == EINTR)
			continue;
		rv = wire_errno();
		break;
	}
	if (got != NULL)
		*got = done;
	return rv;
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
wire_recv_header(int fd, struct tern_wire_rx *rx, struct tern_msg *m, uint64_t *payload_len,
                 uint64_t deadline_ns, int eof_rv, char *why, size_t whylen)
{
	uint8_t pre[WIRE_PREFIX];
	uint64_t got = 0, plen;
	uint32_t magic, hlen;
	int rv;

	*payload_len = 0;
	memset(m, 0, sizeof(*m));
	rv = wire_read(fd, pre, sizeof(pre), &got, deadline_ns);
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
	rv = wire_read(fd, rx->buf, hlen, &got, deadline_ns);
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
tern_wire_recv_header(int fd, struct tern_wire_rx *rx, struct tern_msg *m, uint64_t *payload_len)
{
	return wire_recv_header(fd, rx, m, payload_len, 0, TERN_EPROTO, NULL, 0);
}

int
tern_wire_recv_header_until(int fd, struct tern_wire_rx *rx, struct tern_msg *m,
                            uint64_t *payload_len, uint64_t deadline_ns, char *why, size_t whylen)
{
	return wire_recv_header(fd, rx, m, payload_len, deadline_ns, -ECONNRESET, why, whylen);
}

int
tern_wire_recv_exact(int fd, void *dst, uint64_t len)
{
	return tern_wire_recv_exact_until(fd, dst, len, 0);
}

int
tern_wire_recv_exact_until(int fd, void *dst, uint64_t len, uint64_t deadline_ns)
{
	int rv = wire_read(fd, dst, len, NULL, deadline_ns);

	return rv == TERN_ECLOSED ? TERN_EPROTO : rv;
}

int
tern_wire_forward(int fd, const void *frame, size_t len, const void *payload, size_t plen,
                  uint64_t *bytes)
{
	struct tern_msg m;
	int rc = tern_msg_decode(frame, len, &m);
	if (rc != 0)
		return rc;
	struct iovec iov = {(void *)payload, plen};
	return tern_wire_send(fd, &m, &iov, plen ? 1 : 0, bytes);
}

int
tern_wire_recv_iov(int fd, struct iovec *iov, int n)
{
	return tern_wire_recv_iov_until(fd, iov, n, 0);
}

int
tern_wire_recv_iov_until(int fd, struct iovec *iov, int n, uint64_t deadline_ns)
{
	while (n > 0) {
		struct msghdr mh = {.msg_iov = iov, .msg_iovlen = (size_t)(n < 1024 ? n : 1024)};
		int rv;
		/* One setsockopt per recvmsg: MSG_WAITALL usually takes a
		 * whole frame in one call, so this costs one per frame. */
		if (deadline_ns != 0 && (rv = wire_until(fd, deadline_ns)) != 0)
			return rv;
		ssize_t got = recvmsg(fd, &mh, MSG_WAITALL);
		if (got == 0)
			return TERN_EPROTO;
		if (got < 0) {
			if (errno == EINTR)
				continue;
			return wire_errno();
		}
		/* Skip the buffers filled; a partly filled one is advanced. */
		while (n > 0 && (size_t)got >= iov->iov_len) {
			got -= (ssize_t)iov->iov_len;
			iov++;
			n--;
		}
		if (n > 0) {
			iov->iov_base = (uint8_t *)iov->iov_base + got;
			iov->iov_len -= (size_t)got;
		}
	}
	return 0;
}

int
tern_wire_discard(int fd, uint64_t len)
{
	uint8_t scratch[16384];

	while (len > 0) {
		uint64_t n = len < sizeof(scratch) ? len : sizeof(scratch);
		int rv = tern_wire_recv_exact(fd, scratch, n);

		if (rv != 0)
			return rv;
		len -= n;
	}
	return 0;
}

/* The handshake sets its own deadline and puts the caller's back. */
struct wire_deadline {
	struct timeval snd, rcv;
};

static int
wire_deadline_save(int fd, struct wire_deadline *d)
{
	socklen_t l1 = sizeof(d->snd), l2 = sizeof(d->rcv);

	if (getsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &d->snd, &l1) != 0 ||
	    getsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &d->rcv, &l2) != 0)
		return -errno;
	return 0;
}

static int
wire_deadline_restore(int fd, const struct wire_deadline *d)
{
	if (setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &d->snd, sizeof(d->snd)) != 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &d->rcv, sizeof(d->rcv)) != 0)
		return -errno;
	return 0;
}

/* wire_deadline_ns turns a handshake timeout into an absolute deadline. */
static uint64_t
wire_deadline_ns(int timeout_ms)
{
	return timeout_ms > 0 ? tern_now_ns() + (uint64_t)timeout_ms * 1000000u : 0;
}

static void
wire_strcpy(char *dst, const char *src)
{
	snprintf(dst, TERN_STR_MAX, "%s", src != NULL ? src : "");
}

int
tern_wire_hello(int fd, const char *migration, uint32_t conn, uint32_t nconns, const char *auth,
                int timeout_ms, char *why, size_t whylen, uint64_t *peer_time_ns)
{
	struct tern_wire_rx *rx;
	struct wire_deadline saved;
	struct tern_msg m;
	uint64_t plen = 0;
	char inner[TERN_STR_MAX] = "";
	uint64_t until = wire_deadline_ns(timeout_ms);
	int rv, rv2;

	terni_errf(why, whylen, "%s", "");
	if ((migration != NULL && strlen(migration) >= TERN_STR_MAX) ||
	    (auth != NULL && strlen(auth) >= TERN_STR_MAX)) {
		terni_errf(why, whylen, "migration id or auth token longer than %d bytes",
		           TERN_STR_MAX - 1);
		return TERN_EINVAL;
	}
	tern_msg_init(&m, TERN_MSG_W_HELLO);
	m.u.w_hello.magic = TERN_WIRE_HELLO_MAGIC;
	m.u.w_hello.version = TERN_WIRE_VERSION;
	wire_strcpy(m.u.w_hello.migration, migration);
	m.u.w_hello.conn = conn;
	m.u.w_hello.nconns = nconns;
	wire_strcpy(m.u.w_hello.auth, auth);

	if ((rx = malloc(sizeof(*rx))) == NULL)
		return TERN_ENOMEM;
	rx->bytes = 0;
	if ((rv = wire_deadline_save(fd, &saved)) != 0) {
		free(rx);
		terni_errf(why, whylen, "cannot read the socket's timeouts: %s", tern_strerror(rv));
		return rv;
	}
	/* One deadline for sending the hello and for the answer. */
	if ((rv = tern_net_set_deadline(fd, timeout_ms > 0 ? timeout_ms : 0)) != 0) {
		terni_errf(why, whylen, "cannot set the handshake deadline: %s", tern_strerror(rv));
		goto out;
	}
	rv = tern_wire_send(fd, &m, NULL, 0, NULL);
	if (rv == 0)
		rv = wire_recv_header(fd, rx, &m, &plen, until, TERN_EPROTO, inner, sizeof(inner));
	if (rv == TERN_ECLOSED || rv == -ECONNRESET || rv == -EPIPE) {
		terni_errf(why, whylen, "peer closed the connection during the handshake");
		rv = TERN_EPROTO;
	} else if (rv == TERN_EPROTO || rv == TERN_EMSG) {
		terni_errf(why, whylen, "peer is not a tern destination (%s)", inner);
		rv = TERN_EPROTO;
	} else if (rv == TERN_ETIMEDOUT) {
		terni_errf(why, whylen, "no answer to the hello within %d ms", timeout_ms);
	} else if (rv != 0) {
		terni_errf(why, whylen, "handshake failed: %s", tern_strerror(rv));
	} else if (m.type != TERN_MSG_W_HELLO_ACK || plen != 0) {
		terni_errf(why, whylen, "peer answered the hello with %s", tern_msg_name(m.type));
		rv = TERN_EPROTO;
	} else if (m.u.w_hello_ack.status != 0) {
		const struct tern_msg_w_hello_ack *a = &m.u.w_hello_ack;

		/* The destination's own code and words; a status that is not
		 * a negative code cannot be passed on as one. */
		rv = a->status < 0 ? a->status : TERN_EPEER;
		terni_errf(why, whylen, "%s", a->why[0] ? a->why : tern_strerror(rv));
	} else if (m.u.w_hello_ack.version != TERN_WIRE_VERSION) {
		terni_errf(why, whylen, "destination speaks protocol version %u, this source %u",
		           m.u.w_hello_ack.version, TERN_WIRE_VERSION);
		rv = TERN_EVERSION;
	} else if (peer_time_ns != NULL) {
		*peer_time_ns = m.u.w_hello_ack.time_ns;
	}
out:
	rv2 = wire_deadline_restore(fd, &saved);
	if (rv == 0 && rv2 != 0) {
		terni_errf(why, whylen, "cannot restore the socket's timeouts: %s",
		           tern_strerror(rv2));
		rv = rv2;
	}
	free(rx);
	return rv;
}

/* wire_auth_ok compares the tokens in time that depends only on their
 * lengths, so that a wrong guess does not tell how much of it was right. */
static bool
wire_auth_ok(const char *want, const char *got)
{
	size_t wl, gl;
	unsigned diff;

	if (want == NULL || want[0] == '\0')
		return true;
	wl = strlen(want);
	gl = strnlen(got, TERN_STR_MAX);
	diff = wl != gl;
	for (size_t i = 0; i < TERN_STR_MAX; i++) {
		unsigned char a = i < wl ? (unsigned char)want[i] : 0;
		unsigned char b = i < gl ? (unsigned char)got[i] : 0;

		diff |= (unsigned)(a ^ b);
	}
	return diff == 0;
}

/* wire_linger runs after an error answer, before the caller closes: FIN
 * after the answer, and no unread input left, because close() with unread
 * input sends a reset that can destroy the answer on its way. */
static void
wire_linger(int fd)
{
	uint8_t scratch[4096];

	(void)shutdown(fd, SHUT_WR);
	for (int i = 0; i < 16; i++)
		if (recv(fd, scratch, sizeof(scratch), MSG_DONTWAIT) <= 0)
			break;
}

int
tern_wire_accept_hello(int fd, const char *auth, int timeout_ms, struct tern_msg_w_hello *hello,
                       char *why, size_t whylen)
{
	struct tern_wire_rx *rx;
	struct wire_deadline saved;
	struct tern_msg m, ack;
	uint64_t plen = 0;
	char inner[TERN_STR_MAX] = "", reason[TERN_STR_MAX] = "";
	uint64_t until = wire_deadline_ns(timeout_ms);
	int rv, rv2;

	terni_errf(why, whylen, "%s", "");
	if ((rx = malloc(sizeof(*rx))) == NULL)
		return TERN_ENOMEM;
	rx->bytes = 0;
	if ((rv = wire_deadline_save(fd, &saved)) != 0) {
		free(rx);
		terni_errf(why, whylen, "cannot read the socket's timeouts: %s", tern_strerror(rv));
		return rv;
	}
	rv = tern_net_set_deadline(fd, timeout_ms > 0 ? timeout_ms : 0);
	if (rv == 0)
		rv = wire_recv_header(fd, rx, &m, &plen, until, TERN_EPROTO, inner, sizeof(inner));

	const struct tern_msg_w_hello *h = &m.u.w_hello;

	if (rv == TERN_ECLOSED) {
		terni_errf(reason, sizeof(reason), "source closed the connection before its hello");
		rv = TERN_EPROTO;
	} else if (rv == TERN_EPROTO || rv == TERN_EMSG) {
		/* Perhaps a tern of another version: it gets an answer too. */
		terni_errf(reason, sizeof(reason), "not a tern hello (%s)", inner);
		rv = TERN_EPROTO;
	} else if (rv == TERN_ETIMEDOUT) {
		terni_errf(reason, sizeof(reason), "no hello within %d ms", timeout_ms);
	} else if (rv != 0) {
		terni_errf(reason, sizeof(reason), "cannot read the hello: %s", tern_strerror(rv));
	} else if (m.type != TERN_MSG_W_HELLO || plen != 0) {
		terni_errf(reason, sizeof(reason), "expected W_HELLO, got %s%s",
		           tern_msg_name(m.type), plen != 0 ? " with a payload" : "");
		rv = TERN_EPROTO;
	} else if (h->magic != TERN_WIRE_HELLO_MAGIC) {
		terni_errf(reason, sizeof(reason), "bad hello magic 0x%016llx",
		           (unsigned long long)h->magic);
		rv = TERN_EPROTO;
	} else if (h->version != TERN_WIRE_VERSION) {
		terni_errf(reason, sizeof(reason),
		           "source speaks protocol version %u, this destination speaks %u",
		           h->version, TERN_WIRE_VERSION);
		rv = TERN_EVERSION;
	} else if (!wire_auth_ok(auth, h->auth)) {
		terni_errf(reason, sizeof(reason), "authentication failed: wrong token");
		rv = TERN_EAUTH;
	} else if (h->nconns == 0 || h->conn >= h->nconns) {
		terni_errf(reason, sizeof(reason), "connection index %u out of %u connections",
		           h->conn, h->nconns);
		rv = TERN_EPROTO;
	}

	tern_msg_init(&ack, TERN_MSG_W_HELLO_ACK);
	ack.u.w_hello_ack.version = TERN_WIRE_VERSION;
	ack.u.w_hello_ack.status = rv;
	wire_strcpy(ack.u.w_hello_ack.why, reason);
	if (rv == 0) {
		/* The clock (for the source's trace merging) only to a peer that
		 * passed the checks, authentication included. */
		ack.u.w_hello_ack.time_ns = tern_now_ns();
	} else {
		/* A refusal tells nothing about this host: no clock, and the
		 * envelope's time and sequence (which tern_wire_send would fill
		 * from the clock and the frame counter) are constants. */
		ack.seq = 1;
		ack.time_ns = 1;
	}
	rv2 = tern_wire_send(fd, &ack, NULL, 0, NULL);
	if (rv == 0 && rv2 != 0) {
		terni_errf(reason, sizeof(reason), "cannot answer the hello: %s",
		           tern_strerror(rv2));
		rv = rv2;
	}
	if (rv == 0 && hello != NULL)
		*hello = *h;
	if (rv != 0)
		wire_linger(fd);
	rv2 = wire_deadline_restore(fd, &saved);
	if (rv == 0 && rv2 != 0) {
		terni_errf(reason, sizeof(reason), "cannot restore the socket's timeouts: %s",
		           tern_strerror(rv2));
		rv = rv2;
	}
	terni_errf(why, whylen, "%s", reason);
	free(rx);
	return rv;
}

int
tern_wire_send_result(int fd, uint32_t step, int status, const char *why, uint64_t value)
{
	struct tern_msg m;

	tern_msg_init(&m, TERN_MSG_W_RESULT);
	m.u.w_result.step = step;
	m.u.w_result.status = status;
	wire_strcpy(m.u.w_result.why, why);
	m.u.w_result.value = value;
	return tern_wire_send(fd, &m, NULL, 0, NULL);
}
