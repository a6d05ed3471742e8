/*
 * actors/actor: ordering, request/reply, stop, kill, errors, init failure,
 * tick and watched fds, the shared queue, tracing, and no leaked threads or
 * fds.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "actors/actor.h"
#include "tern/error.h"

/* ---- the test actor: a counter / echo driven by PING text ---- */

struct ctl {
	int init_rc;
	uint64_t tick_ns;
	int watch_fd; /* watched when >= 0 (set by ctl_init) */
	uint32_t notify;
	atomic_int inits;
	atomic_int stops;
	atomic_int ticks;
	atomic_int fd_calls;
	atomic_ullong final_count;
	atomic_int blocked; /* a "block" handler is running */
	atomic_int release; /* ...and may return */
};

struct ta_state {
	struct ctl *ctl;
	uint64_t last;
	uint64_t count;
	bool ordered;
};

static void
ctl_init(struct ctl *c)
{
	memset(c, 0, sizeof(*c));
	c->watch_fd = -1;
}

static int
ta_init(struct tern_actor *self, void *state, void *arg)
{
	struct ta_state *s = state;
	s->ctl = arg;
	s->ordered = true;
	atomic_fetch_add(&s->ctl->inits, 1);
	if (s->ctl->init_rc != 0)
		return s->ctl->init_rc;
	if (s->ctl->tick_ns != 0)
		tern_actor_set_tick(self, s->ctl->tick_ns);
	if (s->ctl->watch_fd >= 0)
		return tern_actor_watch_fd(self, s->ctl->watch_fd, POLLIN);
	return 0;
}

static int
ta_reply(struct tern_actor *self, const struct tern_msg *req, uint64_t value, const char *text)
{
	struct tern_msg r;
	tern_msg_init(&r, TERN_MSG_PING);
	r.u.ping.value = value;
	snprintf(r.u.ping.text, sizeof(r.u.ping.text), "%s", text);
	return tern_actor_reply(self, req, &r);
}

static int
ta_handle(struct tern_actor *self, void *state, const struct tern_msg *m)
{
	struct ta_state *s = state;
	const char *t = m->u.ping.text;

	if (m->type != TERN_MSG_PING)
		return tern_actor_fail(self, TERN_EPROTO, "unexpected %s", tern_msg_name(m->type));
	if (t[0] == '\0') {
		s->ordered = s->ordered && m->u.ping.value == s->last + 1;
		s->last = m->u.ping.value;
		s->count++;
		return 0;
	}
	if (strcmp(t, "echo") == 0)
		return ta_reply(self, m, m->u.ping.value, "echo");
	if (strcmp(t, "report") == 0)
		return ta_reply(self, m, s->count, s->ordered ? "ordered" : "disordered");
	if (strcmp(t, "sleep") == 0) {
		usleep((useconds_t)m->u.ping.value * 1000);
		return 0;
	}
	if (strcmp(t, "block") == 0) {
		/* Busy until the test releases it: the test acts while a handler
		 * runs at that event, not after a sleep it hopes is long enough. */
		atomic_store(&s->ctl->blocked, 1);
		while (!atomic_load(&s->ctl->release))
			usleep(1000);
		return 0;
	}
	if (strcmp(t, "ignore") == 0)
		return 0;
	if (strcmp(t, "slowecho") == 0) {
		usleep(100 * 1000);
		return ta_reply(self, m, m->u.ping.value, "slowecho");
	}
	if (strcmp(t, "ask") == 0 || strcmp(t, "askignored") == 0) {
		/* Ask actor `value` while our own mailbox keeps filling up. */
		struct tern_msg q, r;
		tern_msg_init(&q, TERN_MSG_PING);
		q.u.ping.value = 7;
		snprintf(q.u.ping.text, sizeof(q.u.ping.text), "%s",
		         strcmp(t, "ask") == 0 ? "slowecho" : "ignore");
		int rc = tern_actor_request(self, (uint32_t)m->u.ping.value, &q, &r, 300);
		return ta_reply(self, m, rc == 0 ? r.u.ping.value : (uint64_t)-rc,
		                rc == 0 && r.re == q.seq ? "answered" : "unanswered");
	}
	if (strcmp(t, "fail") == 0)
		return tern_actor_fail(self, -EIO, "failing on purpose %d", 42);
	if (strcmp(t, "failraw") == 0)
		return TERN_EPROTO;
	if (strcmp(t, "done") == 0)
		return TERN_ACTOR_DONE;
	return tern_actor_fail(self, TERN_EINVAL, "unknown ping %s", t);
}

static int
ta_tick(struct tern_actor *self, void *state)
{
	struct ta_state *s = state;
	atomic_fetch_add(&s->ctl->ticks, 1);
	return 0;
}

