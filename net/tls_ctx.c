/*
 * TLS contexts (tls.h): TLS 1.3 only, no tickets, no 0-RTT, and either
 * x509 credentials from a QEMU-style directory or keys from a PSK file.
 *
 * External PSKs use OpenSSL's TLS 1.3 session callbacks: each side builds a
 * session holding the key, bound to a SHA-256 suite (the hash RFC 8446's
 * external PSKs default to), and the handshake still runs (EC)DHE.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "messages/msg.h"
#include "net/tls_int.h"
#include "tern/error.h"

#define TLS_PSK_MAX 64     /* lines in a PSK file */
#define TLS_PSK_KEY_MIN 16 /* 128 bits */
#define TLS_PSK_KEY_MAX 64
#define TLS_PSK_ID_MAX 128
#define TLS_PSK_FILE_MAX 65536

struct tls_psk {
	char identity[TLS_PSK_ID_MAX + 1];
	uint8_t key[TLS_PSK_KEY_MAX];
	size_t keylen;
};

struct tern_tls {
	enum tern_tls_role role;
	SSL_CTX *ctx;
	char hostname[256]; /* client: the name to check; "" = the dialled host */
	struct tls_psk *psk;
	int npsk;
	char desc[320];
};

/* TLS_AES_128_GCM_SHA256: the suite a PSK session is bound to. */
static const unsigned char tls_psk_suite[2] = {0x13, 0x01};

SSL_CTX *
terni_tls_ctx(struct tern_tls *t)
{
	return t->ctx;
}

enum tern_tls_role
terni_tls_role(const struct tern_tls *t)
{
	return t->role;
}

const char *
tern_tls_describe(const struct tern_tls *t)
{
	return t->desc;
}

/* tls_open_secret opens a file holding a secret, refused when others may
 * read or write it. */
static int
tls_open_secret(const char *path, int *fd, char *err, size_t errlen)
{
	struct stat st;

	if ((*fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
		int rv = -errno;

		terni_errf(err, errlen, "cannot open %s: %s", path, strerror(errno));
		return rv;
	}
	if (fstat(*fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		terni_errf(err, errlen, "%s is not a regular file", path);
		close(*fd);
		return TERN_EINVAL;
	}
	if (st.st_mode & S_IRWXO) {
		terni_errf(err, errlen, "%s is accessible by others (mode %03o): chmod o-rwx it",
		           path, (unsigned)(st.st_mode & 0777));
		close(*fd);
		return TERN_EINVAL;
	}
	return 0;
}

static int
tls_hex(const char *s, size_t n, uint8_t *out, size_t max, size_t *len)
{
	if (n % 2 != 0 || n / 2 > max)
		return TERN_EINVAL;
	for (size_t i = 0; i < n; i += 2) {
		char b[3] = {s[i], s[i + 1], 0};
		char *end;

		if (!isxdigit((unsigned char)b[0]) || !isxdigit((unsigned char)b[1]))
			return TERN_EINVAL;
		out[i / 2] = (uint8_t)strtoul(b, &end, 16);
	}
	*len = n / 2;
	return 0;
}

/* tls_psk_line parses "identity:hexkey" or a bare "hexkey". */
static int
tls_psk_line(char *line, struct tls_psk *p)
{
	char *colon = strrchr(line, ':');
	const char *hex = colon != NULL ? colon + 1 : line;

	if (colon != NULL) {
		*colon = '\0';
		if (line[0] == '\0' || strlen(line) > TLS_PSK_ID_MAX)
			return TERN_EINVAL;
		for (const char *c = line; *c; c++)
			if (*c < 0x21 || *c > 0x7e)
				return TERN_EINVAL;
		snprintf(p->identity, sizeof(p->identity), "%s", line);
	} else {
		snprintf(p->identity, sizeof(p->identity), "tern");
	}
	if (tls_hex(hex, strlen(hex), p->key, sizeof(p->key), &p->keylen) != 0 ||
	    p->keylen < TLS_PSK_KEY_MIN)
		return TERN_EINVAL;
	return 0;
}

static int
tls_load_psk(struct tern_tls *t, const char *path, char *err, size_t errlen)
{
	char *buf = NULL;
	int fd, rv;
	ssize_t n;

	if ((rv = tls_open_secret(path, &fd, err, errlen)) != 0)
		return rv;
	buf = malloc(TLS_PSK_FILE_MAX + 1);
	t->psk = calloc(TLS_PSK_MAX, sizeof(*t->psk));
	if (buf == NULL || t->psk == NULL) {
		close(fd);
		free(buf);
		return TERN_ENOMEM;
	}
	n = read(fd, buf, TLS_PSK_FILE_MAX + 1);
	close(fd);
	if (n < 0 || n > TLS_PSK_FILE_MAX) {
		terni_errf(err, errlen, "cannot read %s: %s", path,
		           n < 0 ? strerror(errno) : "larger than 64 KiB");
		free(buf);
		return TERN_EINVAL;
	}
	buf[n] = '\0';
	rv = 0;
	int lineno = 0;
	for (char *save = NULL, *line = strtok_r(buf, "\n", &save); line != NULL;
	     line = strtok_r(NULL, "\n", &save)) {
		lineno++;
		line[strcspn(line, "\r")] = '\0';
		if (line[0] == '\0' || line[0] == '#')
			continue;
		if (t->npsk == TLS_PSK_MAX) {
			terni_errf(err, errlen, "%s: more than %d keys", path, TLS_PSK_MAX);
			rv = TERN_EINVAL;
			break;
		}
		if (tls_psk_line(line, &t->psk[t->npsk]) != 0) {
			terni_errf(err, errlen,
			           "%s line %d: not `identity:hexkey` or a hex key of 32 to 128 "
			           "hex digits",
			           path, lineno);
			rv = TERN_EINVAL;
			break;
		}
		t->npsk++;
	}
	OPENSSL_cleanse(buf, TLS_PSK_FILE_MAX + 1);
	free(buf);
	if (rv == 0 && t->npsk == 0) {
		terni_errf(err, errlen, "%s holds no key", path);
		rv = TERN_EINVAL;
	}
	return rv;
}

static SSL_SESSION *
tls_psk_session(SSL *ssl, const struct tls_psk *p)
{
	const SSL_CIPHER *c = SSL_CIPHER_find(ssl, tls_psk_suite);
	SSL_SESSION *s = c != NULL ? SSL_SESSION_new() : NULL;

	if (s == NULL)
		return NULL;
	if (!SSL_SESSION_set1_master_key(s, p->key, p->keylen) || !SSL_SESSION_set_cipher(s, c) ||
	    !SSL_SESSION_set_protocol_version(s, TLS1_3_VERSION)) {
		SSL_SESSION_free(s);
		return NULL;
	}
	return s;
}

static struct tern_tls *
tls_of(SSL *ssl)
{
	return SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));
}

