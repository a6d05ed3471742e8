/*
 * Every call into the guest can fail, and each failure ends the migration
 * with a clear reason and the source guest running: dirty tracking that will
 * not start, a harvest that fails mid-way (a later iteration), a state save
 * that fails, a state the destination cannot load.  (A failing pause or
 * resume: tests/test_resume.c.)  Failures are injected at the call with
 * TERN_FAULT=guest@CALL (actors/fault.h), and each test checks that its
 * fault fired.
 */
#include <criterion/criterion.h>
#include <signal.h>

#include "tests/proc.h"

#define GUEST "simvm:mem=128M,vcpus=2,fill=random,workload=memtouch:ws=64M,rate=100M,pattern=random"

static void
guest_call_fails(const char *side, const char *fault, const char *downtime, const char *expect)
{
	struct mig m;
	int dst = strcmp(side, "destination") == 0;
	char *rx[] = {"--exit-after-handoff", NULL};
	mig_receive(&m, dst ? fault : NULL, rx);
	char *tx[] = {"--guest", GUEST, "--downtime-limit", (char *)downtime, "--timeout",
	              "120s",    NULL};
	mig_send(&m, dst ? NULL : fault, tx);
	/* A source that failed before it connected never reaches the
	 * destination: stop it once the source has ended (a no-op if it ended
	 * already). */
	cr_assert_eq(proc_wait(&m.s, MIG_SEND_BOUND_MS), 0, "source hung");
	kill(m.r.pid, SIGTERM);
	mig_wait(&m);
	mig_assert_fired(&m, side, fault);
	cr_assert_eq(proc_exit_code(&m.s), 1, "source: %s", m.s.errbuf);
	cr_assert_not_null(strstr(m.s.errbuf, expect), "no '%s' in: %s", expect, m.s.errbuf);
	cr_assert_not_null(strstr(m.s.outbuf, "\"outcome\":\"aborted\""), "%s", m.s.outbuf);
	cr_assert_eq(json_num(m.s.outbuf, "workload_ok"), 1, "source guest not running: %s",
	             m.s.outbuf);
	cr_assert_neq(proc_exit_code(&m.r), 0, "the destination completed: %s", m.r.outbuf);
}

Test(guest_failures, dirty_start_fails, .timeout = 300)
{
	guest_call_fails("source", "guest@dirty_start", "300ms", "dirty tracking");
}

Test(guest_failures, harvest_fails_midway, .timeout = 300)
{
	/* A 1 ms limit keeps it iterating: the 5th harvest is mid-migration. */
	guest_call_fails("source", "guest@harvest#5", "1ms", "harvest failed");
}

Test(guest_failures, state_save_fails, .timeout = 300)
{
	guest_call_fails("source", "guest@save", "60s", "cannot save guest state");
}

Test(guest_failures, state_load_fails_on_the_destination, .timeout = 300)
{
	guest_call_fails("destination", "guest@load", "60s", "refused W_STATE");
}

Test(guest_failures, destination_resume_fails_at_the_handoff, .timeout = 300)
{
	/* A definite answer that the destination could not run the guest:
	 * the source runs again (not left paused as handoff_unknown). */
	guest_call_fails("destination", "guest@resume", "60s", "refused W_COMPLETE");
}
