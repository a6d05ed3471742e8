/*
 * TLS 1.3 for the wire (tls.h): contexts from x509 credentials or a PSK
 * file, the handshake, and the record I/O link.c calls for TLS links.
 *
 * The socket is reached through a BIO of our own rather than OpenSSL's
 * socket BIO for two reasons: send() with MSG_NOSIGNAL (OpenSSL writes with
 * write(), and a SIGPIPE would kill the VMM embedding us), and an absolute
 * deadline applied before every recv() so a peer trickling one byte per
 * timeout cannot hold a read open (the plain path does the same in link.c).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "messages/msg.h"
#include "net/tls.h"
#include "net/tls_int.h"
#include "tern/error.h"

#define TLS_EXPORTER_LABEL "EXPORTER-tern-connection-binding"

/* ---- the socket BIO ---- */

/* Records written by one terni_tls_write are gathered up to this much and
 * sent together: OpenSSL hands the BIO one 16 KiB record at a time, and a
 * send() per record costs more than the encryption. */
#define TLS_WBUF (256u << 10)

struct tls_sock {
	int fd;
	uint64_t deadline_ns; /* 0: the socket's own timeout */
	int err;              /* errno of the last failed recv/send */
	int batch;            /* inside terni_tls_write: gather records */
	uint8_t *wbuf;        /* TLS_WBUF bytes, allocated on first use */
	size_t wlen;
};

/* tls_send_all sends all of p; -1 with s->err on failure. */
static int
tls_send_all(struct tls_sock *s, const uint8_t *p, size_t n)
{
	while (n > 0) {
		ssize_t w = send(s->fd, p, n, MSG_NOSIGNAL);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0) {
			s->err = errno;
			return -1;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

static int
tls_flush(struct tls_sock *s)
{
	int rv = s->wlen > 0 ? tls_send_all(s, s->wbuf, s->wlen) : 0;

	s->wlen = 0;
	return rv;
}

static BIO_METHOD *tls_bio_method;
static pthread_once_t tls_bio_once = PTHREAD_ONCE_INIT;

static int
tls_bio_write(BIO *b, const char *buf, int len)
{
	struct tls_sock *s = BIO_get_data(b);

	BIO_clear_retry_flags(b);
	if (s->batch && (s->wbuf != NULL || (s->wbuf = malloc(TLS_WBUF)) != NULL)) {
		/* Gathered; a failed send here is the whole write's failure
		 * (the link is dead): -1 without a retry flag. */
		if (s->wlen + (size_t)len > TLS_WBUF && tls_flush(s) != 0)
			return -1;
		if ((size_t)len >= TLS_WBUF)
			return tls_send_all(s, (const uint8_t *)buf, (size_t)len) == 0 ? len : -1;
		memcpy(s->wbuf + s->wlen, buf, (size_t)len);
		s->wlen += (size_t)len;
		return len;
	}
	for (;;) {
		ssize_t n = send(s->fd, buf, (size_t)len, MSG_NOSIGNAL);

		if (n >= 0)
			return (int)n;
		if (errno == EINTR)
			continue;
		s->err = errno;
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			BIO_set_retry_write(b);
		return -1;
	}
}

static int
tls_bio_read(BIO *b, char *buf, int len)
{
	struct tls_sock *s = BIO_get_data(b);

	BIO_clear_retry_flags(b);
	for (;;) {
		int rv = tern_link_until(s->fd, s->deadline_ns);

		if (rv != 0) {
			s->err = rv == TERN_ETIMEDOUT ? EAGAIN : -rv;
			if (rv == TERN_ETIMEDOUT)
				BIO_set_retry_read(b);
			return -1;
		}

		ssize_t n = recv(s->fd, buf, (size_t)len, 0);

		if (n >= 0)
			return (int)n; /* 0: EOF */
		if (errno == EINTR)
			continue;
		s->err = errno;
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			BIO_set_retry_read(b);
		return -1;
	}
}

static long
tls_bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
	return cmd == BIO_CTRL_FLUSH ? 1 : 0;
}

static int
tls_bio_destroy(BIO *b)
{
	struct tls_sock *s = BIO_get_data(b);

	if (s != NULL)
		free(s->wbuf);
	free(s);
	BIO_set_data(b, NULL);
	return 1;
}

static void
tls_bio_init_once(void)
{
	BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "tern socket");

	if (m == NULL)
		return;
	if (!BIO_meth_set_write(m, tls_bio_write) || !BIO_meth_set_read(m, tls_bio_read) ||
	    !BIO_meth_set_ctrl(m, tls_bio_ctrl) || !BIO_meth_set_destroy(m, tls_bio_destroy)) {
		BIO_meth_free(m);
		return;
	}
	tls_bio_method = m;
}

