/*
 * Test helper: real tern processes and migrations between them (proc.h).
 */
#include "tests/proc.h"

#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <libgen.h>

#include "messages/trace.h"

/* How long a starting process may take to listen: a liveness bound. */
#define PROC_LISTEN_BOUND_MS 60000

char *
proc_tool(const char *name)
{
	static char paths[8][512];
	static int next;
	char cli[512];
	char *path = paths[next++ % 8];
	/* The tools come from this tree's build even when $TERN_CLI names a
	 * sanitizer CLI elsewhere. */
	snprintf(cli, sizeof(cli), "%s", TERN_CLI_PATH); /* dirname writes into it */
	snprintf(path, sizeof(paths[0]), "%s/%s", dirname(cli), name);
	return path;
}

/* The environment for a child: the test's own without TERN_FAULT, and
 * TERN_FAULT=fault when fault is not NULL.  Built before fork (a child of a
 * threaded test must not allocate) and without setenv (the fault stays out
 * of the test's own environment).  Free with free(). */
static char **
proc_env(const char *fault, char *fault_var, size_t len)
{
	extern char **environ;
	size_t n = 0, k = 0;
	while (environ[n] != NULL)
		n++;
	char **env = calloc(n + 2, sizeof(*env));
	cr_assert_not_null(env);
	for (size_t i = 0; i < n; i++)
		if (strncmp(environ[i], "TERN_FAULT=", 11) != 0)
			env[k++] = environ[i];
	if (fault != NULL) {
		snprintf(fault_var, len, "TERN_FAULT=%s", fault);
		env[k++] = fault_var;
	}
	env[k] = NULL;
	return env;
}

int
proc_start_fault(struct proc *p, char *const argv[], int want_ready, const char *fault)
{
	char fault_var[1024];
	char **env = proc_env(fault, fault_var, sizeof(fault_var));
	int rc = proc_spawn(p, argv, want_ready, env);
	free(env);
	return rc;
}

int
proc_listen(struct proc *p, char *const argv[], const char *fault, char *addr, size_t addrlen)
{
	cr_assert_eq(proc_start_fault(p, argv, 1, fault), 0, "cannot start %s", argv[0]);
	int port = proc_ready_port(p, PROC_LISTEN_BOUND_MS);
	if (port <= 0) {
		proc_wait(p, 10000);
		cr_assert_fail("%s %s did not report its port: %s", argv[0], argv[1], p->errbuf);
	}
	snprintf(addr, addrlen, "127.0.0.1:%d", port);
	return port;
}

int
proc_wait_stderr(struct proc *p, const char *needle, int timeout_ms)
{
	uint64_t deadline = proc_now_ms() + (uint64_t)timeout_ms;
	while (strstr(p->errbuf, needle) == NULL) {
		int64_t left = (int64_t)(deadline - proc_now_ms());
		if (left <= 0 || p->err < 0)
			return -1;
		struct pollfd pf = {p->err, POLLIN, 0};
		if (poll(&pf, 1, (int)left) > 0)
			proc_drain(&p->err, p->errbuf, &p->errlen);
	}
	return 0;
}

int
proc_run(struct proc *p, char *const argv[], int bound_ms)
{
	cr_assert_eq(proc_start(p, argv, 0), 0, "cannot start %s", argv[0]);
	cr_assert_eq(proc_wait(p, bound_ms), 0, "%s did not finish in %d ms", argv[0], bound_ms);
	return proc_exit_code(p);
}

void
proc_assert_usage_error(char *const argv[], const char *needle)
{
	struct proc p;
	cr_assert_eq(proc_run(&p, argv, 30000), 2, "exit %d, stderr: %s", proc_exit_code(&p),
	             p.errbuf);
	cr_assert_not_null(strstr(p.errbuf, needle), "stderr lacks '%s': %s", needle, p.errbuf);
}

void
args_join(char **dst, int max, char *const a[], char *const b[])
{
	char *const *lists[2] = {a, b};
	int n = 0;
	for (int l = 0; l < 2; l++)
		for (int i = 0; lists[l] != NULL && lists[l][i] != NULL; i++) {
			cr_assert_lt(n, max - 1, "more than %d arguments", max - 1);
			dst[n++] = lists[l][i];
		}
	dst[n] = NULL;
}

int
proc_fault_fired(const struct proc *p, const char *fault)
{
	char line[256];
	snprintf(line, sizeof(line), "tern: fault fired: %s", fault);
	return strstr(p->errbuf, line) != NULL;
}

