/*
 * Test helper: run real `tern` processes, capture their output, bound their
 * lifetime (the primitives, static inline below); start a migration between
 * a receiver and a sender over loopback, with faults at named events
 * (tests/proc.c, compiled once and linked into every test executable by
 * tests/CMakeLists.txt).
 *
 * Every bound here is a liveness bound: it catches a hang, it never judges
 * speed.  The assertions are criterion's, so a helper that fails ends the
 * test that called it with a message saying what hung or did not start.
 */
#ifndef TERN_TESTS_PROC_H
#define TERN_TESTS_PROC_H

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "messages/msg.h"

#define PROC_OUT_MAX (64 * 1024)

/* Liveness bounds of a migration's two processes (mig_wait), generous enough
 * for a sanitizer CLI on a loaded 2-core machine.  A test that waits on them
 * runs with a criterion .timeout of at least 300 s, so that a hang is
 * reported by the bound, naming the end that hung, rather than by
 * criterion's timeout. */
#define MIG_SEND_BOUND_MS 180000
#define MIG_RECV_BOUND_MS 60000

/* ---- process primitives ----
 * static inline, unlike the rest of this helper: tools/tern-bench.c includes
 * them without linking tests/proc.c (or criterion). */

/* tern_cli returns the tern binary under test: $TERN_CLI (e.g. a TSan build
 * of the CLI, so that whole migrations run under the sanitizer while
 * criterion itself runs plain), else TERN_CLI_PATH, the one built with this
 * tree. */
static inline char *
tern_cli(void)
{
	char *env = getenv("TERN_CLI");
	return env != NULL && env[0] != '\0' ? env : (char *)TERN_CLI_PATH;
}

/* One child process, its output collected in full (up to PROC_OUT_MAX). */
struct proc {
	pid_t pid;
	int out, err, ready; /* pipes from the child; ready: --ready-fd */
	char outbuf[PROC_OUT_MAX], errbuf[PROC_OUT_MAX];
	size_t outlen, errlen;
	int status;
	int exited; /* waited for: status is its end */
	int killed; /* ...and proc_wait had to kill it */
};

/* proc_now_ms is the runtime's clock (tern_now_ns) in milliseconds: for
 * deadlines and for logging how long something took, never for asserting
 * that it was quick. */
static inline uint64_t
proc_now_ms(void)
{
	return tern_now_ns() / 1000000;
}

/* proc_spawn starts argv[] (NULL-terminated, argv[0] = program path) with
 * the environment envp (NULL: this process's).  With want_ready the child
 * gets a pipe as fd 3 (pass "--ready-fd" "3").  Returns 0, -1 on failure. */
static inline int
proc_spawn(struct proc *p, char *const argv[], int want_ready, char *const envp[])
{
	extern char **environ;
	int o[2], e[2], r[2] = {-1, -1};
	memset(p, 0, sizeof(*p));
	if (pipe2(o, O_CLOEXEC) || pipe2(e, O_CLOEXEC) || (want_ready && pipe2(r, O_CLOEXEC)))
		return -1;
	p->pid = fork();
	if (p->pid < 0)
		return -1;
	if (p->pid == 0) {
		/* A test that fails or crashes takes its processes with it. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		dup2(o[1], 1);
		dup2(e[1], 2);
		if (want_ready)
			dup2(r[1], 3); /* dup2 clears CLOEXEC on the new fd */
		execve(argv[0], argv, envp != NULL ? envp : environ);
		_exit(127);
	}
	close(o[1]);
	close(e[1]);
	p->out = o[0];
	p->err = e[0];
	p->ready = -1;
	if (want_ready) {
		close(r[1]);
		p->ready = r[0];
	}
	return 0;
}

/* proc_start starts argv[] in this process's environment (proc_spawn). */
static inline int
proc_start(struct proc *p, char *const argv[], int want_ready)
{
	return proc_spawn(p, argv, want_ready, NULL);
}

/* proc_ready_port reads the port the child wrote to its ready fd; 0 when it
 * wrote none within timeout_ms. */
static inline int
proc_ready_port(struct proc *p, int timeout_ms)
{
	struct pollfd pf = {p->ready, POLLIN, 0};
	char line[32] = "";
	if (poll(&pf, 1, timeout_ms) != 1)
		return 0;
	ssize_t n = read(p->ready, line, sizeof(line) - 1);
	return n > 0 ? atoi(line) : 0;
}

