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

/* Small and slow-dirtying: it reaches the switchover in a few iterations,
 * even on a loaded machine. */
#define GUEST "simvm:mem=256M,vcpus=2,fill=50,workload=memtouch:ws=32M,rate=10M,pattern=seq"
#define DEST_FAULT "process@state:state"
/* More consecutive failures than the coordinator's and the session's tries
 * together (3 + 3).  "#1..#7" alone should do, but actors/fault.c stops at
 * the first trigger that fires, so the later triggers miss that event and
 * "#1,#2,#3" fails resumes 1, 3 and 5; the spare "#1"s fill those gaps.  The
 * list fails 7 in a row either way, should fault.c count every event. */
#define EVERY_RESUME                                                                               \
	"guest@resume,guest@resume#2,guest@resume#3,guest@resume#4,guest@resume#5,"                \
	"guest@resume#6,guest@resume#7,guest@resume,guest@resume,guest@resume,"                    \
	"guest@resume,guest@resume,guest@resume,guest@resume"

/* Runs a migration with src_fault in the source's environment (dest_fault in
 * the destination's, may be NULL); both must end by themselves, and each
 * fault fire (mig_wait). */
static void
run_pair(struct mig *m, const char *src_fault, const char *dest_fault)
{
	char *rx[] = {"--exit-after-handoff", NULL};
	char *tx[] = {"--guest", GUEST, "--timeout", "60s", NULL};
	mig_receive(m, dest_fault, rx);
	mig_send(m, src_fault, tx);
	mig_wait(m);
}

/* `tern send` exits 3 when the source guest could not be resumed (its
 * --help says so). */
#define EXIT_SOURCE_PAUSED 3

Test(resume, first_resume_fails_retry_runs_the_source, .timeout = 300)
{
	struct mig m;
	run_pair(&m, "guest@resume", DEST_FAULT);
	mig_assert_fired(&m, "destination", DEST_FAULT);
	mig_assert_fired(&m, "source", "guest@resume");
	cr_assert_eq(proc_exit_code(&m.s), 1, "source: %s", m.s.errbuf);
	cr_assert(strstr(m.s.errbuf, "could not be resumed") == NULL, "source: %s", m.s.errbuf);
	cr_assert_eq(json_num(m.s.outbuf, "source_resume_failed"), 0, "%s", m.s.outbuf);
	cr_assert(strstr(m.s.outbuf, "\"outcome\":\"aborted\"") != NULL, "%s", m.s.outbuf);
	/* The retry resumed it: its workload counter advances. */
	cr_assert_eq(json_num(m.s.outbuf, "workload_ok"), 1, "source guest not running: %s",
	             m.s.outbuf);
	cr_assert_eq(json_num(m.s.outbuf, "handoff_unknown"), 0);
}

Test(resume, every_resume_fails_loudly, .timeout = 300)
{
	struct mig m;
	run_pair(&m, EVERY_RESUME, DEST_FAULT);
	mig_assert_fired(&m, "destination", DEST_FAULT);
	mig_assert_fired(&m, "source", "guest@resume");
	cr_assert_eq(proc_exit_code(&m.s), EXIT_SOURCE_PAUSED, "source: %s", m.s.errbuf);
	cr_assert(strstr(m.s.errbuf, "the source guest could not be resumed: ") != NULL,
	          "no loud error: %s", m.s.errbuf);
	cr_assert(strstr(m.s.errbuf, "it is PAUSED") != NULL, "source: %s", m.s.errbuf);
	cr_assert_eq(json_num(m.s.outbuf, "source_resume_failed"), 1, "%s", m.s.outbuf);
	cr_assert(strstr(m.s.outbuf, "\"outcome\":\"failed\"") != NULL, "%s", m.s.outbuf);
	cr_assert_eq(json_num(m.s.outbuf, "workload_ok"), -1, "%s", m.s.outbuf);
}

Test(resume, failed_pause_aborts_with_the_source_running, .timeout = 300)
{
	struct mig m;
	run_pair(&m, "guest@pause", NULL);
	mig_assert_fired(&m, "source", "guest@pause");
	cr_assert_eq(proc_exit_code(&m.s), 1, "source: %s", m.s.errbuf);
	cr_assert(strstr(m.s.errbuf, "cannot pause the guest") != NULL, "source: %s", m.s.errbuf);
	cr_assert_eq(json_num(m.s.outbuf, "source_resume_failed"), 0, "%s", m.s.outbuf);
	cr_assert_eq(json_num(m.s.outbuf, "workload_ok"), 1, "source guest not running: %s",
	             m.s.outbuf);
}
