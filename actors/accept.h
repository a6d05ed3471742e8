/*
 * The destination's accept stage: from a listening socket (or the sockets a
 * VMM accepted) to the handshaken connections of one migration.
 *
 * Handshakes (TLS, then the hello) run concurrently, at most
 * TERN_ACCEPT_SLOTS at once, each on a thread of this stage with one
 * absolute deadline for the whole handshake, so idle, slow, trickling or
 * unauthenticated connections cannot delay the real source: when every slot
 * is taken the oldest handshake is cut off.  Connection 0 brings the
 * migration (id, count, key); a data connection is taken only if it is bound
 * to that migration (net/hello.h), and one that arrives before connection 0
 * is held until it does.  Anything else — a stray client, a second source, a
 * duplicate, a wrong binding — is refused, logged and dropped: it never ends
 * the migration.  Every thread is joined before this returns.
 */
#ifndef TERN_ACTORS_ACCEPT_H
#define TERN_ACTORS_ACCEPT_H

#include <stddef.h>
#include <stdint.h>

#include "actors/receiver.h"
#include "net/tls.h"
#include "tern/tern.h"

#define TERN_ACCEPT_SLOTS 16
#define TERN_HANDSHAKE_MS 5000

/* tern_accept_migration fills a->conns[] (links) and a->nconns.  lfd is the
 * listener (-1 with opts->fds); *next_given counts the given sockets taken
 * (the caller closes the rest).  tls NULL: plain TCP.  Returns 0, or an
 * error with a one-line reason in err (nothing left open but a->conns). */
int tern_accept_migration(const struct tern_recv_opts *opts, int lfd, struct tern_tls *tls,
                          struct tern_receiver_args *a, uint32_t *next_given, char *err,
                          size_t errlen);

/* tern_accept_resume takes a paused postcopy's source back on listener
 * lfd: connection 0 must bring the migration id, key and count of the
 * first accept (kept in a), and the same number of connections must come,
 * by deadline_ns; anyone else is refused, as any stray client.  Fills
 * a->conns[] links (each closed beforehand).  0 or an error with err. */
int tern_accept_resume(const struct tern_recv_opts *opts, int lfd, struct tern_tls *tls,
                       struct tern_receiver_args *a, uint64_t deadline_ns, char *err,
                       size_t errlen);

/* terni_recv_log writes one operator line through opts->log. */
void terni_recv_log(const struct tern_recv_opts *opts, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif /* TERN_ACTORS_ACCEPT_H */
