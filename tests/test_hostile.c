/*
 * A hostile source against a real `tern receive --guest simvm:mem=16M`: a
 * scripted peer speaking the wire format through net/wire.h sends each
 * malformed or out-of-phase frame.  Every case checks that the peer gets a
 * reason (W_ABORT, an error W_RESULT, or a refused hello), that the
 * destination ends by itself with exit 1 and a one-line reason (never a
 * signal, never a hang: generous bounds only), and, where pages were sent
 * before the violation, that none after it were counted.  A valid script
 * migrating first proves the script right, so a refusal is the frame's.
 */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <signal.h>

#include "hostile.h"

static void
setup(void)
{
	/* A write to a destination that hung up must be an error, not a signal. */
	signal(SIGPIPE, SIG_IGN);
}

TestSuite(hostile, .init = setup, .timeout = 240);

/* ---- the script itself is right ---- */

Test(hostile, valid_script_migrates)
{
	struct hostile h;
	h_start(&h, 2);
	h_config(&h);
	/* Each frame acknowledged before the next, as a source's final pass
	 * is before it sends the state.  Runs and zero ranges cross bitmap
	 * words (pages 63/64), so the word-at-a-time walks are checked by the
	 * digest: cleared pages must read zero, the others keep their data. */
	uint64_t run[2] = {60 * PAGE, 11 * PAGE}; /* pages 60..70 */
	h_pages(h.fd[0], run, 1, NULL, 0, 11 * PAGE);
	h_ack(&h, h.fd[0]);
	h_page(h.fd[1], 5 * PAGE);
	h_ack(&h, h.fd[1]);
	h_page(h.fd[1], HOSTILE_MEM - PAGE);
	h_ack(&h, h.fd[1]);
	uint64_t z[4] = {62 * PAGE, 4 * PAGE, 0, 8 * PAGE}; /* 62..65, 0..7 */
	h_pages(h.fd[0], NULL, 0, z, 2, 0);
	h_ack(&h, h.fd[0]);
	h_page(h.fd[0], 7 * PAGE);
	h_ack(&h, h.fd[0]);
	uint64_t left[] = {7 * PAGE,  60 * PAGE, 61 * PAGE, 66 * PAGE,         67 * PAGE,
	                   68 * PAGE, 69 * PAGE, 70 * PAGE, HOSTILE_MEM - PAGE};
	h_state(&h, 1);
	h_simple(&h, TERN_MSG_W_DIGEST, h_digest_of(left, 9));
	h_expect_ok(&h, h.fd[0], TERN_MSG_W_DIGEST);
	h_simple(&h, TERN_MSG_W_COMPLETE, 0);
	h_expect_ok(&h, h.fd[0], TERN_MSG_W_COMPLETE);
	h_end(&h, 0, NULL);
	cr_assert_eq(json_num(h.r.outbuf, "pages_sent"), 14, "%s", h.r.outbuf);
}

/* The tables below run as parameterised tests over their indexes (a
 * parameter holds no pointers: the worker may be another process). */
static struct criterion_test_params
case_indexes(int *idx, size_t n)
{
	for (size_t i = 0; i < n; i++)
		idx[i] = (int)i;
	return cr_make_param_array(int, idx, n);
}

#define HOSTILE_CASES(test, table)                                                                 \
	ParameterizedTestParameters(hostile, test)                                                 \
	{                                                                                          \
		static int idx[sizeof(table) / sizeof(table[0])];                                  \
		return case_indexes(idx, sizeof(idx) / sizeof(idx[0]));                            \
	}

/* ---- one bad frame after the configuration: a W_PAGES frame with a bad
 * range list, or a frame prefix (magic, header length, payload length) out
 * of bounds ---- */

#define OUTSIDE "page range outside guest memory"