static struct tls_sock *
tls_sock_of(const struct tern_link *l)
{
	return BIO_get_data(SSL_get_rbio(l->ssl));
}

/* ---- record I/O for link.c ---- */

/* tls_error maps a failed SSL call on l. */
static int
tls_error(struct tern_link *l, int ret)
{
	struct tls_sock *s = tls_sock_of(l);
	int e = SSL_get_error(l->ssl, ret), err = s->err;

	s->err = 0;
	ERR_clear_error();
	switch (e) {
	case SSL_ERROR_ZERO_RETURN:
		return TERN_ECLOSED;
	case SSL_ERROR_WANT_READ:
	case SSL_ERROR_WANT_WRITE:
		return TERN_ETIMEDOUT; /* only a kernel timeout stops a blocking socket */
	case SSL_ERROR_SYSCALL:
		if (err == EAGAIN || err == EWOULDBLOCK)
			return TERN_ETIMEDOUT;
		return err != 0 ? -err : TERN_ECLOSED;
	default:
		/* A record that fails authentication, or anything else the
		 * peer sent that is not TLS: never data. */
		return TERN_EPROTO;
	}
}

int
terni_tls_write(struct tern_link *l, const void *buf, size_t len, uint64_t *bytes)
{
	struct tls_sock *s = tls_sock_of(l);
	const uint8_t *p = buf;
	int rv = 0;

	s->batch = 1;
	while (len > 0 && rv == 0) {
		size_t done = 0;
		int ret = SSL_write_ex(l->ssl, p, len, &done);

		if (ret <= 0) {
			rv = tls_error(l, ret);
			break;
		}
		p += done;
		len -= done;
		if (bytes != NULL)
			*bytes += done;
	}
	s->batch = 0;
	if (tls_flush(s) != 0 && rv == 0) {
		int e = s->err;

		s->err = 0;
		rv = e == EAGAIN || e == EWOULDBLOCK ? TERN_ETIMEDOUT : -e;
	}
	return rv;
}

int
terni_tls_read(struct tern_link *l, void *dst, size_t want, size_t *got, uint64_t deadline_ns)
{
	int ret;

	tls_sock_of(l)->deadline_ns = deadline_ns;
	*got = 0;
	ret = SSL_read_ex(l->ssl, dst, want, got);
	return ret > 0 ? 0 : tls_error(l, ret);
}

int
terni_tls_pending(const struct tern_link *l)
{
	return SSL_has_pending(l->ssl);
}

void
terni_tls_free(struct tern_link *l)
{
	SSL_free(l->ssl);
	l->ssl = NULL;
}

int
tern_link_exporter(struct tern_link *l, uint8_t out[TERN_TLS_EXPORTER_LEN])
{
	memset(out, 0, TERN_TLS_EXPORTER_LEN);
	if (l->ssl == NULL)
		return 0;
	if (SSL_export_keying_material(l->ssl, out, TERN_TLS_EXPORTER_LEN, TLS_EXPORTER_LABEL,
	                               strlen(TLS_EXPORTER_LABEL), NULL, 0, 0) != 1) {
		ERR_clear_error();
		return TERN_EPROTO;
	}
	return 0;
}