/* Client: offer the first key, if the negotiation's hash allows it. */
static int
tls_psk_use(SSL *ssl, const EVP_MD *md, const unsigned char **id, size_t *idlen, SSL_SESSION **sess)
{
	struct tern_tls *t = tls_of(ssl);
	const SSL_CIPHER *c = SSL_CIPHER_find(ssl, tls_psk_suite);

	*sess = NULL;
	if (c == NULL || (md != NULL && md != SSL_CIPHER_get_handshake_digest(c)))
		return 1; /* no PSK: the handshake then fails, as it should */
	if ((*sess = tls_psk_session(ssl, &t->psk[0])) == NULL)
		return 0;
	*id = (const unsigned char *)t->psk[0].identity;
	*idlen = strlen(t->psk[0].identity);
	return 1;
}

/* Server: the key of the identity the client names, if any. */
static int
tls_psk_find(SSL *ssl, const unsigned char *id, size_t idlen, SSL_SESSION **sess)
{
	struct tern_tls *t = tls_of(ssl);

	*sess = NULL;
	for (int i = 0; i < t->npsk; i++)
		if (strlen(t->psk[i].identity) == idlen &&
		    memcmp(t->psk[i].identity, id, idlen) == 0)
			return (*sess = tls_psk_session(ssl, &t->psk[i])) != NULL;
	return 1; /* unknown identity: no PSK, and no certificate to fall back on */
}

