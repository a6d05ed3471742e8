/*
 * Shared helpers of the fuzz targets (see harness.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "net/hello.h"
#include "net/wire.h"
#include "tern/error.h"
#include "tests/fuzz/harness.h"

const uint8_t fuzz_key[32] = {1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12, 13, 14, 15, 16,
                              17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32};

int
fuzz_feed(const uint8_t *data, size_t size, int *rd, int *peer)
{
	int sv[2], rv = 0;
	size_t off = 0;

	if (size > FUZZ_FEED_MAX)
		return TERN_EINVAL;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
		return -errno;
	/* Never block: an input that did not fit would hang the run. */
	if (fcntl(sv[1], F_SETFL, O_NONBLOCK) != 0)
		rv = -errno;
	while (rv == 0 && off < size) {
		ssize_t n = write(sv[1], data + off, size - off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			rv = -errno;
		else
			off += (size_t)n;
	}
	if (rv == 0 && shutdown(sv[1], SHUT_WR) != 0)
		rv = -errno;
	if (rv != 0) {
		fuzz_close(sv[0], sv[1]);
		return rv;
	}
	*rd = sv[0];
	*peer = sv[1];
	return 0;
}

void
fuzz_close(int rd, int peer)
{
	close(rd);
	close(peer);
}

/* fuzz_drain reads what fd holds, up to EOF, into out (capacity cap). */
static int
fuzz_drain(int fd, uint8_t *out, size_t cap, size_t *len)
{
	size_t off = 0;

	for (;;) {
		ssize_t n = read(fd, out + off, cap - off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			break;
		if ((off += (size_t)n) == cap)
			return TERN_EINVAL; /* no room to tell the end */
	}
	*len = off;
	return 0;
}

/* fuzz_finish ends what was written on sv[0] and collects it from sv[1]
 * into out, then closes both ends; rv: the writing's result so far. */
static int
fuzz_finish(int sv[2], int rv, uint8_t *out, size_t cap, size_t *len)
{
	if (rv == 0 && shutdown(sv[0], SHUT_WR) != 0)
		rv = -errno;
	if (rv == 0)
		rv = fuzz_drain(sv[1], out, cap, len);
	close(sv[0]);
	close(sv[1]);
	return rv;
}

int
fuzz_frame(const struct tern_msg *m, const void *payload, size_t plen, uint8_t *out, size_t cap,
           size_t *len)
{
	struct iovec iov = {(void *)payload, plen};
	int sv[2], rv;

	*len = 0;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
		return -errno;
	rv = tern_wire_send(TERN_PLAIN(sv[0]), m, &iov, plen > 0 ? 1 : 0, NULL);
	return fuzz_finish(sv, rv, out, cap, len);
}

int
fuzz_hello_frame(uint32_t conn, uint32_t nconns, uint8_t *out, size_t cap, size_t *len)
{
	struct tern_msg ack;
	uint8_t buf[512];
	size_t alen = 0;
	char why[TERN_STR_MAX];
	int sv[2], rv;

	*len = 0;
	/* The answer goes first, so that tern_wire_hello returns at once. */
	tern_msg_init(&ack, TERN_MSG_W_HELLO_ACK);
	ack.u.w_hello_ack.version = TERN_WIRE_VERSION;
	if ((rv = fuzz_frame(&ack, NULL, 0, buf, sizeof(buf), &alen)) != 0)
		return rv;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
		return -errno;
	if (write(sv[1], buf, alen) != (ssize_t)alen)
		rv = TERN_EINVAL;
	if (rv == 0)
		rv = tern_wire_hello(TERN_PLAIN(sv[0]), FUZZ_MIGRATION, conn, nconns, fuzz_key,
		                     5000, why, sizeof(why), NULL);
	return fuzz_finish(sv, rv, out, cap, len);
}