/* ---- the handshake ---- */

/* tls_handshake_error tells a refusal of credentials (ours or the peer's)
 * from a peer that does not speak TLS, with OpenSSL's words for it. */
static int
tls_handshake_error(SSL *ssl, int ret, int sock_err, char *why, size_t whylen)
{
	int e = SSL_get_error(ssl, ret);
	unsigned long code = ERR_peek_error();
	long verify = SSL_get_verify_result(ssl);
	char text[256] = "";
	int rv = TERN_EAUTH;

	if (code != 0)
		ERR_error_string_n(code, text, sizeof(text));
	ERR_clear_error();
	if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
		terni_errf(why, whylen, "TLS handshake not done before the deadline");
		return TERN_ETIMEDOUT;
	}
	if (e == SSL_ERROR_SYSCALL || e == SSL_ERROR_ZERO_RETURN) {
		terni_errf(why, whylen, "peer closed the connection during the TLS handshake%s%s",
		           sock_err ? ": " : "", sock_err ? strerror(sock_err) : "");
		return sock_err ? -sock_err : TERN_EPROTO;
	}
	if (verify != X509_V_OK) {
		terni_errf(why, whylen, "TLS: peer certificate refused: %s",
		           X509_verify_cert_error_string(verify));
		return TERN_EAUTH;
	}
	if (ERR_GET_LIB(code) == ERR_LIB_SSL) {
		int r = ERR_GET_REASON(code);

		if (r == SSL_R_WRONG_VERSION_NUMBER || r == SSL_R_HTTP_REQUEST ||
		    r == SSL_R_PACKET_LENGTH_TOO_LONG || r == SSL_R_UNEXPECTED_EOF_WHILE_READING)
			rv = TERN_EPROTO;
	}
	terni_errf(why, whylen, "TLS handshake failed: %s", code != 0 ? text : "no reason given");
	return rv;
}

int
tern_tls_handshake(struct tern_tls *t, int fd, const char *host, uint64_t deadline_ns,
                   struct tern_link *l, char *why, size_t whylen)
{
	struct tls_sock *s = NULL;
	SSL *ssl = NULL;
	BIO *bio = NULL;
	int rv;

	pthread_once(&tls_bio_once, tls_bio_init_once);
	if (tls_bio_method == NULL || (ssl = SSL_new(terni_tls_ctx(t))) == NULL ||
	    (bio = BIO_new(tls_bio_method)) == NULL || (s = calloc(1, sizeof(*s))) == NULL) {
		free(s);
		BIO_free(bio);
		SSL_free(ssl);
		ERR_clear_error();
		terni_errf(why, whylen, "out of memory for a TLS connection");
		return TERN_ENOMEM;
	}
	s->fd = fd;
	s->deadline_ns = deadline_ns;
	BIO_set_data(bio, s);
	BIO_set_init(bio, 1);
	SSL_set_bio(ssl, bio, bio); /* ssl owns bio, bio owns s */
	if ((rv = terni_tls_prepare(t, ssl, host, why, whylen)) != 0) {
		SSL_free(ssl);
		return rv;
	}
	/* Writes are bounded by the socket's send timeout, set to the time
	 * left; reads by the BIO's deadline. */
	uint64_t now = tern_now_ns();
	if (deadline_ns != 0 && now < deadline_ns) {
		uint64_t left = deadline_ns - now;
		struct timeval tv = {(time_t)(left / 1000000000u),
		                     (suseconds_t)(left % 1000000000u / 1000u) + 1};
		(void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	}
	int ret = terni_tls_role(t) == TERN_TLS_SERVER ? SSL_accept(ssl) : SSL_connect(ssl);
	if (ret != 1) {
		rv = tls_handshake_error(ssl, ret, s->err, why, whylen);
		SSL_free(ssl);
		return rv;
	}
	s->deadline_ns = 0;
	l->fd = fd;
	l->ssl = ssl;
	return 0;
}
