/*
 * `tern ctl PATH COMMAND [key=value...]`: a small QMP client.  Connects,
 * negotiates capabilities, sends one command with its arguments, prints the
 * answer; --wait follows a migration to its end with a progress bar.
 */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "messages/msg.h"
#include "tools/ctl.h"

struct ctl {
	int fd;
	char buf[1 << 16];
	size_t len;
	int timeout_ms; /* per answer */
	unsigned next_id;
};

static uint64_t
ctl_now_ms(void)
{
	return tern_now_ns() / 1000000;
}

/* Reads one JSON object from the stream (NULL on error or timeout, with a
 * reason in why). */
static json_t *
ctl_read(struct ctl *c, char *why, size_t whylen)
{
	uint64_t deadline = ctl_now_ms() + (uint64_t)c->timeout_ms;
	for (;;) {
		char *nl = memchr(c->buf, '\n', c->len);
		if (nl != NULL) {
			size_t n = (size_t)(nl - c->buf) + 1;
			json_error_t e;
			json_t *o = json_loadb(c->buf, n, JSON_DECODE_ANY, &e);
			memmove(c->buf, c->buf + n, c->len - n);
			c->len -= n;
			if (o == NULL) {
				snprintf(why, whylen, "bad answer from the server: %s", e.text);
				return NULL;
			}
			return o;
		}
		if (c->len == sizeof(c->buf)) {
			snprintf(why, whylen, "answer line longer than %zu bytes", sizeof(c->buf));
			return NULL;
		}
		uint64_t now = ctl_now_ms();
		if (now >= deadline) {
			snprintf(why, whylen, "no answer within %d ms", c->timeout_ms);
			return NULL;
		}
		struct pollfd p = {.fd = c->fd, .events = POLLIN};
		int r = poll(&p, 1, (int)(deadline - now));
		if (r < 0 && errno != EINTR) {
			snprintf(why, whylen, "poll: %s", strerror(errno));
			return NULL;
		}
		if (r <= 0)
			continue;
		ssize_t n = read(c->fd, c->buf + c->len, sizeof(c->buf) - c->len);
		if (n <= 0) {
			snprintf(why, whylen, "the server closed the connection");
			return NULL;
		}
		c->len += (size_t)n;
	}
}

/* Sends a command and returns its answer (events before it are skipped):
 * the whole {"return"...} or {"error"...} object. */
static json_t *
ctl_call(struct ctl *c, const char *name, json_t *args, char *why, size_t whylen)
{
	unsigned id = ++c->next_id;
	json_t *req = json_pack("{s:s,s:I}", "execute", name, "id", (json_int_t)id);
	if (args != NULL)
		json_object_set(req, "arguments", args);
	char *text = json_dumps(req, JSON_COMPACT);
	json_decref(req);
	/* One write with its newline: a server acting on the object at once
	 * (quit) must not see the connection fail under a second write. */
	size_t n = strlen(text);
	char *line = realloc(text, n + 2);
	if (line == NULL) {
		free(text);
		snprintf(why, whylen, "out of memory");
		return NULL;
	}
	memcpy(line + n, "\n", 2);
	int ok = write(c->fd, line, n + 1) == (ssize_t)(n + 1);
	free(line);
	if (!ok) {
		snprintf(why, whylen, "cannot send: %s", strerror(errno));
		return NULL;
	}
	for (;;) {
		json_t *a = ctl_read(c, why, whylen);
		if (a == NULL)
			return NULL;
		if (json_object_get(a, "event") == NULL &&
		    json_integer_value(json_object_get(a, "id")) == (json_int_t)id)
			return a;
		json_decref(a);
	}
}

static int
ctl_connect(struct ctl *c, const char *path, char *why, size_t whylen)
{
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	if (strlen(path) >= sizeof(a.sun_path)) {
		snprintf(why, whylen, "socket path too long");
		return -1;
	}
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
	c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c->fd < 0 || connect(c->fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
		snprintf(why, whylen, "cannot connect to %s: %s", path, strerror(errno));
		return -1;
	}
	json_t *greeting = ctl_read(c, why, whylen);
	if (greeting == NULL || json_object_get(greeting, "QMP") == NULL) {
		if (greeting != NULL)
			snprintf(why, whylen, "%s does not speak QMP", path);
		json_decref(greeting);
		return -1;
	}
	json_decref(greeting);
	json_t *r = ctl_call(c, "qmp_capabilities", NULL, why, whylen);
	int ok = r != NULL && json_object_get(r, "return") != NULL;
	if (r != NULL && !ok)
		snprintf(why, whylen, "capabilities negotiation refused");
	json_decref(r);
	return ok ? 0 : -1;
}

