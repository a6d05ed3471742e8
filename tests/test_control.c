/*
 * `tern vm` driven as a manager drives it: real `tern vm` processes, a plain
 * QMP client over their unix sockets (the wire format, nothing of tern's),
 * migrations A -> B -> A, cancel, live parameters, SIGTERM.
 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "tests/proc.h"

#define GUEST_SMALL "simvm:mem=64M,vcpus=2,fill=random,workload=memtouch:ws=16M,rate=20M"
/* Big enough that a capped migration is still running when the test acts. */
#define GUEST_BIG "simvm:mem=256M,vcpus=2,fill=random,workload=memtouch:ws=32M,rate=20M"
#define LIVENESS_MS 120000
/* How long a test waits for an event that must already have been sent. */
#define EVENT_MS 30000

struct vmproc;

struct qmp {
	int fd;
	struct vmproc *vm; /* the server's process, for its log when it fails */
	char buf[1 << 16];
	size_t len;
	json_t *events; /* every event seen, in order */
	int next_id;
};

struct vmproc {
	struct proc p;
	char sock[108];
};

static void
vm_start_fault(struct vmproc *v, const char *name, const char *guest, int incoming,
               const char *fault)
{
	/* A server that closes on us is a failed assertion, not a crash. */
	signal(SIGPIPE, SIG_IGN);
	snprintf(v->sock, sizeof(v->sock), "/tmp/tern-test-%d-%s.sock", (int)getpid(), name);
	char *argv[] = {tern_cli(),
	                "vm",
	                "--guest",
	                (char *)guest,
	                "--control",
	                v->sock,
	                incoming ? "--incoming" : NULL,
	                "defer",
	                NULL};
	cr_assert_eq(fault ? proc_start_fault(&v->p, argv, 0, fault) : proc_start(&v->p, argv, 0),
	             0);
}

static void
vm_start(struct vmproc *v, const char *name, const char *guest, int incoming)
{
	vm_start_fault(v, name, guest, incoming, NULL);
}

/* Waits for the vm to exit; returns its exit code. */
static int
vm_end(struct vmproc *v)
{
	cr_assert_eq(proc_wait(&v->p, LIVENESS_MS), 0, "tern vm did not exit: %s", v->p.errbuf);
	return proc_exit_code(&v->p);
}

/* Next JSON object from the server (NULL at timeout or close). */
static json_t *
qmp_next(struct qmp *q, int timeout_ms)
{
	uint64_t deadline = proc_now_ms() + (uint64_t)timeout_ms;
	for (;;) {
		char *nl = memchr(q->buf, '\n', q->len);
		if (nl != NULL) {
			size_t n = (size_t)(nl - q->buf) + 1;
			/* QEMU's line ending. */
			cr_assert(n >= 2 && nl[-1] == '\r');
			json_t *o = json_loadb(q->buf, n, 0, NULL);
			memmove(q->buf, q->buf + n, q->len - n);
			q->len -= n;
			cr_assert_not_null(o, "the server sent a line that is not JSON");
			return o;
		}
		int64_t left = (int64_t)(deadline - proc_now_ms());
		if (left <= 0)
			return NULL;
		struct pollfd pf = {q->fd, POLLIN, 0};
		if (poll(&pf, 1, (int)left) <= 0)
			continue;
		ssize_t r = read(q->fd, q->buf + q->len, sizeof(q->buf) - q->len);
		if (r <= 0)
			return NULL;
		q->len += (size_t)r;
	}
}

static void
qmp_raw(struct qmp *q, const char *text)
{
	size_t n = strlen(text);
	ssize_t w = write(q->fd, text, n);
	if (w != (ssize_t)n && q->vm != NULL) {
		/* The server went away: its log says why. */
		proc_wait(&q->vm->p, 5000);
		cr_assert_fail("cannot send %s: %s; the vm %s with %d, its log:\n%s", text,
		               strerror(errno), q->vm->sock, proc_exit_code(&q->vm->p),
		               q->vm->p.errbuf);
	}
	cr_assert_eq(w, (ssize_t)n, "cannot send %s: %s", text, strerror(errno));
}

/* Connects (the vm may still be starting) and reads the greeting; with
 * negotiate, also qmp_capabilities. */