static const struct frame_case {
	const char *name;
	bool prefix; /* a bare prefix (magic, hlen, plen), else W_PAGES (r, z, plen) */
	uint32_t magic, hlen;
	uint64_t r[2], z[2]; /* one page run and one zero range at most */
	uint32_t nr, nz;
	uint64_t plen;
	const char *needle;
} frame_cases[] = {
    {.name = "range outside the guest",
     .r = {HOSTILE_MEM, PAGE},
     .nr = 1,
     .plen = PAGE,
     .needle = OUTSIDE},
    {.name = "range straddling the end",
     .r = {HOSTILE_MEM - PAGE, 2 * PAGE},
     .nr = 1,
     .plen = 2 * PAGE,
     .needle = OUTSIDE},
    /* gpa + len wraps to a small number inside the guest. */
    {.name = "range overflowing",
     .r = {UINT64_MAX & ~(PAGE - 1), 2 * PAGE},
     .nr = 1,
     .plen = 2 * PAGE,
     .needle = OUTSIDE},
    {.name = "zero range overflowing",
     .z = {PAGE, UINT64_MAX - PAGE + 1},
     .nz = 1,
     .needle = OUTSIDE},
    {.name = "empty range", .r = {0, 0}, .nr = 1, .needle = OUTSIDE},
    {.name = "no range at all", .needle = "bad range count"},
    {.name = "payload length mismatch",
     .r = {0, PAGE},
     .nr = 1,
     .plen = 2 * PAGE,
     .needle = "page frame length mismatch"},
    {.name = "header too long",
     .prefix = true,
     .magic = TERN_WIRE_FRAME_MAGIC,
     .hlen = TERN_WIRE_HEADER_MAX + 1,
     .needle = "frame header length"},
    {.name = "header empty",
     .prefix = true,
     .magic = TERN_WIRE_FRAME_MAGIC,
     .needle = "frame header length"},
    {.name = "payload too long",
     .prefix = true,
     .magic = TERN_WIRE_FRAME_MAGIC,
     .hlen = 8,
     .plen = TERN_WIRE_PAYLOAD_MAX + 1,
     .needle = "payload length"},
    {.name = "bad frame magic",
     .prefix = true,
     .magic = 0x48545450u /* "HTTP" */,
     .hlen = 8,
     .needle = "bad frame magic"},
};

HOSTILE_CASES(bad_frame, frame_cases)

ParameterizedTest(int *i, hostile, bad_frame)
{
	const struct frame_case *c = &frame_cases[*i];
	struct hostile h;
	cr_log_info("bad frame: %s", c->name);
	h_start(&h, 1);
	h_config(&h);
	if (c->prefix) {
		uint8_t pre[16];
		h_prefix(pre, c->magic, c->hlen, c->plen);
		h_raw(h.fd[0], pre, sizeof(pre));
	} else {
		h_pages(h.fd[0], c->nr ? c->r : NULL, c->nr, c->nz ? c->z : NULL, c->nz, c->plen);
	}
	h_expect_refused(&h, h.fd[0], c->needle);
	h_end(&h, 1, c->needle);
}

Test(hostile, undecodable_header)
{
	struct hostile h;
	uint8_t frame[16 + 8];
	h_start(&h, 1);
	h_prefix(frame, TERN_WIRE_FRAME_MAGIC, 8, 0);
	memset(frame + 16, 0xc1, 8); /* 0xc1: never used in msgpack */
	h_raw(h.fd[0], frame, sizeof(frame));
	h_expect_refused(&h, h.fd[0], "undecodable frame header");
	h_end(&h, 1, "malformed frame");
}

Test(hostile, control_payload_too_large)
{
	struct hostile h;
	h_start(&h, 1);
	h_config(&h);
	struct tern_msg m;
	tern_msg_init(&m, TERN_MSG_W_STATE);
	m.u.w_state.len = 2u << 20;
	uint8_t *big = calloc(1, 2u << 20);
	cr_assert_not_null(big);
	struct iovec iov = {big, 2u << 20};
	(void)tern_wire_send(TERN_PLAIN(h.fd[0]), &m, &iov, 1, NULL); /* may be cut short */
	free(big);
	h_expect_refused(&h, h.fd[0], "control payload too large");
	h_end(&h, 1, "control payload too large");
}

/* ---- phases ---- */

/* One valid prefix of the script (steps), then a frame the destination must
 * refuse where it stands (its phase, the connection, or a type a source never
 * sends): refused, and no page counted. */
