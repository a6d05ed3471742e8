/*
 * fuzz_wire: the wire as a destination and a source read it (net/wire.c,
 * net/hello.c), through their public functions on a plain link over a
 * socket pair carrying the input after its first byte, which chooses
 * (modulo 3) what reads it:
 *  - a stream of frames: prefix and header decoded one after another as a
 *    connection actor does (tern_wire_recv_header_until), payloads skipped;
 *  - the input as the source's hello, to tern_wire_accept_hello (read,
 *    binding checked against fuzz_key or connection 0's own key, answered);
 *  - the input as the destination's answer, to tern_wire_hello.
 *
 * Beyond "no crash, no leak, no undefined behaviour": only the documented
 * codes come back; a decoded header is a wire frame within the limits; every
 * reason and every peer string tern may print is printable ASCII (peer
 * strings are sanitised); the hello is always answered, with the code
 * returned, and a refusal carries no clock.  TLS itself is OpenSSL's and not
 * fuzzed here: under it the same functions read the same bytes.
 */
#include <stdbool.h>
#include <stdlib.h>

#include "net/hello.h"
#include "net/wire.h"
#include "tern/error.h"
#include "tests/fuzz/harness.h"

#define FW_DEADLINE_NS (60ull * 1000000000u) /* never reached: the input is all there */

static struct tern_wire_rx fw_rx;

static void
fw_printable(const char *s)
{
	for (; *s != '\0'; s++)
		if ((unsigned char)*s < 0x20 || (unsigned char)*s >= 0x7f)
			abort();
}

/* The strings of a received frame that tern prints (wire_sanitize_msg). */
static void
fw_check_strings(const struct tern_msg *m)
{
	switch (m->type) {
	case TERN_MSG_W_HELLO:
		fw_printable(m->u.w_hello.migration);
		break;
	case TERN_MSG_W_HELLO_ACK:
		fw_printable(m->u.w_hello_ack.why);
		break;
	case TERN_MSG_W_CONFIG:
		fw_printable(m->u.w_config.guest);
		break;
	case TERN_MSG_W_RESULT:
		fw_printable(m->u.w_result.why);
		break;
	case TERN_MSG_W_ABORT:
		fw_printable(m->u.w_abort.why);
		break;
	default:
		break;
	}
}

static void
fw_frames(int rd)
{
	for (int n = 0; n < 1024; n++) {
		struct tern_msg m;
		uint64_t plen = 0;
		char why[TERN_STR_MAX] = "";
		int rv =
		    tern_wire_recv_header_until(TERN_PLAIN(rd), &fw_rx, &m, &plen,
		                                tern_now_ns() + FW_DEADLINE_NS, why, sizeof(why));

		if (rv != 0) {
			if (rv != TERN_ECLOSED && rv != TERN_EPROTO && rv != TERN_EMSG &&
			    rv != -ECONNRESET)
				abort();
			if (why[0] == '\0' || plen != 0)
				abort();
			fw_printable(why);
			return;
		}
		if (!tern_msg_known(m.type) || m.type < 0x1000 || m.type > 0x1fff ||
		    plen > TERN_WIRE_PAYLOAD_MAX)
			abort();
		fw_check_strings(&m);
		if (tern_wire_discard(TERN_PLAIN(rd), plen) != 0)
			return;
	}
}

static void
fw_accept(int rd, int peer)
{
	struct tern_msg_w_hello hello;
	struct tern_msg ack;
	uint8_t key[TERN_WIRE_KEY_LEN];
	uint64_t plen = 0;
	char why[TERN_STR_MAX] = "";
	/* A data connection is checked against fuzz_key, connection 0
	 * against the key it brings. */
	int rv =
	    tern_wire_accept_hello(TERN_PLAIN(rd), fuzz_key, 5000, &hello, key, why, sizeof(why));

	fw_printable(why);
	if (rv == 0) {
		if (hello.magic != TERN_WIRE_HELLO_MAGIC || hello.version != TERN_WIRE_VERSION ||
		    hello.nconns == 0 || hello.conn >= hello.nconns)
			abort();
		fw_printable(hello.migration);
	} else if (why[0] == '\0') {
		abort();
	}
	/* Always answered, with the code returned; a refusal tells no time. */
	if (tern_wire_recv_header(TERN_PLAIN(peer), &fw_rx, &ack, &plen) != 0 ||
	    ack.type != TERN_MSG_W_HELLO_ACK || plen != 0 || ack.u.w_hello_ack.status != rv)
		abort();
	if (rv != 0 && (ack.u.w_hello_ack.time_ns != 0 || ack.time_ns != 1 || ack.seq != 1))
		abort();
}

static void
fw_hello(int rd)
{
	char why[TERN_STR_MAX] = "";
	uint64_t peer_time = 0;
	int rv = tern_wire_hello(TERN_PLAIN(rd), FUZZ_MIGRATION, 0, 1, fuzz_key, 5000, why,
	                         sizeof(why), &peer_time);

	if (rv > 0 || (rv != 0 && why[0] == '\0'))
		abort();
	fw_printable(why);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int rd, peer;

	/* One reader per input: a socket pair costs several system calls,
	 * the bulk of a run. */
	if (size < 1 || fuzz_feed(data + 1, size - 1, &rd, &peer) != 0)
		return -1;
	switch (data[0] % 3) {
	case 0:
		fw_frames(rd);
		break;
	case 1:
		fw_accept(rd, peer);
		break;
	default:
		fw_hello(rd);
		break;
	}
	fuzz_close(rd, peer);
	return 0;
}