static void
qmp_open(struct qmp *q, struct vmproc *v, int negotiate)
{
	const char *path = v->sock;
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
	memset(q, 0, sizeof(*q));
	q->vm = v;
	q->events = json_array();
	uint64_t deadline = proc_now_ms() + LIVENESS_MS;
	for (;;) {
		q->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (connect(q->fd, (struct sockaddr *)&a, sizeof(a)) == 0)
			break;
		close(q->fd);
		cr_assert(proc_now_ms() < deadline, "no control socket at %s", path);
		usleep(20000);
	}
	json_t *g = qmp_next(q, LIVENESS_MS);
	cr_assert_not_null(g);
	json_t *ver = json_object_get(json_object_get(g, "QMP"), "version");
	cr_assert(json_is_integer(json_object_get(json_object_get(ver, "qemu"), "major")));
	cr_assert(json_is_array(json_object_get(json_object_get(g, "QMP"), "capabilities")));
	json_decref(g);
	if (negotiate) {
		qmp_raw(q, "{\"execute\": \"qmp_capabilities\"}\n");
		json_t *r = qmp_next(q, LIVENESS_MS);
		cr_assert(json_is_object(json_object_get(r, "return")));
		json_decref(r);
	}
}

static void
qmp_close(struct qmp *q)
{
	close(q->fd);
	json_decref(q->events);
}

/* Sends a command and returns its answer, keeping the events met on the way. */
static json_t *
qmp_cmd(struct qmp *q, const char *name, json_t *args)
{
	json_t *req = json_pack("{s:s,s:i}", "execute", name, "id", ++q->next_id);
	if (args != NULL)
		json_object_set_new(req, "arguments", args);
	char *text = json_dumps(req, JSON_COMPACT);
	json_decref(req);
	char line[4096];
	/* One write: the server may act (quit) on the object before a newline. */
	snprintf(line, sizeof(line), "%s\n", text);
	qmp_raw(q, line);
	free(text);
	for (;;) {
		json_t *r = qmp_next(q, LIVENESS_MS);
		cr_assert_not_null(r, "no answer to %s", name);
		if (json_object_get(r, "event") != NULL) {
			json_array_append_new(q->events, r);
			continue;
		}
		cr_assert_eq(json_integer_value(json_object_get(r, "id")), q->next_id);
		return r;
	}
}

/* The return of a command that must succeed (a new reference). */
static json_t *
qmp_ok(struct qmp *q, const char *name, json_t *args)
{
	json_t *r = qmp_cmd(q, name, args);
	json_t *e = json_object_get(r, "error");
	cr_assert_null(e, "%s failed: %s", name, json_string_value(json_object_get(e, "desc")));
	json_t *ret = json_incref(json_object_get(r, "return"));
	json_decref(r);
	return ret;
}

/* The error class of a command that must fail. */
static const char *
qmp_fails(struct qmp *q, const char *name, json_t *args)
{
	json_t *r = qmp_cmd(q, name, args);
	json_t *e = json_object_get(r, "error");
	cr_assert_not_null(e, "%s did not fail", name);
	static char cls[64];
	snprintf(cls, sizeof(cls), "%s", json_string_value(json_object_get(e, "class")));
	cr_assert_not_null(json_string_value(json_object_get(e, "desc")));
	json_decref(r);
	return cls;
}

/* Whether an event named name (with data.key == value, when key) was seen;
 * waits for it up to LIVENESS_MS. */
static void
qmp_wait_event(struct qmp *q, const char *name, const char *key, const char *value)
{
	uint64_t deadline = proc_now_ms() + EVENT_MS;
	size_t i = 0;
	for (;;) {
		for (; i < json_array_size(q->events); i++) {
			json_t *ev = json_array_get(q->events, i);
			if (strcmp(json_string_value(json_object_get(ev, "event")), name) != 0)
				continue;
			cr_assert(json_is_integer(
			    json_object_get(json_object_get(ev, "timestamp"), "microseconds")));
			const char *v = key ? json_string_value(
			                          json_object_get(json_object_get(ev, "data"), key))
			                    : NULL;
			if (key == NULL || (v != NULL && strcmp(v, value) == 0))
				return;
		}
		int64_t left = (int64_t)(deadline - proc_now_ms());
		json_t *o = left > 0 ? qmp_next(q, (int)left) : NULL;
		if (o == NULL) {
			char *seen = json_dumps(q->events, JSON_COMPACT);
			cr_assert_fail("no %s event (%s=%s) from %s; seen: %s", name,
			               key ? key : "", value ? value : "", q->vm->sock, seen);
		}
		cr_assert_not_null(json_object_get(o, "event"), "an answer nobody asked for");
		json_array_append_new(q->events, o);
	}
}

