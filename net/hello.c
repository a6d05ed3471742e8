/*
 * The connection handshake (hello.h): W_HELLO, its binding, W_HELLO_ACK.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "net/hello.h"
#include "net/net.h"
#include "net/tls.h"
#include "net/wire.h"
#include "tern/error.h"

/* The handshake sets its own deadline and puts the caller's back. */
struct hello_deadline {
	struct timeval snd, rcv;
};

static int
hello_deadline_save(int fd, struct hello_deadline *d)
{
	socklen_t l1 = sizeof(d->snd), l2 = sizeof(d->rcv);

	if (getsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &d->snd, &l1) != 0 ||
	    getsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &d->rcv, &l2) != 0)
		return -errno;
	return 0;
}

static int
hello_deadline_restore(int fd, const struct hello_deadline *d)
{
	if (setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &d->snd, sizeof(d->snd)) != 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &d->rcv, sizeof(d->rcv)) != 0)
		return -errno;
	return 0;
}

/* hello_deadline_ns turns a handshake timeout into an absolute deadline. */
static uint64_t
hello_deadline_ns(int timeout_ms)
{
	return timeout_ms > 0 ? tern_now_ns() + (uint64_t)timeout_ms * 1000000u : 0;
}

static void
hello_hex(const uint8_t *b, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[b[i] >> 4];
		out[2 * i + 1] = digits[b[i] & 15];
	}
	out[2 * n] = '\0';
}

static int
hello_unhex(const char *s, uint8_t *out, size_t n)
{
	if (strlen(s) != 2 * n)
		return TERN_EINVAL;
	for (size_t i = 0; i < 2 * n; i++) {
		char c = s[i];
		int v = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;

		if (v < 0)
			return TERN_EINVAL;
		out[i / 2] = (uint8_t)(i % 2 ? out[i / 2] | v : v << 4);
	}
	return 0;
}

/* hello_binding computes the MAC of hello.h over l's exporter. */
static int
hello_binding(struct tern_link *l, const uint8_t key[TERN_WIRE_KEY_LEN], const char *migration,
              uint32_t conn, uint32_t nconns, uint8_t mac[32])
{
	uint8_t msg[TERN_TLS_EXPORTER_LEN + 8 + TERN_STR_MAX];
	size_t mlen = strnlen(migration, TERN_STR_MAX - 1);
	unsigned int maclen = 0;
	int rv = tern_link_exporter(l, msg);

	if (rv != 0)
		return rv;
	for (int i = 0; i < 4; i++) {
		msg[TERN_TLS_EXPORTER_LEN + i] = (uint8_t)(conn >> (24 - 8 * i));
		msg[TERN_TLS_EXPORTER_LEN + 4 + i] = (uint8_t)(nconns >> (24 - 8 * i));
	}
	memcpy(msg + TERN_TLS_EXPORTER_LEN + 8, migration, mlen);
	if (HMAC(EVP_sha256(), key, TERN_WIRE_KEY_LEN, msg, TERN_TLS_EXPORTER_LEN + 8 + mlen, mac,
	         &maclen) == NULL ||
	    maclen != 32)
		return TERN_EPROTO;
	return 0;
}

