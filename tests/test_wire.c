/*
 * net/: addresses, sockets, frames and the handshake, over real loopback TCP.
 *
 * Every test checks that it leaves as many open fds as it found (WIRE_TEST).
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "messages/msg.h"
#include "net/hello.h"
#include "net/net.h"
#include "net/wire.h"
#include "tern/error.h"

static int
fd_count(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int n = 0;

	cr_assert_not_null(d);
	while ((e = readdir(d)) != NULL)
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

static void
setup(void)
{
	/* A write to a closed peer must be -EPIPE, never a signal. */
	signal(SIGPIPE, SIG_DFL);
}

TestSuite(wire, .init = setup, .timeout = 30);

/* WIRE_TEST is Test() with an fd-leak check around the body (an assertion
 * in .fini is only logged by criterion, it does not fail the test). */
#define WIRE_TEST(name)                                                                            \
	static void name##_body(void);                                                             \
	Test(wire, name)                                                                           \
	{                                                                                          \
		int before = fd_count();                                                           \
		name##_body();                                                                     \
		cr_assert_eq(fd_count(), before, "fd leak: %d open, %d before", fd_count(),        \
		             before);                                                              \
	}                                                                                          \
	static void name##_body(void)

/* The runtime's one clock, in ms. */
static uint64_t
now_ms(void)
{
	return tern_now_ns() / 1000000;
}

/* How late past its deadline a timeout may come: a liveness bound for a
 * loaded host (a deadline must never fire early: those bounds are tight). */
#define LATE_MS 10000

/* mkpair connects a client c to a server s over loopback. */
static void
mkpair(int *c, int *s)
{
	char err[256], addr[64];
	int lfd, port;

	cr_assert_eq(tern_net_listen("127.0.0.1:0", &lfd, err, sizeof(err)), 0, "%s", err);
	port = tern_net_local_port(lfd);
	cr_assert_gt(port, 0);
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
	cr_assert_eq(tern_net_connect(addr, 1000, c, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(tern_net_accept(lfd, 1000, s), 0);
	close(lfd);
}

static void
small_buffers(int fd)
{
	int sz = 4096;

	cr_assert_eq(setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz)), 0);
	cr_assert_eq(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz)), 0);
}

static uint8_t
pattern(uint64_t i, uint64_t seed)
{
	uint64_t x = (i + 1) * 0x9e3779b97f4a7c15ull ^ seed;

	return (uint8_t)(x >> 29 ^ x >> 7);
}

static uint8_t *
patterned(uint64_t len, uint64_t seed)
{
	uint8_t *p = malloc(len ? len : 1);

	cr_assert_not_null(p);
	for (uint64_t i = 0; i < len; i++)
		p[i] = pattern(i, seed);
	return p;
}

/* ---- addresses and sockets ---- */

WIRE_TEST(parse_good_addresses)
{
	struct sockaddr_storage ss;
	socklen_t len;
	char err[256];

	cr_assert_eq(tern_net_parse_addr("127.0.0.1:4444", &ss, &len, err, sizeof(err)), 0);
	cr_assert_eq(ss.ss_family, AF_INET);
	cr_assert_eq(ntohs(((struct sockaddr_in *)&ss)->sin_port), 4444);
	cr_assert_eq(((struct sockaddr_in *)&ss)->sin_addr.s_addr, htonl(INADDR_LOOPBACK));

	cr_assert_eq(tern_net_parse_addr("[::1]:65535", &ss, &len, err, sizeof(err)), 0);
	cr_assert_eq(ss.ss_family, AF_INET6);
	cr_assert_eq(len, sizeof(struct sockaddr_in6));
	cr_assert_eq(ntohs(((struct sockaddr_in6 *)&ss)->sin6_port), 65535);
	cr_assert(IN6_IS_ADDR_LOOPBACK(&((struct sockaddr_in6 *)&ss)->sin6_addr));

	cr_assert_eq(tern_net_parse_addr("localhost:80", &ss, &len, err, sizeof(err)), 0, "%s",
	             err);
	cr_assert(ss.ss_family == AF_INET || ss.ss_family == AF_INET6);
	cr_assert_eq(ntohs(((struct sockaddr_in *)&ss)->sin_port), 80); /* same offset */

	const char *any[] = {"*:0", ":7", "*:65535"};
	for (size_t i = 0; i < sizeof(any) / sizeof(any[0]); i++) {
		cr_assert_eq(tern_net_parse_addr(any[i], &ss, &len, err, sizeof(err)), 0, "%s",
		             any[i]);
		cr_assert_eq(ss.ss_family, AF_INET);
		cr_assert_eq(((struct sockaddr_in *)&ss)->sin_addr.s_addr, htonl(INADDR_ANY));
	}
}

WIRE_TEST(parse_bad_addresses)
{
	const char *bad[] = {"foo",
	                     "",
	                     "127.0.0.1",
	                     "127.0.0.1:",
	                     "127.0.0.1:65536",
	                     "127.0.0.1:-1",
	                     "127.0.0.1:12ab",
	                     "127.0.0.1: 80",
	                     "127.0.0.1:000080",
	                     "[::1:80",
	                     "[::1]80",
	                     "::1:80",
	                     "[not-v6]:80",
	                     "no-such-host.invalid:80"};
	struct sockaddr_storage ss;
	socklen_t len;
	char err[256];

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		cr_assert_eq(tern_net_parse_addr(bad[i], &ss, &len, err, sizeof(err)), TERN_EINVAL,
		             "'%s' accepted", bad[i]);
		cr_assert(strstr(err, "bad address") != NULL, "%s", err);
		cr_assert(strchr(err, '\n') == NULL);
		if (bad[i][0] != '\0')
			cr_assert(strstr(err, bad[i]) != NULL, "'%s' not in '%s'", bad[i], err);
	}
	cr_assert_eq(tern_net_parse_addr("foo", &ss, &len, err, sizeof(err)), TERN_EINVAL);
	cr_assert_str_eq(err, "bad address 'foo': expected HOST:PORT");
}

