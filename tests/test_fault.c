/*
 * Fault injection: actors killed inside real tern processes mid-migration
 * (TERN_FAULT at named events, see actors/fault.h).  Every test checks that its
 * fault fired: one that did not is a failure that says so, not a flake.  Whatever dies, both
 * processes end in bounded time with a reason, and the source guest is running again.
 */
#include <criterion/criterion.h>

#include "tests/proc.h"

#define GUEST                                                                                      \
	"simvm:mem=256M,vcpus=2,fill=random,workload=memtouch:ws=128M,rate=400M,pattern=random"

/* Starts a migration with fault on side, and waits for both ends (mig_wait
 * asserts that the fault fired). */
static void
start_with_fault(struct mig *m, const char *side, const char *fault, char *const tx[])
{
	int dst = strcmp(side, "destination") == 0;
	char *rx[] = {"--exit-after-handoff", NULL};
	mig_receive(m, dst ? fault : NULL, rx);
	mig_send(m, dst ? NULL : fault, tx);
	/* Liveness bounds only: a sanitizer build (CI runs this file with a
	 * TSan CLI) takes ~15 s to reach the later events. */
	mig_wait(m);
}

static void
run_with_fault(const char *side, const char *fault, const char *expect)
{
	struct mig m;
	/* A 1 ms limit keeps it iterating until the fault hits. */
	char *tx[] = {"--guest", GUEST, "--downtime-limit", "1ms", "--timeout", "60s", NULL};
	start_with_fault(&m, side, fault, tx);
	mig_assert_fired(&m, side, fault);
	cr_assert_eq(proc_exit_code(&m.s), 1, "source: %s", m.s.errbuf);
	cr_assert_eq(proc_exit_code(&m.r), 1, "destination: %s", m.r.errbuf);
	cr_assert(strstr(m.s.errbuf, expect) != NULL || strstr(m.r.errbuf, expect) != NULL,
	          "no '%s' in the errors: source: %s destination: %s", expect, m.s.errbuf,
	          m.r.errbuf);
	/* The source guest runs again: its workload counter advances. */
	cr_assert_eq(json_num(m.s.outbuf, "workload_ok"), 1, "source guest not running: %s",
	             m.s.outbuf);
	cr_assert_eq(json_num(m.s.outbuf, "handoff_unknown"), 0);
}

Test(fault, source_dirty_log_killed, .timeout = 300)
{
	run_with_fault("source", "dirty-log@recv:DIRTY_TAKE#2", "killed");
}

Test(fault, source_connection_killed, .timeout = 300)
{
	run_with_fault("source", "conn-send@chunk:5", "killed");
}

Test(fault, source_coordinator_killed, .timeout = 300)
{
	run_with_fault("source", "coordinator@state:iterate", "killed");
}

Test(fault, destination_connection_killed, .timeout = 300)
{
	run_with_fault("destination", "conn-recv@send:ACK#5", "killed");
}

Test(fault, destination_receiver_killed, .timeout = 300)
{
	run_with_fault("destination", "receiver@recv:PAGES_IN#3", "killed");
}

/* A kill just after the handoff is decided must not undo it: the guest runs
 * on the destination only (the campaign found both running, then neither,
 * when a kill at this point was taken for a failed migration). */
static void
kill_after_handoff(const char *side, const char *fault)
{
	struct mig m;
	/* A 60 s limit: bulk, then straight to the switchover. */
	char *tx[] = {"--guest", GUEST, "--downtime-limit", "60s", "--verify", "--timeout",
	              "120s",    NULL};
	start_with_fault(&m, side, fault, tx);
	mig_assert_fired(&m, side, fault);
	/* Exactly one guest runs: the destination's. */
	cr_assert_eq(proc_exit_code(&m.r), 0, "destination: %s", m.r.errbuf);
	cr_assert_not_null(strstr(m.r.outbuf, "\"outcome\":\"completed\""), "%s", m.r.outbuf);
	cr_assert_eq(proc_exit_code(&m.s), 0, "source: %s", m.s.errbuf);
	cr_assert_not_null(strstr(m.s.outbuf, "\"outcome\":\"completed\""), "%s", m.s.outbuf);
	cr_assert_eq(json_num(m.s.outbuf, "handoff_unknown"), 0);
}

Test(fault, source_coordinator_killed_after_the_confirmation, .timeout = 300)
{
	/* With --verify the 4th answer is the handoff's (config, state,
	 * digest, complete). */
	kill_after_handoff("source", "coordinator@recv:W_RESULT#4");
}

Test(fault, destination_receiver_killed_after_resuming, .timeout = 300)
{
	kill_after_handoff("destination", "receiver@state:resumed");
}
