/*
 * TCP sockets for the migration wire: address parsing, listen, accept and
 * connect with timeouts, deadlines.  Plain blocking sockets with kernel
 * timeouts (SO_SNDTIMEO/SO_RCVTIMEO): every blocking call is bounded.
 */
#ifndef TERN_NET_NET_H
#define TERN_NET_NET_H

#include <stddef.h>
#include <sys/socket.h>

/* tern_net_parse_addr parses "HOST:PORT" ("127.0.0.1:4444", "[::1]:4444",
 * "localhost:4444"; HOST may be empty or "*" for any, when listening).
 * Returns 0 or TERN_EINVAL with a one-line reason in err. */
int tern_net_parse_addr(const char *hostport, struct sockaddr_storage *ss, socklen_t *sslen,
                        char *err, size_t errlen);

/* tern_net_listen binds and listens (SO_REUSEADDR).  Port 0 picks a free
 * port: tern_net_local_port tells which.  Returns 0 or -errno/TERN_EINVAL,
 * with a reason in err ("cannot listen on 127.0.0.1:4444: Address already in
 * use"). */
int tern_net_listen(const char *hostport, int *fd, char *err, size_t errlen);

/* tern_net_local_port returns the bound port of fd, or a negative code. */
int tern_net_local_port(int fd);

/* tern_net_accept waits up to timeout_ms (-1 forever) for a connection.
 * Returns 0 with *fd, TERN_ETIMEDOUT, or -errno. */
int tern_net_accept(int lfd, int timeout_ms, int *fd);

/* tern_net_connect connects within timeout_ms.  Returns 0 with *fd, or
 * -ECONNREFUSED, TERN_ETIMEDOUT, ... with a reason in err ("cannot connect to
 * 127.0.0.1:4444: Connection refused"). */
int tern_net_connect(const char *hostport, int timeout_ms, int *fd, char *err, size_t errlen);

/* tern_net_tune sets TCP_NODELAY and large socket buffers. */
int tern_net_tune(int fd);

/* tern_net_set_deadline makes every later send/recv on fd fail with
 * TERN_ETIMEDOUT after timeout_ms without progress (0: no deadline). */
int tern_net_set_deadline(int fd, int timeout_ms);

/* tern_net_host copies the host part of "HOST:PORT" ("[::1]:4444" gives
 * "::1") into host.  Returns 0 or TERN_EINVAL. */
int tern_net_host(const char *hostport, char *host, size_t len);

/* tern_net_is_loopback tells whether hostport names a loopback address
 * only (127.0.0.0/8, ::1): 1, or 0 ("*" and "" mean every address), or
 * TERN_EINVAL when it is no address at all (listening will say why). */
int tern_net_is_loopback(const char *hostport);

#endif /* TERN_NET_NET_H */