WIRE_TEST(listen_on_port_in_use)
{
	char err[256], addr[64];
	int l1, l2 = -1;

	cr_assert_eq(tern_net_listen("127.0.0.1:0", &l1, err, sizeof(err)), 0, "%s", err);
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", tern_net_local_port(l1));
	cr_assert_eq(tern_net_listen(addr, &l2, err, sizeof(err)), -EADDRINUSE);
	cr_assert_eq(l2, -1);
	char want[128];
	snprintf(want, sizeof(want), "cannot listen on %s: Address already in use", addr);
	cr_assert_str_eq(err, want);
	close(l1);
}

WIRE_TEST(connect_refused_and_any_host)
{
	char err[256], addr[64], want[128];
	int l, fd = -1;

	cr_assert_eq(tern_net_listen("127.0.0.1:0", &l, err, sizeof(err)), 0, "%s", err);
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", tern_net_local_port(l));
	close(l);
	cr_assert_eq(tern_net_connect(addr, 1000, &fd, err, sizeof(err)), -ECONNREFUSED);
	cr_assert_eq(fd, -1);
	snprintf(want, sizeof(want), "cannot connect to %s: Connection refused", addr);
	cr_assert_str_eq(err, want);

	cr_assert_eq(tern_net_connect("*:80", 1000, &fd, err, sizeof(err)), TERN_EINVAL);
	cr_assert_eq(tern_net_connect("bogus", 1000, &fd, err, sizeof(err)), TERN_EINVAL);
}

WIRE_TEST(connect_times_out_on_full_backlog)
{
	/* A listener with a full accept queue drops SYNs: connect must give
	 * up after its timeout instead of hanging. */
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(sin);
	int l = socket(AF_INET, SOCK_STREAM, 0), fds[8], n = 0, rv = 0;
	char addr[64], err[256];

	cr_assert_geq(l, 0);
	cr_assert_eq(bind(l, (struct sockaddr *)&sin, sizeof(sin)), 0);
	cr_assert_eq(listen(l, 0), 0);
	cr_assert_eq(getsockname(l, (struct sockaddr *)&sin, &len), 0);
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", ntohs(sin.sin_port));
	uint64_t t0 = 0, dt = 0;
	while (n < 8) {
		t0 = now_ms();
		rv = tern_net_connect(addr, 200, &fds[n], err, sizeof(err));
		dt = now_ms() - t0;
		if (rv != 0)
			break;
		n++;
	}
	for (int i = 0; i < n; i++)
		close(fds[i]);
	close(l);
	cr_assert_eq(rv, TERN_ETIMEDOUT, "rv %d after %d connections: %s", rv, n, err);
	cr_assert(dt >= 150 && dt < 200 + LATE_MS, "took %llu ms", (unsigned long long)dt);
	cr_assert(strstr(err, "no answer within 200 ms") != NULL, "%s", err);
}

WIRE_TEST(accept_timeout_and_tune)
{
	char err[256];
	int l, fd = 7777, c, s, v = 0;
	socklen_t len = sizeof(v);

	cr_assert_eq(tern_net_listen("127.0.0.1:0", &l, err, sizeof(err)), 0, "%s", err);
	uint64_t t0 = now_ms();
	cr_assert_eq(tern_net_accept(l, 100, &fd), TERN_ETIMEDOUT);
	cr_assert_geq(now_ms() - t0, 90);
	cr_assert_eq(fd, -1);
	close(l);

	mkpair(&c, &s);
	cr_assert_eq(tern_net_tune(c), 0);
	cr_assert_eq(getsockopt(c, IPPROTO_TCP, TCP_NODELAY, &v, &len), 0);
	cr_assert_neq(v, 0);
	cr_assert(fcntl(c, F_GETFD) & FD_CLOEXEC);
	cr_assert(fcntl(s, F_GETFD) & FD_CLOEXEC);
	cr_assert_eq(fcntl(c, F_GETFL) & O_NONBLOCK, 0, "connected socket left non-blocking");
	close(c);
	close(s);
}

/* ---- frames ---- */

struct sender {
	int fd;
	struct tern_msg m;
	const struct iovec *iov;
	int iovcnt;
	int rv;
	uint64_t bytes;
	atomic_bool done;
	uint8_t *copy; /* non-NULL: tern_wire_send_copied through copylen bytes */
	size_t copylen;
};

static void *
sender_main(void *arg)
{
	struct sender *s = arg;

	s->rv = s->copy != NULL
	            ? tern_wire_send_copied(TERN_PLAIN(s->fd), &s->m, s->iov, s->iovcnt, s->copy,
	                                    s->copylen, &s->bytes)
	            : tern_wire_send(TERN_PLAIN(s->fd), &s->m, s->iov, s->iovcnt, &s->bytes);
	atomic_store(&s->done, true);
	return NULL;
}

/* roundtrip sends one W_PAGES frame of nruns ranges covering len bytes of
 * payload, from a thread, and checks everything on the other side; with
 * copylen, copied through a buffer of that many bytes (the same frame must
 * arrive). */