static int
ta_on_fd(struct tern_actor *self, void *state, int fd, short revents)
{
	struct ta_state *s = state;
	char c;
	if (read(fd, &c, 1) != 1)
		return tern_actor_fail(self, -errno, "read");
	int n = atomic_fetch_add(&s->ctl->fd_calls, 1) + 1;
	struct tern_msg m;
	tern_msg_init(&m, TERN_MSG_PING);
	m.u.ping.value = (uint64_t)n;
	m.u.ping.text[0] = c;
	return tern_actor_send(self, s->ctl->notify, &m);
}

static void
ta_stop(struct tern_actor *self, void *state)
{
	struct ta_state *s = state;
	atomic_fetch_add(&s->ctl->stops, 1);
	atomic_store(&s->ctl->final_count, s->count);
}

static const struct tern_actor_desc ta_desc = {
    .name = "testactor",
    .state_size = sizeof(struct ta_state),
    .init = ta_init,
    .handle = ta_handle,
    .tick = ta_tick,
    .on_fd = ta_on_fd,
    .stop = ta_stop,
};

/* ---- helpers ---- */

static int
ping(struct tern_runtime *rt, uint32_t from, uint32_t to, uint64_t value, const char *text)
{
	struct tern_msg m;
	tern_msg_init(&m, TERN_MSG_PING);
	m.u.ping.value = value;
	snprintf(m.u.ping.text, sizeof(m.u.ping.text), "%s", text);
	return tern_send(rt, from, to, &m);
}

static struct tern_msg
ask(struct tern_mailbox *mb, uint32_t to, uint64_t value, const char *text)
{
	struct tern_msg m, r;
	tern_msg_init(&m, TERN_MSG_PING);
	m.u.ping.value = value;
	snprintf(m.u.ping.text, sizeof(m.u.ping.text), "%s", text);
	int rc = tern_mailbox_request(mb, to, &m, &r, 5000);
	cr_assert_eq(rc, 0, "request %s: %s", text, tern_strerror(rc));
	cr_assert_eq(r.re, m.seq);
	return r;
}

static void
expect_exit(struct tern_mailbox *sup, uint32_t id, uint32_t reason, int code)
{
	struct tern_msg m;
	int rc = tern_mailbox_recv(sup, &m, 5000);
	cr_assert_eq(rc, 0, "no SYS_EXIT: %s", tern_strerror(rc));
	cr_assert_eq(m.type, TERN_MSG_SYS_EXIT, "got %s", tern_msg_name(m.type));
	cr_assert_eq(m.u.sys_exit.actor, id);
	cr_assert_str_eq(m.u.sys_exit.name, "testactor");
	cr_assert_eq(m.u.sys_exit.reason, reason);
	cr_assert_eq(m.u.sys_exit.code, code);
	cr_assert_eq(m.from, id);
}

struct fixture {
	struct tern_runtime *rt;
	struct tern_mailbox *mb;
	struct ctl ctl;
};

static void
fx_open(struct fixture *f)
{
	ctl_init(&f->ctl);
	cr_assert_eq(tern_runtime_create(&f->rt, NULL), 0);
	cr_assert_eq(tern_mailbox_open(f->rt, "main", &f->mb), 0);
}

static struct tern_actor *
fx_spawn(struct fixture *f)
{
	struct tern_actor *a = NULL;
	int rc = tern_spawn(f->rt, &ta_desc, &f->ctl, tern_mailbox_id(f->mb), &a, NULL);
	cr_assert_eq(rc, 0, "spawn: %s", tern_strerror(rc));
	return a;
}

/* Liveness bound for waiting on an event of the actor under test. */
#define WAIT_BOUND_NS 30000000000ull

/* Waits until *counter reaches n, asserting that it does within the
 * liveness bound. */
static void
wait_count(atomic_int *counter, int n, const char *what)
{
	uint64_t t0 = tern_now_ns();
	while (atomic_load(counter) < n) {
		cr_assert_lt(tern_now_ns() - t0, WAIT_BOUND_NS, "%s: %d of %d", what,
		             atomic_load(counter), n);
		usleep(1000);
	}
}

static void
fx_close(struct fixture *f)
{
	tern_mailbox_close(f->mb);
	tern_runtime_destroy(f->rt);
}

/* ---- (1) ordering and backpressure ---- */

Test(actor, order_10000_pings)
{
	struct fixture f;
	fx_open(&f);
	struct tern_actor *a = fx_spawn(&f);
	uint32_t id = tern_actor_id(a);

	/* Ten mailboxes' worth: senders block on the full mailbox, nothing
	 * is dropped or reordered. */
	for (uint64_t v = 1; v <= 10000; v++)
		cr_assert_eq(ping(f.rt, tern_mailbox_id(f.mb), id, v, ""), 0);
	struct tern_msg r = ask(f.mb, id, 0, "report");
	cr_assert_eq(r.u.ping.value, 10000);
	cr_assert_str_eq(r.u.ping.text, "ordered");

	tern_actor_stop(a);
	struct tern_exit e;
	cr_assert_eq(tern_actor_join(a, 5000, &e), 0);
	cr_assert_eq(e.reason, TERN_EXIT_NORMAL);
	expect_exit(f.mb, id, TERN_EXIT_NORMAL, 0);
	fx_close(&f);
}

