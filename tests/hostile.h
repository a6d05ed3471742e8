/*
 * Test helper for test_hostile.c: a scripted source speaking the wire format
 * through net/wire.h against a real `tern receive --guest simvm:mem=16M`.
 * Header-only (static), as proc.h, so the test stays one executable.
 */
#ifndef TERN_TESTS_HOSTILE_H
#define TERN_TESTS_HOSTILE_H

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "kvm/guest.h"
#include "kvm/spec.h"
#include "messages/msg.h"
#include "net/hello.h"
#include "net/net.h"
#include "net/wire.h"
#include "tern/error.h"
#include "tests/proc.h"

#define HOSTILE_MEM (16ull << 20)
#define HOSTILE_GUEST "simvm:mem=16M,vcpus=1"
#define PAGE 4096ull
#define H_ANY 1 /* h_connect: whatever the hello answers */

/* One destination process and the scripted source's connections. */
/* The scripted source's migration key: every connection is bound with it,
 * as a real source's are. */
static const uint8_t hostile_key[TERN_WIRE_KEY_LEN] = {0x68, 0x6f, 0x73, 0x74};

struct hostile {
	struct proc r;
	char to[64];
	int fd[4];
	int n;
	struct tern_wire_rx *rx;
};

static inline void
h_connect(struct hostile *h, uint32_t conn, uint32_t nconns, int *fd, int want)
{
	char why[256] = "";
	cr_assert_eq(tern_net_connect(h->to, 10000, fd, why, sizeof(why)), 0, "%s", why);
	int rc = tern_wire_hello(TERN_PLAIN(*fd), "hostile", conn, nconns, hostile_key, 10000, why,
	                         sizeof(why), NULL);
	if (want != H_ANY)
		cr_assert_eq(rc, want, "hello %u/%u: %s (%s)", conn, nconns, tern_strerror(rc),
		             why);
}

/* Starts the destination with extra arguments (NULL-terminated) and opens
 * nconns handshaken connections. */
static inline void
h_start_with(struct hostile *h, uint32_t nconns, char *const extra[])
{
	memset(h, 0, sizeof(*h));
	for (int i = 0; i < 4; i++)
		h->fd[i] = -1;
	h->rx = malloc(sizeof(*h->rx));
	cr_assert_not_null(h->rx);
	char *base[] = {tern_cli(), "receive", "--listen",         "127.0.0.1:0", "--ready-fd",
	                "3",        "--json",  "--accept-timeout", "60s",         NULL};
	char *argv[32];
	args_join(argv, 32, base, extra);
	proc_listen(&h->r, argv, NULL, h->to, sizeof(h->to));
	h->n = (int)nconns;
	for (uint32_t i = 0; i < nconns; i++)
		h_connect(h, i, nconns, &h->fd[i], 0);
}

/* Starts the destination (its own 16 MiB guest, a 2 s I/O timeout) and
 * opens nconns handshaken connections. */
static inline void
h_start(struct hostile *h, uint32_t nconns)
{
	char *extra[] = {"--guest", HOSTILE_GUEST,          "--io-timeout",
	                 "2s",      "--exit-after-handoff", NULL};
	h_start_with(h, nconns, extra);
}

static inline void
h_send(int fd, struct tern_msg *m, const void *payload, size_t len)
{
	struct iovec iov = {(void *)payload, len};
	int rc = tern_wire_send(TERN_PLAIN(fd), m, &iov, len ? 1 : 0, NULL);
	cr_assert_eq(rc, 0, "sending %s: %s", tern_msg_name(m->type), tern_strerror(rc));
}

/* Sends raw bytes (a frame the encoders refuse to build). */
static inline void
h_raw(int fd, const void *buf, size_t len)
{
	cr_assert_eq(send(fd, buf, len, MSG_NOSIGNAL), (ssize_t)len);
}

static inline void
h_prefix(uint8_t pre[16], uint32_t magic, uint32_t hlen, uint64_t plen)
{
	for (int i = 0; i < 4; i++) {
		pre[i] = (uint8_t)(magic >> (24 - 8 * i));
		pre[4 + i] = (uint8_t)(hlen >> (24 - 8 * i));
	}
	for (int i = 0; i < 8; i++)
		pre[8 + i] = (uint8_t)(plen >> (56 - 8 * i));
}