static void
roundtrip_via(uint64_t len, uint32_t nruns, size_t copylen)
{
	uint8_t *src = patterned(len, len), *dst = malloc(len + 1);
	uint8_t *pairs = calloc(nruns, 16);
	struct tern_wire_rx *rx = calloc(1, sizeof(*rx));
	struct sender snd = {0};
	struct iovec iov[3];
	struct tern_msg m;
	uint64_t plen = 0;
	pthread_t t;
	int c, s;

	cr_assert(dst && rx && pairs);
	for (uint32_t i = 0; i < nruns; i++)
		tern_ranges_put(pairs, i, 0x100000ull * i, i + 1 == nruns ? len : 0);
	mkpair(&c, &s);
	/* Three pieces of uneven size, the first possibly empty. */
	iov[0] = (struct iovec){src, len / 3};
	iov[1] = (struct iovec){src + len / 3, len / 2 - len / 3};
	iov[2] = (struct iovec){src + len / 2, len - len / 2};
	snd.fd = c;
	tern_msg_init(&snd.m, TERN_MSG_W_PAGES);
	snd.m.u.w_pages.chunk = 42;
	snd.m.u.w_pages.ranges = (struct tern_ranges){pairs, nruns};
	snd.iov = iov;
	snd.iovcnt = 3;
	snd.copylen = copylen;
	if (copylen != 0)
		cr_assert_not_null(snd.copy = malloc(copylen));
	cr_assert_eq(pthread_create(&t, NULL, sender_main, &snd), 0);

	cr_assert_eq(tern_wire_recv_header(TERN_PLAIN(s), rx, &m, &plen), 0);
	cr_assert_eq(m.type, TERN_MSG_W_PAGES);
	cr_assert_eq(m.u.w_pages.chunk, 42);
	cr_assert_eq(m.u.w_pages.ranges.count, nruns);
	for (uint32_t i = 0; i < nruns; i++) {
		uint64_t gpa, l;

		tern_ranges_get(&m.u.w_pages.ranges, i, &gpa, &l);
		cr_assert_eq(gpa, 0x100000ull * i);
		cr_assert_eq(l, i + 1 == nruns ? len : 0);
	}
	cr_assert_neq(m.seq, 0, "seq not filled in");
	cr_assert_neq(m.time_ns, 0, "time_ns not filled in");
	cr_assert_eq(plen, len);
	memset(dst, 0xee, len + 1);
	cr_assert_eq(tern_wire_recv_exact(TERN_PLAIN(s), dst, plen), 0);
	cr_assert_eq(pthread_join(t, NULL), 0);
	cr_assert_eq(snd.rv, 0, "%s", tern_strerror(snd.rv));
	cr_assert_eq(snd.bytes, rx->bytes + len, "sent %llu, received %llu",
	             (unsigned long long)snd.bytes, (unsigned long long)(rx->bytes + len));
	cr_assert(memcmp(src, dst, len) == 0, "payload of %llu bytes differs",
	          (unsigned long long)len);
	cr_assert_eq(dst[len], 0xee, "wrote past the end");

	/* The stream is in sync: an orderly close is the next thing. */
	close(c);
	cr_assert_eq(tern_wire_recv_header(TERN_PLAIN(s), rx, &m, &plen), TERN_ECLOSED);
	close(s);
	free(src);
	free(dst);
	free(pairs);
	free(rx);
	free(snd.copy);
}

static void
roundtrip(uint64_t len, uint32_t nruns)
{
	roundtrip_via(len, nruns, 0);
}

/* Through a buffer smaller than a piece, than the payload, and larger. */
WIRE_TEST(roundtrip_copied)
{
	roundtrip_via(0, 1, 4096);
	roundtrip_via(1, 1, 4096);
	roundtrip_via(12345, 3, 4096);
	roundtrip_via(1 << 20, TERN_CHUNK_MAX_RUNS, 512 << 10);
	roundtrip_via(4096, 2, 1 << 20);
}

WIRE_TEST(roundtrip_empty)
{
	roundtrip(0, 1);
}

WIRE_TEST(roundtrip_1)
{
	roundtrip(1, 1);
}

WIRE_TEST(roundtrip_4096)
{
	roundtrip(4096, 2);
}

WIRE_TEST(roundtrip_1mib)
{
	roundtrip(1 << 20, TERN_CHUNK_MAX_RUNS);
}

WIRE_TEST(roundtrip_payload_max)
{
	roundtrip(TERN_WIRE_PAYLOAD_MAX, 3);
}

WIRE_TEST(roundtrip_large_header)
{
	/* Past the stack buffer, up to the header limit. */
	roundtrip(12345, (TERN_WIRE_HEADER_MAX - 64) / 16);
}

WIRE_TEST(send_rejects_a_header_over_the_limit)
{
	uint32_t nruns = TERN_WIRE_HEADER_MAX / 16 + 1;
	void *pairs = calloc(nruns, 16);
	struct tern_msg m;
	int c, s;

	mkpair(&c, &s);
	tern_msg_init(&m, TERN_MSG_W_PAGES);
	m.u.w_pages.ranges = (struct tern_ranges){pairs, nruns};
	cr_assert_eq(tern_wire_send(TERN_PLAIN(c), &m, NULL, 0, NULL), TERN_EMSG);
	close(c);
	close(s);
	free(pairs);
}

static void
on_usr1(int sig)
{
}

struct kicker {
	pthread_t target;
	struct sender *snd;
};

static void *
kicker_main(void *arg)
{
	struct kicker *k = arg;

	while (!atomic_load(&k->snd->done)) {
		pthread_kill(k->target, SIGUSR1);
		usleep(300);
	}
	return NULL;
}

/* partial sends a frame of many uneven iovecs through small socket buffers
 * to a slow reader, so sendmsg returns short counts (signals, deadline with
 * progress) and the iovec bookkeeping has to be right. */
