/*
 * A QMP server on a unix socket, on a libuv loop: QEMU's monitor protocol as
 * fleet managers (libvirt, KubeVirt, OpenStack) speak it.
 *
 *   server -> {"QMP": {"version": {...}, "capabilities": []}}
 *   client -> {"execute": "qmp_capabilities"}          (before anything else)
 *   client -> {"execute": NAME, "arguments": {...}, "id": ANY}
 *   server -> {"return": VALUE, "id": ANY} | {"error": {"class", "desc"}, "id": ANY}
 *   server -> {"event": NAME, "data": {...}, "timestamp": {"seconds", "microseconds"}}
 *
 * Input is a stream of JSON objects (newlines optional, as QEMU's parser);
 * a malformed object or an unknown command gets an error and the
 * connection stays usable.  Any number of clients; events go to every
 * client past capabilities negotiation.  All of it runs on the loop's
 * thread: handlers are called there and must not block long.
 */
#ifndef TERN_TOOLS_QMP_H
#define TERN_TOOLS_QMP_H

#include <jansson.h>
#include <stddef.h>
#include <uv.h>

/* QEMU's error classes. */
#define QMP_GENERIC_ERROR "GenericError"
#define QMP_COMMAND_NOT_FOUND "CommandNotFound"

struct qmp_error {
	const char *cls; /* a QMP_* class */
	char desc[512];
};

/* A handler returns the "return" value (a new reference; NULL with err set
 * on failure).  args is never NULL (an empty object when none were given);
 * it is borrowed. */
typedef json_t *(*qmp_handler)(void *ctx, json_t *args, struct qmp_error *err);

struct qmp_command {
	const char *name;
	qmp_handler fn;
};

struct qmp_server;

/* qmp_server_start listens on path (a stale socket file is replaced, a live
 * one refused) and serves cmds (terminated by a {NULL, NULL} entry) with
 * ctx.  product goes into the greeting.  Returns 0 or a negative code with
 * a one-line reason in err. */
int qmp_server_start(struct qmp_server **s, uv_loop_t *loop, const char *path,
                     const struct qmp_command *cmds, void *ctx, const char *product, char *err,
                     size_t errlen);

/* qmp_server_event sends an event to every negotiated client.  data is
 * stolen (NULL: an empty object). */
void qmp_server_event(struct qmp_server *s, const char *name, json_t *data);

/* qmp_server_close closes the listener and every client and unlinks the
 * socket; the memory goes once the loop has run the handles' close
 * callbacks (uv_run after it).  NULL is accepted. */
void qmp_server_close(struct qmp_server *s);

/* qmp_errorf fills err; returns NULL so that handlers can
 * `return qmp_errorf(err, ...)`. */
json_t *qmp_errorf(struct qmp_error *err, const char *cls, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif /* TERN_TOOLS_QMP_H */
