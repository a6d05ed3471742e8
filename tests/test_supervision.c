/*
 * Supervision in the actor runtime: monitor semantics (an exited actor is
 * gone for everyone before its stop runs; a request waiting on it fails at
 * once with its exit), kills that release an actor blocked anywhere the
 * runtime can reach, bounded stop/join, init failure reasons, and faults
 * fired at named events (actors/fault.h).
 *
 * Time appears only as generous liveness bounds (a kill is seen within
 * 2 s, a request that would otherwise wait 60 s): nothing here depends on
 * the machine being fast.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <semaphore.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

#include "actors/actor.h"
#include "actors/fault.h"
#include "kvm/guest.h"
#include "tern/error.h"

/* A kill or exit must be seen within this: a liveness bound for a loaded
 * host, still a third of FOREVER_MS, which only a kill or exit may end. */
#define LIVENESS_MS 20000
#define FOREVER_MS 60000 /* a wait that only a kill or exit may end */

/* ---- the test actor: each PING text is a behaviour ---- */

struct sv_ctl {
	sem_t entered;      /* posted when a handler starts to block */
	sem_t stop_entered; /* posted when stop starts */
	sem_t stop_release; /* stop waits for it when hold_stop */
	atomic_bool hold_stop;
	atomic_bool unkillable_release;
	int fds[2]; /* socketpair: fds[0] belongs to the actor */
	struct tern_queue *queue;
	uint32_t peer;         /* for "request" and "flood" */
	const char *init_fail; /* init fails with this reason */
	atomic_int result;     /* the blocking call's return */
};

static int
sv_init(struct tern_actor *self, void *state, void *arg)
{
	struct sv_ctl **s = state;
	*s = arg;
	if ((*s)->init_fail != NULL)
		return tern_actor_fail(self, -ENOENT, "init refused: %s", (*s)->init_fail);
	if ((*s)->fds[0] >= 0)
		return tern_actor_own_fd(self, (*s)->fds[0]);
	return 0;
}

static int
sv_handle(struct tern_actor *self, void *state, const struct tern_msg *m)
{
	struct sv_ctl *c = *(struct sv_ctl **)state;
	const char *t = m->u.ping.text;
	int rc = 0;

	if (strcmp(t, "ignore") == 0)
		return 0;
	if (strcmp(t, "fail") == 0)
		return tern_actor_fail(self, -EIO, "failing on purpose");
	if (strcmp(t, "echo") == 0) {
		struct tern_msg r;
		tern_msg_init(&r, TERN_MSG_PING);
		r.u.ping.value = m->u.ping.value;
		return tern_actor_reply(self, m, &r);
	}
	sem_post(&c->entered);
	if (strcmp(t, "sleep") == 0) {
		rc = tern_actor_sleep(self, (uint64_t)FOREVER_MS * 1000000u);
	} else if (strcmp(t, "read") == 0) {
		char b;
		ssize_t n = recv(c->fds[0], &b, 1, 0);
		rc = n < 0 ? -errno : TERN_ECLOSED; /* shut down: end of stream */
	} else if (strcmp(t, "write") == 0) {
		static char buf[1 << 16];
		for (;;) {
			ssize_t n = send(c->fds[0], buf, sizeof(buf), MSG_NOSIGNAL);
			if (n <= 0) {
				rc = n < 0 ? -errno : TERN_ECLOSED;
				break;
			}
		}
	} else if (strcmp(t, "take") == 0) {
		struct tern_msg item;
		rc = tern_queue_take(c->queue, tern_actor_id(self), &item, -1);
	} else if (strcmp(t, "put") == 0) {
		for (;;) {
			struct tern_msg item;
			tern_msg_init(&item, TERN_MSG_PING);
			if ((rc = tern_queue_put(c->queue, tern_actor_id(self), &item, -1)) != 0)
				break;
		}
	} else if (strcmp(t, "request") == 0) {
		struct tern_msg q, r;
		tern_msg_init(&q, TERN_MSG_PING);
		snprintf(q.u.ping.text, sizeof(q.u.ping.text), "ignore");
		rc = tern_actor_request(self, c->peer, &q, &r, -1);
	} else if (strcmp(t, "flood") == 0) {
		/* The peer is blocked: its mailbox fills, then this send waits. */
		for (;;) {
			struct tern_msg p;
			tern_msg_init(&p, TERN_MSG_PING);
			snprintf(p.u.ping.text, sizeof(p.u.ping.text), "ignore");
			if ((rc = tern_actor_send(self, c->peer, &p)) != 0)
				break;
		}
	} else if (strcmp(t, "unkillable") == 0) {
		/* Blocks where no kill can reach (a plain sleep loop). */
		while (!atomic_load(&c->unkillable_release))
			usleep(1000);
	} else {
		return tern_actor_fail(self, TERN_EINVAL, "unknown ping %s", t);
	}
	atomic_store(&c->result, rc);
	return rc;
}

