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
 * Handshake, on every connection: the source sends W_HELLO (magic, protocol
 * version, migration id, connection index, connection count, auth token);
 * the destination answers W_HELLO_ACK with status 0, or with an error status
 * and reason, then closes.
 */
#ifndef TERN_NET_WIRE_H
#define TERN_NET_WIRE_H

#include <stdint.h>
#include <sys/uio.h>

#include "messages/msg.h"

#define TERN_WIRE_FRAME_MAGIC 0x54524e46u           /* "TRNF" */
#define TERN_WIRE_HELLO_MAGIC 0x7465726e6d696772ull /* "ternmigr" */
#define TERN_WIRE_VERSION 1u
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
int tern_wire_send(int fd, const struct tern_msg *m, const struct iovec *payload, int iovcnt,
                   uint64_t *bytes);

/* tern_wire_recv_header reads a prefix and header and decodes it into *m;
 * *payload_len is what follows, which the caller must consume with
 * tern_wire_recv_exact or tern_wire_discard before the next header.
 * Returns 0, TERN_ECLOSED (orderly EOF before a prefix), TERN_EPROTO
 * (garbage prefix, sizes over the limits, EOF inside a frame), TERN_EMSG
 * (undecodable header, or not a W_* type), TERN_ETIMEDOUT, -errno. */
int tern_wire_recv_header(int fd, struct tern_wire_rx *rx, struct tern_msg *m,
                          uint64_t *payload_len);

/* tern_wire_recv_exact reads exactly len bytes into dst (straight into guest
 * memory for page data).  EOF is TERN_EPROTO. */
int tern_wire_recv_exact(int fd, void *dst, uint64_t len);

/* tern_wire_recv_iov reads exactly the total length of iov[0..n) into those
 * buffers, with as few system calls as the kernel allows (recvmsg with
 * MSG_WAITALL).  EOF is TERN_EPROTO.  iov is modified. */
int tern_wire_recv_iov(int fd, struct iovec *iov, int n);

/* The _until variants bound the whole read by an absolute deadline
 * (CLOCK_MONOTONIC ns as tern_now_ns, 0: none) instead of per system call,
 * so a peer trickling a byte at a time counts as silent: TERN_ETIMEDOUT.
 * They leave the socket's receive timeout at what was left of it.
 * tern_wire_recv_header_until also tells garbage from a lost connection:
 * EOF inside a frame is -ECONNRESET there (TERN_EPROTO and TERN_EMSG only
 * for what the peer sent), and why (may be NULL) gets the reason. */
int tern_wire_recv_header_until(int fd, struct tern_wire_rx *rx, struct tern_msg *m,
                                uint64_t *payload_len, uint64_t deadline_ns, char *why,
                                size_t whylen);
int tern_wire_recv_exact_until(int fd, void *dst, uint64_t len, uint64_t deadline_ns);
int tern_wire_recv_iov_until(int fd, struct iovec *iov, int n, uint64_t deadline_ns);

/* tern_wire_discard reads and drops len bytes. */
int tern_wire_discard(int fd, uint64_t len);

/* tern_wire_hello sends W_HELLO and waits up to timeout_ms for W_HELLO_ACK.
 * Returns 0; TERN_EVERSION / TERN_EAUTH / TERN_EPEER with the peer's reason
 * in why; TERN_EPROTO on anything else. *peer_time_ns (may be NULL) gets the
 * destination's clock from the ack, for trace merging. */
int tern_wire_hello(int fd, const char *migration, uint32_t conn, uint32_t nconns, const char *auth,
                    int timeout_ms, char *why, size_t whylen, uint64_t *peer_time_ns);

/* tern_wire_accept_hello reads W_HELLO within timeout_ms and checks magic,
 * version and auth (auth NULL or "" accepts any).  It always answers: status
 * 0 on success, else the error and reason (then the caller closes).  On
 * success *hello gets the peer's hello.  Returns 0 or the error sent. */
int tern_wire_accept_hello(int fd, const char *auth, int timeout_ms, struct tern_msg_w_hello *hello,
                           char *why, size_t whylen);

/* tern_wire_forward sends a frame whose header arrives already encoded (a
 * control frame handed over by an actor): it is decoded, checked and sent
 * with payload (plen may be 0).  Returns as tern_wire_send. */
int tern_wire_forward(int fd, const void *frame, size_t len, const void *payload, size_t plen,
                      uint64_t *bytes);

/* tern_wire_send_result answers a control request (W_RESULT). */
int tern_wire_send_result(int fd, uint32_t step, int status, const char *why, uint64_t value);

#endif /* TERN_NET_WIRE_H */