/* proc_drain reads what is there from *fd into buf (closing and clearing
 * *fd at its end). */
static inline void
proc_drain(int *fd, char *buf, size_t *len)
{
	if (*fd < 0)
		return;
	ssize_t n = read(*fd, buf + *len, PROC_OUT_MAX - 1 - *len);
	if (n <= 0) {
		close(*fd);
		*fd = -1;
		return;
	}
	*len += (size_t)n;
	buf[*len] = '\0';
}

/* proc_collect reads the child's output until it has closed both pipes,
 * SIGKILLing it once deadline (proc_now_ms) has passed, and then setting
 * *killed.  Shared by proc_wait and tern-bench's bench_wait. */
static inline void
proc_collect(struct proc *p, uint64_t deadline, int *killed)
{
	while (p->out >= 0 || p->err >= 0) {
		struct pollfd pf[2] = {{p->out, POLLIN, 0}, {p->err, POLLIN, 0}};
		int64_t left = (int64_t)(deadline - proc_now_ms());
		if (left <= 0 && !*killed) {
			kill(p->pid, SIGKILL);
			*killed = 1;
		}
		if (poll(pf, 2, (int)(left > 0 ? left : 1000)) < 0 && errno != EINTR)
			break;
		if (pf[0].revents)
			proc_drain(&p->out, p->outbuf, &p->outlen);
		if (pf[1].revents)
			proc_drain(&p->err, p->errbuf, &p->errlen);
	}
}

/* proc_wait waits up to timeout_ms for the child to exit, collecting its
 * output, and SIGKILLs it at the deadline.  Returns 0 if it exited by
 * itself (a signal it sent itself included), -1 if it had to be killed.
 * Waiting again for a child that was waited for returns the same. */
static inline int
proc_wait(struct proc *p, int timeout_ms)
{
	uint64_t deadline = proc_now_ms() + (uint64_t)timeout_ms;
	int killed = 0;
	if (p->exited)
		return p->killed ? -1 : 0;
	proc_collect(p, deadline, &killed);
	waitpid(p->pid, &p->status, 0);
	p->exited = 1;
	p->killed = killed;
	if (p->ready >= 0)
		close(p->ready);
	p->ready = -1;
	return killed ? -1 : 0;
}

/* proc_exit_code is the child's exit status, 128 + the signal that ended it. */
static inline int
proc_exit_code(const struct proc *p)
{
	return WIFEXITED(p->status) ? WEXITSTATUS(p->status) : 128 + WTERMSIG(p->status);
}

/* json_find returns the first member called name in v, depth first
 * (borrowed; NULL when there is none). */
static inline json_t *
json_find(json_t *v, const char *name)
{
	const char *k;
	json_t *m, *hit;
	size_t i;
	if (json_is_object(v)) {
		if ((hit = json_object_get(v, name)) != NULL)
			return hit;
		json_object_foreach(v, k, m)
		{
			if ((hit = json_find(m, name)) != NULL)
				return hit;
		}
	} else if (json_is_array(v)) {
		json_array_foreach(v, i, m)
		{
			if ((hit = json_find(m, name)) != NULL)
				return hit;
		}
	}
	return NULL;
}

/* json_num reads a numeric member (true = 1, false = 0) from the JSON
 * objects in s (a process's output: one object a line, other lines
 * skipped), the first one of that name; -1 when absent. */
static inline long long
json_num(const char *s, const char *name)
{
	for (const char *line = s; line != NULL && *line != '\0';) {
		const char *end = strchr(line, '\n');
		size_t n = end != NULL ? (size_t)(end - line) : strlen(line);
		json_t *o = *line == '{' ? json_loadb(line, n, 0, NULL) : NULL;
		json_t *v = o != NULL ? json_find(o, name) : NULL;
		long long r = json_is_integer(v)   ? (long long)json_integer_value(v)
		              : json_is_boolean(v) ? (long long)json_is_true(v)
		              : json_is_real(v)    ? (long long)json_real_value(v)
		                                   : -2;
		json_decref(o);
		if (r != -2)
			return r;
		line = end != NULL ? end + 1 : NULL;
	}
	return -1;
}

/* ---- for tests (tests/proc.c, with criterion) ---- */