static void
sv_stop(struct tern_actor *self, void *state)
{
	struct sv_ctl *c = *(struct sv_ctl **)state;
	if (c == NULL)
		return;
	sem_post(&c->stop_entered);
	if (atomic_load(&c->hold_stop))
		sem_wait(&c->stop_release);
}

static const struct tern_actor_desc sv_desc = {
    .name = "svactor",
    .state_size = sizeof(struct sv_ctl *),
    .init = sv_init,
    .handle = sv_handle,
    .stop = sv_stop,
};

/* ---- fixture ---- */

static struct tern_runtime *rt;
static struct tern_mailbox *mb;

static void
sv_setup(void)
{
	unsetenv("TERN_FAULT");
	tern_fault_reset();
	cr_assert_eq(tern_runtime_create(&rt, NULL), 0);
	cr_assert_eq(tern_mailbox_open(rt, "main", &mb), 0);
}

static void
sv_teardown(void)
{
	tern_mailbox_close(mb);
	tern_runtime_destroy(rt);
	unsetenv("TERN_FAULT");
	tern_fault_reset();
}

static void
ctl_init(struct sv_ctl *c)
{
	memset(c, 0, sizeof(*c));
	sem_init(&c->entered, 0, 0);
	sem_init(&c->stop_entered, 0, 0);
	sem_init(&c->stop_release, 0, 0);
	c->fds[0] = c->fds[1] = -1;
}

static struct tern_actor *
spawn(struct sv_ctl *c)
{
	struct tern_actor *a = NULL;
	struct tern_exit why;
	int rc = tern_spawn(rt, &sv_desc, c, tern_mailbox_id(mb), &a, &why);
	cr_assert_eq(rc, 0, "spawn: %s (%s)", tern_strerror(rc), why.why);
	return a;
}

static int
ping(uint32_t to, const char *text)
{
	struct tern_msg m;
	tern_msg_init(&m, TERN_MSG_PING);
	snprintf(m.u.ping.text, sizeof(m.u.ping.text), "%s", text);
	return tern_send(rt, tern_mailbox_id(mb), to, &m);
}

/* ping_request asks `to` with PING {text, value} from the test's mailbox and
 * waits for the answer (or, failing, the target's SYS_EXIT) in *r. */
static int
ping_request(uint32_t to, const char *text, uint64_t value, struct tern_msg *r)
{
	struct tern_msg q;
	tern_msg_init(&q, TERN_MSG_PING);
	q.u.ping.value = value;
	snprintf(q.u.ping.text, sizeof(q.u.ping.text), "%s", text);
	return tern_mailbox_request(mb, to, &q, r, FOREVER_MS);
}

static void
wait_sem(sem_t *s, const char *what)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += FOREVER_MS / 1000;
	cr_assert_eq(sem_timedwait(s, &ts), 0, "%s never happened", what);
}