static void
partial(bool signals, int deadline_ms)
{
	enum { NIOV = 300 };
	uint64_t len = 0;
	struct iovec iov[NIOV];
	uint8_t *src, *dst;
	struct tern_wire_rx *rx = calloc(1, sizeof(*rx));
	struct sender snd = {0};
	struct kicker k;
	struct tern_msg m;
	uint64_t plen;
	pthread_t t, kt;
	int c, s;

	for (int i = 0; i < NIOV; i++)
		len += (uint64_t)(i % 7 == 0 ? 0 : (i * 1237) % 9001);
	src = patterned(len, 7);
	dst = malloc(len);
	cr_assert(dst && rx);
	uint64_t off = 0;
	for (int i = 0; i < NIOV; i++) {
		size_t l = i % 7 == 0 ? 0 : (size_t)(i * 1237) % 9001;

		iov[i] = (struct iovec){src + off, l};
		off += l;
	}

	mkpair(&c, &s);
	/* A small send buffer makes the sender wait for the reader; the
	 * receive buffer stays moderate, because loopback's 64 KiB segments
	 * through a tiny window crawl at delayed-ack pace. */
	int sz = 16384, rsz = 262144;
	cr_assert_eq(setsockopt(c, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz)), 0);
	cr_assert_eq(setsockopt(s, SOL_SOCKET, SO_RCVBUF, &rsz, sizeof(rsz)), 0);
	cr_assert_eq(tern_net_tune(c), 0);
	cr_assert_eq(setsockopt(c, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz)), 0);
	/* A broken sender must fail the test, not hang it. */
	cr_assert_eq(tern_net_set_deadline(s, 5000), 0);
	if (deadline_ms > 0)
		cr_assert_eq(tern_net_set_deadline(c, deadline_ms), 0);
	if (signals) {
		struct sigaction sa = {.sa_handler = on_usr1}; /* no SA_RESTART */

		cr_assert_eq(sigaction(SIGUSR1, &sa, NULL), 0);
	}
	snd.fd = c;
	tern_msg_init(&snd.m, TERN_MSG_W_STATE);
	snd.m.u.w_state.len = len;
	snd.iov = iov;
	snd.iovcnt = NIOV;
	cr_assert_eq(pthread_create(&t, NULL, sender_main, &snd), 0);
	if (signals) {
		k.target = t;
		k.snd = &snd;
		cr_assert_eq(pthread_create(&kt, NULL, kicker_main, &k), 0);
	}

	cr_assert_eq(tern_wire_recv_header(TERN_PLAIN(s), rx, &m, &plen), 0);
	cr_assert_eq(m.type, TERN_MSG_W_STATE);
	cr_assert_eq(plen, len);
	for (uint64_t got = 0; got < len;) {
		uint64_t n = len - got < 8192 ? len - got : 8192;

		cr_assert_eq(tern_wire_recv_exact(TERN_PLAIN(s), dst + got, n), 0);
		got += n;
		usleep(deadline_ms > 0 ? 3000 : 200);
	}
	cr_assert_eq(pthread_join(t, NULL), 0);
	if (signals)
		cr_assert_eq(pthread_join(kt, NULL), 0);
	cr_assert_eq(snd.rv, 0, "%s", tern_strerror(snd.rv));
	cr_assert(memcmp(src, dst, len) == 0);
	close(c);
	close(s);
	free(src);
	free(dst);
	free(rx);
}

WIRE_TEST(partial_writes_signals)
{
	partial(true, 0);
}

WIRE_TEST(partial_writes_deadline)
{
	partial(false, 200);
}

WIRE_TEST(discard_keeps_the_stream_in_sync)
{
	struct tern_wire_rx *rx = calloc(1, sizeof(*rx));
	uint8_t *big = patterned(100000, 1);
	struct iovec iov = {big, 100000};
	struct tern_msg m;
	uint64_t plen;
	int c, s;

	mkpair(&c, &s);
	tern_msg_init(&m, TERN_MSG_W_STATE);
	/* 100 kB fit in loopback socket buffers: no thread needed. */
	cr_assert_eq(tern_wire_send(TERN_PLAIN(c), &m, &iov, 1, NULL), 0);
	cr_assert_eq(tern_wire_send_result(TERN_PLAIN(c), TERN_MSG_W_CONFIG, TERN_EVERIFY,
	                                   "digests differ", 0xabcdef),
	             0);
	cr_assert_eq(tern_wire_recv_header(TERN_PLAIN(s), rx, &m, &plen), 0);
	cr_assert_eq(plen, 100000);
	cr_assert_eq(tern_wire_discard(TERN_PLAIN(s), plen), 0);
	cr_assert_eq(tern_wire_recv_header(TERN_PLAIN(s), rx, &m, &plen), 0);
	cr_assert_eq(m.type, TERN_MSG_W_RESULT);
	cr_assert_eq(plen, 0);
	cr_assert_eq(m.u.w_result.step, TERN_MSG_W_CONFIG);
	cr_assert_eq(m.u.w_result.status, TERN_EVERIFY);
	cr_assert_str_eq(m.u.w_result.why, "digests differ");
	cr_assert_eq(m.u.w_result.value, 0xabcdef);
	close(c);
	close(s);
	free(big);
	free(rx);
}

WIRE_TEST(send_rejects_what_the_receiver_would)
{
	struct tern_msg m;
	struct iovec iov = {&m, TERN_WIRE_PAYLOAD_MAX + 1}; /* never read */
	int c, s;

	mkpair(&c, &s);
	tern_msg_init(&m, TERN_MSG_PING);
	cr_assert_eq(tern_wire_send(TERN_PLAIN(c), &m, NULL, 0, NULL), TERN_EMSG);
	tern_msg_init(&m, TERN_MSG_W_STATE);
	cr_assert_eq(tern_wire_send(TERN_PLAIN(c), &m, &iov, 1, NULL), TERN_EMSG);
	close(c);
	close(s);
}

/* ---- garbage on the receiving side ---- */

