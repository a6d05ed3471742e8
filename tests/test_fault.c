/*
 * Fault injection: actors killed inside real tern processes mid-migration
 * (TERN_FAULT at named events, see actors/fault.h).  Every test checks that its
 * fault fired: one that did not is a failure that says so, not a flake.  Whatever dies, both processes end
 * in bounded time with a reason, and the source guest is running again.
 */
#include <criterion/criterion.h>

#include "tests/proc.h"

#define TERN tern_cli()
#define GUEST "simvm:mem=256M,vcpus=2,fill=random,workload=memtouch:ws=128M,rate=400M,pattern=random"

static void
run_with_fault(const char *side, const char *fault, const char *expect)
{
	struct proc r, s;
	char to[64];
	int dst = strcmp(side, "destination") == 0;
	char *rx[] = { "--exit-after-handoff", NULL };
	cr_assert_eq(proc_start_receiver(&r, dst ? fault : NULL, rx, to, sizeof(to)), 0);
	/* A 1 ms limit keeps it iterating until the fault hits. */
	char *tx[] = { "--guest", GUEST, "--downtime-limit", "1ms", "--timeout", "60s", NULL };
	cr_assert_eq(proc_start_sender(&s, to, dst ? NULL : fault, tx), 0);
	uint64_t t0 = proc_now_ms();
	/* Liveness bounds only: a sanitizer build (CI runs this file with a
	 * TSan CLI) takes ~15 s to reach the later events. */
	cr_assert_eq(proc_wait(&s, 120000), 0, "source hung after %s was killed", fault);
	cr_assert_eq(proc_wait(&r, 60000), 0, "destination hung after %s was killed", fault);
	cr_log_info("%s killed: source ended after %llu ms: %s", fault,
	    (unsigned long long)(proc_now_ms() - t0), s.errbuf);
	struct proc *faulty = dst ? &r : &s;
	cr_assert(proc_fault_fired(faulty, fault), "the fault %s never fired (%s: %s)", fault, side,
	    faulty->errbuf);
	cr_assert_eq(proc_exit_code(&s), 1, "source: %s", s.errbuf);
	cr_assert_eq(proc_exit_code(&r), 1, "destination: %s", r.errbuf);
	cr_assert(strstr(s.errbuf, expect) != NULL || strstr(r.errbuf, expect) != NULL,
	    "no '%s' in the errors: source: %s destination: %s", expect, s.errbuf, r.errbuf);
	/* The source guest runs again: its workload counter advances. */
	cr_assert_eq(json_num(s.outbuf, "workload_ok"), 1, "source guest not running: %s",
	    s.outbuf);
	cr_assert_eq(json_num(s.outbuf, "handoff_unknown"), 0);
}

Test(fault, source_dirty_log_killed, .timeout = 240)
{
	run_with_fault("source", "dirty-log@recv:DIRTY_TAKE#2", "killed");
}

Test(fault, source_connection_killed, .timeout = 240)
{
	run_with_fault("source", "conn-send@chunk:5", "killed");
}

Test(fault, source_coordinator_killed, .timeout = 240)
{
	run_with_fault("source", "coordinator@state:iterate", "killed");
}

Test(fault, destination_connection_killed, .timeout = 240)
{
	run_with_fault("destination", "conn-recv@send:ACK#5", "killed");
}

Test(fault, destination_receiver_killed, .timeout = 240)
{
	run_with_fault("destination", "receiver@recv:PAGES_IN#3", "killed");
}

/* A kill just after the handoff is decided must not undo it: the guest runs
 * on the destination only (the campaign found both running, then neither,
 * when a kill at this point was taken for a failed migration). */
static void
kill_after_handoff(const char *side, const char *fault)
{
	struct proc r, s;
	char to[64];
	int dst = strcmp(side, "destination") == 0;
	char *rx[] = { "--exit-after-handoff", NULL };
	cr_assert_eq(proc_start_receiver(&r, dst ? fault : NULL, rx, to, sizeof(to)), 0);
	/* A 60 s limit: bulk, then straight to the switchover. */
	char *tx[] = { "--guest", GUEST, "--downtime-limit", "60s", "--verify", "--timeout", "120s",
		NULL };
	cr_assert_eq(proc_start_sender(&s, to, dst ? NULL : fault, tx), 0);
	cr_assert_eq(proc_wait(&s, 150000), 0, "source hung");
	cr_assert_eq(proc_wait(&r, 60000), 0, "destination hung");
	struct proc *faulty = dst ? &r : &s;
	cr_assert(proc_fault_fired(faulty, fault), "the fault %s never fired: %s", fault,
	    faulty->errbuf);
	/* Exactly one guest runs: the destination's. */
	cr_assert_eq(proc_exit_code(&r), 0, "destination: %s", r.errbuf);
	cr_assert_not_null(strstr(r.outbuf, "\"outcome\":\"completed\""), "%s", r.outbuf);
	cr_assert_eq(proc_exit_code(&s), 0, "source: %s", s.errbuf);
	cr_assert_not_null(strstr(s.outbuf, "\"outcome\":\"completed\""), "%s", s.outbuf);
	cr_assert_eq(json_num(s.outbuf, "handoff_unknown"), 0);
}

Test(fault, source_coordinator_killed_after_the_confirmation, .timeout = 240)
{
	/* With --verify the 4th answer is the handoff's (config, state,
	 * digest, complete). */
	kill_after_handoff("source", "coordinator@recv:W_RESULT#4");
}

Test(fault, destination_receiver_killed_after_resuming, .timeout = 240)
{
	kill_after_handoff("destination", "receiver@state:resumed");
}
