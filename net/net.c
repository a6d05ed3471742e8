/*
 * TCP sockets for the migration wire (net.h).
 *
 * Blocking sockets throughout: connect is the only call that needs a
 * non-blocking phase (to bound it by a timeout); everything afterwards is
 * bounded by kernel timeouts set with tern_net_set_deadline.
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>
#include <uv.h>

#include "messages/msg.h"
#include "net/net.h"
#include "tern/error.h"

#define NET_BACKLOG 128
#define NET_SOCKBUF (4 << 20)

/* net_poll waits for events on fd for up to timeout_ms (-1: forever),
 * restarting after signals with the time that is left.  Returns 1 when
 * ready, TERN_ETIMEDOUT, or -errno. */
static int
net_poll(int fd, short events, int timeout_ms)
{
	uint64_t deadline = timeout_ms < 0 ? 0 : tern_now_ns() / 1000000 + (uint64_t)timeout_ms;
	struct pollfd p = {.fd = fd, .events = events};
	int wait = timeout_ms;

	for (;;) {
		int rv = poll(&p, 1, wait);

		if (rv > 0)
			return 1;
		if (rv == 0)
			return TERN_ETIMEDOUT;
		if (errno != EINTR)
			return -errno;
		if (timeout_ms >= 0) {
			uint64_t now = tern_now_ns() / 1000000;

			if (now >= deadline)
				return TERN_ETIMEDOUT;
			wait = (int)(deadline - now);
		}
	}
}

/* net_parse_port accepts 1-5 decimal digits with a value up to 65535. */
static int
net_parse_port(const char *s, int *port)
{
	size_t n = strlen(s);
	int v = 0;

	if (n == 0 || n > 5)
		return TERN_EINVAL;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return TERN_EINVAL;
		v = v * 10 + (s[i] - '0');
	}
	if (v > 65535)
		return TERN_EINVAL;
	*port = v;
	return 0;
}

/* net_resolve parses hostport; passive allows an empty or "*" host (any
 * address, IPv4), which only makes sense for listening. */
static int
net_resolve(const char *hostport, bool passive, struct sockaddr_storage *ss, socklen_t *sslen,
            char *err, size_t errlen)
{
	char host[256];
	const char *hs, *he, *ps;
	int port, rv;

	memset(ss, 0, sizeof(*ss));
	if (hostport == NULL) {
		terni_errf(err, errlen, "bad address: none given");
		return TERN_EINVAL;
	}
	if (hostport[0] == '[') {
		hs = hostport + 1;
		he = strchr(hs, ']');
		if (he == NULL || he[1] != ':') {
			terni_errf(err, errlen, "bad address '%s': expected [IPV6]:PORT", hostport);
			return TERN_EINVAL;
		}
		ps = he + 2;
	} else {
		hs = hostport;
		he = strrchr(hostport, ':');
		if (he == NULL) {
			terni_errf(err, errlen, "bad address '%s': expected HOST:PORT", hostport);
			return TERN_EINVAL;
		}
		if (memchr(hs, ':', (size_t)(he - hs)) != NULL) {
			terni_errf(
			    err, errlen,
			    "bad address '%s': an IPv6 address needs brackets, as in [::1]:PORT",
			    hostport);
			return TERN_EINVAL;
		}
		ps = he + 1;
	}
	if (net_parse_port(ps, &port) != 0) {
		terni_errf(err, errlen, "bad address '%s': port '%s' is not a number in 0..65535",
		           hostport, ps);
		return TERN_EINVAL;
	}
	if ((size_t)(he - hs) >= sizeof(host)) {
		terni_errf(err, errlen, "bad address '%s': host name too long", hostport);
		return TERN_EINVAL;
	}
	memcpy(host, hs, (size_t)(he - hs));
	host[he - hs] = '\0';

	if (hostport[0] != '[' && (host[0] == '\0' || strcmp(host, "*") == 0)) {
		if (!passive) {
			terni_errf(err, errlen, "bad address '%s': no host to connect to",
			           hostport);
			return TERN_EINVAL;
		}
		/* "Any" means IPv4 any: dual-stack [::] fails where IPv6 is
		 * disabled; "[::]:PORT" asks for IPv6 explicitly. */
		struct sockaddr_in *sin = (struct sockaddr_in *)ss;

		sin->sin_family = AF_INET;
		sin->sin_addr.s_addr = htonl(INADDR_ANY);
		sin->sin_port = htons((uint16_t)port);
		*sslen = sizeof(*sin);
		return 0;
	}
	if (hostport[0] == '[') {
		if (uv_ip6_addr(host, port, (struct sockaddr_in6 *)ss) != 0) {
			terni_errf(err, errlen, "bad address '%s': '%s' is not an IPv6 address",
			           hostport, host);
			return TERN_EINVAL;
		}
		*sslen = sizeof(struct sockaddr_in6);
		return 0;
	}
	if (uv_ip4_addr(host, port, (struct sockaddr_in *)ss) == 0) {
		*sslen = sizeof(struct sockaddr_in);
		return 0;
	}

	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
	struct addrinfo *res = NULL;

	rv = getaddrinfo(host, NULL, &hints, &res);
	if (rv != 0 || res == NULL) {
		terni_errf(err, errlen, "bad address '%s': cannot resolve '%s': %s", hostport, host,
		           rv == EAI_SYSTEM ? strerror(errno) : gai_strerror(rv));
		if (res != NULL)
			freeaddrinfo(res);
		return TERN_EINVAL;
	}
	memcpy(ss, res->ai_addr, res->ai_addrlen);
	*sslen = res->ai_addrlen;
	if (ss->ss_family == AF_INET)
		((struct sockaddr_in *)ss)->sin_port = htons((uint16_t)port);
	else if (ss->ss_family == AF_INET6)
		((struct sockaddr_in6 *)ss)->sin6_port = htons((uint16_t)port);
	freeaddrinfo(res);
	return 0;
}