static void
put_prefix(uint8_t *p, uint32_t magic, uint32_t hlen, uint64_t plen)
{
	for (int i = 0; i < 4; i++) {
		p[i] = (uint8_t)(magic >> (24 - 8 * i));
		p[4 + i] = (uint8_t)(hlen >> (24 - 8 * i));
	}
	for (int i = 0; i < 8; i++)
		p[8 + i] = (uint8_t)(plen >> (56 - 8 * i));
}

/* garbage writes raw bytes (then EOF if asked) and returns what
 * recv_header, then recv_exact of the payload, make of them. */
static int
garbage(const void *bytes, size_t n, bool eof)
{
	struct tern_wire_rx *rx = calloc(1, sizeof(*rx));
	struct tern_msg m;
	uint64_t plen = 0;
	int c, s, rv;

	cr_assert_not_null(rx);
	mkpair(&c, &s);
	if (n > 0)
		cr_assert_eq(write(c, bytes, n), (ssize_t)n);
	if (eof)
		cr_assert_eq(shutdown(c, SHUT_WR), 0);
	/* A wrong verdict must not hang the test. */
	cr_assert_eq(tern_net_set_deadline(s, 2000), 0);
	rv = tern_wire_recv_header(TERN_PLAIN(s), rx, &m, &plen);
	if (rv == 0) {
		uint8_t *p = malloc(plen + 1);

		cr_assert_not_null(p);
		rv = tern_wire_recv_exact(TERN_PLAIN(s), p, plen);
		free(p);
		if (rv == 0)
			rv = 1; /* a whole frame: not garbage */
	} else {
		cr_assert_eq(plen, 0);
	}
	close(c);
	close(s);
	free(rx);
	return rv;
}

/* frame builds prefix + encoded m + payload_have bytes, announcing plen. */
static size_t
frame(uint8_t *buf, const struct tern_msg *m, uint64_t plen, size_t payload_have)
{
	size_t hlen = 0;

	cr_assert_eq(tern_msg_encode(m, buf + 16, 4096, &hlen), 0);
	put_prefix(buf, TERN_WIRE_FRAME_MAGIC, (uint32_t)hlen, plen);
	memset(buf + 16 + hlen, 0x5a, payload_have);
	return 16 + hlen + payload_have;
}

WIRE_TEST(garbage_frames)
{
	uint8_t buf[8192];
	struct tern_msg m;
	size_t n;

	tern_msg_init(&m, TERN_MSG_W_ACK);
	m.u.w_ack.chunk = 3;
	n = frame(buf, &m, 10, 10);
	cr_assert_eq(garbage(buf, n, true), 1, "a good frame was refused");

	cr_assert_eq(garbage(NULL, 0, true), TERN_ECLOSED);
	cr_assert_eq(garbage(buf, 7, true), TERN_EPROTO, "EOF inside the prefix");
	cr_assert_eq(garbage(buf, 20, true), TERN_EPROTO, "EOF inside the header");
	cr_assert_eq(garbage(buf, n - 1, true), TERN_EPROTO, "EOF inside the payload");

	put_prefix(buf, 0x54524e47, 4, 0);
	cr_assert_eq(garbage(buf, 32, false), TERN_EPROTO, "wrong magic");
	put_prefix(buf, TERN_WIRE_FRAME_MAGIC, 0, 0);
	cr_assert_eq(garbage(buf, 32, false), TERN_EPROTO, "header_len 0");
	put_prefix(buf, TERN_WIRE_FRAME_MAGIC, TERN_WIRE_HEADER_MAX + 1, 0);
	cr_assert_eq(garbage(buf, 32, false), TERN_EPROTO, "header_len over the limit");
	put_prefix(buf, TERN_WIRE_FRAME_MAGIC, 0xffffffffu, 0);
	cr_assert_eq(garbage(buf, 32, false), TERN_EPROTO, "header_len 4G");
	n = frame(buf, &m, TERN_WIRE_PAYLOAD_MAX + 1, 0);
	cr_assert_eq(garbage(buf, n, false), TERN_EPROTO, "payload over the limit");
	n = frame(buf, &m, UINT64_MAX, 0);
	cr_assert_eq(garbage(buf, n, false), TERN_EPROTO, "payload 2^64-1");

	put_prefix(buf, TERN_WIRE_FRAME_MAGIC, 8, 0);
	memset(buf + 16, 0xc1, 8); /* 0xc1 is never used in msgpack */
	cr_assert_eq(garbage(buf, 24, false), TERN_EMSG, "undecodable header");

	tern_msg_init(&m, TERN_MSG_PING);
	m.u.ping.value = 1;
	n = frame(buf, &m, 0, 0);
	cr_assert_eq(garbage(buf, n, false), TERN_EMSG, "non-wire type");

	tern_msg_init(&m, TERN_MSG_W_ACK);
	n = frame(buf, &m, 0, 0);
	buf[n++] = 0x00; /* one byte of trailing garbage inside the header */
	buf[7] = (uint8_t)(buf[7] + 1);
	cr_assert_eq(garbage(buf, n, false), TERN_EMSG, "trailing bytes in the header");
}

WIRE_TEST(recv_deadline)
{
	struct tern_wire_rx *rx = calloc(1, sizeof(*rx));
	struct tern_msg m;
	uint64_t plen;
	int c, s;

	mkpair(&c, &s);
	cr_assert_eq(tern_net_set_deadline(s, 100), 0);
	uint64_t t0 = now_ms();
	cr_assert_eq(tern_wire_recv_header(TERN_PLAIN(s), rx, &m, &plen), TERN_ETIMEDOUT);
	uint64_t dt = now_ms() - t0;
	cr_assert(dt >= 90 && dt < 100 + LATE_MS, "took %llu ms", (unsigned long long)dt);
	cr_assert_eq(tern_net_set_deadline(s, 0), 0);
	close(c);
	close(s);
	free(rx);
}

