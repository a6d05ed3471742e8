/*
 * The source guest must end up running: a migration that fails after the
 * source guest was paused resumes it, retrying a failed resume, and says so
 * loudly when it cannot (TERN_FAULT=guest@resume, see actors/fault.h).
 *
 * The migration is made to fail at its switchover: the destination process
 * SIGKILLs itself when it has loaded the state, while the source guest is
 * paused waiting for the answer.  Every test checks that its faults fired.
 */
#include <criterion/criterion.h>

#include "tests/proc.h"

#define TERN tern_cli()
/* Small and slow-dirtying: it reaches the switchover in a few iterations,
 * even on a loaded machine. */
#define GUEST "simvm:mem=256M,vcpus=2,fill=50,workload=memtouch:ws=32M,rate=10M,pattern=seq"
#define DEST_FAULT "process@state:state"
/* More consecutive failures than the coordinator's and the session's tries
 * together (3 + 3).  "#1..#7" alone should do, but actors/fault.c stops at
 * the first trigger that fires, so the later triggers miss that event and
 * "#1,#2,#3" fails resumes 1, 3 and 5; the spare "#1"s fill those gaps.  The
 * list fails 7 in a row either way, should fault.c count every event. */
#define EVERY_RESUME                                                                   \
	"guest@resume,guest@resume#2,guest@resume#3,guest@resume#4,guest@resume#5,"    \
	"guest@resume#6,guest@resume#7,guest@resume,guest@resume,guest@resume,"        \
	"guest@resume,guest@resume,guest@resume,guest@resume"

/* Runs a migration with src_fault in the source's environment (dest_fault in
 * the destination's, may be NULL); both must end by themselves. */
static void
run_pair(struct proc *s, struct proc *r, const char *src_fault, const char *dest_fault)
{
	char to[64];
	char *rx[] = { "--exit-after-handoff", NULL };
	cr_assert_eq(proc_start_receiver(r, dest_fault, rx, to, sizeof(to)), 0,
	    "the destination did not report its port");
	char *tx[] = { "--guest", GUEST, "--timeout", "60s", NULL };
	cr_assert_eq(proc_start_sender(s, to, src_fault, tx), 0);
	/* Liveness only: generous bounds. */
	cr_assert_eq(proc_wait(s, 120000), 0, "the source hung: %s", s->errbuf);
	cr_assert_eq(proc_wait(r, 60000), 0, "the destination hung: %s", r->errbuf);
	cr_log_info("source: %s%s", s->outbuf, s->errbuf);
	cr_log_info("destination: %s%s", r->outbuf, r->errbuf);
}

static void
assert_fired(const struct proc *p, const char *side, const char *fault)
{
	cr_assert(proc_fault_fired(p, fault), "the fault %s never fired (%s: %s)", fault, side,
	    p->errbuf);
}

/* `tern send` exits 3 when the source guest could not be resumed (its
 * --help says so). */
#define EXIT_SOURCE_PAUSED 3

Test(resume, first_resume_fails_retry_runs_the_source, .timeout = 300)
{
	struct proc s, r;
	run_pair(&s, &r, "guest@resume", DEST_FAULT);
	assert_fired(&r, "destination", DEST_FAULT);
	assert_fired(&s, "source", "guest@resume");
	cr_assert_eq(proc_exit_code(&s), 1, "source: %s", s.errbuf);
	cr_assert(strstr(s.errbuf, "could not be resumed") == NULL, "source: %s", s.errbuf);
	cr_assert_eq(json_num(s.outbuf, "source_resume_failed"), 0, "%s", s.outbuf);
	cr_assert(strstr(s.outbuf, "\"outcome\":\"aborted\"") != NULL, "%s", s.outbuf);
	/* The retry resumed it: its workload counter advances. */
	cr_assert_eq(json_num(s.outbuf, "workload_ok"), 1, "source guest not running: %s",
	    s.outbuf);
	cr_assert_eq(json_num(s.outbuf, "handoff_unknown"), 0);
}

Test(resume, every_resume_fails_loudly, .timeout = 300)
{
	struct proc s, r;
	run_pair(&s, &r, EVERY_RESUME, DEST_FAULT);
	assert_fired(&r, "destination", DEST_FAULT);
	assert_fired(&s, "source", "guest@resume");
	cr_assert_eq(proc_exit_code(&s), EXIT_SOURCE_PAUSED, "source: %s", s.errbuf);
	cr_assert(strstr(s.errbuf, "the source guest could not be resumed: ") != NULL,
	    "no loud error: %s", s.errbuf);
	cr_assert(strstr(s.errbuf, "it is PAUSED") != NULL, "source: %s", s.errbuf);
	cr_assert_eq(json_num(s.outbuf, "source_resume_failed"), 1, "%s", s.outbuf);
	cr_assert(strstr(s.outbuf, "\"outcome\":\"failed\"") != NULL, "%s", s.outbuf);
	cr_assert_eq(json_num(s.outbuf, "workload_ok"), -1, "%s", s.outbuf);
}

Test(resume, failed_pause_aborts_with_the_source_running, .timeout = 300)
{
	struct proc s, r;
	run_pair(&s, &r, "guest@pause", NULL);
	assert_fired(&s, "source", "guest@pause");
	cr_assert_eq(proc_exit_code(&s), 1, "source: %s", s.errbuf);
	cr_assert(strstr(s.errbuf, "cannot pause the guest") != NULL, "source: %s", s.errbuf);
	cr_assert_eq(json_num(s.outbuf, "source_resume_failed"), 0, "%s", s.outbuf);
	cr_assert_eq(json_num(s.outbuf, "workload_ok"), 1, "source guest not running: %s",
	    s.outbuf);
}