static const char *
migrate_status(struct qmp *q)
{
	static char st[32];
	json_t *r = qmp_ok(q, "query-migrate", NULL);
	snprintf(st, sizeof(st), "%s", json_string_value(json_object_get(r, "status")));
	json_decref(r);
	return st;
}

/* Polls query-migrate until the status is one of the space-separated list. */
static const char *
wait_status(struct qmp *q, const char *want)
{
	uint64_t deadline = proc_now_ms() + LIVENESS_MS;
	for (;;) {
		const char *st = migrate_status(q);
		char pad[64];
		snprintf(pad, sizeof(pad), " %s ", st);
		char list[128];
		snprintf(list, sizeof(list), " %s ", want);
		if (strstr(list, pad) != NULL)
			return st;
		cr_assert(proc_now_ms() < deadline, "migration status stayed %s (waiting for %s)",
		          st, want);
		usleep(50000);
	}
}

static const char *
run_status(struct qmp *q)
{
	static char st[32];
	json_t *r = qmp_ok(q, "query-status", NULL);
	snprintf(st, sizeof(st), "%s", json_string_value(json_object_get(r, "status")));
	cr_assert_eq(json_is_true(json_object_get(r, "running")), strcmp(st, "running") == 0);
	json_decref(r);
	return st;
}

/* The guest's workload progress; asserts its invariant holds. */
static long long
workload(struct qmp *q)
{
	json_t *r = qmp_ok(q, "query-status", NULL);
	json_t *g = json_object_get(r, "tern-guest");
	cr_assert(json_is_true(json_object_get(g, "workload-ok")), "workload check: %s",
	          json_string_value(json_object_get(g, "workload-error")));
	long long p = json_integer_value(json_object_get(g, "workload-progress"));
	json_decref(r);
	return p;
}

/* Asks dst to take a guest on a free port; returns "tcp:127.0.0.1:PORT". */
static void
incoming(struct qmp *dst, char *uri, size_t len)
{
	json_decref(qmp_ok(dst, "migrate-incoming", json_pack("{s:s}", "uri", "tcp:127.0.0.1:0")));
	uint64_t deadline = proc_now_ms() + LIVENESS_MS;
	for (;;) {
		json_t *r = qmp_ok(dst, "query-migrate", NULL);
		const char *port = json_string_value(json_object_get(
		    json_array_get(json_object_get(r, "socket-address"), 0), "port"));
		if (port != NULL) {
			snprintf(uri, len, "tcp:127.0.0.1:%s", port);
			json_decref(r);
			return;
		}
		json_decref(r);
		cr_assert(proc_now_ms() < deadline, "the destination never listened");
		usleep(20000);
	}
}

/* One whole migration src -> dst through the sockets only, checked. */
static void
migrate_once(struct qmp *src, struct qmp *dst)
{
	char uri[64];
	json_array_clear(src->events);
	json_array_clear(dst->events);
	incoming(dst, uri, sizeof(uri));
	cr_assert_str_eq(run_status(dst), "inmigrate");
	json_decref(qmp_ok(src, "migrate", json_pack("{s:s,s:b}", "uri", uri, "verify", 1)));
	cr_assert_str_eq(wait_status(src, "completed failed cancelled"), "completed");
	json_t *info = qmp_ok(src, "query-migrate", NULL);
	json_t *t = json_object_get(info, "tern");
	cr_assert(json_is_true(json_object_get(t, "verified")));
	cr_assert(json_is_integer(json_object_get(info, "downtime")));
	cr_assert(json_integer_value(
	              json_object_get(json_object_get(info, "ram"), "transferred")) >= 64ll << 20);
	cr_assert(json_integer_value(json_object_get(info, "setup-time")) > 0);
	json_decref(info);
	qmp_wait_event(src, "MIGRATION", "status", "setup");
	qmp_wait_event(src, "MIGRATION", "status", "active");
	qmp_wait_event(src, "MIGRATION_PASS", NULL, NULL);
	qmp_wait_event(src, "STOP", NULL, NULL); /* paused for the switchover */
	qmp_wait_event(src, "MIGRATION", "status", "device");
	qmp_wait_event(src, "MIGRATION", "status", "completed");
	cr_assert_str_eq(run_status(src), "postmigrate");
	cr_assert_str_eq(wait_status(dst, "completed failed cancelled"), "completed");
	qmp_wait_event(dst, "RESUME", NULL, NULL);
	cr_assert_str_eq(run_status(dst), "running");
	/* It runs there, consistent, and goes on running. */
	long long p0 = workload(dst);
	uint64_t deadline = proc_now_ms() + LIVENESS_MS;
	while (workload(dst) <= p0)
		cr_assert(proc_now_ms() < deadline, "the arrived guest does not run");
}