/* ---- (2) request / reply ---- */

Test(actor, request_reply_and_timeout)
{
	struct fixture f;
	fx_open(&f);
	struct tern_actor *a = fx_spawn(&f);
	uint32_t id = tern_actor_id(a);

	struct tern_msg r = ask(f.mb, id, 12345, "echo");
	cr_assert_eq(r.u.ping.value, 12345);
	cr_assert_eq(r.from, id);

	struct tern_msg m;
	tern_msg_init(&m, TERN_MSG_PING);
	snprintf(m.u.ping.text, sizeof(m.u.ping.text), "ignore");
	uint64_t t0 = tern_now_ns();
	cr_assert_eq(tern_mailbox_request(f.mb, id, &m, &r, 100), TERN_ETIMEDOUT);
	uint64_t waited = tern_now_ns() - t0;
	/* Never before its timeout; after it within a liveness bound. */
	cr_assert(waited >= 100000000ull && waited < WAIT_BOUND_NS, "waited %llu ns",
	          (unsigned long long)waited);

	/* Nothing arrives after the timeout either: the mailbox is empty. */
	cr_assert_eq(tern_mailbox_recv(f.mb, &r, 0), TERN_ETIMEDOUT);
	cr_assert_eq(tern_send(f.rt, 0, 999999, &m), TERN_ECLOSED);

	tern_actor_stop(a);
	cr_assert_eq(tern_actor_join(a, 5000, NULL), 0);
	fx_close(&f);
}

/* A mailbox request while the replier sends other messages first: they are
 * kept, in order, for the next receives. */
Test(actor, mailbox_request_keeps_other_messages)
{
	struct fixture f;
	fx_open(&f);
	struct tern_actor *a = fx_spawn(&f);
	struct tern_mailbox *other;
	cr_assert_eq(tern_mailbox_open(f.rt, "other", &other), 0);

	/* `other` fills f.mb's mailbox with 1..50 while f.mb waits for the
	 * echo from a; the echo is queued after them. */
	for (uint64_t v = 1; v <= 50; v++)
		cr_assert_eq(ping(f.rt, tern_mailbox_id(other), tern_mailbox_id(f.mb), v, ""), 0);
	struct tern_msg r = ask(f.mb, tern_actor_id(a), 77, "echo");
	cr_assert_eq(r.u.ping.value, 77);
	for (uint64_t v = 1; v <= 50; v++) {
		cr_assert_eq(tern_mailbox_recv(f.mb, &r, 1000), 0);
		cr_assert_eq(r.u.ping.value, v);
		cr_assert_eq(r.from, tern_mailbox_id(other));
	}
	cr_assert_eq(tern_mailbox_recv(f.mb, &r, 0), TERN_ETIMEDOUT);

	tern_mailbox_close(other);
	tern_actor_stop(a);
	cr_assert_eq(tern_actor_join(a, 5000, NULL), 0);
	fx_close(&f);
}

/* An actor's request (to a slow replier, then to one that ignores it) while
 * 200 messages arrive in its own mailbox: none lost, order kept. */
Test(actor, actor_request_defers_in_order)
{
	struct fixture f;
	fx_open(&f);
	struct tern_actor *a = fx_spawn(&f);
	struct tern_actor *b = fx_spawn(&f);
	uint32_t me = tern_mailbox_id(f.mb), bid = tern_actor_id(b);

	cr_assert_eq(ping(f.rt, me, bid, tern_actor_id(a), "ask"), 0);
	for (uint64_t v = 1; v <= 100; v++)
		cr_assert_eq(ping(f.rt, me, bid, v, ""), 0);
	cr_assert_eq(ping(f.rt, me, bid, tern_actor_id(a), "askignored"), 0);
	for (uint64_t v = 101; v <= 200; v++)
		cr_assert_eq(ping(f.rt, me, bid, v, ""), 0);

	struct tern_msg r;
	cr_assert_eq(tern_mailbox_recv(f.mb, &r, 5000), 0);
	cr_assert_str_eq(r.u.ping.text, "answered");
	cr_assert_eq(r.u.ping.value, 7);
	cr_assert_eq(tern_mailbox_recv(f.mb, &r, 5000), 0);
	cr_assert_str_eq(r.u.ping.text, "unanswered");
	cr_assert_eq((int)-(int64_t)r.u.ping.value, TERN_ETIMEDOUT);

	r = ask(f.mb, bid, 0, "report");
	cr_assert_eq(r.u.ping.value, 200);
	cr_assert_str_eq(r.u.ping.text, "ordered");

	tern_actor_stop(a);
	tern_actor_stop(b);
	cr_assert_eq(tern_actor_join(a, 5000, NULL), 0);
	cr_assert_eq(tern_actor_join(b, 5000, NULL), 0);
	fx_close(&f);
}