WIRE_TEST(send_deadline_when_the_peer_stops_reading)
{
	uint64_t len = 8 << 20, bytes = 0;
	uint8_t *big = patterned(len, 3);
	struct iovec iov = {big, len};
	struct tern_msg m;
	int c, s;

	mkpair(&c, &s);
	small_buffers(c);
	small_buffers(s);
	cr_assert_eq(tern_net_set_deadline(c, 200), 0);
	tern_msg_init(&m, TERN_MSG_W_STATE);
	uint64_t t0 = now_ms();
	cr_assert_eq(tern_wire_send(TERN_PLAIN(c), &m, &iov, 1, &bytes), TERN_ETIMEDOUT);
	uint64_t dt = now_ms() - t0;
	cr_assert(dt >= 190 && dt < 200 + LATE_MS, "took %llu ms", (unsigned long long)dt);
	cr_assert(bytes > 0 && bytes < len, "bytes %llu", (unsigned long long)bytes);
	close(c);
	close(s);
	free(big);
}

WIRE_TEST(closed_peer_is_epipe_not_sigpipe)
{
	uint8_t *buf = patterned(65536, 4);
	struct iovec iov = {buf, 65536};
	struct tern_msg m;
	int c, s, rv = 0;

	mkpair(&c, &s);
	close(s);
	tern_msg_init(&m, TERN_MSG_W_STATE);
	for (int i = 0; i < 100 && rv == 0; i++)
		rv = tern_wire_send(TERN_PLAIN(c), &m, &iov, 1, NULL);
	cr_assert(rv == -EPIPE || rv == -ECONNRESET, "rv %d (%s)", rv, tern_err_name(rv));
	close(c);
	free(buf);
}

/* ---- handshake ---- */

struct dest {
	int fd;
	const uint8_t *key; /* the migration's, for a data connection */
	uint8_t key_out[TERN_WIRE_KEY_LEN];
	int timeout_ms;
	int rv;
	struct tern_msg_w_hello hello;
	char why[256];
};

static void *
dest_main(void *arg)
{
	struct dest *d = arg;

	d->rv = tern_wire_accept_hello(TERN_PLAIN(d->fd), d->key, d->timeout_ms, &d->hello,
	                               d->key_out, d->why, sizeof(d->why));
	return NULL;
}

static void
assert_no_deadline(int fd)
{
	struct timeval tv;
	socklen_t len = sizeof(tv);

	cr_assert_eq(getsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, &len), 0);
	cr_assert(tv.tv_sec == 0 && tv.tv_usec == 0, "receive deadline left behind");
	len = sizeof(tv);
	cr_assert_eq(getsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, &len), 0);
	cr_assert(tv.tv_sec == 0 && tv.tv_usec == 0, "send deadline left behind");
}

/* handshake runs tern_wire_hello against tern_wire_accept_hello. */
static const uint8_t key_a[TERN_WIRE_KEY_LEN] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
static const uint8_t key_b[TERN_WIRE_KEY_LEN] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 0, 0, 0, 0, 0, 1};

static int
handshake(const uint8_t *dest_key, const uint8_t *src_key, uint32_t conn, uint32_t nconns,
          struct dest *d, char *why, uint64_t *peer_time)
{
	pthread_t t;
	int c, s, rv;

	mkpair(&c, &s);
	memset(d, 0, sizeof(*d));
	d->fd = s;
	d->key = dest_key;
	d->timeout_ms = 2000;
	cr_assert_eq(pthread_create(&t, NULL, dest_main, d), 0);
	rv = tern_wire_hello(TERN_PLAIN(c), "mig-7", conn, nconns, src_key, 2000, why, 256,
	                     peer_time);
	cr_assert_eq(pthread_join(t, NULL), 0);
	assert_no_deadline(c);
	assert_no_deadline(s);
	close(c);
	close(s);
	return rv;
}

WIRE_TEST(handshake_ok)
{
	struct dest d;
	char why[256] = "x";
	uint64_t peer = 0, t0 = tern_now_ns();

	cr_assert_eq(handshake(key_a, key_a, 2, 4, &d, why, &peer), 0, "%s", why);
	cr_assert_eq(d.rv, 0, "%s", d.why);
	cr_assert_str_eq(why, "");
	cr_assert_eq(d.hello.magic, TERN_WIRE_HELLO_MAGIC);
	cr_assert_eq(d.hello.version, TERN_WIRE_VERSION);
	cr_assert_str_eq(d.hello.migration, "mig-7");
	cr_assert_eq(d.hello.conn, 2);
	cr_assert_eq(d.hello.nconns, 4);
	cr_assert(peer >= t0 && peer <= tern_now_ns(), "peer clock %llu", (unsigned long long)peer);

	/* Connection 0 brings the key itself; the destination learns it. */
	cr_assert_eq(handshake(NULL, key_b, 0, 1, &d, why, NULL), 0, "%s", why);
	cr_assert_eq(d.rv, 0);
	cr_assert_eq(memcmp(d.key_out, key_b, sizeof(key_b)), 0);
}

/* A data connection is taken only with the migration's key: another key
 * (one bit off), or none known here, is refused. */
WIRE_TEST(handshake_binding_mismatch)
{
	const uint8_t *dest_keys[] = {key_b, NULL};
	struct dest d;
	char why[256];

	for (size_t i = 0; i < sizeof(dest_keys) / sizeof(dest_keys[0]); i++) {
		cr_assert_eq(handshake(dest_keys[i], key_a, 1, 2, &d, why, NULL), TERN_EAUTH,
		             "case %zu: %s", i, why);
		cr_assert_eq(d.rv, TERN_EAUTH);
		cr_assert_str_eq(why, d.why);
	}
	cr_assert(strstr(why, "no migration") != NULL, "%s", why);
	cr_assert_eq(handshake(key_b, key_a, 1, 2, &d, why, NULL), TERN_EAUTH);
	cr_assert(strstr(why, "not bound") != NULL, "%s", why);
}

