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

/* Never converges (1 ms limit): only the cancel can end it. */
#define GUEST "simvm:mem=256M,vcpus=2,fill=random,workload=memtouch:ws=64M,rate=100M,pattern=random"

static void
cancel_with(int sig)
{
	struct mig m;
	char *rx[] = {"--exit-after-handoff", NULL};
	char *tx[] = {"--guest", GUEST, "--downtime-limit", "1ms", "--timeout", "10m", NULL};
	mig_receive(&m, NULL, rx);
	mig_send(&m, NULL, tx);
	cr_assert_eq(proc_wait_stderr(&m.r, "receiving migration", 60000), 0,
	             "the migration never started: %s", m.r.errbuf);
	kill(m.s.pid, sig);
	/* Both must end after the signal: liveness bounds. */
	mig_wait(&m);
	cr_assert_eq(proc_exit_code(&m.s), 1, "source exit %d: %s", proc_exit_code(&m.s),
	             m.s.errbuf);
	cr_assert_not_null(strstr(m.s.errbuf, "cancelled"), "%s", m.s.errbuf);
	cr_assert_not_null(strstr(m.s.outbuf, "\"outcome\":\"aborted\""), "no summary: %s",
	                   m.s.outbuf);
	cr_assert_eq(json_num(m.s.outbuf, "workload_ok"), 1, "source guest not running: %s",
	             m.s.outbuf);
	cr_assert_eq(json_num(m.s.outbuf, "handoff_unknown"), 0);
	/* The destination was told, and did not resume a copy. */
	cr_assert_neq(proc_exit_code(&m.r), 0, "destination: %s", m.r.errbuf);
	cr_assert_null(strstr(m.r.outbuf, "\"outcome\":\"completed\""), "%s", m.r.outbuf);
}

Test(cancel, sigint_cancels_send, .timeout = 300)
{
	cancel_with(SIGINT);
}
Test(cancel, sigterm_cancels_send, .timeout = 300)
{
	cancel_with(SIGTERM);
}
