/*
 * fuzz_msg: the message decoder (tern_msg_decode) and the msgpack scanner
 * in front of it (tern_mp_scan), on arbitrary bytes.
 *
 * Beyond "no crash, no leak, no undefined behaviour":
 *  - the scanner agrees with msgpack-c: an object it measures as complete
 *    is never incomplete for msgpack-c, nor ends anywhere else; one byte
 *    less of it is incomplete;
 *  - a decoded message is in the schema and encodes again, and that
 *    encoding decodes and encodes to the same bytes (a fixed point).
 */
#include <msgpack.h>
#include <stdlib.h>
#include <string.h>

#include "messages/mpscan.h"
#include "messages/msg.h"
#include "tern/error.h"

static uint8_t fm_enc1[TERN_MSG_MAX], fm_enc2[TERN_MSG_MAX];

static void
fm_scan(const uint8_t *data, size_t size)
{
	size_t end = 0, end2 = 0, off = 0;
	int rv = tern_mp_scan(data, size, &end);

	if (rv == 1 || rv == TERN_EMSG)
		return;
	if (rv != 0 || end == 0 || end > size)
		abort();
	if (tern_mp_scan(data, end - 1, &end2) != 1)
		abort();
	/* Measured, so bounded: msgpack-c may allocate for it now. */
	msgpack_unpacked up;
	msgpack_unpacked_init(&up);
	switch (msgpack_unpack_next(&up, (const char *)data, end, &off)) {
	case MSGPACK_UNPACK_SUCCESS:
	case MSGPACK_UNPACK_EXTRA_BYTES:
		if (off != end)
			abort();
		break;
	case MSGPACK_UNPACK_CONTINUE:
		abort();
	default:
		break; /* deeper than msgpack-c nests: refused, fine */
	}
	msgpack_unpacked_destroy(&up);
}

static void
fm_decode(const uint8_t *data, size_t size)
{
	struct tern_msg m, m2;
	size_t len1 = 0, len2 = 0;

	if (tern_msg_decode(data, size, &m) != 0)
		return;
	if (!tern_msg_known(m.type))
		abort();
	if (tern_msg_encode(&m, fm_enc1, sizeof(fm_enc1), &len1) != 0)
		abort();
	if (tern_msg_decode(fm_enc1, len1, &m2) != 0 || m2.type != m.type)
		abort();
	if (tern_msg_encode(&m2, fm_enc2, sizeof(fm_enc2), &len2) != 0 || len2 != len1 ||
	    memcmp(fm_enc1, fm_enc2, len1) != 0)
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fm_scan(data, size);
	fm_decode(data, size);
	return 0;
}
