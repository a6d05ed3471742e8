/*
 * The QMP server (qmp.h): a unix-socket listener and its clients on a libuv
 * loop, a stream parser for the JSON objects they send, the capabilities
 * negotiation, dispatch through the owner's command table, and events.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "messages/msg.h"
#include "tern/tern.h"
#include "tools/qmp.h"

/* A request bigger than this is refused (nothing a manager sends is). */
#define QMP_MAX_REQUEST (1u << 20)
/* A client that does not read its answers and events is dropped beyond
 * this much queued output, rather than growing the process without bound. */
#define QMP_MAX_QUEUED (16u << 20)

struct qmp_client {
	uv_pipe_t pipe; /* first: the handle's data points back here too */
	struct qmp_server *srv;
	struct qmp_client *next;
	char *buf; /* bytes received, not yet parsed */
	size_t len, cap;
	int negotiated;
	int closing;
};

struct qmp_server {
	uv_pipe_t listener;
	uv_loop_t *loop;
	const struct qmp_command *cmds;
	void *ctx;
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	char product[64];
	struct qmp_client *clients;
	int handles; /* open libuv handles: the server is freed when none remain */
	int closing;
};

json_t *
qmp_errorf(struct qmp_error *err, const char *cls, const char *fmt, ...)
{
	va_list ap;
	err->cls = cls;
	va_start(ap, fmt);
	terni_verrf(err->desc, sizeof(err->desc), fmt, ap);
	va_end(ap);
	return NULL;
}

static void
qmp_handle_closed(uv_handle_t *h)
{
	struct qmp_server *s = h->data;
	if (h != (uv_handle_t *)&s->listener) {
		struct qmp_client *c = (struct qmp_client *)h;
		free(c->buf);
		free(c);
	}
	if (--s->handles == 0 && s->closing)
		free(s);
}

static void
qmp_client_close(struct qmp_client *c)
{
	if (c->closing)
		return;
	c->closing = 1;
	struct qmp_server *s = c->srv;
	for (struct qmp_client **p = &s->clients; *p != NULL; p = &(*p)->next)
		if (*p == c) {
			*p = c->next;
			break;
		}
	uv_close((uv_handle_t *)&c->pipe, qmp_handle_closed);
}

struct qmp_write {
	uv_write_t req;
	struct qmp_client *c;
	char *text;
};

static void
qmp_written(uv_write_t *req, int status)
{
	struct qmp_write *w = (struct qmp_write *)req;
	if (status != 0 && status != UV_ECANCELED)
		qmp_client_close(w->c);
	free(w->text);
	free(w);
}

/* Sends obj (stolen) as one line. */
static void
qmp_send(struct qmp_client *c, json_t *obj)
{
	char *text = json_dumps(obj, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(9));
	json_decref(obj);
	if (c->closing || text == NULL) {
		free(text);
		return;
	}
	if (uv_stream_get_write_queue_size((uv_stream_t *)&c->pipe) > QMP_MAX_QUEUED) {
		free(text);
		qmp_client_close(c);
		return;
	}
	size_t n = strlen(text);
	struct qmp_write *w = malloc(sizeof(*w));
	char *line = realloc(text, n + 3);
	if (w == NULL || line == NULL) {
		free(w);
		free(line != NULL ? line : text);
		qmp_client_close(c);
		return;
	}
	memcpy(line + n, "\r\n", 3); /* QEMU ends its lines so */
	w->c = c;
	w->text = line;
	uv_buf_t b = uv_buf_init(line, (unsigned)(n + 2));
	if (uv_write(&w->req, (uv_stream_t *)&c->pipe, &b, 1, qmp_written) != 0) {
		free(line);
		free(w);
		qmp_client_close(c);
	}
}

static void
qmp_reply_error(struct qmp_client *c, json_t *id, const char *cls, const char *desc)
{
	json_t *r = json_pack("{s:{s:s,s:s}}", "error", "class", cls, "desc", desc);
	if (r != NULL && id != NULL)
		json_object_set(r, "id", id);
	qmp_send(c, r);
}

static json_t *
qmp_version(const struct qmp_server *s)
{
	return json_pack("{s:{s:i,s:i,s:i},s:s}", "qemu", "major", TERN_VERSION_MAJOR, "minor",
	                 TERN_VERSION_MINOR, "micro", TERN_VERSION_PATCH, "package", s->product);
}

/* Commands every QMP server answers the same way. */
static json_t *
qmp_builtin(struct qmp_server *s, const char *name)
{
	if (strcmp(name, "query-version") == 0)
		return qmp_version(s);
	if (strcmp(name, "query-commands") == 0) {
		json_t *list = json_array();
		json_array_append_new(list, json_pack("{s:s}", "name", "qmp_capabilities"));
		json_array_append_new(list, json_pack("{s:s}", "name", "query-version"));
		json_array_append_new(list, json_pack("{s:s}", "name", "query-commands"));
		for (const struct qmp_command *k = s->cmds; k->name != NULL; k++)
			json_array_append_new(list, json_pack("{s:s}", "name", k->name));
		return list;
	}
	return NULL;
}