enum phase_step { PH_CONFIG = 1, PH_STATE = 2, PH_DIGEST = 4 };

static const struct phase_case {
	const char *name;
	unsigned steps;     /* enum phase_step, run in that order */
	uint32_t conns, on; /* connections (0: 1), and the one the frame goes on */
	uint32_t bad;       /* the frame: W_PAGES is one page, W_STATE the state */
	const char *refused, *why;
	int counted; /* the destination's summary has pages_sent (0) */
} phase_cases[] = {
    {.name = "pages before config",
     .bad = TERN_MSG_W_PAGES,
     .refused = "page data before the configuration",
     .why = "page data before the configuration"},
    {.name = "state before config",
     .bad = TERN_MSG_W_STATE,
     .refused = "W_STATE in phase listening",
     .why = "protocol violation: W_STATE in phase listening"},
    {.name = "config twice",
     .steps = PH_CONFIG,
     .bad = TERN_MSG_W_CONFIG,
     .refused = "already configured",
     .why = "second configuration"},
    {.name = "state twice",
     .steps = PH_CONFIG | PH_STATE,
     .bad = TERN_MSG_W_STATE,
     .refused = "W_STATE in phase state",
     .why = "protocol violation: W_STATE in phase state"},
    {.name = "pages after digest",
     .steps = PH_CONFIG | PH_STATE | PH_DIGEST,
     .bad = TERN_MSG_W_PAGES,
     .refused = "page data after the end of memory",
     .why = "page data after the end of memory",
     .counted = 1},
    {.name = "digest before state",
     .steps = PH_CONFIG,
     .bad = TERN_MSG_W_DIGEST,
     .refused = "W_DIGEST in phase configured",
     .why = "protocol violation: W_DIGEST in phase configured"},
    {.name = "digest twice",
     .steps = PH_CONFIG | PH_STATE | PH_DIGEST,
     .bad = TERN_MSG_W_DIGEST,
     .refused = "W_DIGEST in phase verified",
     .why = "protocol violation: W_DIGEST in phase verified"},
    {.name = "complete before state",
     .steps = PH_CONFIG,
     .bad = TERN_MSG_W_COMPLETE,
     .refused = "W_COMPLETE in phase configured",
     .why = "protocol violation: W_COMPLETE in phase configured"},
    {.name = "control frame on a data connection",
     .steps = PH_CONFIG,
     .conns = 2,
     .on = 1,
     .bad = TERN_MSG_W_COMPLETE,
     .refused = "control frame on a data connection",
     .why = "protocol violation: connection 1: control frame on a data connection"},
    {.name = "fence before config",
     .conns = 2,
     .bad = TERN_MSG_W_FENCE,
     .refused = "W_FENCE in phase listening",
     .why = "protocol violation: W_FENCE in phase listening"},
    {.name = "fence of the control connection",
     .steps = PH_CONFIG,
     .conns = 2,
     .bad = TERN_MSG_W_FENCE,
     .refused = "cannot fence connection 0",
     .why = "cannot fence connection 0 of 2"},
    {.name = "a frame type a source never sends",
     .bad = TERN_MSG_W_ACK,
     .refused = "unexpected frame type",
     .why = "unexpected frame type"},
    {.name = "a page request (a destination's frame) to the destination",
     .steps = PH_CONFIG,
     .bad = TERN_MSG_W_PAGE_REQ,
     .refused = "unexpected frame type",
     .why = "unexpected frame type"},
    {.name = "requested pages without a postcopy switch",
     .steps = PH_CONFIG,
     .bad = TERN_MSG_W_URGENT,
     .refused = "requested pages without a postcopy switch",
     .why = "requested pages without a postcopy switch"},
    {.name = "postcopy after the state",
     .steps = PH_CONFIG | PH_STATE,
     .bad = TERN_MSG_W_POSTCOPY,
     .refused = "W_POSTCOPY in phase state",
     .why = "protocol violation: W_POSTCOPY in phase state"},
    {.name = "an empty stale set slice",
     .steps = PH_CONFIG,
     .bad = TERN_MSG_W_POSTCOPY,
     .refused = "stale set slice of 0 pages",
     .why = "protocol violation: stale set slice of 0 pages"},
};

