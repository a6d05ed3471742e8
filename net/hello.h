/*
 * The connection handshake, after TLS (if any) and before any frame.
 *
 * The source sends W_HELLO: magic, protocol version, migration id,
 * connection index and count, and a binding.  Every migration has a secret
 * key of 32 random bytes, made by the source; connection 0 carries it (under
 * TLS nobody else reads it), and every connection carries
 *
 *   bind = HMAC-SHA256(key, exporter || conn || nconns || migration id)
 *
 * where exporter is the TLS connection's keying material (RFC 8446 exporter;
 * zeros on a plain link).  So a data connection is only taken into the
 * migration whose connection 0 brought the key, and only over the TLS
 * connection it was computed for: it cannot be replayed, or spliced into
 * another migration, even by a peer holding valid credentials.
 *
 * The destination answers W_HELLO_ACK: status 0, or an error status and a
 * reason, then closes.  A refusal carries no clock (nothing about the host
 * before the peer is known).
 */
#ifndef TERN_NET_HELLO_H
#define TERN_NET_HELLO_H

#include <stddef.h>
#include <stdint.h>

#include "messages/msg.h"
#include "net/link.h"

#define TERN_WIRE_KEY_LEN 32

/* tern_wire_hello sends W_HELLO and waits up to timeout_ms for W_HELLO_ACK.
 * key is the migration's (sent in the clear of the link only when conn is
 * 0).  Returns 0; TERN_EVERSION / TERN_EAUTH / TERN_EPEER with the peer's
 * reason in why; TERN_EPROTO on anything else. *peer_time_ns (may be NULL)
 * gets the destination's clock from the ack, for trace merging. */
int tern_wire_hello(struct tern_link *l, const char *migration, uint32_t conn, uint32_t nconns,
                    const uint8_t key[TERN_WIRE_KEY_LEN], int timeout_ms, char *why, size_t whylen,
                    uint64_t *peer_time_ns);

/* tern_wire_read_hello reads W_HELLO by deadline_ns and checks its magic,
 * version and index.  Returns 0 with *hello, or the error to answer with
 * (reason says why).  It does not answer: tern_wire_answer_hello does, once
 * the caller has decided (binding, duplicates, limits). */
int tern_wire_read_hello(struct tern_link *l, uint64_t deadline_ns, struct tern_msg_w_hello *hello,
                         char *reason, size_t len);

/* tern_wire_hello_key takes the migration key out of a connection 0 hello.
 * Returns 0 or TERN_EAUTH (missing or malformed). */
int tern_wire_hello_key(const struct tern_msg_w_hello *h, uint8_t key[TERN_WIRE_KEY_LEN]);

/* tern_wire_check_binding checks h's binding with key over l.  Returns 0
 * or TERN_EAUTH (reason says why). */
int tern_wire_check_binding(struct tern_link *l, const struct tern_msg_w_hello *h,
                            const uint8_t key[TERN_WIRE_KEY_LEN], char *reason, size_t len);

/* tern_wire_answer_hello answers a hello: status 0 (with the clock), or
 * the refusal and its reason (then the caller closes; the answer is made
 * to reach the peer first).  Returns 0 or the send's error. */
int tern_wire_answer_hello(struct tern_link *l, int status, const char *reason, int timeout_ms);

/* tern_wire_accept_hello is a whole destination handshake for one lone
 * connection: read, check the binding (connection 0 with its own key, any
 * other with key, which may be NULL to refuse it), answer.  On success
 * *hello gets the hello (and key_out, if not NULL, connection 0's key).
 * Returns 0 or the error sent, why saying what. */
int tern_wire_accept_hello(struct tern_link *l, const uint8_t *key, int timeout_ms,
                           struct tern_msg_w_hello *hello, uint8_t *key_out, char *why,
                           size_t whylen);

#endif /* TERN_NET_HELLO_H */
