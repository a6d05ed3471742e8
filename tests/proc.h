/*
 * Test helper: run real `tern` processes, capture their output, bound their
 * lifetime.  Header-only (static) so that each test executable stays one file.
 */
#ifndef TERN_TESTS_PROC_H
#define TERN_TESTS_PROC_H

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PROC_OUT_MAX (64 * 1024)

/* The tern binary under test: $TERN_CLI (e.g. a TSan build of the CLI, so
 * that whole migrations run under the sanitizer while criterion itself runs
 * plain), else the one built with this tree. */
static inline char *
tern_cli(void)
{
	char *env = getenv("TERN_CLI");
	return env != NULL && env[0] != '\0' ? env : (char *)TERN_CLI_PATH;
}

struct proc {
	pid_t pid;
	int out, err, ready; /* pipes from the child; ready: --ready-fd */
	char outbuf[PROC_OUT_MAX], errbuf[PROC_OUT_MAX];
	size_t outlen, errlen;
	int status;
	int exited;
};

static inline uint64_t
proc_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Starts argv[] (NULL-terminated, argv[0] = program path).  With want_ready,
 * the child gets a pipe as fd 3 (pass "--ready-fd" "3"). */
static inline int
proc_start(struct proc *p, char *const argv[], int want_ready)
{
	int o[2], e[2], r[2] = { -1, -1 };
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
		execv(argv[0], argv);
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

/* Reads the port the child wrote to its ready fd (0 on failure). */
static inline int
proc_ready_port(struct proc *p, int timeout_ms)
{
	struct pollfd pf = { p->ready, POLLIN, 0 };
	char line[32] = "";
	if (poll(&pf, 1, timeout_ms) != 1)
		return 0;
	ssize_t n = read(p->ready, line, sizeof(line) - 1);
	return n > 0 ? atoi(line) : 0;
}

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

/* Waits up to timeout_ms for the child to exit, collecting its output.
 * Kills it (SIGKILL) at the deadline.  Returns 0 if it exited by itself. */
static inline int
proc_wait(struct proc *p, int timeout_ms)
{
	uint64_t deadline = proc_now_ms() + (uint64_t)timeout_ms;
	int killed = 0;
	while (p->out >= 0 || p->err >= 0) {
		struct pollfd pf[2] = { { p->out, POLLIN, 0 }, { p->err, POLLIN, 0 } };
		int64_t left = (int64_t)(deadline - proc_now_ms());
		if (left <= 0 && !killed) {
			kill(p->pid, SIGKILL);
			killed = 1;
			left = 1000;
		}
		if (poll(pf, 2, (int)(left > 0 ? left : 1000)) < 0 && errno != EINTR)
			break;
		if (pf[0].revents)
			proc_drain(&p->out, p->outbuf, &p->outlen);
		if (pf[1].revents)
			proc_drain(&p->err, p->errbuf, &p->errlen);
	}
	waitpid(p->pid, &p->status, 0);
	p->exited = 1;
	if (p->ready >= 0)
		close(p->ready);
	p->ready = -1;
	return killed ? -1 : 0;
}

/* Waits until the child's stderr contains needle (collecting it). */
static inline int
proc_wait_stderr(struct proc *p, const char *needle, int timeout_ms)
{
	uint64_t deadline = proc_now_ms() + (uint64_t)timeout_ms;
	while (strstr(p->errbuf, needle) == NULL) {
		int64_t left = (int64_t)(deadline - proc_now_ms());
		if (left <= 0 || p->err < 0)
			return -1;
		struct pollfd pf = { p->err, POLLIN, 0 };
		if (poll(&pf, 1, (int)left) > 0)
			proc_drain(&p->err, p->errbuf, &p->errlen);
	}
	return 0;
}

static inline int
proc_exit_code(const struct proc *p)
{
	return WIFEXITED(p->status) ? WEXITSTATUS(p->status) : 128 + WTERMSIG(p->status);
}

/* Extracts a numeric JSON field ("name":123) from s; -1 when absent. */
static inline long long
json_num(const char *s, const char *name)
{
	char key[64];
	snprintf(key, sizeof(key), "\"%s\":", name);
	const char *p = strstr(s, key);
	if (p == NULL)
		return -1;
	p += strlen(key);
	if (strncmp(p, "true", 4) == 0)
		return 1;
	if (strncmp(p, "false", 5) == 0)
		return 0;
	return strtoll(p, NULL, 10);
}

/* ---- a migration between two real processes, with faults ---- */

/* Starts argv with TERN_FAULT=fault in its environment (NULL: none); the
 * test's own environment is left as it was. */
static inline int
proc_start_fault(struct proc *p, char *const argv[], int want_ready, const char *fault)
{
	if (fault != NULL)
		setenv("TERN_FAULT", fault, 1);
	int rc = proc_start(p, argv, want_ready);
	if (fault != NULL)
		unsetenv("TERN_FAULT");
	return rc;
}

/* Starts `tern receive` on a free loopback port (ready fd, --json, 60 s for
 * the source to arrive, the extra arguments, NULL-terminated) with fault;
 * writes "127.0.0.1:PORT" into to.  Returns 0, -1 if it never listened. */
static inline int
proc_start_receiver(struct proc *r, const char *fault, char *const extra[], char *to,
                    size_t tolen)
{
	char *argv[32] = { tern_cli(), "receive", "--listen", "127.0.0.1:0", "--ready-fd", "3",
		"--json", "--accept-timeout", "60s" };
	int n = 9;
	for (int i = 0; extra != NULL && extra[i] != NULL && n < 31; i++)
		argv[n++] = extra[i];
	argv[n] = NULL;
	if (proc_start_fault(r, argv, 1, fault) != 0)
		return -1;
	int port = proc_ready_port(r, 60000);
	if (port <= 0)
		return -1;
	snprintf(to, tolen, "127.0.0.1:%d", port);
	return 0;
}

/* Starts `tern send --to to --json` with the extra arguments and fault. */
static inline int
proc_start_sender(struct proc *s, const char *to, const char *fault, char *const extra[])
{
	char *argv[40] = { tern_cli(), "send", "--to", (char *)to, "--json" };
	int n = 5;
	for (int i = 0; extra != NULL && extra[i] != NULL && n < 39; i++)
		argv[n++] = extra[i];
	argv[n] = NULL;
	return proc_start_fault(s, argv, 0, fault);
}

/* Whether p reported that fault fired (tern prints "tern: fault fired: "
 * and the trigger when it does). */
static inline int
proc_fault_fired(const struct proc *p, const char *fault)
{
	char line[256];
	snprintf(line, sizeof(line), "tern: fault fired: %s", fault);
	return strstr(p->errbuf, line) != NULL;
}

#endif /* TERN_TESTS_PROC_H */