HOSTILE_CASES(misplaced_frame, phase_cases)

ParameterizedTest(int *i, hostile, misplaced_frame)
{
	const struct phase_case *c = &phase_cases[*i];
	struct hostile h;
	struct tern_msg m;
	uint64_t d = h_digest_of(NULL, 0);
	cr_log_info("misplaced frame: %s", c->name);
	h_start(&h, c->conns ? c->conns : 1);
	if (c->steps & PH_CONFIG)
		h_config(&h);
	if (c->steps & PH_STATE)
		h_state(&h, 1);
	if (c->steps & PH_DIGEST) {
		h_simple(&h, TERN_MSG_W_DIGEST, d);
		h_expect_ok(&h, h.fd[0], TERN_MSG_W_DIGEST);
	}
	if (c->bad == TERN_MSG_W_PAGES) {
		h_page(h.fd[c->on], 0);
	} else if (c->bad == TERN_MSG_W_STATE) {
		h_state(&h, 0);
	} else {
		tern_msg_init(&m, c->bad);
		if (c->bad == TERN_MSG_W_DIGEST)
			m.u.w_digest.digest = d;
		if (c->bad == TERN_MSG_W_CONFIG) {
			h_layout(&m, HOSTILE_MEM);
			m.u.w_config.page_size = (uint32_t)PAGE;
		}
		h_send(h.fd[c->on], &m, NULL, 0);
	}
	h_expect_refused(&h, h.fd[c->on], c->refused);
	h_end(&h, 1, c->why);
	if (c->counted)
		cr_assert_eq(json_num(h.r.outbuf, "pages_sent"), 0, "%s", h.r.outbuf);
}

Test(hostile, state_length_mismatch)
{
	struct hostile h;
	uint8_t blob[4096];
	size_t len = h_state_blob(blob, sizeof(blob));
	struct tern_msg m;
	h_start(&h, 1);
	h_config(&h);
	tern_msg_init(&m, TERN_MSG_W_STATE);
	m.u.w_state.len = len + 1;
	h_send(h.fd[0], &m, blob, len);
	h_expect_refused(&h, h.fd[0], "state length mismatch");
	h_end(&h, 1, "protocol violation: W_STATE announces");
}

/* Pages after the end of memory on the control connection: refused, and
 * not counted (nothing written).  (On a data connection they are never
 * read: pages_after_state_on_a_data_connection.) */
Test(hostile, pages_after_state)
{
	struct hostile h;
	h_start(&h, 2);
	h_config(&h);
	h_page(h.fd[0], 0);
	h_ack(&h, h.fd[0]);
	h_state(&h, 1);
	h_page(h.fd[0], PAGE);
	h_expect_refused(&h, h.fd[0], "page data after the end of memory");
	h_end(&h, 1, "protocol violation: connection");
	cr_assert_eq(json_num(h.r.outbuf, "pages_sent"), 1, "%s", h.r.outbuf);
}

/* A page frame the destination may no longer read: sent without caring
 * whether the socket still takes it. */
static void
h_stale_page(int fd, uint64_t gpa)
{
	struct tern_msg m;
	static uint8_t run[16], data[PAGE];
	struct iovec iov = {data, PAGE};
	memset(data, 0xab, sizeof(data));
	tern_msg_init(&m, TERN_MSG_W_PAGES);
	m.u.w_pages.chunk = 2;
	tern_ranges_put(run, 0, gpa, PAGE);
	m.u.w_pages.ranges = (struct tern_ranges){run, 1};
	(void)tern_wire_send(TERN_PLAIN(fd), &m, &iov, 1, NULL);
}

/* At the end of memory the destination retires its data connections
 * (joined before the guest can resume): a page sent there afterwards is
 * never read, and the migration completes without it. */