/* proc_tool returns the path of a tool built next to this tree's tern
 * (tern-relay, tern-trace); the string stays valid for the next 7 calls. */
char *proc_tool(const char *name);

/* proc_start_fault starts argv (proc_spawn) with TERN_FAULT=fault in its
 * environment, or without TERN_FAULT when fault is NULL; the test's own
 * environment, and every other child it starts, stay as they were. */
int proc_start_fault(struct proc *p, char *const argv[], int want_ready, const char *fault);

/* proc_listen starts argv (which must pass "--ready-fd" "3") with fault and
 * asserts that it reported a listening port within a liveness bound; writes
 * "127.0.0.1:PORT" into addr and returns the port. */
int proc_listen(struct proc *p, char *const argv[], const char *fault, char *addr, size_t addrlen);

/* proc_wait_stderr waits up to timeout_ms until the child's stderr contains
 * needle (collecting it).  Returns 0, or -1 if it did not. */
int proc_wait_stderr(struct proc *p, const char *needle, int timeout_ms);

/* proc_run runs argv to completion, asserting that it started and ended
 * within bound_ms; returns its exit code, its output stays in p. */
int proc_run(struct proc *p, char *const argv[], int bound_ms);

/* proc_assert_usage_error runs argv and asserts that it exits 2 (bad usage)
 * with needle in its stderr. */
void proc_assert_usage_error(char *const argv[], const char *needle);

/* args_join writes the NULL-terminated argument lists a then b (either may
 * be NULL) into dst, NULL-terminated, asserting that they fit in max. */
void args_join(char **dst, int max, char *const a[], char *const b[]);

/* proc_fault_fired is whether p reported that fault (one trigger) fired:
 * tern prints "tern: fault fired: " and the trigger when it does. */
int proc_fault_fired(const struct proc *p, const char *fault);

/* ---- a migration between two real tern processes ---- */

/* A receiver (`tern receive`) and a sender (`tern send`), and where the
 * sender is sent: the receiver's address unless the test points it
 * elsewhere (a relay) before mig_send. */
struct mig {
	struct proc r, s;
	int port;             /* the receiver's */
	char to[64];          /* "127.0.0.1:PORT", the sender's --to */
	const char *fault[2]; /* TERN_FAULT given to the receiver, the sender */
};

/* mig_receive starts `tern receive --listen 127.0.0.1:0 --ready-fd 3 --json
 * --accept-timeout 60s` and the extra arguments (NULL-terminated; NULL: none)
 * with TERN_FAULT=fault (NULL: none), asserting that it listens; sets
 * m->port and m->to. */
void mig_receive(struct mig *m, const char *fault, char *const extra[]);

/* mig_send starts `tern send --to m->to --json` and the extra arguments with
 * TERN_FAULT=fault, asserting that it started. */
void mig_send(struct mig *m, const char *fault, char *const extra[]);

/* mig_wait waits for the sender, then the receiver, asserting that each
 * ended by itself within its liveness bound (MIG_*_BOUND_MS), and logs
 * their output.  For each side started with a fault it then asserts that
 * the first trigger of its list fired: a fault test whose event never came
 * fails saying so instead of passing vacuously (a test whose later triggers
 * must fire too checks them with mig_assert_fired). */
void mig_wait(struct mig *m);

/* mig_side returns the process of a side: "source" (the sender) or
 * "destination" (the receiver). */
struct proc *mig_side(struct mig *m, const char *side);

/* mig_assert_fired asserts that fault (one trigger) fired on side. */
void mig_assert_fired(struct mig *m, const char *side, const char *fault);

/* ---- traces (--trace FILE) ---- */

/* trace_count counts the records of kind in the trace at path, those with
 * that text and of that actor when text or actor is not NULL; it asserts
 * that the trace opens and is not corrupt (a cut last record is its end). */
int trace_count(const char *path, uint32_t kind, const char *text, const char *actor);

/* trace_wait_count waits until the trace at path, still being written by
 * another process, holds at least n such records; it asserts that it did
 * within bound_ms.  This is how a test acts at a named event of a process
 * it cannot inject a fault into (state changes are written at once). */
void trace_wait_count(const char *path, uint32_t kind, const char *text, const char *actor, int n,
                      int bound_ms);

#endif /* TERN_TESTS_PROC_H */
