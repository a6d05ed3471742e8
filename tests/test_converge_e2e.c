/*
 * Convergence end to end: a guest that dirties memory faster than the link
 * (--max-bandwidth) carries.  Without throttling it cannot converge and ends
 * with the source running and the reason; with auto-converge it completes
 * within the downtime limit; a killed ThrottleActor leaves the vCPUs running.
 */
#include <criterion/criterion.h>

#include "tests/proc.h"

#define GUEST "simvm:mem=256M,vcpus=2,fill=random,workload=memtouch:ws=128M,pattern=random"

/* Migrates GUEST over a 50 MB/s link with the extra send arguments and
 * fault (the sender's TERN_FAULT, NULL: none). */
static void
run(struct mig *m, const char *fault, char *const extra[])
{
	char *rx[] = {"--exit-after-handoff", NULL};
	char *tx[32] = {"--guest", GUEST, "--max-bandwidth", "50M"};
	int n = 4;
	for (int i = 0; extra[i] != NULL; i++)
		tx[n++] = extra[i];
	tx[n] = NULL;
	mig_receive(m, NULL, rx);
	mig_send(m, fault, tx);
	mig_wait(m);
}

Test(converge, without_throttle_it_gives_up_with_the_reason, .timeout = 300)
{
	struct mig m;
	char *extra[] = {"--timeout", "20s", NULL};
	run(&m, NULL, extra);
	/* The guest dirties as fast as its vCPU threads run; on a host loaded
	 * far past its cores they may not outpace even 50 MB/s.  Completing is
	 * then right, and this test has nothing to judge -- unless the measured
	 * dirty rate did exceed the link, which must never complete. */
	long long dirty_bps = json_num(m.s.outbuf, "dirty_rate_pps") * 4096;
	if (proc_exit_code(&m.s) == 0 && dirty_bps < 50ll * 1024 * 1024)
		cr_skip_test(
		    "host too loaded: the guest dirtied %lld B/s, below the 50 MiB/s link; "
		    "the give-up path was not exercised",
		    dirty_bps);
	cr_assert_eq(proc_exit_code(&m.s), 1, "%s", m.s.errbuf);
	cr_assert(strstr(m.s.errbuf, "did not converge") != NULL, "%s", m.s.errbuf);
	/* The reason: the dirty rate against the bandwidth, or (when the two
	 * measure alike, as on a loaded host they may) the remaining bytes not
	 * decreasing with both figures; or, on a host so loaded that the first
	 * pass did not finish, how far it got. */
	cr_assert(strstr(m.s.errbuf, "exceeds bandwidth") != NULL ||
	              strstr(m.s.errbuf, "remaining bytes not decreasing: dirty rate") != NULL ||
	              strstr(m.s.errbuf, "first pass") != NULL,
	          "no reason: %s", m.s.errbuf);
	cr_assert(strstr(m.s.outbuf, "\"outcome\":\"aborted\"") != NULL);
	cr_assert_eq(json_num(m.s.outbuf, "workload_ok"), 1, "source guest not running");
	cr_assert_eq(proc_exit_code(&m.r), 1);
}

Test(converge, rate_driven_throttle_converges_within_the_limit, .timeout = 300)
{
	struct mig m;
	char *extra[] = {"--auto-converge", "rate", "--timeout", "60s", "--verify", NULL};
	run(&m, NULL, extra);
	cr_assert_eq(proc_exit_code(&m.s), 0, "%s", m.s.errbuf);
	cr_assert_eq(json_num(m.s.outbuf, "verified"), 1);
	cr_assert_gt(json_num(m.s.outbuf, "throttle_max_pct"), 0, "it never throttled");
	/* Strict switchover: the pause only starts when the estimate fits. */
	cr_assert_leq(json_num(m.s.outbuf, "expected_downtime_ms"), 300);
	cr_log_info("achieved downtime %lld ms, expected %lld ms",
	            json_num(m.s.outbuf, "downtime_ms"),
	            json_num(m.s.outbuf, "expected_downtime_ms"));
}

Test(converge, stepping_throttle_converges, .timeout = 300)
{
	struct mig m;
	char *extra[] = {
	    "--auto-converge", "step", "--throttle-initial", "40", "--throttle-increment", "20",
	    "--timeout",       "90s",  "--verify",           NULL};
	run(&m, NULL, extra);
	cr_assert_eq(proc_exit_code(&m.s), 0, "%s", m.s.errbuf);
	cr_assert_geq(json_num(m.s.outbuf, "throttle_max_pct"), 40);
	cr_assert_eq(json_num(m.s.outbuf, "verified"), 1);
}

Test(converge, killed_throttle_leaves_vcpus_running, .timeout = 300)
{
	struct mig m;
	/* The throttle dies with the vCPUs paused (its 3rd pause); the guard
	 * outside it must leave them running and the coordinator carry on
	 * unthrottled.  The migration is then ended at an event, not a time:
	 * the coordinator is killed as it records the throttle's loss, and
	 * the source guest must be running afterwards. */
	char *extra[] = {"--auto-converge",
	                 "step",
	                 "--throttle-initial",
	                 "90",
	                 "--throttle-max",
	                 "90",
	                 "--timeout",
	                 "100s",
	                 NULL};
	run(&m, "throttle@pause#3,coordinator@state:throttle lost", extra);
	/* The throttle was killed, and the coordinator saw it die. */
	mig_assert_fired(&m, "source", "throttle@pause#3");
	mig_assert_fired(&m, "source", "coordinator@state:throttle lost");
	cr_assert_eq(proc_exit_code(&m.s), 1, "%s", m.s.errbuf);
	cr_assert_eq(json_num(m.s.outbuf, "workload_ok"), 1, "source vCPUs left paused: %s",
	             m.s.outbuf);
}