static int
tls_load_x509(struct tern_tls *t, const char *dir, char *err, size_t errlen)
{
	const char *who = t->role == TERN_TLS_SERVER ? "server" : "client";
	char ca[4096], cert[4096], key[4096];
	int fd, rv;

	snprintf(ca, sizeof(ca), "%s/ca-cert.pem", dir);
	snprintf(cert, sizeof(cert), "%s/%s-cert.pem", dir, who);
	snprintf(key, sizeof(key), "%s/%s-key.pem", dir, who);
	if ((rv = tls_open_secret(key, &fd, err, errlen)) != 0)
		return rv;
	close(fd);
	if (SSL_CTX_load_verify_locations(t->ctx, ca, NULL) != 1) {
		terni_errf(err, errlen, "cannot load the CA certificate %s", ca);
		return TERN_EINVAL;
	}
	if (SSL_CTX_use_certificate_chain_file(t->ctx, cert) != 1) {
		terni_errf(err, errlen, "cannot load the certificate %s", cert);
		return TERN_EINVAL;
	}
	if (SSL_CTX_use_PrivateKey_file(t->ctx, key, SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_check_private_key(t->ctx) != 1) {
		terni_errf(err, errlen, "cannot load the private key %s, or it is not %s's", key,
		           cert);
		return TERN_EINVAL;
	}
	/* Both sides prove who they are. */
	SSL_CTX_set_verify(t->ctx,
	                   t->role == TERN_TLS_SERVER
	                       ? SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT
	                       : SSL_VERIFY_PEER,
	                   NULL);
	return 0;
}

int
tern_tls_create(struct tern_tls **tp, enum tern_tls_role role, const struct tern_tls_config *cfg,
                char *err, size_t errlen)
{
	struct tern_tls *t;
	int rv;

	*tp = NULL;
	if ((cfg->creds_dir == NULL) == (cfg->psk_file == NULL)) {
		terni_errf(err, errlen, "TLS needs x509 credentials or a PSK file (exactly one)");
		return TERN_EINVAL;
	}
	if ((t = calloc(1, sizeof(*t))) == NULL)
		return TERN_ENOMEM;
	t->role = role;
	snprintf(t->hostname, sizeof(t->hostname), "%s", cfg->hostname ? cfg->hostname : "");
	t->ctx = SSL_CTX_new(role == TERN_TLS_SERVER ? TLS_server_method() : TLS_client_method());
	if (t->ctx == NULL || !SSL_CTX_set_min_proto_version(t->ctx, TLS1_3_VERSION)) {
		terni_errf(err, errlen, "cannot make a TLS 1.3 context");
		rv = TERN_ENOMEM;
		goto fail;
	}
	SSL_CTX_set_app_data(t->ctx, t);
	/* Every connection a full handshake: no tickets, no resumption, no
	 * early data (replayable).  An EOF without close_notify is an EOF:
	 * the frames say where the stream ends. */
	SSL_CTX_set_num_tickets(t->ctx, 0);
	SSL_CTX_set_session_cache_mode(t->ctx, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_max_early_data(t->ctx, 0);
	SSL_CTX_set_options(t->ctx, SSL_OP_NO_TICKET | SSL_OP_IGNORE_UNEXPECTED_EOF);
	SSL_CTX_set_mode(t->ctx, SSL_MODE_AUTO_RETRY);
	/* Read records in bulk, not two recv() per 16 KiB record: whoever
	 * waits for the socket must then look at tern_link_pending first. */
	SSL_CTX_set_read_ahead(t->ctx, 1);
	SSL_CTX_set_default_read_buffer_len(t->ctx, 256u << 10);
	if (cfg->psk_file != NULL) {
		rv = tls_load_psk(t, cfg->psk_file, err, errlen);
		/* The key is bound to SHA-256: a SHA-384 suite would leave
		 * it unusable and the handshake without authentication. */
		if (rv == 0 && !SSL_CTX_set_ciphersuites(t->ctx, "TLS_AES_128_GCM_SHA256:"
		                                                 "TLS_CHACHA20_POLY1305_SHA256")) {
			terni_errf(err, errlen, "cannot restrict TLS to SHA-256 suites");
			rv = TERN_EINVAL;
		}
		if (rv == 0 && role == TERN_TLS_SERVER)
			SSL_CTX_set_psk_find_session_callback(t->ctx, tls_psk_find);
		else if (rv == 0)
			SSL_CTX_set_psk_use_session_callback(t->ctx, tls_psk_use);
		if (rv == 0)
			snprintf(t->desc, sizeof(t->desc), "TLS 1.3, pre-shared key (identity %s)",
			         t->psk[0].identity);
	} else {
		rv = tls_load_x509(t, cfg->creds_dir, err, errlen);
		snprintf(t->desc, sizeof(t->desc), "TLS 1.3, x509 (%.256s)", cfg->creds_dir);
	}
	if (rv != 0)
		goto fail;
	ERR_clear_error();
	*tp = t;
	return 0;
fail:
	ERR_clear_error();
	tern_tls_destroy(t);
	return rv;
}

void
tern_tls_destroy(struct tern_tls *t)
{
	if (t == NULL)
		return;
	SSL_CTX_free(t->ctx);
	if (t->psk != NULL)
		OPENSSL_cleanse(t->psk, TLS_PSK_MAX * sizeof(*t->psk));
	free(t->psk);
	free(t);
}

int
terni_tls_prepare(struct tern_tls *t, SSL *ssl, const char *host, char *why, size_t whylen)
{
	const char *name = t->hostname[0] ? t->hostname : host;
	unsigned char ip[16];

	if (t->role == TERN_TLS_SERVER || t->psk != NULL)
		return 0; /* a PSK names both ends already */
	if (name == NULL || name[0] == '\0') {
		terni_errf(why, whylen,
		           "no name to check the destination's certificate against "
		           "(give the TLS hostname)");
		return TERN_EINVAL;
	}
	/* An address is checked against the certificate's IP entries, a name
	 * against its DNS entries (and sent as SNI). */
	int ok = inet_pton(AF_INET, name, ip) == 1 || inet_pton(AF_INET6, name, ip) == 1
	             ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), name)
	             : SSL_set1_host(ssl, name) && SSL_set_tlsext_host_name(ssl, name);
	if (!ok) {
		ERR_clear_error();
		terni_errf(why, whylen, "cannot check the destination's certificate against %s",
		           name);
		return TERN_EINVAL;
	}
	return 0;
}