Test(hostile, pages_after_state_on_a_data_connection)
{
	struct hostile h;
	struct tern_msg m;
	h_start(&h, 2);
	h_config(&h);
	h_page(h.fd[1], 0);
	h_ack(&h, h.fd[1]);
	h_state(&h, 1);
	h_stale_page(h.fd[1], PAGE);
	cr_assert_neq(h_answer(&h, h.fd[1], &m), 0, "a retired connection answered %s",
	              tern_msg_name(m.type));
	h_simple(&h, TERN_MSG_W_COMPLETE, 0);
	h_expect_ok(&h, h.fd[0], TERN_MSG_W_COMPLETE);
	h_end(&h, 0, NULL);
	cr_assert_eq(json_num(h.r.outbuf, "pages_sent"), 1, "%s", h.r.outbuf);
}

/* A large state comes in parts, in order: a part that skips ahead is
 * refused before anything is kept. */
Test(hostile, state_part_out_of_order)
{
	struct hostile h;
	struct tern_msg m;
	uint8_t *part = calloc(1, TERN_STATE_PART);
	cr_assert_not_null(part);
	h_start(&h, 1);
	h_config(&h);
	tern_msg_init(&m, TERN_MSG_W_STATE_PART);
	m.u.w_state_part.offset = TERN_STATE_PART;
	h_send(h.fd[0], &m, part, TERN_STATE_PART);
	free(part);
	h_expect_refused(&h, h.fd[0], "state part of");
	h_end(&h, 1, "protocol violation: state part");
}

/* ---- fencing a data connection the source gave up on ---- */

static void
h_fence(struct hostile *h, uint32_t conn)
{
	struct tern_msg m;
	tern_msg_init(&m, TERN_MSG_W_FENCE);
	m.u.w_fence.conn = conn;
	h_send(h->fd[0], &m, NULL, 0);
}

/* Once fenced, a connection writes nothing more, whatever it still
 * delivers: the digest counts only the page sent before the fence. */
Test(hostile, fenced_connection_writes_nothing_more)
{
	struct hostile h;
	h_start(&h, 2);
	h_config(&h);
	h_page(h.fd[1], 3 * PAGE);
	h_ack(&h, h.fd[1]);
	h_fence(&h, 1);
	h_expect_ok(&h, h.fd[0], TERN_MSG_W_FENCE);
	/* A stale frame after the fence: the destination shut the socket,
	 * so the send may fail; either way nothing may land. */
	h_stale_page(h.fd[1], 5 * PAGE);
	uint64_t pages[1] = {3 * PAGE};
	h_state(&h, 1);
	h_simple(&h, TERN_MSG_W_DIGEST, h_digest_of(pages, 1));
	h_expect_ok(&h, h.fd[0], TERN_MSG_W_DIGEST);
	h_simple(&h, TERN_MSG_W_COMPLETE, 0);
	h_expect_ok(&h, h.fd[0], TERN_MSG_W_COMPLETE);
	h_end(&h, 0, NULL);
	cr_assert_eq(json_num(h.r.outbuf, "pages_sent"), 1, "%s", h.r.outbuf);
}

/* After the handoff the guest runs here: a second W_COMPLETE (and pages
 * behind it) are never acted on, and the destination ends as it should. */
Test(hostile, complete_twice_then_pages)
{
	struct hostile h;
	h_start(&h, 1);
	h_config(&h);
	h_state(&h, 1);
	h_simple(&h, TERN_MSG_W_COMPLETE, 0);
	h_expect_ok(&h, h.fd[0], TERN_MSG_W_COMPLETE);
	struct tern_msg m;
	tern_msg_init(&m, TERN_MSG_W_COMPLETE);
	(void)tern_wire_send(TERN_PLAIN(h.fd[0]), &m, NULL, 0, NULL);
	uint64_t r[2] = {0, PAGE};
	uint8_t page[PAGE] = {1};
	tern_msg_init(&m, TERN_MSG_W_PAGES);
	uint8_t rp[16];
	tern_ranges_put(rp, 0, r[0], r[1]);
	m.u.w_pages.ranges = (struct tern_ranges){rp, 1};
	struct iovec iov = {page, PAGE};
	(void)tern_wire_send(TERN_PLAIN(h.fd[0]), &m, &iov, 1, NULL);
	int rc = h_answer(&h, h.fd[0], &m);
	cr_assert(rc != 0 || m.type != TERN_MSG_W_RESULT || m.u.w_result.status != 0,
	          "a second W_COMPLETE was accepted");
	h_end(&h, 0, NULL);
	cr_assert_eq(json_num(h.r.outbuf, "pages_sent"), 0, "%s", h.r.outbuf);
}