int
tern_net_parse_addr(const char *hostport, struct sockaddr_storage *ss, socklen_t *sslen, char *err,
                    size_t errlen)
{
	return net_resolve(hostport, true, ss, sslen, err, errlen);
}

int
tern_net_listen(const char *hostport, int *fd, char *err, size_t errlen)
{
	struct sockaddr_storage ss;
	socklen_t sslen;
	int s, rv, one = 1;

	*fd = -1;
	if ((rv = net_resolve(hostport, true, &ss, &sslen, err, errlen)) != 0)
		return rv;
	s = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s < 0) {
		rv = -errno;
		terni_errf(err, errlen, "cannot listen on %s: %s", hostport, strerror(-rv));
		return rv;
	}
	/* A restarted destination must be able to rebind while old
	 * connections sit in TIME_WAIT. */
	if (setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
	    bind(s, (struct sockaddr *)&ss, sslen) != 0 || listen(s, NET_BACKLOG) != 0) {
		rv = -errno;
		close(s);
		terni_errf(err, errlen, "cannot listen on %s: %s", hostport, strerror(-rv));
		return rv;
	}
	*fd = s;
	return 0;
}

int
tern_net_local_port(int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);

	if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0)
		return -errno;
	if (ss.ss_family == AF_INET)
		return ntohs(((struct sockaddr_in *)&ss)->sin_port);
	if (ss.ss_family == AF_INET6)
		return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
	return TERN_EINVAL;
}

int
tern_net_accept(int lfd, int timeout_ms, int *fd)
{
	*fd = -1;
	for (;;) {
		int rv = net_poll(lfd, POLLIN, timeout_ms);

		if (rv < 0)
			return rv;
		int s = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);

		if (s >= 0) {
			*fd = s;
			return 0;
		}
		/* The connection went away between poll and accept: wait for
		 * the next one (the timeout restarts; good enough here). */
		if (errno == EINTR || errno == ECONNABORTED || errno == EAGAIN)
			continue;
		return -errno;
	}
}

int
tern_net_connect(const char *hostport, int timeout_ms, int *fd, char *err, size_t errlen)
{
	struct sockaddr_storage ss;
	socklen_t sslen;
	int s, rv, flags;

	*fd = -1;
	if ((rv = net_resolve(hostport, false, &ss, &sslen, err, errlen)) != 0)
		return rv;
	/* Non-blocking only for connect, so that the timeout bounds it. */
	s = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (s < 0) {
		rv = -errno;
		goto fail;
	}
	if (connect(s, (struct sockaddr *)&ss, sslen) != 0) {
		if (errno != EINPROGRESS) {
			rv = -errno;
			goto fail;
		}
		rv = net_poll(s, POLLOUT, timeout_ms);
		if (rv == TERN_ETIMEDOUT) {
			terni_errf(err, errlen, "cannot connect to %s: no answer within %d ms",
			           hostport, timeout_ms);
			close(s);
			return rv;
		}
		if (rv < 0)
			goto fail;

		int soerr = 0;
		socklen_t len = sizeof(soerr);

		if (getsockopt(s, SOL_SOCKET, SO_ERROR, &soerr, &len) != 0) {
			rv = -errno;
			goto fail;
		}
		if (soerr != 0) {
			rv = -soerr;
			goto fail;
		}
	}
	if ((flags = fcntl(s, F_GETFL)) < 0 || fcntl(s, F_SETFL, flags & ~O_NONBLOCK) != 0) {
		rv = -errno;
		goto fail;
	}
	*fd = s;
	return 0;

fail:
	terni_errf(err, errlen, "cannot connect to %s: %s", hostport, strerror(-rv));
	if (s >= 0)
		close(s);
	return rv;
}

int
tern_net_tune(int fd)
{
	int one = 1, sz = NET_SOCKBUF;

	if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) != 0)
		return -errno;
	/* Best effort: the kernel caps them at net.core.[rw]mem_max. */
	(void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
	(void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
	return 0;
}

int
tern_net_set_deadline(int fd, int timeout_ms)
{
	struct timeval tv = {0};

	if (timeout_ms > 0) {
		tv.tv_sec = timeout_ms / 1000;
		tv.tv_usec = (timeout_ms % 1000) * 1000;
	}
	if (setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) != 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) != 0)
		return -errno;
	return 0;
}

int
tern_net_host(const char *hostport, char *host, size_t len)
{
	const char *hs = hostport, *he;

	if (hostport == NULL)
		return TERN_EINVAL;
	if (hostport[0] == '[')
		he = strchr(++hs, ']');
	else
		he = strrchr(hostport, ':');
	if (he == NULL || (size_t)(he - hs) >= len)
		return TERN_EINVAL;
	memcpy(host, hs, (size_t)(he - hs));
	host[he - hs] = '\0';
	return 0;
}

int
tern_net_is_loopback(const char *hostport)
{
	struct sockaddr_storage ss;
	socklen_t sslen;

	if (net_resolve(hostport, true, &ss, &sslen, NULL, 0) != 0)
		return TERN_EINVAL;
	if (ss.ss_family == AF_INET)
		return (ntohl(((struct sockaddr_in *)&ss)->sin_addr.s_addr) >> 24) == 127;
	if (ss.ss_family == AF_INET6)
		return IN6_IS_ADDR_LOOPBACK(&((struct sockaddr_in6 *)&ss)->sin6_addr);
	return 0;
}
