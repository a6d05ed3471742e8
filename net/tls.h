/*
 * TLS 1.3 for the migration wire (OpenSSL 3), both ends authenticated:
 *
 * - x509, a QEMU-style credentials directory: ca-cert.pem, and
 *   server-cert.pem/server-key.pem (destination) or client-cert.pem/
 *   client-key.pem (source).  The destination requires and checks the
 *   source's certificate against the CA; the source checks the destination's
 *   against the CA and the name it dialled (or the one it was told).
 * - a pre-shared key file: QEMU's `identity:hexkey` lines, or one bare hex
 *   key (identity "tern"); keys of at least 128 bits.  The source offers the
 *   first identity; the destination takes any line.  Key exchange is still
 *   (EC)DHE (psk_dhe_ke), so a key that leaks later opens no recorded
 *   migration.
 *
 * Never 0-RTT, no session tickets or resumption: every connection does a
 * full handshake.  Secret files are refused when group or others may read
 * them.  A context is shared by every connection of a migration (OpenSSL
 * contexts are thread-safe); each connection has its own SSL object.
 */
#ifndef TERN_NET_TLS_H
#define TERN_NET_TLS_H

#include <stddef.h>
#include <stdint.h>

#include "net/link.h"

#define TERN_TLS_EXPORTER_LEN 32

enum tern_tls_role {
	TERN_TLS_CLIENT, /* the source: it connects */
	TERN_TLS_SERVER, /* the destination: it accepts */
};

struct tern_tls_config {
	const char *creds_dir; /* x509 credentials directory, or NULL */
	const char *psk_file;  /* pre-shared keys, or NULL */
	/* Client: the name the server certificate must carry (a DNS name or
	 * an IP address); NULL: the caller passes the dialled host per
	 * connection. */
	const char *hostname;
};

struct tern_tls;

/* tern_tls_create loads the credentials for role.  Exactly one of
 * creds_dir and psk_file.  Returns 0, or TERN_EINVAL / -errno with a
 * one-line reason naming the file in err. */
int tern_tls_create(struct tern_tls **t, enum tern_tls_role role, const struct tern_tls_config *cfg,
                    char *err, size_t errlen);

void tern_tls_destroy(struct tern_tls *t);

/* tern_tls_describe: "x509 (DIR)" or "psk (identity ID)", for logs. */
const char *tern_tls_describe(const struct tern_tls *t);

/* tern_tls_handshake runs the TLS handshake on a connected socket by
 * deadline_ns (CLOCK_MONOTONIC, absolute: a peer trickling bytes cannot
 * stretch it) and makes l a TLS link over fd; host (client, may be NULL) is
 * the dialled host, checked against the certificate unless the config named
 * one.  On failure l is not touched and fd stays the caller's.  Returns 0,
 * TERN_EAUTH (the peer's credentials were refused, or it refused ours),
 * TERN_ETIMEDOUT, TERN_EPROTO (not TLS), -errno; why says which. */
int tern_tls_handshake(struct tern_tls *t, int fd, const char *host, uint64_t deadline_ns,
                       struct tern_link *l, char *why, size_t whylen);

/* tern_link_exporter fills out with this connection's keying material
 * (RFC 8446 exporter, label "EXPORTER-tern-connection-binding"): equal at
 * both ends of one TLS connection, unknown to anyone else.  A plain link
 * gives zeros.  Returns 0 or TERN_EPROTO. */
int tern_link_exporter(struct tern_link *l, uint8_t out[TERN_TLS_EXPORTER_LEN]);

#endif /* TERN_NET_TLS_H */