/* ---- (3) stop after pending messages ---- */

Test(actor, stop_handles_pending_then_reports_normal)
{
	struct fixture f;
	fx_open(&f);
	struct tern_actor *a = fx_spawn(&f);
	uint32_t id = tern_actor_id(a);

	cr_assert_eq(ping(f.rt, 0, id, 50, "sleep"), 0);
	for (uint64_t v = 1; v <= 300; v++)
		cr_assert_eq(ping(f.rt, 0, id, v, ""), 0);
	tern_actor_stop(a);
	tern_actor_stop(a); /* idempotent */

	struct tern_exit e;
	cr_assert_eq(tern_actor_join(a, 5000, &e), 0);
	cr_assert_eq(e.actor, id);
	cr_assert_eq(e.reason, TERN_EXIT_NORMAL);
	cr_assert_eq(e.code, 0);
	cr_assert_eq(atomic_load(&f.ctl.final_count), 300);
	cr_assert_eq(atomic_load(&f.ctl.stops), 1);
	expect_exit(f.mb, id, TERN_EXIT_NORMAL, 0);

	struct tern_msg r;
	cr_assert_eq(tern_mailbox_recv(f.mb, &r, 50), TERN_ETIMEDOUT, "a second report");
	fx_close(&f);
}

/* A stop asked while the mailbox is full (SYS_STOP does not fit) still
 * stops after the queued messages.  The mailbox holds DEPTH messages in the
 * push0 send buffer, one in flight on the inproc pipe and one in pull0. */
Test(actor, stop_with_full_mailbox)
{
	struct fixture f;
	fx_open(&f);
	struct tern_actor *a = fx_spawn(&f);
	uint32_t id = tern_actor_id(a);

	/* The mailbox fills while the handler is busy (not while it sleeps
	 * a time that a slow test thread could outlast). */
	cr_assert_eq(ping(f.rt, 0, id, 0, "block"), 0);
	wait_count(&f.ctl.blocked, 1, "the handler never ran");
	for (uint64_t v = 1; v <= TERN_MAILBOX_DEPTH + 2; v++)
		cr_assert_eq(ping(f.rt, 0, id, v, ""), 0);
	tern_actor_stop(a);
	atomic_store(&f.ctl.release, 1);
	struct tern_exit e;
	cr_assert_eq(tern_actor_join(a, 5000, &e), 0);
	cr_assert_eq(e.reason, TERN_EXIT_NORMAL);
	cr_assert_eq(atomic_load(&f.ctl.final_count), TERN_MAILBOX_DEPTH + 2);
	cr_assert_eq(atomic_load(&f.ctl.stops), 1);
	fx_close(&f);
}

Test(actor, handler_done_is_normal_exit)
{
	struct fixture f;
	fx_open(&f);
	struct tern_actor *a = fx_spawn(&f);
	uint32_t id = tern_actor_id(a);
	cr_assert_eq(ping(f.rt, 0, id, 0, "done"), 0);
	struct tern_exit e;
	cr_assert_eq(tern_actor_join(a, 5000, &e), 0);
	cr_assert_eq(e.reason, TERN_EXIT_NORMAL);
	expect_exit(f.mb, id, TERN_EXIT_NORMAL, 0);
	fx_close(&f);
}

/* ---- (4) kill ---- */

Test(actor, kill_busy_actor)
{
	struct fixture f;
	fx_open(&f);
	struct tern_actor *a = fx_spawn(&f);
	uint32_t id = tern_actor_id(a);

	cr_assert_eq(ping(f.rt, 0, id, 0, "block"), 0);
	for (uint64_t v = 1; v <= 100; v++)
		cr_assert_eq(ping(f.rt, 0, id, v, ""), 0);
	wait_count(&f.ctl.blocked, 1, "the handler never ran");
	/* Killed while its handler runs, 100 messages queued behind it. */
	tern_actor_kill(a);
	tern_actor_kill(a); /* idempotent */
	atomic_store(&f.ctl.release, 1);

	struct tern_exit e;
	cr_assert_eq(tern_actor_join(a, 5000, &e), 0);
	cr_assert_eq(e.reason, TERN_EXIT_KILLED);
	cr_assert_eq(e.code, TERN_EKILLED);
	cr_assert_eq(atomic_load(&f.ctl.final_count), 0, "handled messages after the kill");
	cr_assert_eq(atomic_load(&f.ctl.stops), 1);
	expect_exit(f.mb, id, TERN_EXIT_KILLED, TERN_EKILLED);
	cr_assert_eq(ping(f.rt, 0, id, 1, ""), TERN_ECLOSED);
	fx_close(&f);
}

