/*
 * tern error codes.
 *
 * Every tern function that can fail returns an int: 0 on success, a negative
 * code on failure.  As in libuv, a code IS -errno wherever an errno exists
 * (TERN_EINVAL == -EINVAL, TERN_ETIMEDOUT == -ETIMEDOUT, ...), and system
 * errors come back as -errno; conditions no errno names use the codes below
 * -10000, far from any errno.
 */
#ifndef TERN_ERROR_H
#define TERN_ERROR_H

#include <errno.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Every public function is marked TERN_EXTERN; libtern is built with hidden
 * visibility, so nothing else is exported. */
#define TERN_EXTERN __attribute__((visibility("default")))

/* XX(NAME, value, "message") */
#define TERN_ERRNO_MAP(XX)                                                                         \
	XX(EPROTO, -EPROTO, "protocol violation by the peer")                                      \
	XX(EVERSION, -10002, "peer speaks another protocol version")                               \
	XX(EMSG, -EBADMSG, "malformed message")                                                    \
	XX(ERANGE, -ERANGE, "range outside guest memory")                                          \
	XX(ETIMEDOUT, -ETIMEDOUT, "timed out")                                                     \
	XX(ECLOSED, -10006, "closed")                                                              \
	XX(ECANCELED, -ECANCELED, "cancelled")                                                     \
	XX(ENOTSUP, -ENOTSUP, "not supported on this machine")                                     \
	XX(EVERIFY, -10009, "memory digests differ after migration")                               \
	XX(EPEER, -10010, "the peer reported an error")                                            \
	XX(EACTOR, -10011, "an actor exited abnormally")                                           \
	XX(EKILLED, -10012, "an actor was killed")                                                 \
	XX(EINVAL, -EINVAL, "invalid argument")                                                    \
	XX(ENOMEM, -ENOMEM, "out of memory")                                                       \
	XX(ECONVERGE, -10015, "migration did not converge before the timeout")                     \
	XX(EAUTH, -10016, "authentication failed")                                                 \
	XX(ESTATE, -10017, "operation not valid in this state")                                    \
	XX(ENNG, -10018, "message queue failure")

enum tern_error {
#define XX(name, value, msg) TERN_##name = (value),
	TERN_ERRNO_MAP(XX)
#undef XX
};

/* tern_strerror returns a static, human-readable description of err, which
 * may be a tern code or a negated errno.  It never returns NULL. */
TERN_EXTERN const char *tern_strerror(int err);

/* tern_err_name returns the symbolic name of err ("TERN_EPROTO", "ECONNREFUSED"
 * for -ECONNREFUSED, ...).  It never returns NULL. */
TERN_EXTERN const char *tern_err_name(int err);

#ifdef __cplusplus
}
#endif
#endif /* TERN_ERROR_H */