/* ---- limits: a destination without a guest of its own builds none larger
 * than its caps allow, and refuses before allocating ---- */

static void
over_cap(const char *spec, uint64_t mem, char *const caps[], const char *needle)
{
	struct hostile h;
	char *extra[8] = {"--io-timeout", "2s"};
	for (int i = 0; caps[i] != NULL && i < 4; i++)
		extra[2 + i] = caps[i];
	h_start_with(&h, 1, extra);
	struct tern_msg m;
	tern_msg_init(&m, TERN_MSG_W_CONFIG);
	h_layout(&m, mem);
	m.u.w_config.page_size = (uint32_t)PAGE;
	snprintf(m.u.w_config.guest, sizeof(m.u.w_config.guest), "%s", spec);
	h_send(h.fd[0], &m, NULL, 0);
	h_expect_refused(&h, h.fd[0], needle);
	h_end(&h, 1, needle);
}

Test(hostile, memory_over_the_cap)
{
	char *caps[] = {"--max-mem", "64M", NULL};
	over_cap("simvm:mem=1G", 1ull << 30, caps, "allows at most 67108864 (--max-mem)");
}

Test(hostile, vcpus_over_the_cap)
{
	char *caps[] = {"--max-vcpus", "2", NULL};
	over_cap("simvm:mem=16M,vcpus=8", 16ull << 20, caps,
	         "8 vCPUs, this destination allows at most 2");
}

Test(hostile, within_the_caps)
{
	struct hostile h;
	char *extra[] = {"--io-timeout",         "2s", "--max-mem", "16M", "--max-vcpus", "1",
	                 "--exit-after-handoff", NULL};
	h_start_with(&h, 1, extra);
	h_config(&h);
	h_state(&h, 1);
	h_simple(&h, TERN_MSG_W_COMPLETE, 0);
	h_expect_ok(&h, h.fd[0], TERN_MSG_W_COMPLETE);
	h_end(&h, 0, NULL);
}

/* ---- what the destination prints ---- */

/* A reason from the peer reaches the terminal without its escapes. */
Test(hostile, abort_reason_with_terminal_escapes)
{
	struct hostile h;
	h_start(&h, 1);
	h_config(&h);
	struct tern_msg m;
	tern_msg_init(&m, TERN_MSG_W_ABORT);
	m.u.w_abort.code = TERN_EPEER;
	snprintf(m.u.w_abort.why, sizeof(m.u.w_abort.why), "bye\x1b[2J\x1b]0;owned\x07\nfake line");
	h_send(h.fd[0], &m, NULL, 0);
	h_expect_ok(&h, h.fd[0], TERN_MSG_W_ABORT);
	h_end(&h, 1, "the source aborted the migration: bye?[2J?]0;owned??fake line");
	cr_assert_null(strchr(h.r.errbuf, '\x1b'), "%s", h.r.errbuf);
}

/* ---- connections ---- */

/* A hello refused (want) and logged (needle): the destination keeps
 * waiting for a real source, and ends on SIGINT. */
static void
h_refused_hello(uint32_t conn, uint32_t nconns, int want, const char *needle)
{
	struct hostile h;
	int fd = -1;
	h_start(&h, 0);
	h_connect(&h, conn, nconns, &fd, want);
	close(fd);
	cr_assert_eq(proc_wait_stderr(&h.r, needle, 30000), 0, "%s", h.r.errbuf);
	kill(h.r.pid, SIGINT);
	h_end(&h, 1, "stopped while waiting for a migration");
}

/* An index outside the announced count is refused at the hello. */
Test(hostile, connection_index_out_of_range)
{
	h_refused_hello(3, 2, TERN_EPROTO, "connection index 3 out of 2");
}

/* A second connection 0 is refused and dropped; the migration it tried to
 * join goes on waiting for its real connection 1 (which never comes here:
 * it gives up after its liveness bound, saying so). */