int
tern_wire_hello(struct tern_link *l, const char *migration, uint32_t conn, uint32_t nconns,
                const uint8_t key[TERN_WIRE_KEY_LEN], int timeout_ms, char *why, size_t whylen,
                uint64_t *peer_time_ns)
{
	struct tern_wire_rx *rx;
	struct hello_deadline saved;
	struct tern_msg m;
	uint64_t plen = 0;
	uint8_t mac[32];
	char inner[TERN_STR_MAX] = "";
	uint64_t until = hello_deadline_ns(timeout_ms);
	int rv, rv2;

	terni_errf(why, whylen, "%s", "");
	if (migration == NULL || strlen(migration) >= TERN_STR_MAX) {
		terni_errf(why, whylen, "migration id missing or longer than %d bytes",
		           TERN_STR_MAX - 1);
		return TERN_EINVAL;
	}
	tern_msg_init(&m, TERN_MSG_W_HELLO);
	m.u.w_hello.magic = TERN_WIRE_HELLO_MAGIC;
	m.u.w_hello.version = TERN_WIRE_VERSION;
	snprintf(m.u.w_hello.migration, TERN_STR_MAX, "%s", migration);
	m.u.w_hello.conn = conn;
	m.u.w_hello.nconns = nconns;
	if ((rv = hello_binding(l, key, migration, conn, nconns, mac)) != 0) {
		terni_errf(why, whylen, "cannot bind the connection to its TLS session");
		return rv;
	}
	hello_hex(mac, sizeof(mac), m.u.w_hello.bind);
	if (conn == 0)
		hello_hex(key, TERN_WIRE_KEY_LEN, m.u.w_hello.key);
	OPENSSL_cleanse(mac, sizeof(mac));

	if ((rx = malloc(sizeof(*rx))) == NULL)
		return TERN_ENOMEM;
	rx->bytes = 0;
	if ((rv = hello_deadline_save(l->fd, &saved)) != 0) {
		free(rx);
		terni_errf(why, whylen, "cannot read the socket's timeouts: %s", tern_strerror(rv));
		return rv;
	}
	/* One deadline for sending the hello and for the answer. */
	if ((rv = tern_net_set_deadline(l->fd, timeout_ms > 0 ? timeout_ms : 0)) != 0) {
		terni_errf(why, whylen, "cannot set the handshake deadline: %s", tern_strerror(rv));
		goto out;
	}
	rv = tern_wire_send(l, &m, NULL, 0, NULL);
	OPENSSL_cleanse(m.u.w_hello.key, sizeof(m.u.w_hello.key));
	if (rv == 0)
		rv = tern_wire_recv_header_until(l, rx, &m, &plen, until, inner, sizeof(inner));
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
	rv2 = hello_deadline_restore(l->fd, &saved);
	if (rv == 0 && rv2 != 0) {
		terni_errf(why, whylen, "cannot restore the socket's timeouts: %s",
		           tern_strerror(rv2));
		rv = rv2;
	}
	free(rx);
	return rv;
}

int
tern_wire_read_hello(struct tern_link *l, uint64_t deadline_ns, struct tern_msg_w_hello *hello,
                     char *reason, size_t len)
{
	struct tern_wire_rx *rx;
	struct tern_msg m;
	uint64_t plen = 0;
	char inner[TERN_STR_MAX] = "";
	int rv;

	terni_errf(reason, len, "%s", "");
	if ((rx = malloc(sizeof(*rx))) == NULL)
		return TERN_ENOMEM;
	rx->bytes = 0;
	rv = tern_wire_recv_header_until(l, rx, &m, &plen, deadline_ns, inner, sizeof(inner));
	free(rx);

	const struct tern_msg_w_hello *h = &m.u.w_hello;

	if (rv == TERN_ECLOSED || rv == -ECONNRESET) {
		terni_errf(reason, len, "source closed the connection before its hello");
		rv = TERN_EPROTO;
	} else if (rv == TERN_EPROTO || rv == TERN_EMSG) {
		/* Perhaps a tern of another version: it gets an answer too. */
		terni_errf(reason, len, "not a tern hello (%s)", inner);
		rv = TERN_EPROTO;
	} else if (rv == TERN_ETIMEDOUT) {
		terni_errf(reason, len, "no hello before the handshake deadline");
	} else if (rv != 0) {
		terni_errf(reason, len, "cannot read the hello: %s", tern_strerror(rv));
	} else if (m.type != TERN_MSG_W_HELLO || plen != 0) {
		terni_errf(reason, len, "expected W_HELLO, got %s%s", tern_msg_name(m.type),
		           plen != 0 ? " with a payload" : "");
		rv = TERN_EPROTO;
	} else if (h->magic != TERN_WIRE_HELLO_MAGIC) {
		terni_errf(reason, len, "bad hello magic 0x%016llx", (unsigned long long)h->magic);
		rv = TERN_EPROTO;
	} else if (h->version != TERN_WIRE_VERSION) {
		terni_errf(reason, len,
		           "source speaks protocol version %u, this destination speaks %u",
		           h->version, TERN_WIRE_VERSION);
		rv = TERN_EVERSION;
	} else if (h->nconns == 0 || h->conn >= h->nconns) {
		terni_errf(reason, len, "connection index %u out of %u connections", h->conn,
		           h->nconns);
		rv = TERN_EPROTO;
	}
	if (rv == 0)
		*hello = *h;
	OPENSSL_cleanse(&m, sizeof(m));
	return rv;
}

int
tern_wire_hello_key(const struct tern_msg_w_hello *h, uint8_t key[TERN_WIRE_KEY_LEN])
{
	return hello_unhex(h->key, key, TERN_WIRE_KEY_LEN) == 0 ? 0 : TERN_EAUTH;
}

