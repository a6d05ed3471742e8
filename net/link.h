/*
 * A migration connection's byte stream: a TCP socket, plain or under TLS.
 *
 * Everything above (net/wire.h frames, the actors) reads and writes through
 * a link and never asks which: the TLS record layer sits here and nowhere
 * else.  A link is owned by one thread at a time (OpenSSL objects are not
 * shared); another thread may only shutdown(2) its fd to release a blocked
 * call, which is how a kill or a stop ends a connection (tern_actor_own_fd).
 *
 * Deadlines are the socket's (tern_net_set_deadline and the wire's absolute
 * deadlines): both kinds of link read and write through the same blocking
 * socket, so a timeout is TERN_ETIMEDOUT for either.
 */
#ifndef TERN_NET_LINK_H
#define TERN_NET_LINK_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

struct ssl_st;

struct tern_link {
	int fd;             /* the socket; -1 when closed */
	struct ssl_st *ssl; /* NULL: plain TCP */
};

/* A plain link over fd for one call, as tests and tools that speak the wire
 * over their own sockets need: tern_wire_send(TERN_PLAIN(fd), ...). */
#define TERN_PLAIN(sock) (&(struct tern_link){.fd = (sock), .ssl = NULL})

/* tern_link_plain makes l a plain link over fd (which it then owns). */
void tern_link_plain(struct tern_link *l, int fd);

/* tern_link_writev writes all of iov[0..n) (resuming after partial writes
 * and signals; never SIGPIPE).  Returns 0, TERN_ETIMEDOUT, -EPIPE,
 * -ECONNRESET, TERN_EPROTO (a TLS failure) or -errno.  *bytes (may be NULL)
 * += bytes handed to the socket (TLS: plaintext bytes). */
int tern_link_writev(struct tern_link *l, const struct iovec *iov, int n, uint64_t *bytes);

/* tern_link_read reads exactly len bytes into dst (page data goes straight
 * into guest memory: TLS decrypts into dst, no buffer of tern's between).
 * deadline_ns (0: none) bounds the whole read, see tern_link_until.
 * Returns 0, TERN_ECLOSED at EOF with *got (may be NULL) saying how far it
 * came, TERN_ETIMEDOUT, TERN_EPROTO (a TLS record that fails its check) or
 * -errno. */
int tern_link_read(struct tern_link *l, void *dst, uint64_t len, uint64_t *got,
                   uint64_t deadline_ns);

/* tern_link_readv reads exactly the total length of iov[0..n).  EOF is
 * TERN_EPROTO.  iov is modified. */
int tern_link_readv(struct tern_link *l, struct iovec *iov, int n, uint64_t deadline_ns);

/* tern_link_until bounds the next receive on fd by an absolute deadline
 * (CLOCK_MONOTONIC ns as tern_now_ns; 0: leave the socket's timeout): the
 * kernel timeout restarts on every call, so a peer trickling a byte at a
 * time would otherwise stretch a read without limit.  Returns 0,
 * TERN_ETIMEDOUT (already past) or -errno. */
int tern_link_until(int fd, uint64_t deadline_ns);

/* tern_link_pending tells whether bytes already read from the socket wait
 * to be consumed (TLS buffers records): a caller that waits for the socket
 * to become readable must consume those first. */
int tern_link_pending(const struct tern_link *l);

/* tern_link_is_tls tells whether l runs under TLS. */
int tern_link_is_tls(const struct tern_link *l);

/* tern_link_close frees the TLS state (without a close_notify: the frames
 * say where the stream ends) and closes the socket.  Idempotent. */
void tern_link_close(struct tern_link *l);

#endif /* TERN_NET_LINK_H */