Test(hostile, duplicate_connection_index)
{
	struct hostile h;
	h_start(&h, 0);
	h.n = 2;
	h_connect(&h, 0, 2, &h.fd[0], 0);
	h_connect(&h, 0, 2, &h.fd[1], TERN_EPEER);
	cr_assert_eq(proc_wait_stderr(&h.r, "not another", 30000), 0, "%s", h.r.errbuf);
	h_end(&h, 1, "the source opened 1 of 2 connections");
}

/* A first connection asking for more connections than any destination
 * takes is refused. */
Test(hostile, connection_count_over_the_limit)
{
	h_refused_hello(0, 100000, TERN_EPROTO, "100000 connections asked");
}

/* A second source connecting mid-migration gets nothing and disturbs
 * nothing: the first one migrates. */
Test(hostile, second_source_mid_migration)
{
	struct hostile h;
	char why[256] = "";
	h_start(&h, 1);
	h_config(&h);
	h_page(h.fd[0], 0);
	h_ack(&h, h.fd[0]);
	/* The listener closed once the migration's connections were in: the
	 * intruder is refused by the kernel, or (had it raced the last
	 * connection in) at its hello. */
	int fd = -1;
	if (tern_net_connect(h.to, 10000, &fd, why, sizeof(why)) == 0) {
		int rc = tern_wire_hello(TERN_PLAIN(fd), "intruder", 0, 1, hostile_key, 1000, why,
		                         sizeof(why), NULL);
		cr_assert_neq(rc, 0, "a second source was let in");
		close(fd);
	}
	uint64_t pages[1] = {0};
	h_state(&h, 1);
	h_simple(&h, TERN_MSG_W_DIGEST, h_digest_of(pages, 1));
	h_expect_ok(&h, h.fd[0], TERN_MSG_W_DIGEST);
	h_simple(&h, TERN_MSG_W_COMPLETE, 0);
	h_expect_ok(&h, h.fd[0], TERN_MSG_W_COMPLETE);
	h_end(&h, 0, NULL);
}

/* Bytes dribbled slower than any frame should take, a header (1) or a
 * payload (0): the frame deadline is absolute (3 x --io-timeout), so the
 * destination gives up on its own. */
ParameterizedTestParameters(hostile, trickled)
{
	static int header[] = {1, 0};
	return cr_make_param_array(int, header, sizeof(header) / sizeof(header[0]));
}

ParameterizedTest(int *pheader, hostile, trickled)
{
	uint8_t frame[16 + PAGE + 512];
	size_t len = 0;
	int header = *pheader;
	struct hostile h;
	h_start(&h, 1);
	h_config(&h);
	if (header) {
		h_prefix(frame, TERN_WIRE_FRAME_MAGIC, 200, 0);
		memset(frame + 16, 0x90, 200);
		len = 216;
	} else {
		/* A whole header in one go, then its page a byte at a time. */
		struct tern_msg m;
		uint8_t rp[16], hdr[512];
		size_t hlen = 0;
		tern_msg_init(&m, TERN_MSG_W_PAGES);
		m.seq = 1;
		m.time_ns = 1;
		tern_ranges_put(rp, 0, 0, PAGE);
		m.u.w_pages.ranges = (struct tern_ranges){rp, 1};
		cr_assert_eq(tern_msg_encode(&m, hdr, sizeof(hdr), &hlen), 0);
		h_prefix(frame, TERN_WIRE_FRAME_MAGIC, (uint32_t)hlen, PAGE);
		memcpy(frame + 16, hdr, hlen);
		memset(frame + 16 + hlen, 0x5a, PAGE);
		h_raw(h.fd[0], frame, 16 + hlen);
		memmove(frame, frame + 16 + hlen, PAGE);
		len = PAGE;
	}
	/* 4 bytes a second: 60 s at most, far past the 6 s frame deadline. */
	for (size_t i = 0; i < len && i < 240; i++) {
		if (send(h.fd[0], frame + i, 1, MSG_NOSIGNAL) != 1)
			break;
		usleep(250 * 1000);
	}
	h_end(&h, 1, "a trickle counts as silence");
	cr_assert_eq(json_num(h.r.outbuf, "pages_sent"), 0, "%s", h.r.outbuf);
}