/* key=value: integers, true/false and JSON objects/arrays as such, the rest
 * as strings. */
static int
ctl_args(int argc, char **argv, json_t *args)
{
	for (int i = 0; i < argc; i++) {
		char *eq = strchr(argv[i], '=');
		if (eq == NULL || eq == argv[i]) {
			fprintf(stderr, "tern ctl: argument '%s' is not key=value\n", argv[i]);
			return -1;
		}
		*eq = '\0';
		const char *v = eq + 1;
		json_t *val = NULL;
		char *end;
		errno = 0;
		long long n = strtoll(v, &end, 10);
		if (*v != '\0' && *end == '\0' && errno == 0)
			val = json_integer(n);
		else if (strcmp(v, "true") == 0 || strcmp(v, "false") == 0)
			val = json_boolean(v[0] == 't');
		else if (v[0] == '{' || v[0] == '[')
			val = json_loads(v, 0, NULL);
		if (val == NULL)
			val = json_string(v);
		json_object_set_new(args, argv[i], val);
	}
	return 0;
}

static const char *
ctl_status(json_t *info)
{
	const char *s = json_string_value(json_object_get(info, "status"));
	return s != NULL ? s : "?";
}

static int
ctl_final(const char *s)
{
	return strcmp(s, "completed") == 0 || strcmp(s, "failed") == 0 ||
	       strcmp(s, "cancelled") == 0 || strcmp(s, "none") == 0;
}

static void
ctl_bar(json_t *info)
{
	json_t *ram = json_object_get(info, "ram");
	double total = (double)json_integer_value(json_object_get(ram, "total"));
	double rem = (double)json_integer_value(json_object_get(ram, "remaining"));
	double done = total > 0 ? 1.0 - rem / total : 0;
	int width = 30, fill = (int)(done * width + 0.5);
	const char *phase =
	    json_string_value(json_object_get(json_object_get(info, "tern"), "phase"));
	fprintf(stderr, "\r\033[K[%.*s%*s] %3.0f%% %-9s %6.0f Mbps  pass %lld  %s", fill,
	        "##############################", width - fill, "", done * 100, ctl_status(info),
	        json_real_value(json_object_get(ram, "mbps")),
	        json_integer_value(json_object_get(ram, "dirty-sync-count")), phase ? phase : "");
}

/* Follows query-migrate until the migration ends; returns its last answer. */
static json_t *
ctl_wait(struct ctl *c, uint64_t timeout_ms, char *why, size_t whylen)
{
	uint64_t deadline = timeout_ms ? ctl_now_ms() + timeout_ms : UINT64_MAX;
	int tty = isatty(STDERR_FILENO);
	for (;;) {
		json_t *r = ctl_call(c, "query-migrate", NULL, why, whylen);
		json_t *info = r != NULL ? json_object_get(r, "return") : NULL;
		if (info == NULL) {
			json_decref(r);
			return NULL;
		}
		if (ctl_final(ctl_status(info))) {
			if (tty)
				fprintf(stderr, "\r\033[K");
			json_incref(info);
			json_decref(r);
			return info;
		}
		if (tty)
			ctl_bar(info);
		json_decref(r);
		if (ctl_now_ms() >= deadline) {
			snprintf(why, whylen, "the migration did not end within --timeout");
			return NULL;
		}
		usleep(200 * 1000);
	}
}

/* Prints v, or the member at a dotted path of it. */
static int
ctl_print(json_t *v, const char *get)
{
	if (get != NULL) {
		char path[256];
		snprintf(path, sizeof(path), "%s", get);
		for (char *k = strtok(path, "."); k != NULL && v != NULL; k = strtok(NULL, "."))
			v = json_is_array(v) ? json_array_get(v, (size_t)atoi(k))
			                     : json_object_get(v, k);
		if (v == NULL) {
			fprintf(stderr, "tern ctl: no '%s' in the answer\n", get);
			return 1;
		}
		if (json_is_string(v)) {
			printf("%s\n", json_string_value(v));
			return 0;
		}
	}
	char *text = json_dumps(v, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_ENCODE_ANY);
	printf("%s\n", text != NULL ? text : "null");
	free(text);
	return 0;
}