Test(actor, kill_idle_actor_wakes_it)
{
	struct fixture f;
	fx_open(&f);
	struct tern_actor *a = fx_spawn(&f);
	uint32_t id = tern_actor_id(a);
	usleep(20 * 1000);
	uint64_t t0 = tern_now_ns();
	tern_actor_kill(a);
	struct tern_exit e;
	/* Woken by the kill: an idle actor would otherwise wait forever. */
	cr_assert_eq(tern_actor_join(a, 30000, &e), 0);
	cr_assert_lt(tern_now_ns() - t0, WAIT_BOUND_NS);
	cr_assert_eq(e.reason, TERN_EXIT_KILLED);
	cr_assert_eq(atomic_load(&f.ctl.stops), 1);
	expect_exit(f.mb, id, TERN_EXIT_KILLED, TERN_EKILLED);
	cr_assert_eq(ping(f.rt, 0, id, 1, ""), TERN_ECLOSED);
	fx_close(&f);
}

Test(actor, join_times_out_while_running)
{
	struct fixture f;
	fx_open(&f);
	struct tern_actor *a = fx_spawn(&f);
	cr_assert_eq(ping(f.rt, 0, tern_actor_id(a), 0, "block"), 0);
	tern_actor_stop(a);
	/* Its handler cannot return before the release: the join must time
	 * out, however late this thread runs. */
	cr_assert_eq(tern_actor_join(a, 50, NULL), TERN_ETIMEDOUT);
	cr_assert_eq(atomic_load(&f.ctl.stops), 0);
	atomic_store(&f.ctl.release, 1);
	cr_assert_eq(tern_actor_join(a, -1, NULL), 0);
	cr_assert_eq(atomic_load(&f.ctl.stops), 1);
	fx_close(&f);
}

/* ---- (5) errors ---- */

Test(actor, handler_error_reported)
{
	struct fixture f;
	fx_open(&f);
	struct tern_actor *a = fx_spawn(&f);
	uint32_t id = tern_actor_id(a);

	cr_assert_eq(ping(f.rt, 0, id, 0, "fail"), 0);
	struct tern_exit e;
	cr_assert_eq(tern_actor_join(a, 5000, &e), 0);
	cr_assert_eq(e.reason, TERN_EXIT_ERROR);
	cr_assert_eq(e.code, -EIO);
	cr_assert_str_eq(e.why, "failing on purpose 42");
	cr_assert_eq(atomic_load(&f.ctl.stops), 1);

	struct tern_msg m;
	cr_assert_eq(tern_mailbox_recv(f.mb, &m, 5000), 0);
	cr_assert_eq(m.type, TERN_MSG_SYS_EXIT);
	cr_assert_eq(m.u.sys_exit.reason, TERN_EXIT_ERROR);
	cr_assert_eq(m.u.sys_exit.code, -EIO);
	cr_assert_str_eq(m.u.sys_exit.why, "failing on purpose 42");

	/* Without tern_actor_fail the why is the code's description. */
	a = fx_spawn(&f);
	id = tern_actor_id(a);
	cr_assert_eq(ping(f.rt, 0, id, 0, "failraw"), 0);
	cr_assert_eq(tern_actor_join(a, 5000, &e), 0);
	cr_assert_eq(e.reason, TERN_EXIT_ERROR);
	cr_assert_eq(e.code, TERN_EPROTO);
	cr_assert_str_eq(e.why, tern_strerror(TERN_EPROTO));
	cr_assert_eq(tern_mailbox_recv(f.mb, &m, 5000), 0);
	cr_assert_str_eq(m.u.sys_exit.why, tern_strerror(TERN_EPROTO));
	cr_assert_eq(atomic_load(&f.ctl.stops), 2);
	fx_close(&f);
}

/* ---- (6) init failure ---- */

static int
count_dir(const char *path)
{
	DIR *d = opendir(path);
	int n = 0;
	cr_assert_not_null(d);
	while (readdir(d) != NULL)
		n++;
	closedir(d);
	return n;
}