/* Two vms: a runs guest, b waits (--incoming defer) for one of its layout;
 * both negotiated. */
struct pair {
	struct vmproc a, b;
	struct qmp qa, qb;
};

static void
pair_start(struct pair *p, const char *name, const char *guest)
{
	char na[32], nb[32];
	snprintf(na, sizeof(na), "%sa", name);
	snprintf(nb, sizeof(nb), "%sb", name);
	vm_start(&p->a, na, guest, 0);
	vm_start(&p->b, nb, guest, 1);
	qmp_open(&p->qa, &p->a, 1);
	qmp_open(&p->qb, &p->b, 1);
}

/* quit through the sockets; both must exit 0 (a vm already gone: NULL q). */
static void
pair_end(struct pair *p, int a_alive)
{
	if (a_alive)
		json_decref(qmp_ok(&p->qa, "quit", NULL));
	json_decref(qmp_ok(&p->qb, "quit", NULL));
	if (a_alive)
		cr_assert_eq(vm_end(&p->a), 0);
	cr_assert_eq(vm_end(&p->b), 0);
	qmp_close(&p->qa);
	qmp_close(&p->qb);
}

Test(control, protocol)
{
	struct vmproc a;
	struct qmp q, q2;
	vm_start(&a, "proto", GUEST_SMALL, 0);
	qmp_open(&q, &a, 0);
	/* Nothing before negotiation. */
	qmp_raw(&q, "{\"execute\":\"query-status\",\"id\":\"x1\"}\n");
	json_t *r = qmp_next(&q, LIVENESS_MS);
	cr_assert_str_eq(json_string_value(json_object_get(json_object_get(r, "error"), "class")),
	                 "CommandNotFound");
	cr_assert_str_eq(json_string_value(json_object_get(r, "id")), "x1");
	json_decref(r);
	/* Split across writes, no newline needed between objects. */
	qmp_raw(&q, "{\"execute\": \"qmp_capa");
	usleep(50000);
	qmp_raw(&q, "bilities\", \"id\": 7}{\"execute\":\"query-status\",\"id\":8}\n");
	r = qmp_next(&q, LIVENESS_MS);
	cr_assert(json_is_object(json_object_get(r, "return")));
	cr_assert_eq(json_integer_value(json_object_get(r, "id")), 7);
	json_decref(r);
	r = qmp_next(&q, LIVENESS_MS);
	cr_assert(json_is_true(json_object_get(json_object_get(r, "return"), "running")));
	json_decref(r);
	/* Errors, and the connection stays usable after each. */
	cr_assert_str_eq(qmp_fails(&q, "qmp_capabilities", NULL), "CommandNotFound");
	cr_assert_str_eq(qmp_fails(&q, "no-such-command", NULL), "CommandNotFound");
	qmp_raw(&q, "{this is not json\n");
	r = qmp_next(&q, LIVENESS_MS);
	cr_assert_str_eq(json_string_value(json_object_get(json_object_get(r, "error"), "class")),
	                 "GenericError");
	json_decref(r);
	qmp_raw(&q, "[1, 2]\n");
	r = qmp_next(&q, LIVENESS_MS);
	cr_assert_not_null(json_object_get(r, "error"));
	json_decref(r);
	qmp_raw(&q, "{\"execute\":\"query-status\",\"bogus\":1}\n");
	r = qmp_next(&q, LIVENESS_MS);
	cr_assert_not_null(json_object_get(r, "error"));
	json_decref(r);
	cr_assert_str_eq(qmp_fails(&q, "migrate", json_pack("{s:s}", "uri", "exec:cat")),
	                 "GenericError");
	cr_assert_str_eq(qmp_fails(&q, "migrate", json_pack("{}")), "GenericError");
	cr_assert_str_eq(
	    qmp_fails(&q, "migrate-set-parameters", json_pack("{s:i}", "downtime-limit", -5)),
	    "GenericError");
	cr_assert_str_eq(
	    qmp_fails(&q, "migrate-set-parameters", json_pack("{s:s}", "tern-dirty-log", "x")),
	    "GenericError");
	cr_assert_str_eq(
	    qmp_fails(&q, "migrate-incoming", json_pack("{s:s}", "uri", "tcp:127.0.0.1:0")),
	    "GenericError"); /* it holds a guest */
	cr_assert_str_eq(run_status(&q), "running");
	/* Parameters: set, read back; a refused set changes nothing. */
	json_decref(
	    qmp_ok(&q, "migrate-set-parameters",
	           json_pack("{s:i,s:i,s:i,s:s}", "downtime-limit", 150, "max-bandwidth", 1 << 30,
	                     "multifd-channels", 3, "tern-auto-converge", "rate")));
	r = qmp_ok(&q, "query-migrate-parameters", NULL);
	cr_assert_eq(json_integer_value(json_object_get(r, "downtime-limit")), 150);
	cr_assert_eq(json_integer_value(json_object_get(r, "max-bandwidth")), 1 << 30);
	cr_assert_eq(json_integer_value(json_object_get(r, "multifd-channels")), 3);
	cr_assert_str_eq(json_string_value(json_object_get(r, "tern-auto-converge")), "rate");
	cr_assert_eq(json_integer_value(json_object_get(r, "tern-recover-timeout")), 300000);
	json_decref(r);
	r = qmp_ok(&q, "query-migrate-capabilities", NULL);
	cr_assert(json_is_true(json_object_get(json_array_get(r, 0), "state")));
	json_decref(r);
	cr_assert_str_eq(migrate_status(&q), "none");
	/* A second client: events reach both. */
	qmp_open(&q2, &a, 1);
	json_decref(qmp_ok(&q, "stop", NULL));
	cr_assert_str_eq(run_status(&q2), "paused");
	qmp_wait_event(&q, "STOP", NULL, NULL);
	qmp_wait_event(&q2, "STOP", NULL, NULL);
	cr_assert_str_eq(qmp_fails(&q2, "migrate", json_pack("{s:s}", "uri", "tcp:127.0.0.1:1")),
	                 "GenericError"); /* stopped: cont first */
	json_decref(qmp_ok(&q2, "cont", NULL));
	qmp_wait_event(&q, "RESUME", NULL, NULL);
	cr_assert_str_eq(run_status(&q), "running");
	json_decref(qmp_ok(&q2, "quit", NULL));
	qmp_wait_event(&q, "SHUTDOWN", NULL, NULL);
	cr_assert_eq(vm_end(&a), 0);
	struct stat st;
	cr_assert_neq(stat(a.sock, &st), 0, "the control socket was left behind");
	qmp_close(&q);
	qmp_close(&q2);
}