WIRE_TEST(handshake_bad_connection_index)
{
	struct dest d;
	char why[256];

	cr_assert_eq(handshake(NULL, key_a, 4, 4, &d, why, NULL), TERN_EPROTO);
	cr_assert_eq(d.rv, TERN_EPROTO);
	cr_assert(strstr(why, "connection index 4 out of 4") != NULL, "%s", why);
}

WIRE_TEST(handshake_version_mismatch)
{
	struct tern_wire_rx *rx = calloc(1, sizeof(*rx));
	struct tern_msg m;
	struct dest d = {.timeout_ms = 2000};
	uint64_t plen;
	pthread_t t;
	int c, s;

	mkpair(&c, &s);
	d.fd = s;
	cr_assert_eq(pthread_create(&t, NULL, dest_main, &d), 0);
	tern_msg_init(&m, TERN_MSG_W_HELLO);
	m.u.w_hello.magic = TERN_WIRE_HELLO_MAGIC;
	m.u.w_hello.version = 99;
	m.u.w_hello.nconns = 1;
	cr_assert_eq(tern_wire_send(TERN_PLAIN(c), &m, NULL, 0, NULL), 0);
	cr_assert_eq(tern_wire_recv_header(TERN_PLAIN(c), rx, &m, &plen), 0);
	cr_assert_eq(pthread_join(t, NULL), 0);

	cr_assert_eq(d.rv, TERN_EVERSION);
	cr_assert_eq(m.type, TERN_MSG_W_HELLO_ACK);
	cr_assert_eq(m.u.w_hello_ack.status, TERN_EVERSION);
	cr_assert_eq(m.u.w_hello_ack.version, TERN_WIRE_VERSION);
	cr_assert_str_eq(m.u.w_hello_ack.why,
	                 "source speaks protocol version 99, this destination speaks 3");
	cr_assert_str_eq(d.why, m.u.w_hello_ack.why);
	/* After the answer the destination has shut its side. */
	cr_assert_eq(tern_wire_recv_header(TERN_PLAIN(c), rx, &m, &plen), TERN_ECLOSED);
	close(c);
	close(s);
	free(rx);
}

/* A hello refused (wrong token) learns nothing about the destination host:
 * no clock in the answer, constant envelope time and sequence; an accepted
 * one gets the clock (the source merges traces with it). */
WIRE_TEST(refused_hello_carries_no_clock)
{
	struct tern_wire_rx *rx = calloc(1, sizeof(*rx));

	for (int i = 0; i < 2; i++) {
		struct tern_msg m;
		struct dest d = {.timeout_ms = 2000};
		uint64_t plen;
		pthread_t t;
		int c, s;

		mkpair(&c, &s);
		d.fd = s;
		cr_assert_eq(pthread_create(&t, NULL, dest_main, &d), 0);
		tern_msg_init(&m, TERN_MSG_W_HELLO);
		m.u.w_hello.magic = TERN_WIRE_HELLO_MAGIC;
		m.u.w_hello.version = TERN_WIRE_VERSION;
		m.u.w_hello.nconns = 1;
		if (i == 0) {
			/* No key, no binding: refused. */
			cr_assert_eq(tern_wire_send(TERN_PLAIN(c), &m, NULL, 0, NULL), 0);
			cr_assert_eq(tern_wire_recv_header(TERN_PLAIN(c), rx, &m, &plen), 0);
			cr_assert_eq(m.type, TERN_MSG_W_HELLO_ACK);
			cr_assert_eq(m.u.w_hello_ack.status, TERN_EAUTH);
			cr_assert_eq(m.u.w_hello_ack.time_ns, 0);
			cr_assert_eq(m.time_ns, 1);
			cr_assert_eq(m.seq, 1);
		} else {
			uint64_t peer = 0;
			char why[256];

			cr_assert_eq(tern_wire_hello(TERN_PLAIN(c), "m", 0, 1, key_a, 2000, why,
			                             sizeof(why), &peer),
			             0, "%s", why);
			cr_assert_gt(peer, 1);
		}
		cr_assert_eq(pthread_join(t, NULL), 0);
		close(c);
		close(s);
	}
	free(rx);
}

/* Strings from the peer are printed and logged: terminal escapes and other
 * control or non-ASCII bytes arrive as '?'. */
WIRE_TEST(peer_strings_sanitised)
{
	struct tern_wire_rx *rx = calloc(1, sizeof(*rx));
	struct tern_msg m;
	uint64_t plen;
	int c, s;

	mkpair(&c, &s);
	tern_msg_init(&m, TERN_MSG_W_ABORT);
	snprintf(m.u.w_abort.why, sizeof(m.u.w_abort.why),
	         "ok \x1b]0;pwned\x07\r\n\xc2\x9b"
	         "2J end");
	cr_assert_eq(tern_wire_send(TERN_PLAIN(c), &m, NULL, 0, NULL), 0);
	tern_msg_init(&m, TERN_MSG_W_HELLO);
	snprintf(m.u.w_hello.migration, sizeof(m.u.w_hello.migration), "mig\x1b[2J");
	cr_assert_eq(tern_wire_send(TERN_PLAIN(c), &m, NULL, 0, NULL), 0);
	cr_assert_eq(tern_wire_recv_header(TERN_PLAIN(s), rx, &m, &plen), 0);
	cr_assert_str_eq(m.u.w_abort.why, "ok ?]0;pwned?????2J end");
	cr_assert_eq(tern_wire_recv_header(TERN_PLAIN(s), rx, &m, &plen), 0);
	cr_assert_str_eq(m.u.w_hello.migration, "mig?[2J");
	close(c);
	close(s);
	free(rx);
}