/* Reads the next answer (acks skipped): 0 and *m, or the receive error. */
static inline int
h_answer(struct hostile *h, int fd, struct tern_msg *m)
{
	for (;;) {
		uint64_t plen = 0;
		int rc = tern_wire_recv_header(TERN_PLAIN(fd), h->rx, m, &plen);
		if (rc == 0 && plen > 0)
			rc = tern_wire_discard(TERN_PLAIN(fd), plen);
		if (rc != 0 || m->type != TERN_MSG_W_ACK)
			return rc;
	}
}

static inline void
h_expect_ok(struct hostile *h, int fd, uint32_t step)
{
	struct tern_msg m;
	int rc = h_answer(h, fd, &m);
	cr_assert_eq(rc, 0, "waiting for %s's result: %s", tern_msg_name(step), tern_strerror(rc));
	cr_assert_eq(m.type, TERN_MSG_W_RESULT, "got %s", tern_msg_name(m.type));
	cr_assert_eq(m.u.w_result.step, step);
	cr_assert_eq(m.u.w_result.status, 0, "%s refused: %s", tern_msg_name(step),
	             m.u.w_result.why);
}

/* The peer is told why: a W_ABORT or an error W_RESULT whose reason holds
 * needle (or, needle NULL, at least the connection ends). */
static inline void
h_expect_refused(struct hostile *h, int fd, const char *needle)
{
	struct tern_msg m;
	int rc = h_answer(h, fd, &m);
	if (needle == NULL)
		return;
	cr_assert_eq(rc, 0, "no reason sent: %s", tern_strerror(rc));
	const char *why = m.type == TERN_MSG_W_ABORT ? m.u.w_abort.why : m.u.w_result.why;
	cr_assert(m.type == TERN_MSG_W_ABORT ||
	              (m.type == TERN_MSG_W_RESULT && m.u.w_result.status != 0),
	          "got %s", tern_msg_name(m.type));
	cr_assert_not_null(strstr(why, needle), "peer told '%s', expected '%s'", why, needle);
}

/* The destination ends by itself with code and a reason holding needle. */
static inline void
h_end(struct hostile *h, int code, const char *needle)
{
	for (int i = 0; i < 4; i++)
		if (h->fd[i] >= 0)
			close(h->fd[i]);
	cr_assert_eq(proc_wait(&h->r, 60000), 0, "the destination hung: %s", h->r.errbuf);
	cr_assert_eq(proc_exit_code(&h->r), code, "exit %d: %s", proc_exit_code(&h->r),
	             h->r.errbuf);
	if (needle != NULL)
		cr_assert_not_null(strstr(h->r.errbuf, needle), "expected '%s' in: %s", needle,
		                   h->r.errbuf);
	cr_assert_null(strstr(h->r.errbuf, "Sanitizer"), "%s", h->r.errbuf);
	free(h->rx);
}

/* W_CONFIG's layout: one region of mem bytes at gpa 0. */
static inline void
h_layout(struct tern_msg *m, uint64_t mem)
{
	static uint8_t pair[16];
	tern_ranges_put(pair, 0, 0, mem);
	m->u.w_config.mem_size = mem;
	m->u.w_config.layout = (struct tern_ranges){pair, 1};
}

static inline void
h_config(struct hostile *h)
{
	struct tern_msg m;
	tern_msg_init(&m, TERN_MSG_W_CONFIG);
	h_layout(&m, HOSTILE_MEM);
	m.u.w_config.page_size = (uint32_t)PAGE;
	m.u.w_config.vcpus = 1;
	snprintf(m.u.w_config.guest, sizeof(m.u.w_config.guest), "%s", HOSTILE_GUEST);
	h_send(h->fd[0], &m, NULL, 0);
	h_expect_ok(h, h->fd[0], TERN_MSG_W_CONFIG);
}

/* One W_PAGES frame: data ranges (payload from data, or a pattern) and zero
 * ranges; plen as announced (the sum of data lengths unless forced). */
