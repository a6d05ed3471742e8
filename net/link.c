/*
 * Links (link.h): plain TCP through sendmsg/recv, TLS through OpenSSL's
 * record layer.
 *
 * Plain writes are one sendmsg over every iovec (no copy of guest memory),
 * MSG_NOSIGNAL so a vanished peer is -EPIPE and never a SIGPIPE that kills
 * the VMM.  TLS has no writev: each iovec is one SSL_write, which OpenSSL
 * cuts into 16 KiB records and encrypts into its own buffer on the way to
 * the socket (tls.c's BIO, also MSG_NOSIGNAL).  Reads decrypt straight into
 * the caller's buffer.
 *
 * A kernel timeout on the socket (SO_SNDTIMEO/SO_RCVTIMEO) ends a blocking
 * call with EAGAIN: TERN_ETIMEDOUT here, for either kind.
 */
#include <errno.h>
#include <stdbool.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "messages/msg.h"
#include "net/link.h"
#include "net/tls_int.h"
#include "tern/error.h"

/* Payload iovecs handed to one sendmsg; more are sent in later rounds. */
#define LINK_IOV 64
/* One recv is bounded so that its byte count fits ssize_t comfortably. */
#define LINK_RECV_MAX (1u << 30)

void
tern_link_plain(struct tern_link *l, int fd)
{
	l->fd = fd;
	l->ssl = NULL;
}

int
tern_link_is_tls(const struct tern_link *l)
{
	return l->ssl != NULL;
}

int
tern_link_pending(const struct tern_link *l)
{
	return l->ssl != NULL && terni_tls_pending(l);
}

void
tern_link_close(struct tern_link *l)
{
	if (l->ssl != NULL)
		terni_tls_free(l);
	if (l->fd >= 0) {
		close(l->fd);
		l->fd = -1;
	}
}

/* link_errno maps a failed socket call: with a kernel timeout set, EAGAIN
 * on a blocking socket means the deadline passed. */
static int
link_errno(int e)
{
	if (e == EAGAIN || e == EWOULDBLOCK)
		return TERN_ETIMEDOUT;
	return -e;
}

static int
link_plain_writev(struct tern_link *l, const struct iovec *payload, int iovcnt, uint64_t *bytes)
{
	int i = 0;      /* current iovec ... */
	size_t off = 0; /* ... and bytes of it written */

	for (;;) {
		struct iovec iov[LINK_IOV];
		int n = 0;

		for (int j = i; j < iovcnt && n < LINK_IOV; j++) {
			size_t o = j == i ? off : 0;

			if (payload[j].iov_len > o)
				iov[n++] = (struct iovec){(char *)payload[j].iov_base + o,
				                          payload[j].iov_len - o};
		}
		if (n == 0)
			return 0;

		struct msghdr mh = {.msg_iov = iov, .msg_iovlen = (size_t)n};
		ssize_t w = sendmsg(l->fd, &mh, MSG_NOSIGNAL);

		if (w < 0) {
			if (errno == EINTR)
				continue;
			return link_errno(errno);
		}
		if (bytes != NULL)
			*bytes += (uint64_t)w;

		size_t left = (size_t)w;

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
tern_link_writev(struct tern_link *l, const struct iovec *iov, int n, uint64_t *bytes)
{
	if (l->ssl == NULL)
		return link_plain_writev(l, iov, n, bytes);
	for (int i = 0; i < n; i++) {
		int rv = terni_tls_write(l, iov[i].iov_base, iov[i].iov_len, bytes);

		if (rv != 0)
			return rv;
	}
	return 0;
}

int
tern_link_until(int fd, uint64_t deadline_ns)
{
	uint64_t now, left;
	struct timeval tv;

	if (deadline_ns == 0)
		return 0;
	now = tern_now_ns();
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

/* link_read_some reads up to want bytes (at least one) by deadline_ns:
 * > 0 bytes, or 0 with *rv set. */
static size_t
link_read_some(struct tern_link *l, uint8_t *dst, size_t want, uint64_t deadline_ns, int *rv)
{
	for (;;) {
		if (l->ssl == NULL) {
			if ((*rv = tern_link_until(l->fd, deadline_ns)) != 0)
				return 0;
			ssize_t n = recv(l->fd, dst, want, MSG_WAITALL);

			if (n > 0)
				return (size_t)n;
			if (n == 0) {
				*rv = TERN_ECLOSED;
				return 0;
			}
			if (errno == EINTR)
				continue;
			*rv = link_errno(errno);
			return 0;
		}

		size_t got = 0;

		/* The TLS BIO bounds each recv by the deadline. */
		*rv = terni_tls_read(l, dst, want, &got, deadline_ns);
		return *rv == 0 ? got : 0;
	}
}

int
tern_link_read(struct tern_link *l, void *dst, uint64_t len, uint64_t *got, uint64_t deadline_ns)
{
	uint8_t *p = dst;
	uint64_t done = 0;
	int rv = 0;

	while (done < len) {
		size_t want = len - done < LINK_RECV_MAX ? (size_t)(len - done) : LINK_RECV_MAX;
		size_t n = link_read_some(l, p + done, want, deadline_ns, &rv);

		if (n == 0)
			break;
		done += n;
	}
	if (got != NULL)
		*got = done;
	return rv;
}

int
tern_link_readv(struct tern_link *l, struct iovec *iov, int n, uint64_t deadline_ns)
{
	if (l->ssl != NULL) {
		for (int i = 0; i < n; i++) {
			int rv =
			    tern_link_read(l, iov[i].iov_base, iov[i].iov_len, NULL, deadline_ns);

			if (rv != 0)
				return rv == TERN_ECLOSED ? TERN_EPROTO : rv;
		}
		return 0;
	}
	while (n > 0) {
		struct msghdr mh = {.msg_iov = iov, .msg_iovlen = (size_t)(n < 1024 ? n : 1024)};
		int rv;

		/* One setsockopt per recvmsg: MSG_WAITALL usually takes a
		 * whole frame in one call, so this costs one per frame. */
		if ((rv = tern_link_until(l->fd, deadline_ns)) != 0)
			return rv;
		ssize_t got = recvmsg(l->fd, &mh, MSG_WAITALL);

		if (got == 0)
			return TERN_EPROTO;
		if (got < 0) {
			if (errno == EINTR)
				continue;
			return link_errno(errno);
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