/* A destination of another version answering tern_wire_hello: its status
 * and reason reach the caller. */
static void *
old_dest_main(void *arg)
{
	struct dest *d = arg;
	struct tern_wire_rx *rx = calloc(1, sizeof(*rx));
	struct tern_msg m;
	uint64_t plen;

	d->rv = tern_wire_recv_header(TERN_PLAIN(d->fd), rx, &m, &plen);
	if (d->rv == 0) {
		d->hello = m.u.w_hello;
		tern_msg_init(&m, TERN_MSG_W_HELLO_ACK);
		m.u.w_hello_ack.version = 2;
		m.u.w_hello_ack.status = TERN_EVERSION;
		snprintf(m.u.w_hello_ack.why, TERN_STR_MAX, "I speak 2");
		d->rv = tern_wire_send(TERN_PLAIN(d->fd), &m, NULL, 0, NULL);
	}
	free(rx);
	return NULL;
}

WIRE_TEST(handshake_peer_status_reaches_source)
{
	struct dest d = {0};
	char why[256];
	pthread_t t;
	int c, s;

	mkpair(&c, &s);
	d.fd = s;
	cr_assert_eq(pthread_create(&t, NULL, old_dest_main, &d), 0);
	cr_assert_eq(tern_wire_hello(TERN_PLAIN(c), "m", 0, 1, key_a, 2000, why, sizeof(why), NULL),
	             TERN_EVERSION);
	cr_assert_eq(pthread_join(t, NULL), 0);
	cr_assert_eq(d.rv, 0);
	cr_assert_eq(d.hello.version, TERN_WIRE_VERSION);
	cr_assert_str_eq(why, "I speak 2");
	close(c);
	close(s);
}

WIRE_TEST(destination_answers_http_garbage)
{
	const char http[] = "GET / HTTP/1.1\r\n\r\n";
	struct tern_wire_rx *rx = calloc(1, sizeof(*rx));
	struct tern_msg m;
	uint64_t plen;
	char why[256];
	int c, s;

	mkpair(&c, &s);
	cr_assert_eq(write(c, http, strlen(http)), (ssize_t)strlen(http));
	uint64_t t0 = now_ms();
	/* Answered at once, not after waiting out the 20 s for more. */
	cr_assert_eq(tern_wire_accept_hello(TERN_PLAIN(s), NULL, 20000,
	                                    &(struct tern_msg_w_hello){0}, NULL, why, sizeof(why)),
	             TERN_EPROTO);
	cr_assert_lt(now_ms() - t0, LATE_MS, "destination waited for more garbage");
	cr_assert(strstr(why, "bad frame magic") != NULL, "%s", why);
	/* Even garbage gets an answer: a tern of another version learns why. */
	cr_assert_eq(tern_wire_recv_header(TERN_PLAIN(c), rx, &m, &plen), 0);
	cr_assert_eq(m.type, TERN_MSG_W_HELLO_ACK);
	cr_assert_eq(m.u.w_hello_ack.status, TERN_EPROTO);
	cr_assert_str_eq(m.u.w_hello_ack.why, why);
	assert_no_deadline(s);
	close(c);
	close(s);
	free(rx);
}

WIRE_TEST(destination_times_out_on_a_silent_source)
{
	char why[256];
	int c, s;

	mkpair(&c, &s);
	cr_assert_eq(write(c, "TRNF", 4), 4); /* a prefix that never completes */
	uint64_t t0 = now_ms();
	cr_assert_eq(tern_wire_accept_hello(TERN_PLAIN(s), NULL, 200, &(struct tern_msg_w_hello){0},
	                                    NULL, why, sizeof(why)),
	             TERN_ETIMEDOUT);
	/* Never early; how late is the host's business (a liveness bound). */
	uint64_t dt = now_ms() - t0;
	cr_assert(dt >= 190 && dt < 200 + LATE_MS, "took %llu ms", (unsigned long long)dt);
	cr_assert(strstr(why, "no hello before the handshake deadline") != NULL, "%s", why);
	assert_no_deadline(s);
	close(c);
	close(s);
}

WIRE_TEST(source_times_out_on_a_silent_destination)
{
	char why[256];
	int c, s;

	mkpair(&c, &s);
	uint64_t t0 = now_ms();
	cr_assert_eq(tern_wire_hello(TERN_PLAIN(c), "m", 0, 1, key_a, 200, why, sizeof(why), NULL),
	             TERN_ETIMEDOUT);
	uint64_t dt = now_ms() - t0;
	cr_assert(dt >= 190 && dt < 200 + LATE_MS, "took %llu ms", (unsigned long long)dt);
	cr_assert(strstr(why, "200 ms") != NULL, "%s", why);
	assert_no_deadline(c);
	close(c);
	close(s);
}

WIRE_TEST(source_meets_something_else)
{
	const char ssh[] = "SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n";
	char why[256];
	int c, s;

	mkpair(&c, &s);
	cr_assert_eq(write(s, ssh, strlen(ssh)), (ssize_t)strlen(ssh));
	cr_assert_eq(tern_wire_hello(TERN_PLAIN(c), "m", 0, 1, key_a, 2000, why, sizeof(why), NULL),
	             TERN_EPROTO);
	cr_assert(strstr(why, "peer is not a tern destination (bad frame magic") != NULL, "%s",
	          why);
	close(c);
	close(s);

	mkpair(&c, &s);
	close(s);
	cr_assert_eq(tern_wire_hello(TERN_PLAIN(c), "m", 0, 1, key_a, 2000, why, sizeof(why), NULL),
	             TERN_EPROTO);
	cr_assert_str_eq(why, "peer closed the connection during the handshake");
	close(c);
}