Test(control, ping_pong)
{
	struct pair p;
	pair_start(&p, "pp", GUEST_SMALL);
	cr_assert_str_eq(run_status(&p.qb), "inmigrate");
	for (int round = 0; round < 2; round++) {
		migrate_once(&p.qa, &p.qb); /* A -> B */
		migrate_once(&p.qb, &p.qa); /* and back */
	}
	pair_end(&p, 1);
}

/* A capped migration, still running when the test acts on it. */
static void
start_capped(struct qmp *qa, struct qmp *qb, long long cap)
{
	char uri[64];
	json_decref(qmp_ok(qa, "migrate-set-parameters", json_pack("{s:I}", "max-bandwidth", cap)));
	incoming(qb, uri, sizeof(uri));
	json_decref(qmp_ok(qa, "migrate", json_pack("{s:s}", "uri", uri)));
	uint64_t deadline = proc_now_ms() + LIVENESS_MS;
	for (;;) {
		json_t *r = qmp_ok(qa, "query-migrate", NULL);
		long long x =
		    json_integer_value(json_object_get(json_object_get(r, "ram"), "transferred"));
		const char *st = json_string_value(json_object_get(r, "status"));
		cr_assert(strcmp(st, "active") == 0 || strcmp(st, "setup") == 0,
		          "capped migration is %s", st);
		json_decref(r);
		if (x > 0)
			return;
		cr_assert(proc_now_ms() < deadline, "the migration never started sending");
		usleep(50000);
	}
}

