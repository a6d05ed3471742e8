/*
 * `tern send` cancels on SIGINT and SIGTERM: the migration aborts, the
 * destination is told and ends, the source guest runs again, the CLI exits 1
 * with "cancelled" and still prints its --json summary.  The signal is sent
 * at an event (the destination reports the migration under way), and the
 * only time bound is a liveness bound.
 */
#include <criterion/criterion.h>
#include <signal.h>

#include "tests/proc.h"

#define TERN tern_cli()
/* Never converges (1 ms limit): only the cancel can end it. */
#define GUEST "simvm:mem=256M,vcpus=2,fill=random,workload=memtouch:ws=64M,rate=100M,pattern=random"

static void
cancel_with(int sig)
{
	struct proc r, s;
	char *ra[] = { TERN, "receive", "--listen", "127.0.0.1:0", "--ready-fd", "3",
		"--exit-after-handoff", "--accept-timeout", "60s", "--json", NULL };
	cr_assert_eq(proc_start(&r, ra, 1), 0);
	int port = proc_ready_port(&r, 30000);
	cr_assert_gt(port, 0);
	char to[64];
	snprintf(to, sizeof(to), "127.0.0.1:%d", port);
	char *sa[] = { TERN, "send", "--to", to, "--guest", GUEST, "--downtime-limit", "1ms",
		"--timeout", "10m", "--json", NULL };
	cr_assert_eq(proc_start(&s, sa, 0), 0);
	cr_assert_eq(proc_wait_stderr(&r, "receiving migration", 60000), 0,
	    "the migration never started: %s", r.errbuf);
	uint64_t t0 = proc_now_ms();
	kill(s.pid, sig);
	cr_assert_eq(proc_wait(&s, 60000), 0, "the source did not end after the signal");
	uint64_t ms = proc_now_ms() - t0;
	cr_assert_eq(proc_wait(&r, 60000), 0, "the destination did not end after the cancel");
	cr_log_info("signal %d: the source ended %llu ms later", sig, (unsigned long long)ms);
	cr_assert_eq(proc_exit_code(&s), 1, "source exit %d: %s", proc_exit_code(&s), s.errbuf);
	cr_assert_not_null(strstr(s.errbuf, "cancelled"), "%s", s.errbuf);
	cr_assert_not_null(strstr(s.outbuf, "\"outcome\":\"aborted\""), "no summary: %s", s.outbuf);
	cr_assert_eq(json_num(s.outbuf, "workload_ok"), 1, "source guest not running: %s",
	    s.outbuf);
	cr_assert_eq(json_num(s.outbuf, "handoff_unknown"), 0);
	/* The destination was told, and did not resume a copy. */
	cr_assert_neq(proc_exit_code(&r), 0, "destination: %s", r.errbuf);
	cr_assert_null(strstr(r.outbuf, "\"outcome\":\"completed\""), "%s", r.outbuf);
}

Test(cancel, sigint_cancels_send, .timeout = 300) { cancel_with(SIGINT); }
Test(cancel, sigterm_cancels_send, .timeout = 300) { cancel_with(SIGTERM); }