static void
qmp_dispatch(struct qmp_client *c, json_t *req)
{
	struct qmp_server *s = c->srv;
	json_t *id = json_is_object(req) ? json_object_get(req, "id") : NULL;
	if (!json_is_object(req)) {
		qmp_reply_error(c, NULL, QMP_GENERIC_ERROR, "QMP input must be a JSON object");
		return;
	}
	const char *key;
	json_t *val;
	json_object_foreach(req, key, val)
	{
		if (strcmp(key, "execute") != 0 && strcmp(key, "arguments") != 0 &&
		    strcmp(key, "id") != 0) {
			char desc[160];
			snprintf(desc, sizeof(desc), "QMP input member '%.64s' is unexpected", key);
			qmp_reply_error(c, id, QMP_GENERIC_ERROR, desc);
			return;
		}
	}
	json_t *exec = json_object_get(req, "execute");
	json_t *args = json_object_get(req, "arguments");
	if (exec == NULL || !json_is_string(exec)) {
		qmp_reply_error(c, id, QMP_GENERIC_ERROR,
		                exec == NULL ? "QMP input lacks member 'execute'"
		                             : "QMP input member 'execute' must be a string");
		return;
	}
	if (args != NULL && !json_is_object(args)) {
		qmp_reply_error(c, id, QMP_GENERIC_ERROR,
		                "QMP input member 'arguments' must be an object");
		return;
	}
	const char *name = json_string_value(exec);
	json_t *ret = NULL;
	if (strcmp(name, "qmp_capabilities") == 0) {
		if (c->negotiated) {
			qmp_reply_error(c, id, QMP_COMMAND_NOT_FOUND,
			                "Capabilities negotiation is already complete, command "
			                "ignored");
			return;
		}
		json_t *en = args != NULL ? json_object_get(args, "enable") : NULL;
		if (en != NULL && (!json_is_array(en) || json_array_size(en) > 0)) {
			json_t *first = json_is_array(en) ? json_array_get(en, 0) : NULL;
			char desc[160];
			snprintf(desc, sizeof(desc), "Capability '%.64s' not available",
			         json_is_string(first) ? json_string_value(first) : "?");
			qmp_reply_error(c, id, QMP_GENERIC_ERROR, desc);
			return;
		}
		c->negotiated = 1;
		ret = json_object();
	} else if (!c->negotiated) {
		qmp_reply_error(c, id, QMP_COMMAND_NOT_FOUND,
		                "Expecting capabilities negotiation with 'qmp_capabilities'");
		return;
	} else if ((ret = qmp_builtin(s, name)) == NULL) {
		const struct qmp_command *k = s->cmds;
		while (k->name != NULL && strcmp(k->name, name) != 0)
			k++;
		if (k->name == NULL) {
			char desc[160];
			snprintf(desc, sizeof(desc), "The command %.64s has not been found", name);
			qmp_reply_error(c, id, QMP_COMMAND_NOT_FOUND, desc);
			return;
		}
		json_t *empty = args == NULL ? json_object() : NULL;
		struct qmp_error err = {QMP_GENERIC_ERROR, ""};
		ret = k->fn(s->ctx, args != NULL ? args : empty, &err);
		json_decref(empty);
		if (ret == NULL) {
			qmp_reply_error(c, id, err.cls, err.desc[0] ? err.desc : "failed");
			return;
		}
	}
	json_t *r = json_object();
	json_object_set_new(r, "return", ret);
	if (id != NULL)
		json_object_set(r, "id", id);
	qmp_send(c, r);
}

/* Parses and dispatches every complete object in the buffer. */
static void
qmp_parse(struct qmp_client *c)
{
	size_t at = 0;
	while (!c->closing) {
		while (at < c->len && strchr(" \t\r\n", c->buf[at]) != NULL && c->buf[at] != '\0')
			at++;
		if (at == c->len)
			break;
		json_error_t e;
		json_t *req = json_loadb(c->buf + at, c->len - at,
		                         JSON_DISABLE_EOF_CHECK | JSON_DECODE_ANY, &e);
		if (req != NULL) {
			at += e.position;
			qmp_dispatch(c, req);
			json_decref(req);
			continue;
		}
		if (json_error_code(&e) == json_error_premature_end_of_input &&
		    c->len - at < QMP_MAX_REQUEST)
			break; /* wait for the rest */
		char desc[300];
		snprintf(desc, sizeof(desc), "JSON parse error, %s",
		         json_error_code(&e) == json_error_premature_end_of_input
		             ? "request too large"
		             : e.text);
		qmp_reply_error(c, NULL, QMP_GENERIC_ERROR, desc);
		/* Resynchronise at the next line; without one, drop it all. */
		char *nl = memchr(c->buf + at, '\n', c->len - at);
		at = nl != NULL ? (size_t)(nl - c->buf) + 1 : c->len;
	}
	memmove(c->buf, c->buf + at, c->len - at);
	c->len -= at;
}