int
tern_wire_check_binding(struct tern_link *l, const struct tern_msg_w_hello *h,
                        const uint8_t key[TERN_WIRE_KEY_LEN], char *reason, size_t len)
{
	uint8_t want[32], got[32];
	int rv;

	if (hello_unhex(h->bind, got, sizeof(got)) != 0) {
		terni_errf(reason, len, "authentication failed: the hello carries no binding");
		return TERN_EAUTH;
	}
	rv = hello_binding(l, key, h->migration, h->conn, h->nconns, want);
	if (rv == 0 && CRYPTO_memcmp(want, got, sizeof(want)) != 0)
		rv = TERN_EAUTH;
	if (rv != 0)
		terni_errf(reason, len,
		           "authentication failed: connection %u is not bound to migration %s",
		           h->conn, h->migration);
	OPENSSL_cleanse(want, sizeof(want));
	return rv == 0 ? 0 : TERN_EAUTH;
}

/* hello_linger runs after an error answer, before the caller closes: FIN
 * after the answer, and no unread input left, because close() with unread
 * input sends a reset that can destroy the answer on its way. */
static void
hello_linger(int fd)
{
	uint8_t scratch[4096];

	(void)shutdown(fd, SHUT_WR);
	for (int i = 0; i < 16; i++)
		if (recv(fd, scratch, sizeof(scratch), MSG_DONTWAIT) <= 0)
			break;
}

int
tern_wire_answer_hello(struct tern_link *l, int status, const char *reason, int timeout_ms)
{
	struct tern_msg ack;
	struct hello_deadline saved;
	int rv;

	tern_msg_init(&ack, TERN_MSG_W_HELLO_ACK);
	ack.u.w_hello_ack.version = TERN_WIRE_VERSION;
	ack.u.w_hello_ack.status = status;
	snprintf(ack.u.w_hello_ack.why, TERN_STR_MAX, "%s", reason != NULL ? reason : "");
	if (status == 0) {
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
	if ((rv = hello_deadline_save(l->fd, &saved)) != 0)
		return rv;
	if ((rv = tern_net_set_deadline(l->fd, timeout_ms)) == 0)
		rv = tern_wire_send(l, &ack, NULL, 0, NULL);
	if (status != 0)
		hello_linger(l->fd);
	int rv2 = hello_deadline_restore(l->fd, &saved);
	return rv != 0 ? rv : rv2;
}

int
tern_wire_accept_hello(struct tern_link *l, const uint8_t *key, int timeout_ms,
                       struct tern_msg_w_hello *hello, uint8_t *key_out, char *why, size_t whylen)
{
	struct tern_msg_w_hello h;
	struct hello_deadline saved;
	uint8_t own[TERN_WIRE_KEY_LEN];
	char reason[TERN_STR_MAX] = "";
	int rv, rv2;

	/* The caller's timeouts are put back: the handshake's are its own. */
	if ((rv = hello_deadline_save(l->fd, &saved)) != 0) {
		terni_errf(why, whylen, "cannot read the socket's timeouts: %s", tern_strerror(rv));
		return rv;
	}
	rv = tern_wire_read_hello(l, hello_deadline_ns(timeout_ms), &h, reason, sizeof(reason));
	if (rv == 0 && h.conn == 0) {
		if ((rv = tern_wire_hello_key(&h, own)) != 0)
			terni_errf(reason, sizeof(reason),
			           "authentication failed: connection 0 carries no migration key");
		else
			key = own;
	} else if (rv == 0 && key == NULL) {
		terni_errf(reason, sizeof(reason), "connection %u of no migration here", h.conn);
		rv = TERN_EAUTH;
	}
	if (rv == 0)
		rv = tern_wire_check_binding(l, &h, key, reason, sizeof(reason));
	rv2 = tern_wire_answer_hello(l, rv, reason, timeout_ms > 0 ? timeout_ms : 5000);
	if (rv == 0 && rv2 != 0) {
		terni_errf(reason, sizeof(reason), "cannot answer the hello: %s",
		           tern_strerror(rv2));
		rv = rv2;
	}
	rv2 = hello_deadline_restore(l->fd, &saved);
	if (rv == 0 && rv2 != 0) {
		terni_errf(reason, sizeof(reason), "cannot restore the socket's timeouts: %s",
		           tern_strerror(rv2));
		rv = rv2;
	}
	if (rv == 0) {
		*hello = h;
		if (key_out != NULL)
			memcpy(key_out, key, TERN_WIRE_KEY_LEN);
	}
	OPENSSL_cleanse(own, sizeof(own));
	OPENSSL_cleanse(&h, sizeof(h));
	terni_errf(why, whylen, "%s", reason);
	return rv;
}