/* ---- monitors ---- */

Test(supervision, send_to_exited_actor_fails_at_once, .init = sv_setup, .fini = sv_teardown)
{
	struct sv_ctl c;
	ctl_init(&c);
	struct tern_actor *a = spawn(&c);
	uint32_t id = tern_actor_id(a);
	tern_actor_stop(a);
	cr_assert_eq(tern_actor_join(a, FOREVER_MS, NULL), 0);
	cr_assert_eq(ping(id, "ignore"), TERN_ECLOSED);
}

Test(supervision, unregistered_before_stop_runs, .init = sv_setup, .fini = sv_teardown)
{
	struct sv_ctl c;
	ctl_init(&c);
	atomic_store(&c.hold_stop, true);
	struct tern_actor *a = spawn(&c);
	uint32_t id = tern_actor_id(a);
	tern_actor_kill(a);
	wait_sem(&c.stop_entered, "stop");
	/* stop is still running (held): the actor is gone already. */
	cr_assert_eq(ping(id, "ignore"), TERN_ECLOSED);
	struct tern_msg r;
	cr_assert_eq(ping_request(id, "", 0, &r), TERN_ECLOSED);
	sem_post(&c.stop_release);
	struct tern_exit e;
	cr_assert_eq(tern_actor_join(a, FOREVER_MS, &e), 0);
	cr_assert_eq(e.reason, TERN_EXIT_KILLED);
}

struct killer {
	sem_t *when;
	struct tern_actor *victim;
};

static void
kill_when(void *arg)
{
	struct killer *k = arg;
	sem_wait(k->when);
	tern_actor_kill(k->victim);
}

Test(supervision, request_fails_at_once_when_target_is_killed, .init = sv_setup,
     .fini = sv_teardown)
{
	struct sv_ctl c;
	ctl_init(&c);
	struct tern_actor *a = spawn(&c);
	struct killer k = {&c.entered, a};
	uv_thread_t t;
	cr_assert_eq(uv_thread_create(&t, kill_when, &k), 0);
	/* The target blocks (killably) on the request and never answers: only
	 * its death can end the wait early. */
	struct tern_msg r;
	uint64_t t0 = tern_now_ns();
	int rc = ping_request(tern_actor_id(a), "sleep", 0, &r);
	uint64_t ms = (tern_now_ns() - t0) / 1000000;
	cr_assert_eq(uv_thread_join(&t), 0);
	cr_assert_eq(rc, TERN_EKILLED, "request: %s", tern_strerror(rc));
	cr_assert_lt(ms, LIVENESS_MS, "the request waited %llu ms on a dead actor",
	             (unsigned long long)ms);
	cr_assert_eq(r.type, TERN_MSG_SYS_EXIT);
	cr_assert_eq(r.u.sys_exit.reason, TERN_EXIT_KILLED);
	cr_assert_str_eq(r.u.sys_exit.name, "svactor");
	cr_assert_eq(atomic_load(&c.result), TERN_EKILLED, "the sleep was not released");
	struct tern_exit e;
	cr_assert_eq(tern_actor_join(a, FOREVER_MS, &e), 0);
	cr_assert_eq(e.reason, TERN_EXIT_KILLED);
}

Test(supervision, request_fails_with_the_targets_error, .init = sv_setup, .fini = sv_teardown)
{
	struct sv_ctl c;
	ctl_init(&c);
	struct tern_actor *a = spawn(&c);
	struct tern_msg r;
	int rc = ping_request(tern_actor_id(a), "fail", 0, &r);
	cr_assert_eq(rc, -EIO, "request: %s", tern_strerror(rc));
	cr_assert_eq(r.u.sys_exit.reason, TERN_EXIT_ERROR);
	cr_assert_str_eq(r.u.sys_exit.why, "failing on purpose");
	cr_assert_eq(tern_actor_join(a, FOREVER_MS, NULL), 0);
	/* The supervisor still gets its own report (re 0), once. */
	struct tern_msg m;
	cr_assert_eq(tern_mailbox_recv(mb, &m, FOREVER_MS), 0);
	cr_assert_eq(m.type, TERN_MSG_SYS_EXIT);
	cr_assert_eq(m.re, 0);
	cr_assert_eq(tern_mailbox_recv(mb, &m, 0), TERN_ETIMEDOUT);
}