static void
qmp_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
	struct qmp_client *c = (struct qmp_client *)h;
	(void)suggested;
	if (c->cap - c->len < 4096) {
		size_t cap = c->cap ? c->cap * 2 : 8192;
		char *nb = cap <= 2 * QMP_MAX_REQUEST ? realloc(c->buf, cap) : NULL;
		if (nb == NULL) {
			*b = uv_buf_init(NULL, 0); /* libuv reports UV_ENOBUFS */
			return;
		}
		c->buf = nb;
		c->cap = cap;
	}
	*b = uv_buf_init(c->buf + c->len, (unsigned)(c->cap - c->len));
}

static void
qmp_read(uv_stream_t *st, ssize_t n, const uv_buf_t *b)
{
	struct qmp_client *c = (struct qmp_client *)st;
	(void)b;
	if (n < 0) {
		qmp_client_close(c);
		return;
	}
	c->len += (size_t)n;
	qmp_parse(c);
}

static void
qmp_accept(uv_stream_t *l, int status)
{
	struct qmp_server *s = l->data;
	if (status != 0)
		return;
	struct qmp_client *c = calloc(1, sizeof(*c));
	if (c == NULL)
		return;
	c->srv = s;
	uv_pipe_init(s->loop, &c->pipe, 0);
	c->pipe.data = s;
	s->handles++;
	if (uv_accept(l, (uv_stream_t *)&c->pipe) != 0) {
		c->closing = 1;
		uv_close((uv_handle_t *)&c->pipe, qmp_handle_closed);
		return;
	}
	c->next = s->clients;
	s->clients = c;
	json_t *caps = json_array();
	qmp_send(
	    c, json_pack("{s:{s:o,s:o}}", "QMP", "version", qmp_version(s), "capabilities", caps));
	if (!c->closing && uv_read_start((uv_stream_t *)&c->pipe, qmp_alloc, qmp_read) != 0)
		qmp_client_close(c);
}

/* A socket file left by a process that died is replaced; one that still
 * answers belongs to a live process and is not taken over. */
static int
qmp_claim_path(const char *path, char *err, size_t errlen)
{
	struct stat st;
	if (lstat(path, &st) != 0)
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISSOCK(st.st_mode)) {
		snprintf(err, errlen, "%s exists and is not a socket", path);
		return -EEXIST;
	}
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
	int live = connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
	close(fd);
	if (live) {
		snprintf(err, errlen, "%s is the control socket of a running process", path);
		return -EADDRINUSE;
	}
	return unlink(path) == 0 ? 0 : -errno;
}

int
qmp_server_start(struct qmp_server **out, uv_loop_t *loop, const char *path,
                 const struct qmp_command *cmds, void *ctx, const char *product, char *err,
                 size_t errlen)
{
	*out = NULL;
	struct qmp_server *s = calloc(1, sizeof(*s));
	if (s == NULL)
		return TERN_ENOMEM;
	if (strlen(path) >= sizeof(s->path)) {
		snprintf(err, errlen, "control socket path too long (%zu bytes, at most %zu)",
		         strlen(path), sizeof(s->path) - 1);
		free(s);
		return TERN_EINVAL;
	}
	snprintf(s->path, sizeof(s->path), "%s", path);
	snprintf(s->product, sizeof(s->product), "%s", product);
	s->loop = loop;
	s->cmds = cmds;
	s->ctx = ctx;
	int rc = qmp_claim_path(path, err, errlen);
	if (rc != 0) {
		if (err[0] == '\0')
			snprintf(err, errlen, "%s: %s", path, tern_strerror(rc));
		free(s);
		return rc;
	}
	uv_pipe_init(loop, &s->listener, 0);
	s->listener.data = s;
	s->handles = 1;
	if ((rc = uv_pipe_bind(&s->listener, path)) != 0 ||
	    (rc = uv_listen((uv_stream_t *)&s->listener, 16, qmp_accept)) != 0) {
		snprintf(err, errlen, "cannot listen on %s: %s", path, uv_strerror(rc));
		s->closing = 1;
		uv_close((uv_handle_t *)&s->listener, qmp_handle_closed);
		s->path[0] = '\0';
		return rc;
	}
	chmod(path, 0600); /* the socket controls the guest: its owner only */
	*out = s;
	return 0;
}

void
qmp_server_event(struct qmp_server *s, const char *name, json_t *data)
{
	struct timeval tv;
	gettimeofday(&tv, NULL);
	if (data == NULL)
		data = json_object();
	for (struct qmp_client *c = s->clients, *next; c != NULL; c = next) {
		next = c->next; /* a failed send unlinks c */
		if (!c->negotiated)
			continue;
		qmp_send(c, json_pack("{s:s,s:O,s:{s:I,s:I}}", "event", name, "data", data,
		                      "timestamp", "seconds", (json_int_t)tv.tv_sec, "microseconds",
		                      (json_int_t)tv.tv_usec));
	}
	json_decref(data);
}

void
qmp_server_close(struct qmp_server *s)
{
	if (s == NULL || s->closing)
		return;
	s->closing = 1;
	while (s->clients != NULL)
		qmp_client_close(s->clients);
	if (s->path[0] != '\0')
		unlink(s->path);
	uv_close((uv_handle_t *)&s->listener, qmp_handle_closed);
}