Test(control, cancel_leaves_source_running)
{
	struct pair p;
	pair_start(&p, "c", GUEST_BIG);
	start_capped(&p.qa, &p.qb, 4ll << 20); /* 256 MiB at 4 MiB/s: about a minute */
	json_decref(qmp_ok(&p.qa, "migrate_cancel", NULL));
	cr_assert_str_eq(wait_status(&p.qa, "completed failed cancelled"), "cancelled");
	qmp_wait_event(&p.qa, "MIGRATION", "status", "cancelled");
	cr_assert_str_eq(run_status(&p.qa), "running");
	long long p0 = workload(&p.qa);
	uint64_t deadline = proc_now_ms() + LIVENESS_MS;
	while (workload(&p.qa) <= p0)
		cr_assert(proc_now_ms() < deadline, "the source guest does not run after cancel");
	/* The destination was told and is empty again, ready for another. */
	wait_status(&p.qb, "failed cancelled");
	cr_assert_str_eq(run_status(&p.qb), "inmigrate");
	json_decref(
	    qmp_ok(&p.qa, "migrate-set-parameters", json_pack("{s:i}", "max-bandwidth", 0)));
	migrate_once(&p.qa, &p.qb);
	pair_end(&p, 1);
}

/* transferred bytes and the time they were read at */
static void
sample(struct qmp *q, long long *bytes, uint64_t *ms)
{
	json_t *r = qmp_ok(q, "query-migrate", NULL);
	*bytes = json_integer_value(json_object_get(json_object_get(r, "ram"), "transferred"));
	*ms = proc_now_ms();
	json_decref(r);
}

Test(control, max_bandwidth_changes_a_running_migration)
{
	struct pair p;
	/* At 1 MiB/s the 256 MiB guest would take over 4 minutes, twice
	 * LIVENESS_MS: completing within that bound once the cap is lifted
	 * shows the lift took effect, however slow the host. */
	const long long cap = 1ll << 20;
	pair_start(&p, "bw", GUEST_BIG);
	start_capped(&p.qa, &p.qb, cap);
	/* Under the cap: over a few seconds, no more than the cap allows (plus
	 * one chunk in flight and a progress sample's lag). */
	long long x0, x1;
	uint64_t t0, t1;
	sample(&p.qa, &x0, &t0);
	usleep(3000 * 1000);
	sample(&p.qa, &x1, &t1);
	cr_assert_str_eq(migrate_status(&p.qa), "active");
	double capped = (double)(x1 - x0) * 1000.0 / (double)(t1 - t0);
	cr_assert(capped <= 2.0 * (double)cap, "capped at %lld B/s, moved %.0f B/s", cap, capped);
	cr_assert(x1 < (256ll << 20) / 2, "the cap did not hold the migration back");
	/* Lifted while running: the rest goes at the wire's pace, so the
	 * migration completes within the liveness bound (which it could not
	 * at the cap) and, having done so, moved faster than twice the cap. */
	json_decref(
	    qmp_ok(&p.qa, "migrate-set-parameters", json_pack("{s:i}", "max-bandwidth", 0)));
	cr_assert_str_eq(wait_status(&p.qa, "completed failed cancelled"), "completed");
	uint64_t t2 = proc_now_ms();
	json_t *r = qmp_ok(&p.qa, "query-migrate", NULL);
	long long total =
	    json_integer_value(json_object_get(json_object_get(r, "ram"), "transferred"));
	json_decref(r);
	double lifted = (double)(total - x1) * 1000.0 / (double)(t2 - t1 + 1);
	cr_assert(lifted > 2.0 * (double)cap, "lifting the cap did not speed it up: %.0f B/s",
	          lifted);
	pair_end(&p, 1);
}

Test(control, sigterm_cancels_the_migration_first)
{
	struct pair p;
	pair_start(&p, "t", GUEST_BIG);
	start_capped(&p.qa, &p.qb, 4ll << 20);
	kill(p.a.p.pid, SIGTERM);
	cr_assert_eq(vm_end(&p.a), 0);
	cr_assert(strstr(p.a.p.errbuf, "migration cancelled, guest running here") != NULL, "%s",
	          p.a.p.errbuf);
	qmp_wait_event(&p.qa, "MIGRATION", "status", "cancelled");
	/* The destination learnt of it and waits for another. */
	wait_status(&p.qb, "failed cancelled");
	cr_assert_str_eq(run_status(&p.qb), "inmigrate");
	pair_end(&p, 0);
}