Test(actor, init_failure_returns_code)
{
	struct fixture f;
	fx_open(&f);
	/* Warm up nng's background threads before counting. */
	struct tern_actor *a = fx_spawn(&f);
	uint32_t id = tern_actor_id(a);
	tern_actor_stop(a);
	cr_assert_eq(tern_actor_join(a, 5000, NULL), 0);
	expect_exit(f.mb, id, TERN_EXIT_NORMAL, 0);
	atomic_store(&f.ctl.stops, 0);

	int fds = count_dir("/proc/self/fd"), tasks = count_dir("/proc/self/task");
	f.ctl.init_rc = -ENOENT;
	a = NULL;
	cr_assert_eq(tern_spawn(f.rt, &ta_desc, &f.ctl, tern_mailbox_id(f.mb), &a, NULL), -ENOENT);
	cr_assert_null(a);
	cr_assert_eq(atomic_load(&f.ctl.stops), 1);
	cr_assert_eq(count_dir("/proc/self/fd"), fds);
	cr_assert_eq(count_dir("/proc/self/task"), tasks);
	struct tern_msg m;
	cr_assert_eq(tern_mailbox_recv(f.mb, &m, 100), TERN_ETIMEDOUT, "init failure reported");
	fx_close(&f);
}

/* ---- (7) tick and watched fds ---- */

Test(actor, tick_runs_periodically)
{
	struct fixture f;
	fx_open(&f);
	f.ctl.tick_ns = 10 * 1000000ull;
	uint64_t t0 = tern_now_ns();
	struct tern_actor *a = fx_spawn(&f);
	/* Ten ticks come (when is the host's business: a liveness bound)... */
	wait_count(&f.ctl.ticks, 10, "ticks");
	tern_actor_stop(a);
	cr_assert_eq(tern_actor_join(a, 5000, NULL), 0);
	uint64_t periods = (tern_now_ns() - t0) / f.ctl.tick_ns;
	int ticks = atomic_load(&f.ctl.ticks);
	/* ...and none early: no more ticks than periods went by. */
	cr_assert((uint64_t)ticks <= periods + 2, "%d ticks in %llu periods of 10 ms", ticks,
	          (unsigned long long)periods);
	fx_close(&f);
}

Test(actor, tick_keeps_running_under_message_load)
{
	struct fixture f;
	fx_open(&f);
	f.ctl.tick_ns = 5 * 1000000ull;
	struct tern_actor *a = fx_spawn(&f);
	uint64_t t0 = tern_now_ns();
	uint64_t v = 1;
	/* Messages without a pause (senders block on the full mailbox) until
	 * five ticks have run between them; ticks starved by messages never
	 * come, and the liveness bound says so. */
	while (atomic_load(&f.ctl.ticks) < 5) {
		cr_assert_lt(tern_now_ns() - t0, WAIT_BOUND_NS, "ticks starved by messages: %d",
		             atomic_load(&f.ctl.ticks));
		cr_assert_eq(ping(f.rt, 0, tern_actor_id(a), v++, ""), 0);
	}
	tern_actor_stop(a);
	cr_assert_eq(tern_actor_join(a, 5000, NULL), 0);
	cr_assert_eq(atomic_load(&f.ctl.final_count), v - 1);
	cr_assert_geq(atomic_load(&f.ctl.ticks), 5, "ticks starved by messages");
	fx_close(&f);
}

Test(actor, watch_fd_calls_on_fd)
{
	struct fixture f;
	int p[2];
	fx_open(&f);
	cr_assert_eq(pipe(p), 0);
	f.ctl.watch_fd = p[0];
	f.ctl.notify = tern_mailbox_id(f.mb);
	struct tern_actor *a = fx_spawn(&f);

	for (int i = 0; i < 3; i++) {
		char c = (char)('a' + i);
		cr_assert_eq(write(p[1], &c, 1), 1);
		struct tern_msg m;
		cr_assert_eq(tern_mailbox_recv(f.mb, &m, 5000), 0);
		cr_assert_eq(m.type, TERN_MSG_PING);
		cr_assert_eq(m.u.ping.value, (uint64_t)i + 1);
		cr_assert_eq(m.u.ping.text[0], c);
		cr_assert_eq(m.from, tern_actor_id(a));
	}
	tern_actor_stop(a);
	cr_assert_eq(tern_actor_join(a, 5000, NULL), 0);
	cr_assert_eq(atomic_load(&f.ctl.fd_calls), 3);
	close(p[0]);
	close(p[1]);
	fx_close(&f);
}

/* ---- (8) the shared queue ---- */

#define Q_ITEMS 3000
#define Q_CONSUMERS 3

struct consumer {
	struct tern_queue *q;
	atomic_int *seen;
	atomic_int *taken;
	int last_rc;
	int mine;
};

static void
consume(void *arg)
{
	struct consumer *c = arg;
	struct tern_msg m;
	int rc;
	while ((rc = tern_queue_take(c->q, 0, &m, -1)) == 0) {
		if (m.type == TERN_MSG_CHUNK && m.u.chunk.chunk < Q_ITEMS)
			atomic_fetch_add(&c->seen[m.u.chunk.chunk], 1);
		atomic_fetch_add(c->taken, 1);
		c->mine++;
	}
	c->last_rc = rc;
}