Test(supervision, request_answered_before_exit_is_the_answer, .init = sv_setup, .fini = sv_teardown)
{
	struct sv_ctl c;
	ctl_init(&c);
	struct tern_actor *a = spawn(&c);
	struct tern_msg r;
	cr_assert_eq(ping_request(tern_actor_id(a), "echo", 42, &r), 0);
	cr_assert_eq(r.u.ping.value, 42);
	tern_actor_kill(a);
	cr_assert_eq(tern_actor_join(a, FOREVER_MS, NULL), 0);
}

Test(supervision, spawn_returns_inits_reason, .init = sv_setup, .fini = sv_teardown)
{
	struct sv_ctl c;
	ctl_init(&c);
	c.init_fail = "no such device";
	struct tern_actor *a = NULL;
	struct tern_exit why;
	int rc = tern_spawn(rt, &sv_desc, &c, tern_mailbox_id(mb), &a, &why);
	cr_assert_eq(rc, -ENOENT);
	cr_assert_null(a);
	cr_assert_eq(why.reason, TERN_EXIT_ERROR);
	cr_assert_eq(why.code, -ENOENT);
	cr_assert_str_eq(why.why, "init refused: no such device");
}

/* ---- a kill releases a blocked actor ---- */

static void
kill_while(const char *what, struct sv_ctl *c)
{
	struct tern_actor *a = spawn(c);
	cr_assert_eq(ping(tern_actor_id(a), what), 0);
	wait_sem(&c->entered, what);
	usleep(20000); /* let it settle into the blocking call (not required) */
	uint64_t t0 = tern_now_ns();
	tern_actor_kill(a);
	struct tern_exit e;
	int rc = tern_actor_join(a, FOREVER_MS, &e);
	uint64_t ms = (tern_now_ns() - t0) / 1000000;
	cr_assert_eq(rc, 0, "%s: the killed actor did not exit", what);
	cr_log_info("%s: teardown after the kill %llu ms", what, (unsigned long long)ms);
	cr_assert_lt(ms, LIVENESS_MS, "%s: teardown took %llu ms", what, (unsigned long long)ms);
	cr_assert_eq(e.reason, TERN_EXIT_KILLED);
	cr_assert_neq(atomic_load(&c->result), 0, "%s: the blocking call did not fail", what);
}

Test(supervision, kill_releases_sleep, .init = sv_setup, .fini = sv_teardown)
{
	struct sv_ctl c;
	ctl_init(&c);
	kill_while("sleep", &c);
	cr_assert_eq(atomic_load(&c.result), TERN_EKILLED);
}

/* kill_while the actor blocks on a socketpair (what: "read" or "write"). */
static void
kill_while_on_socket(const char *what)
{
	struct sv_ctl c;
	ctl_init(&c);
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, c.fds), 0);
	kill_while(what, &c);
	close(c.fds[0]);
	close(c.fds[1]);
}

Test(supervision, kill_releases_socket_read, .init = sv_setup, .fini = sv_teardown)
{
	kill_while_on_socket("read");
}

Test(supervision, kill_releases_socket_write, .init = sv_setup, .fini = sv_teardown)
{
	kill_while_on_socket("write");
}

/* kill_while the actor blocks on a queue (what: "take" or "put"); the
 * blocked call returns TERN_EKILLED. */
static void
kill_while_on_queue(const char *what)
{
	struct sv_ctl c;
	ctl_init(&c);
	cr_assert_eq(tern_queue_open(rt, "q", &c.queue), 0);
	kill_while(what, &c);
	cr_assert_eq(atomic_load(&c.result), TERN_EKILLED);
}