/* migrate-start-postcopy on a migration that cannot converge: it switches
 * (status postcopy-active, as QEMU's), completes, and the guest runs on
 * the destination with its ledger intact. */
#define PC_GUEST_QMP "simvm:mem=64M,vcpus=2,fill=random,workload=memtouch:ws=16M,rate=400M"

/* A capped migration of PC_GUEST_QMP switched by migrate-start-postcopy; it
 * must complete.  Returns the source's query-migrate (the caller's). */
static json_t *
postcopy_run(struct pair *p)
{
	json_decref(
	    qmp_ok(&p->qa, "migrate-set-parameters", json_pack("{s:i}", "downtime-limit", 5)));
	start_capped(&p->qa, &p->qb, 8ll << 20);
	json_decref(qmp_ok(&p->qa, "migrate-start-postcopy", NULL));
	const char *st = wait_status(&p->qa, "completed failed cancelled");
	json_t *info = qmp_ok(&p->qa, "query-migrate", NULL);
	cr_assert_str_eq(st, "completed", "%s: %s\nsource log:\n%s\ndestination log:\n%s", st,
	                 json_string_value(json_object_get(info, "error-desc")), p->a.p.errbuf,
	                 p->b.p.errbuf);
	return info;
}

Test(control, migrate_start_postcopy_switches_a_running_migration)
{
	struct pair p;
	pair_start(&p, "pc", PC_GUEST_QMP);
	json_t *info = postcopy_run(&p);
	qmp_wait_event(&p.qa, "MIGRATION", "status", "postcopy-active");
	json_t *t = json_object_get(info, "tern");
	cr_assert(json_is_true(json_object_get(t, "postcopy")), "no postcopy in the summary");
	json_decref(info);
	cr_assert_str_eq(wait_status(&p.qb, "completed failed cancelled"), "completed");
	cr_assert_str_eq(run_status(&p.qb), "running");
	long long p0 = workload(&p.qb);
	uint64_t deadline = proc_now_ms() + LIVENESS_MS;
	while (workload(&p.qb) <= p0)
		cr_assert(proc_now_ms() < deadline, "the arrived guest does not run");
	/* No migration running: the command says so. */
	json_t *r = qmp_cmd(&p.qa, "migrate-start-postcopy", NULL);
	cr_assert_not_null(json_object_get(r, "error"), "accepted with no migration");
	json_decref(r);
	pair_end(&p, 1);
}

/* Postcopy with the link cut on the source at its 5th page request: the
 * manager hears postcopy-paused on both sides, and the migration completes
 * by itself (the source dials again, the destination takes it back). */
Test(control, postcopy_paused_by_a_cut_link_recovers)
{
	struct pair p;
	const char *cut = "link@recv:W_PAGE_REQ#5";
	vm_start_fault(&p.a, "pra", PC_GUEST_QMP, 0, cut);
	vm_start(&p.b, "prb", PC_GUEST_QMP, 1);
	qmp_open(&p.qa, &p.a, 1);
	qmp_open(&p.qb, &p.b, 1);
	/* Bounded: a side that never comes back fails the test, not hangs it. */
	json_decref(qmp_ok(&p.qa, "migrate-set-parameters",
	                   json_pack("{s:i}", "tern-recover-timeout", 60000)));
	json_decref(qmp_ok(&p.qb, "migrate-set-parameters",
	                   json_pack("{s:i}", "tern-recover-timeout", 60000)));
	json_t *info = postcopy_run(&p);
	qmp_wait_event(&p.qa, "MIGRATION", "status", "postcopy-paused");
	json_t *t = json_object_get(info, "tern");
	cr_assert_eq(json_integer_value(json_object_get(t, "postcopy-pauses")), 1);
	json_decref(info);
	cr_assert_str_eq(wait_status(&p.qb, "completed failed cancelled"), "completed");
	qmp_wait_event(&p.qb, "MIGRATION", "status", "postcopy-paused");
	cr_assert_str_eq(run_status(&p.qb), "running");
	/* QEMU's recovery commands: nothing is paused any more. */
	char uri[64];
	snprintf(uri, sizeof(uri), "tcp:127.0.0.1:%d", 1);
	json_t *r = qmp_cmd(&p.qb, "migrate-recover", json_pack("{s:s}", "uri", uri));
	char *text = json_dumps(r, 0);
	cr_assert_not_null(strstr(text, "no incoming postcopy migration is paused"), "%s", text);
	free(text);
	json_decref(r);
	r = qmp_cmd(&p.qa, "migrate", json_pack("{s:s,s:b}", "uri", uri, "resume", 1));
	cr_assert_not_null(json_object_get(r, "error"), "resume accepted with nothing paused");
	json_decref(r);
	pair_end(&p, 1);
	cr_assert(proc_fault_fired(&p.a.p, cut), "the link was never cut: %s", p.a.p.errbuf);
}

