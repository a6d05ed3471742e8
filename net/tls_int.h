/*
 * Inside net/: what tls.c (handshake, record I/O), tls_ctx.c (contexts and
 * credentials) and link.c share.  Nothing outside net/ includes this.
 */
#ifndef TERN_NET_TLS_INT_H
#define TERN_NET_TLS_INT_H

#include <stddef.h>
#include <stdint.h>

#include "net/tls.h"

struct ssl_ctx_st;

struct ssl_ctx_st *terni_tls_ctx(struct tern_tls *t);
enum tern_tls_role terni_tls_role(const struct tern_tls *t);

/* terni_tls_prepare sets what one connection needs before its handshake:
 * the peer name a client checks (host, unless the config named one). */
int terni_tls_prepare(struct tern_tls *t, struct ssl_st *ssl, const char *host, char *why,
                      size_t whylen);

/* Record I/O on a TLS link, for link.c.  Returns as tern_link_*. */
int terni_tls_write(struct tern_link *l, const void *buf, size_t len, uint64_t *bytes);
int terni_tls_read(struct tern_link *l, void *dst, size_t want, size_t *got, uint64_t deadline_ns);
int terni_tls_pending(const struct tern_link *l);
void terni_tls_free(struct tern_link *l);

#endif /* TERN_NET_TLS_INT_H */