Test(supervision, kill_releases_queue_take, .init = sv_setup, .fini = sv_teardown)
{
	kill_while_on_queue("take");
}

Test(supervision, kill_releases_queue_put, .init = sv_setup, .fini = sv_teardown)
{
	kill_while_on_queue("put");
}

Test(supervision, kill_releases_request, .init = sv_setup, .fini = sv_teardown)
{
	struct sv_ctl c, pc;
	ctl_init(&c);
	ctl_init(&pc);
	struct tern_actor *peer = spawn(&pc);
	c.peer = tern_actor_id(peer);
	kill_while("request", &c);
	cr_assert_eq(atomic_load(&c.result), TERN_EKILLED);
	tern_actor_stop_join(&peer, FOREVER_MS, NULL);
}

Test(supervision, kill_releases_send_to_full_mailbox, .init = sv_setup, .fini = sv_teardown)
{
	struct sv_ctl c, pc;
	ctl_init(&c);
	ctl_init(&pc);
	struct tern_actor *peer = spawn(&pc);
	cr_assert_eq(ping(tern_actor_id(peer), "sleep"), 0);
	wait_sem(&pc.entered, "peer asleep");
	c.peer = tern_actor_id(peer);
	kill_while("flood", &c);
	cr_assert_eq(atomic_load(&c.result), TERN_EKILLED);
	tern_actor_kill(peer);
	cr_assert_eq(tern_actor_join(peer, FOREVER_MS, NULL), 0);
}

Test(supervision, stop_join_is_bounded_after_a_kill, .init = sv_setup, .fini = sv_teardown,
     .timeout = 120)
{
	struct sv_ctl c;
	ctl_init(&c);
	struct tern_actor *a = spawn(&c);
	cr_assert_eq(ping(tern_actor_id(a), "unkillable"), 0);
	wait_sem(&c.entered, "unkillable");
	struct tern_exit e;
	struct tern_actor *still = a; /* left running, not freed */
	uint64_t t0 = tern_now_ns();
	tern_actor_stop_join(&a, 100, &e);
	uint64_t ms = (tern_now_ns() - t0) / 1000000;
	cr_assert_null(a);
	cr_assert_lt(ms, FOREVER_MS, "stop_join waited %llu ms", (unsigned long long)ms);
	cr_assert_eq(e.code, TERN_ETIMEDOUT, "an actor that cannot exit must be reported");
	/* Let it go; it was killed, so it exits at once. */
	atomic_store(&c.unkillable_release, true);
	cr_assert_eq(tern_actor_join(still, FOREVER_MS, &e), 0);
	cr_assert_eq(e.reason, TERN_EXIT_KILLED);
}

/* ---- faults at named events ---- */

Test(supervision, fault_kills_the_named_instance_at_the_nth_event, .init = sv_setup,
     .fini = sv_teardown)
{
	setenv("TERN_FAULT", "svactor#1@recv:PING#3", 1);
	tern_fault_reset();
	struct sv_ctl c0, c1;
	ctl_init(&c0);
	ctl_init(&c1);
	struct tern_actor *a0 = spawn(&c0), *a1 = spawn(&c1);
	for (int i = 0; i < 2; i++) {
		cr_assert_eq(ping(tern_actor_id(a0), "ignore"), 0);
		cr_assert_eq(ping(tern_actor_id(a1), "ignore"), 0);
	}
	struct tern_msg r;
	/* The third PING to #1 kills it before it is handled. */
	cr_assert_eq(ping_request(tern_actor_id(a1), "echo", 0, &r), TERN_EKILLED);
	cr_assert_eq(ping_request(tern_actor_id(a0), "echo", 0, &r), 0);
	struct tern_exit e;
	cr_assert_eq(tern_actor_join(a1, FOREVER_MS, &e), 0);
	cr_assert_eq(e.reason, TERN_EXIT_KILLED);
	tern_actor_stop_join(&a0, FOREVER_MS, &e);
	cr_assert_eq(e.reason, TERN_EXIT_NORMAL);
}

