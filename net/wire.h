/*
 * The migration wire: frames and the handshake.
 *
 * A frame is a 16-byte prefix, a msgpack header (a struct tern_msg of a W_*
 * type, see messages/schema.h) and a raw payload:
 *
 *   u32 magic "TRNF" | u32 header_len | u64 payload_len   (big-endian)
 *   header_len bytes of msgpack header
 *   payload_len bytes of payload (page data, state)
 *
 * header_len is at most TERN_WIRE_HEADER_MAX and payload_len at most
 * TERN_WIRE_PAYLOAD_MAX; anything else is garbage and ends the connection
 * (TERN_EPROTO), never a desync.
 *
 * Frames travel over a link (net/link.h): plain TCP or TLS, the same here.
 * The handshake that opens every connection is in net/hello.h.
 */
#ifndef TERN_NET_WIRE_H
#define TERN_NET_WIRE_H

#include <stdint.h>
#include <sys/uio.h>

#include "messages/msg.h"
#include "net/link.h"

#define TERN_WIRE_FRAME_MAGIC 0x54524e46u           /* "TRNF" */
#define TERN_WIRE_HELLO_MAGIC 0x7465726e6d696772ull /* "ternmigr" */
#define TERN_WIRE_VERSION 3u                        /* 2: TLS, hello binding; 3: memory layout */
#define TERN_WIRE_HEADER_MAX 65536u
#define TERN_WIRE_PAYLOAD_MAX (64ull << 20)

/* Receive buffer for one frame header; decoded BIN/RANGES point into it. */
struct tern_wire_rx {
	uint8_t buf[TERN_WIRE_HEADER_MAX];
	uint64_t bytes; /* total bytes received on this connection */
};

/* tern_wire_send sends one frame: the header m (seq/time_ns filled in when
 * 0) followed by the payload iovecs (total = payload length; may be 0).
 * Handles partial writes and EINTR.  Returns 0, TERN_ETIMEDOUT (deadline),
 * -EPIPE/-ECONNRESET, TERN_EMSG. *bytes (may be NULL) += bytes written. */
int tern_wire_send(struct tern_link *l, const struct tern_msg *m, const struct iovec *payload,
                   int iovcnt, uint64_t *bytes);

/* tern_wire_send_copied sends the same frame as tern_wire_send, its payload
 * copied by the CPU through copy (copylen bytes, reused: a few hundred KiB
 * that stay in cache) and the socket fed from there.  Where a page's
 * mapping costs the kernel a fault at its first read while user space
 * reads it at memcpy speed (a shadow-paged host, MACHINE.md: ~10 us per
 * 4 KiB page against ~0.1), this sends guest memory several times faster
 * for one extra copy.  Under TLS (which reads the payload in user space
 * anyway) it is tern_wire_send.  Returns as tern_wire_send. */
int tern_wire_send_copied(struct tern_link *l, const struct tern_msg *m,
                          const struct iovec *payload, int iovcnt, uint8_t *copy, size_t copylen,
                          uint64_t *bytes);

/* tern_wire_recv_header reads a prefix and header and decodes it into *m;
 * *payload_len is what follows, which the caller must consume with
 * tern_wire_recv_exact or tern_wire_discard before the next header.
 * Returns 0, TERN_ECLOSED (orderly EOF before a prefix), TERN_EPROTO
 * (garbage prefix, sizes over the limits, EOF inside a frame), TERN_EMSG
 * (undecodable header, or not a W_* type), TERN_ETIMEDOUT, -errno. */
int tern_wire_recv_header(struct tern_link *l, struct tern_wire_rx *rx, struct tern_msg *m,
                          uint64_t *payload_len);

/* tern_wire_recv_exact reads exactly len bytes into dst (straight into guest
 * memory for page data).  EOF is TERN_EPROTO. */
int tern_wire_recv_exact(struct tern_link *l, void *dst, uint64_t len);

/* tern_wire_recv_iov reads exactly the total length of iov[0..n) into those
 * buffers, with as few system calls as the kernel allows (recvmsg with
 * MSG_WAITALL).  EOF is TERN_EPROTO.  iov is modified. */
int tern_wire_recv_iov(struct tern_link *l, struct iovec *iov, int n);

/* The _until variants bound the whole read by an absolute deadline
 * (CLOCK_MONOTONIC ns as tern_now_ns, 0: none) instead of per system call,
 * so a peer trickling a byte at a time counts as silent: TERN_ETIMEDOUT.
 * They leave the socket's receive timeout at what was left of it.
 * tern_wire_recv_header_until also tells garbage from a lost connection:
 * EOF inside a frame is -ECONNRESET there (TERN_EPROTO and TERN_EMSG only
 * for what the peer sent), and why (may be NULL) gets the reason. */
int tern_wire_recv_header_until(struct tern_link *l, struct tern_wire_rx *rx, struct tern_msg *m,
                                uint64_t *payload_len, uint64_t deadline_ns, char *why,
                                size_t whylen);
int tern_wire_recv_exact_until(struct tern_link *l, void *dst, uint64_t len, uint64_t deadline_ns);
int tern_wire_recv_iov_until(struct tern_link *l, struct iovec *iov, int n, uint64_t deadline_ns);

/* tern_wire_discard reads and drops len bytes. */
int tern_wire_discard(struct tern_link *l, uint64_t len);

/* tern_wire_forward sends a frame whose header arrives already encoded (a
 * control frame handed over by an actor): it is decoded, checked and sent
 * with payload (plen may be 0).  Returns as tern_wire_send. */
int tern_wire_forward(struct tern_link *l, const void *frame, size_t len, const void *payload,
                      size_t plen, uint64_t *bytes);

/* tern_wire_send_result answers a control request (W_RESULT). */
int tern_wire_send_result(struct tern_link *l, uint32_t step, int status, const char *why,
                          uint64_t value);

#endif /* TERN_NET_WIRE_H */