/* A guest dirtying its working set faster than the capped link: the
 * remaining bytes stop shrinking, the manager hears MIGRATION_STALL with a
 * reason and sees it in query-migrate, and cancels. */
Test(control, stall_is_reported)
{
	struct pair p;
	pair_start(&p, "st",
	           "simvm:mem=64M,vcpus=2,fill=random,workload=memtouch:ws=16M,rate=400M");
	json_decref(qmp_ok(&p.qa, "migrate-set-parameters",
	                   json_pack("{s:i,s:i}", "tern-stall-window", 300, "downtime-limit", 5)));
	start_capped(&p.qa, &p.qb, 8ll << 20);
	qmp_wait_event(&p.qa, "MIGRATION_STALL", NULL, NULL);
	json_t *ev = NULL;
	size_t i;
	json_array_foreach(p.qa.events, i, ev)
	{
		if (strcmp(json_string_value(json_object_get(ev, "event")), "MIGRATION_STALL") == 0)
			break;
	}
	const char *reason =
	    json_string_value(json_object_get(json_object_get(ev, "data"), "reason"));
	cr_assert(reason != NULL && reason[0] != '\0', "a stall without a reason");
	json_decref(qmp_ok(&p.qa, "migrate_cancel", NULL));
	cr_assert_str_eq(wait_status(&p.qa, "completed failed cancelled"), "cancelled");
	json_t *info = qmp_ok(&p.qa, "query-migrate", NULL);
	json_t *t = json_object_get(info, "tern");
	cr_assert(json_is_true(json_object_get(t, "stalled")));
	cr_assert(strlen(json_string_value(json_object_get(t, "stall-reason"))) > 0);
	json_decref(info);
	cr_assert_str_eq(run_status(&p.qa), "running");
	wait_status(&p.qb, "failed cancelled");
	pair_end(&p, 1);
}

/* Auto-converge switched on while the migration runs (it was off when the
 * migration started): the throttle starts and the migration completes. */
Test(control, auto_converge_switched_on_live)
{
	struct pair p;
	pair_start(&p, "ac",
	           "simvm:mem=64M,vcpus=2,fill=random,workload=memtouch:ws=16M,rate=400M");
	start_capped(&p.qa, &p.qb, 16ll << 20);
	/* Iterating without converging: the guest dirties 400 MB/s. */
	uint64_t deadline = proc_now_ms() + LIVENESS_MS;
	for (;;) {
		json_t *r = qmp_ok(&p.qa, "query-migrate", NULL);
		long long passes = json_integer_value(
		    json_object_get(json_object_get(r, "ram"), "dirty-sync-count"));
		const char *st = json_string_value(json_object_get(r, "status"));
		cr_assert_str_eq(st, "active", "it ended without auto-converge");
		json_decref(r);
		if (passes >= 2)
			break;
		cr_assert(proc_now_ms() < deadline, "no second pass");
		usleep(50000);
	}
	json_t *caps =
	    json_pack("{s:[{s:s,s:b}]}", "capabilities", "capability", "auto-converge", "state", 1);
	json_decref(qmp_ok(&p.qa, "migrate-set-capabilities", caps));
	json_decref(
	    qmp_ok(&p.qa, "migrate-set-parameters",
	           json_pack("{s:s,s:i}", "tern-auto-converge", "rate", "max-cpu-throttle", 99)));
	cr_assert_str_eq(wait_status(&p.qa, "completed failed cancelled"), "completed");
	json_t *info = qmp_ok(&p.qa, "query-migrate", NULL);
	cr_assert(
	    json_integer_value(json_object_get(json_object_get(info, "tern"), "throttle-max")) > 0,
	    "the throttle never ran");
	json_decref(info);
	pair_end(&p, 1);
}