Test(supervision, fault_grammar)
{
	setenv("TERN_FAULT", "guest@resume#2,conn-send@chunk:3,coordinator@state:iterate", 1);
	tern_fault_reset();
	cr_assert(tern_fault_enabled());
	cr_assert_eq(tern_fault_check("guest", 0, 0, "resume", NULL, NULL), TERN_FAULT_NONE);
	cr_assert_eq(tern_fault_check("guest", 0, 0, "resume", NULL, NULL), TERN_FAULT_FAIL);
	cr_assert_eq(tern_fault_check("guest", 0, 0, "resume", NULL, NULL), TERN_FAULT_NONE,
	             "a trigger fires once");
	/* Any instance counts when none is named. */
	cr_assert_eq(tern_fault_check("conn-send", 0, 5, "chunk", NULL, NULL), TERN_FAULT_NONE);
	cr_assert_eq(tern_fault_check("conn-send", 1, 6, "chunk", NULL, NULL), TERN_FAULT_NONE);
	cr_assert_eq(tern_fault_check("conn-send", 0, 5, "chunk", NULL, NULL), TERN_FAULT_KILL);
	cr_assert_eq(tern_fault_check("coordinator", 0, 2, "state", "bulk", NULL), TERN_FAULT_NONE);
	cr_assert_eq(tern_fault_check("coordinator", 0, 2, "state", "iterate", NULL),
	             TERN_FAULT_KILL);
	/* Each trigger of a list counts every event it matches. */
	setenv("TERN_FAULT", "guest@resume,guest@resume#2,guest@resume#3", 1);
	tern_fault_reset();
	for (int i = 0; i < 3; i++)
		cr_assert_eq(tern_fault_check("guest", 0, 0, "resume", NULL, NULL), TERN_FAULT_FAIL,
		             "resume %d", i + 1);
	cr_assert_eq(tern_fault_check("guest", 0, 0, "resume", NULL, NULL), TERN_FAULT_NONE);
	/* Frames match with or without their W_ prefix. */
	setenv("TERN_FAULT", "conn-recv#0@send:ACK#2", 1);
	tern_fault_reset();
	cr_assert_eq(tern_fault_check("conn-recv", 0, 9, "send", "W_ACK", NULL), TERN_FAULT_NONE);
	cr_assert_eq(tern_fault_check("conn-recv", 1, 9, "send", "W_ACK", NULL), TERN_FAULT_NONE);
	cr_assert_eq(tern_fault_check("conn-recv", 0, 9, "send", "W_ACK", NULL), TERN_FAULT_KILL);
	/* A malformed list is ignored as a whole, never half-applied. */
	const char *bad[] = {"coordinator", "coordinator@", "@state:x", "x@state",   "x@recv:",
	                     "x@chunk:0",   "x#y@chunk",    "x@bogus",  "x@chunk#0", "a@chunk,b"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		setenv("TERN_FAULT", bad[i], 1);
		tern_fault_reset();
		cr_assert(!tern_fault_enabled(), "accepted \"%s\"", bad[i]);
	}
	unsetenv("TERN_FAULT");
	tern_fault_reset();
}

Test(supervision, process_fault_kills_the_process_at_the_event)
{
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		setenv("TERN_FAULT", "process@state:switchover", 1);
		tern_fault_reset();
		/* Events before the named one change nothing. */
		(void)tern_fault_check("coordinator", 0, 1, "state", "bulk", NULL);
		(void)tern_fault_check("coordinator", 0, 1, "state", "switchover", NULL);
		_exit(0); /* not reached if the fault fired */
	}
	int status;
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
	          "the process was not SIGKILLed at the event (status %d)", status);
}