static void
ctl_usage(FILE *f)
{
	fprintf(
	    f,
	    "usage: tern ctl [--wait] [--timeout SECONDS] [--get PATH] SOCKET COMMAND "
	    "[key=value...]\n"
	    "\n"
	    "Sends one QMP command to a `tern vm` (or any QMP server) and prints the answer.\n"
	    "Values: integers, true/false and JSON objects/arrays as such, the rest strings.\n"
	    "  --wait            after the command, follow query-migrate until the migration\n"
	    "                    ends (a progress bar on a terminal) and print its final state;\n"
	    "                    exit 1 unless it completed\n"
	    "  --timeout S       give up waiting after S seconds (none); an answer to a command\n"
	    "                    is waited for 30 s\n"
	    "  --get PATH        print only that member of the answer (e.g. ram.transferred)\n"
	    "e.g. tern ctl /run/a.sock migrate uri=tcp:10.0.0.2:4444 connections=4 --wait\n"
	    "     tern ctl /run/a.sock migrate-set-parameters max-bandwidth=104857600\n"
	    "Exit status: 0 ok, 1 error answer / failed migration / no answer, 2 bad usage.\n");
}

int
ctl_main(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"wait", no_argument, NULL, 'w'},
	    {"timeout", required_argument, NULL, 't'},
	    {"get", required_argument, NULL, 'g'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	int opt, wait = 0, rc = 1;
	uint64_t timeout_ms = 0;
	const char *get = NULL;
	signal(SIGPIPE, SIG_IGN); /* a server that goes away is an error line */
	optind = 1;
	/* Options may come anywhere; key=value pairs never start with "-". */
	while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (opt) {
		case 'w':
			wait = 1;
			break;
		case 't':
			timeout_ms = strtoull(optarg, NULL, 10) * 1000;
			break;
		case 'g':
			get = optarg;
			break;
		case 'h':
			ctl_usage(stdout);
			return 0;
		default:
			ctl_usage(stderr);
			return 2;
		}
	}
	if (argc - optind < 2) {
		ctl_usage(stderr);
		return 2;
	}
	struct ctl *c = calloc(1, sizeof(*c));
	json_t *args = json_object();
	char why[512] = "";
	if (c == NULL || ctl_args(argc - optind - 2, argv + optind + 2, args) != 0) {
		json_decref(args);
		free(c);
		return 2;
	}
	c->timeout_ms = 30000;
	if (ctl_connect(c, argv[optind], why, sizeof(why)) != 0) {
		fprintf(stderr, "tern ctl: %s\n", why);
		goto out;
	}
	json_t *r = ctl_call(c, argv[optind + 1], args, why, sizeof(why));
	if (r == NULL) {
		fprintf(stderr, "tern ctl: %s\n", why);
		goto out;
	}
	json_t *e = json_object_get(r, "error");
	if (e != NULL) {
		fprintf(stderr, "tern ctl: %s: %s\n",
		        json_string_value(json_object_get(e, "class")),
		        json_string_value(json_object_get(e, "desc")));
		json_decref(r);
		goto out;
	}
	if (!wait) {
		rc = ctl_print(json_object_get(r, "return"), get);
		json_decref(r);
		goto out;
	}
	json_decref(r);
	json_t *info = ctl_wait(c, timeout_ms, why, sizeof(why));
	if (info == NULL) {
		fprintf(stderr, "tern ctl: %s\n", why);
		goto out;
	}
	rc = ctl_print(info, get) != 0 || strcmp(ctl_status(info), "completed") != 0;
	if (strcmp(ctl_status(info), "completed") != 0) {
		const char *d = json_string_value(json_object_get(info, "error-desc"));
		fprintf(stderr, "tern ctl: migration %s%s%s\n", ctl_status(info), d ? ": " : "",
		        d ? d : "");
	}
	json_decref(info);
out:
	if (c->fd > 0)
		close(c->fd);
	json_decref(args);
	free(c);
	return rc;
}
