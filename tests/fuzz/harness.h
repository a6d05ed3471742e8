/*
 * What the fuzz targets (fuzz_*.c) and the seed generator (seeds.c) share:
 * a socket that hands its reader exactly the fuzzer's bytes and then EOF,
 * frames encoded by the real sender, and the guests fuzz_state loads into.
 *
 * net/wire.c reads sockets, so the wire targets feed their input through a
 * socket pair: written whole before the call (it fits the socket buffer,
 * FUZZ_FEED_MAX), the writing side shut down, so every read finds its bytes
 * or EOF at once and no run waits on anything (nor on the machine's speed).
 */
#ifndef TERN_TESTS_FUZZ_HARNESS_H
#define TERN_TESTS_FUZZ_HARNESS_H

#include <stddef.h>
#include <stdint.h>

#include "messages/msg.h"

/* The largest input fuzz_feed takes: well inside an AF_UNIX socket's
 * default send buffer (net.core.wmem_default, 208 KiB), whatever the host. */
#define FUZZ_FEED_MAX (64u * 1024)

/* The migration key and id of the hellos the wire targets make and expect
 * (seeds carry hellos bound with them, net/hello.h). */
#define FUZZ_MIGRATION "fuzz-migration"
extern const uint8_t fuzz_key[32];

/* The guests fuzz_state loads state into, also built by seeds.c to save
 * valid state blobs from: an idle guest and a memtouch one. */
#define FUZZ_STATE_SPECS                                                                           \
	{                                                                                          \
		"simvm:mem=1M,vcpus=1,workload=idle",                                              \
		    "simvm:mem=2M,vcpus=3,workload=memtouch:ws=1M,rate=0,pattern=seq"              \
	}
#define FUZZ_STATE_NGUESTS 2

/* fuzz_feed makes a connected AF_UNIX stream pair, writes data[0..size)
 * into one end and shuts that end's writing side.  *rd then reads exactly
 * data and EOF, as from a peer that sent it and stopped; *peer, the other
 * end, still receives whatever is sent on *rd.  Returns 0, TERN_EINVAL when
 * size is over FUZZ_FEED_MAX, or -errno; nothing is left open on failure. */
int fuzz_feed(const uint8_t *data, size_t size, int *rd, int *peer);

/* fuzz_close closes both ends of a fuzz_feed pair. */
void fuzz_close(int rd, int peer);

/* fuzz_frame encodes one wire frame (header m, payload of plen bytes) with
 * tern_wire_send, the sender's own code, into out (capacity cap): the bytes
 * a peer would read.  Returns 0 with *len set, or a negative code. */
int fuzz_frame(const struct tern_msg *m, const void *payload, size_t plen, uint8_t *out, size_t cap,
               size_t *len);

/* fuzz_hello_frame makes the W_HELLO tern_wire_hello sends for connection
 * conn of nconns with fuzz_key over a plain link (bound to it as the
 * destination checks), into out (capacity cap).  Returns 0 with *len set,
 * or a negative code. */
int fuzz_hello_frame(uint32_t conn, uint32_t nconns, uint8_t *out, size_t cap, size_t *len);

#endif /* TERN_TESTS_FUZZ_HARNESS_H */