static inline void
h_pages(int fd, const uint64_t *r, uint32_t nr, const uint64_t *z, uint32_t nz, uint64_t plen)
{
	static uint8_t rp[1024 * 16], zp[1024 * 16];
	struct tern_msg m;
	tern_msg_init(&m, TERN_MSG_W_PAGES);
	m.u.w_pages.chunk = 1;
	for (uint32_t i = 0; i < nr; i++)
		tern_ranges_put(rp, i, r[2 * i], r[2 * i + 1]);
	for (uint32_t i = 0; i < nz; i++)
		tern_ranges_put(zp, i, z[2 * i], z[2 * i + 1]);
	m.u.w_pages.ranges = (struct tern_ranges){rp, nr};
	m.u.w_pages.zeros = (struct tern_ranges){zp, nz};
	uint8_t *data = malloc(plen ? plen : 1);
	cr_assert_not_null(data);
	for (uint64_t i = 0; i < plen; i++)
		data[i] = (uint8_t)((i % PAGE) * 31 + 7); /* every page alike */
	h_send(fd, &m, data, plen);
	free(data);
}

static inline void
h_page(int fd, uint64_t gpa)
{
	uint64_t r[2] = {gpa, PAGE};
	h_pages(fd, r, 1, NULL, 0, PAGE);
}

/* Waits for the acknowledgement of the frame just sent on fd. */
static inline void
h_ack(struct hostile *h, int fd)
{
	struct tern_msg m;
	uint64_t plen = 0;
	int rc = tern_wire_recv_header(TERN_PLAIN(fd), h->rx, &m, &plen);
	cr_assert_eq(rc, 0, "waiting for an ack: %s", tern_strerror(rc));
	cr_assert_eq(m.type, TERN_MSG_W_ACK, "got %s", tern_msg_name(m.type));
}

/* A valid state: a local guest of the same shape, paused and saved. */
static inline size_t
h_state_blob(uint8_t *buf, size_t cap)
{
	struct tern_guest_config cfg;
	struct tern_guest *g = NULL;
	char why[256];
	size_t len = 0;
	cr_assert_eq(tern_guest_spec_parse(HOSTILE_GUEST, &cfg, why, sizeof(why)), 0, "%s", why);
	cr_assert_eq(tern_guest_create_provided(&g, &cfg, TERN_GUEST_SOURCE, why, sizeof(why)), 0,
	             "%s", why);
	cr_assert_eq(g->ops->pause(g), 0);
	cr_assert_eq(g->ops->state_save(g, buf, cap, &len), 0, "%s", g->why);
	tern_guest_destroy(g);
	return len;
}

static inline void
h_state(struct hostile *h, int want_ok)
{
	uint8_t blob[4096];
	size_t len = h_state_blob(blob, sizeof(blob));
	struct tern_msg m;
	tern_msg_init(&m, TERN_MSG_W_STATE);
	m.u.w_state.len = len;
	h_send(h->fd[0], &m, blob, len);
	if (want_ok)
		h_expect_ok(h, h->fd[0], TERN_MSG_W_STATE);
}

/* The digest of a 16 MiB guest holding only what h_page(gpa) wrote. */
static inline uint64_t
h_digest_of(const uint64_t *pages, int n)
{
	struct tern_guest_config cfg;
	struct tern_guest *g = NULL;
	char why[256];
	uint64_t d = 0;
	cr_assert_eq(tern_guest_spec_parse(HOSTILE_GUEST, &cfg, why, sizeof(why)), 0, "%s", why);
	cr_assert_eq(tern_guest_create_provided(&g, &cfg, TERN_GUEST_DESTINATION, why, sizeof(why)),
	             0, "%s", why);
	for (int i = 0; i < n; i++) {
		uint8_t *p = tern_guest_hva(g, pages[i]);
		for (uint64_t j = 0; j < PAGE; j++)
			p[j] = (uint8_t)(j * 31 + 7);
	}
	cr_assert_eq(tern_guest_digest(g, &d), 0);
	tern_guest_destroy(g);
	return d;
}

static inline void
h_simple(struct hostile *h, uint32_t type, uint64_t digest)
{
	struct tern_msg m;
	tern_msg_init(&m, type);
	if (type == TERN_MSG_W_DIGEST)
		m.u.w_digest.digest = digest;
	h_send(h->fd[0], &m, NULL, 0);
}

#endif /* TERN_TESTS_HOSTILE_H */