static int
put_chunk(struct tern_queue *q, uint64_t i, int timeout_ms)
{
	struct tern_msg m;
	tern_msg_init(&m, TERN_MSG_CHUNK);
	m.u.chunk.chunk = i;
	m.u.chunk.len = 4096;
	return tern_queue_put(q, 0, &m, timeout_ms);
}

Test(actor, queue_each_item_once_and_close_wakes)
{
	struct tern_runtime *rt;
	struct tern_queue *q;
	static atomic_int seen[Q_ITEMS];
	atomic_int taken = 0;
	uv_thread_t th[Q_CONSUMERS];
	struct consumer c[Q_CONSUMERS];

	cr_assert_eq(tern_runtime_create(&rt, NULL), 0);
	cr_assert_eq(tern_queue_open(rt, "chunks", &q), 0);
	for (int i = 0; i < Q_CONSUMERS; i++) {
		c[i] = (struct consumer){.q = q, .seen = seen, .taken = &taken};
		cr_assert_eq(uv_thread_create(&th[i], consume, &c[i]), 0);
	}
	for (uint64_t i = 0; i < Q_ITEMS; i++)
		cr_assert_eq(put_chunk(q, i, 5000), 0);
	for (int w = 0; w < 500 && atomic_load(&taken) < Q_ITEMS; w++)
		usleep(10 * 1000);
	cr_assert_eq(atomic_load(&taken), Q_ITEMS);
	/* The consumers are blocked in take(-1) now: close must wake them. */
	tern_queue_close(q);
	tern_queue_close(q);
	for (int i = 0; i < Q_CONSUMERS; i++) {
		cr_assert_eq(uv_thread_join(&th[i]), 0);
		cr_assert_eq(c[i].last_rc, TERN_ECLOSED);
	}
	for (int i = 0; i < Q_ITEMS; i++)
		cr_assert_eq(atomic_load(&seen[i]), 1, "item %d seen %d times", i,
		             atomic_load(&seen[i]));
	struct tern_msg m;
	cr_assert_eq(tern_queue_take(q, 0, &m, 0), TERN_ECLOSED);
	cr_assert_eq(put_chunk(q, 0, 0), TERN_ECLOSED);
	/* The fd stays valid and polls readable: watchers wake and see the
	 * close. */
	struct pollfd p = {.fd = tern_queue_fd(q), .events = POLLIN};
	cr_assert_eq(poll(&p, 1, 1000), 1);
	tern_runtime_destroy(rt);
}

Test(actor, queue_idle_consumer_holds_nothing)
{
	struct tern_runtime *rt;
	struct tern_queue *q;
	struct tern_msg m;

	cr_assert_eq(tern_runtime_create(&rt, NULL), 0);
	cr_assert_eq(tern_queue_open(rt, "chunks", &q), 0);

	/* Nothing there: a take with 0 does not wait, the fd is not ready. */
	cr_assert_eq(tern_queue_take(q, 1, &m, 0), TERN_ETIMEDOUT);
	cr_assert_eq(tern_queue_take(q, 1, &m, 20), TERN_ETIMEDOUT);
	struct pollfd p = {.fd = tern_queue_fd(q), .events = POLLIN};
	cr_assert_eq(poll(&p, 1, 0), 0);

	/* Consumer 1 takes one item and then stops asking. */
	cr_assert_eq(put_chunk(q, 0, 1000), 0);
	cr_assert_eq(poll(&p, 1, 1000), 1);
	cr_assert_eq(tern_queue_take(q, 1, &m, 1000), 0);
	cr_assert_eq(m.u.chunk.chunk, 0);

	/* Consumer 2 gets every later item. */
	for (uint64_t i = 1; i <= 20; i += 5) {
		for (uint64_t j = i; j < i + 5; j++)
			cr_assert_eq(put_chunk(q, j, 1000), 0);
		for (uint64_t j = i; j < i + 5; j++) {
			cr_assert_eq(tern_queue_take(q, 2, &m, 1000), 0, "item %llu held elsewhere",
			             (unsigned long long)j);
			cr_assert_eq(m.u.chunk.chunk, j);
		}
	}

	/* Without consumers the queue fills after a few items (no backlog
	 * pre-buffered anywhere) and put times out. */
	int n = 0, rc;
	uint64_t t0 = tern_now_ns();
	while ((rc = put_chunk(q, 100 + n, 30)) == 0 && n < 1000)
		n++;
	cr_assert_eq(rc, TERN_ETIMEDOUT);
	cr_assert(n > 0 && n < 64, "%d items accepted without a consumer", n);
	cr_assert_lt(tern_now_ns() - t0, WAIT_BOUND_NS);

	/* Items with borrowed fields cannot be queued. */
	struct tern_msg bin;
	tern_msg_init(&bin, TERN_MSG_CTL_OUT);
	cr_assert_eq(tern_queue_put(q, 0, &bin, 0), TERN_EINVAL);
	tern_runtime_destroy(rt); /* closes and frees the queue */
}