/* ---- migrations ---- */

void
mig_receive(struct mig *m, const char *fault, char *const extra[])
{
	char *base[] = {tern_cli(), "receive", "--listen",         "127.0.0.1:0", "--ready-fd",
	                "3",        "--json",  "--accept-timeout", "60s",         NULL};
	char *argv[64];
	args_join(argv, 64, base, extra);
	m->fault[0] = fault;
	m->fault[1] = NULL;
	m->port = proc_listen(&m->r, argv, fault, m->to, sizeof(m->to));
}

void
mig_send(struct mig *m, const char *fault, char *const extra[])
{
	char *base[] = {tern_cli(), "send", "--to", m->to, "--json", NULL};
	char *argv[64];
	args_join(argv, 64, base, extra);
	m->fault[1] = fault;
	cr_assert_eq(proc_start_fault(&m->s, argv, 0, fault), 0, "cannot start the sender");
}

/* The first trigger of a TERN_FAULT list, into buf. */
static const char *
mig_first_trigger(const char *fault, char *buf, size_t len)
{
	snprintf(buf, len, "%.*s", (int)strcspn(fault, ","), fault);
	return buf;
}

void
mig_wait(struct mig *m)
{
	uint64_t t0 = proc_now_ms();
	int s = proc_wait(&m->s, MIG_SEND_BOUND_MS);
	int r = proc_wait(&m->r, MIG_RECV_BOUND_MS);
	cr_log_info("source (%llu ms): %s%s", (unsigned long long)(proc_now_ms() - t0), m->s.outbuf,
	            m->s.errbuf);
	cr_log_info("destination: %s%s", m->r.outbuf, m->r.errbuf);
	cr_assert_eq(s, 0, "the source hung: %s", m->s.errbuf);
	cr_assert_eq(r, 0, "the destination hung: %s", m->r.errbuf);
	const char *side[2] = {"destination", "source"};
	for (int i = 0; i < 2; i++) {
		char first[160];
		if (m->fault[i] != NULL)
			mig_assert_fired(m, side[i],
			                 mig_first_trigger(m->fault[i], first, sizeof(first)));
	}
}

struct proc *
mig_side(struct mig *m, const char *side)
{
	if (strcmp(side, "source") == 0)
		return &m->s;
	cr_assert_str_eq(side, "destination", "a side is \"source\" or \"destination\"");
	return &m->r;
}

void
mig_assert_fired(struct mig *m, const char *side, const char *fault)
{
	struct proc *p = mig_side(m, side);
	cr_assert(proc_fault_fired(p, fault), "the fault %s never fired (%s: %s)", fault, side,
	          p->errbuf);
}

/* ---- traces ---- */

/* Counts the matching records into *n; returns the reader's final code
 * (0 at the end, negative on corruption) or the open's error. */
static int
trace_scan(const char *path, uint32_t kind, const char *text, const char *actor, int *n)
{
	struct tern_trace_reader *rd;
	struct tern_trace_record rec;
	int rc = tern_trace_reader_open(&rd, path, NULL);
	*n = 0;
	if (rc != 0)
		return rc;
	while ((rc = tern_trace_reader_next(rd, &rec)) == 1) {
		if (rec.kind != kind)
			continue;
		if (text != NULL && strcmp(rec.text, text) != 0)
			continue;
		if (actor != NULL && strcmp(rec.actor_name, actor) != 0)
			continue;
		(*n)++;
	}
	tern_trace_reader_close(rd);
	return rc;
}

int
trace_count(const char *path, uint32_t kind, const char *text, const char *actor)
{
	int n;
	cr_assert_eq(trace_scan(path, kind, text, actor, &n), 0,
	             "trace %s does not open or is corrupt", path);
	return n;
}

void
trace_wait_count(const char *path, uint32_t kind, const char *text, const char *actor, int n,
                 int bound_ms)
{
	uint64_t deadline = proc_now_ms() + (uint64_t)bound_ms;
	int have = 0;
	/* The writer may be mid-write(2): a cut or missing file is "not yet". */
	while ((trace_scan(path, kind, text, actor, &have), have) < n) {
		cr_assert_lt(proc_now_ms(), deadline, "%s: %d of %d records of kind %u (%s, %s)",
		             path, have, n, kind, text != NULL ? text : "any",
		             actor != NULL ? actor : "any");
		usleep(10 * 1000);
	}
}
