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

#define TERN tern_cli()
#define GUEST "simvm:mem=128M,vcpus=2,fill=random,workload=memtouch:ws=64M,rate=100M,pattern=random"

static void
guest_call_fails(const char *side, const char *fault, const char *downtime, const char *expect)
{
	struct proc r, s;
	char to[64];
	int dst = strcmp(side, "destination") == 0;
	char *rx[] = { "--exit-after-handoff", NULL };
	cr_assert_eq(proc_start_receiver(&r, dst ? fault : NULL, rx, to, sizeof(to)), 0);
	char *tx[] = { "--guest", GUEST, "--downtime-limit", (char *)downtime, "--timeout", "120s",
		NULL };
	cr_assert_eq(proc_start_sender(&s, to, dst ? NULL : fault, tx), 0);
	cr_assert_eq(proc_wait(&s, 150000), 0, "source hung");
	/* A source that failed before it connected never reaches the
	 * destination: stop it (a no-op if it ended already). */
	kill(r.pid, SIGTERM);
	cr_assert_eq(proc_wait(&r, 60000), 0, "destination hung");
	struct proc *faulty = dst ? &r : &s;
	cr_assert(proc_fault_fired(faulty, fault), "the fault %s never fired: %s", fault,
	    faulty->errbuf);
	cr_assert_eq(proc_exit_code(&s), 1, "source: %s", s.errbuf);
	cr_assert_not_null(strstr(s.errbuf, expect), "no '%s' in: %s", expect, s.errbuf);
	cr_assert_not_null(strstr(s.outbuf, "\"outcome\":\"aborted\""), "%s", s.outbuf);
	cr_assert_eq(json_num(s.outbuf, "workload_ok"), 1, "source guest not running: %s",
	    s.outbuf);
	cr_assert_neq(proc_exit_code(&r), 0, "the destination completed: %s", r.outbuf);
}

Test(guest_failures, dirty_start_fails, .timeout = 240)
{
	guest_call_fails("source", "guest@dirty_start", "300ms", "dirty tracking");
}

Test(guest_failures, harvest_fails_midway, .timeout = 240)
{
	/* A 1 ms limit keeps it iterating: the 5th harvest is mid-migration. */
	guest_call_fails("source", "guest@harvest#5", "1ms", "harvest failed");
}

Test(guest_failures, state_save_fails, .timeout = 240)
{
	guest_call_fails("source", "guest@save", "60s", "cannot save guest state");
}

Test(guest_failures, state_load_fails_on_the_destination, .timeout = 240)
{
	guest_call_fails("destination", "guest@load", "60s", "refused W_STATE");
}

Test(guest_failures, destination_resume_fails_at_the_handoff, .timeout = 240)
{
	/* A definite answer that the destination could not run the guest:
	 * the source runs again (not left paused as handoff_unknown). */
	guest_call_fails("destination", "guest@resume", "60s", "refused W_COMPLETE");
}