/* ---- tracing ---- */

Test(actor, trace_records_lifecycle)
{
	char path[] = "/tmp/tern-actor-trace-XXXXXX";
	int fd = mkstemp(path);
	cr_assert_geq(fd, 0);
	close(fd);
	struct tern_trace *t;
	cr_assert_eq(tern_trace_open(&t, path, "source"), 0);

	struct fixture f;
	ctl_init(&f.ctl);
	cr_assert_eq(tern_runtime_create(&f.rt, t), 0);
	cr_assert_eq(tern_runtime_trace(f.rt), t);
	cr_assert_eq(tern_mailbox_open(f.rt, "main", &f.mb), 0);
	struct tern_actor *a = fx_spawn(&f);
	uint32_t id = tern_actor_id(a);
	ask(f.mb, id, 5, "echo");
	tern_actor_state(a, "busy");
	tern_actor_counter(a, "rate", 2.5);
	cr_assert_eq(ping(f.rt, tern_mailbox_id(f.mb), id, 0, "fail"), 0);
	cr_assert_eq(tern_actor_join(a, 5000, NULL), 0);
	fx_close(&f);
	tern_trace_close(t);

	struct tern_trace_reader *r;
	struct tern_trace_header h;
	struct tern_trace_record rec;
	int spawn = 0, send = 0, recv = 0, state = 0, counter = 0, exit = 0, rc;
	cr_assert_eq(tern_trace_reader_open(&r, path, &h), 0);
	while ((rc = tern_trace_reader_next(r, &rec)) == 1) {
		bool mine = rec.actor == id;
		if (mine)
			cr_assert_str_eq(rec.actor_name, "testactor");
		switch (rec.kind) {
		case TERN_TRACE_SPAWN:
			spawn += mine;
			break;
		case TERN_TRACE_SEND:
			send += mine && rec.type == TERN_MSG_PING && rec.re != 0;
			send += rec.peer == id && !strcmp(rec.actor_name, "main");
			break;
		case TERN_TRACE_RECV:
			recv += mine && rec.value > 0;
			break;
		case TERN_TRACE_STATE:
			state += mine && !strcmp(rec.text, "busy");
			break;
		case TERN_TRACE_COUNTER:
			counter += mine && !strcmp(rec.text, "rate");
			break;
		case TERN_TRACE_EXIT:
			exit += mine && rec.value == TERN_EXIT_ERROR &&
			        !strcmp(rec.text, "failing on purpose 42");
			break;
		}
	}
	cr_assert_eq(rc, 0);
	tern_trace_reader_close(r);
	unlink(path);
	cr_assert_eq(spawn, 1);
	cr_assert_eq(send, 3, "reply from the actor + 2 sends to it");
	cr_assert_eq(recv, 2);
	cr_assert_eq(state, 1);
	cr_assert_eq(counter, 1);
	cr_assert_eq(exit, 1);
}

/* ---- (9) no leaked threads or fds ---- */

static void
cycle(int nactors, bool join)
{
	struct fixture f;
	struct tern_actor *a[64];
	struct tern_queue *q;
	fx_open(&f);
	cr_assert_eq(tern_queue_open(f.rt, "q", &q), 0);
	for (int i = 0; i < nactors; i++) {
		a[i] = fx_spawn(&f);
		cr_assert_eq(ping(f.rt, 0, tern_actor_id(a[i]), 1, ""), 0);
	}
	if (join) {
		for (int i = 0; i < nactors; i++)
			tern_actor_stop(a[i]);
		for (int i = 0; i < nactors; i++)
			cr_assert_eq(tern_actor_join(a[i], 5000, NULL), 0);
		cr_assert_eq(atomic_load(&f.ctl.stops), nactors);
	}
	/* Otherwise tern_runtime_destroy kills and joins them. */
	fx_close(&f);
	if (!join)
		cr_assert_eq(atomic_load(&f.ctl.stops), nactors);
}

Test(actor, no_leaked_threads_or_fds)
{
	cycle(1, true); /* nng starts its process-wide threads once */
	int fds = count_dir("/proc/self/fd"), tasks = count_dir("/proc/self/task");
	for (int round = 0; round < 3; round++) {
		cycle(50, true);
		cr_assert_eq(count_dir("/proc/self/task"), tasks, "round %d", round);
		cr_assert_eq(count_dir("/proc/self/fd"), fds, "round %d", round);
		cycle(20, false);
		cr_assert_eq(count_dir("/proc/self/task"), tasks, "round %d", round);
		cr_assert_eq(count_dir("/proc/self/fd"), fds, "round %d", round);
	}
}
