/*
 * Postcopy end to end, two tern processes over loopback: a guest that
 * dirties memory faster than the link (capped with --max-bandwidth) never
 * converges in pre-copy, and completes once the destination runs it and
 * pulls the missing pages -- after N iterations, or when stall detection
 * fires.  The workload's ledger, spread over its pages, is checked on the
 * destination after it ran there, and --verify compares what arrived, page
 * by page, with the frozen source: a page lost, placed twice or placed
 * stale breaks either.  A fault handler killed mid-way fails both sides plainly, and
 * neither runs the guest.  No timing is asserted: sizes and the bandwidth
 * cap make the guest outrun the link on any machine.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "tests/proc.h"

/* 32 MiB of working set rewritten at up to 400 MB/s against an 8 MB/s
 * link.  The first pass (64 MiB of random data) takes 8 s, in which the
 * guest dirties its whole working set (here it reaches ~12 MB/s of distinct
 * pages; at a tenth of that it still dirties more than a 300 ms pause can
 * carry), and each later pass takes 4 s, in which it does so again: pre-copy
 * never converges, on any machine. */
#define PC_GUEST                                                                                   \
	"simvm:mem=64M,vcpus=2,fill=random,workload=memtouch:ws=32M,rate=400M,pattern=random"

static void
pc_migrate(struct mig *m, const char *rfault, char *const tx_extra[])
{
	char *rx[] = {"--run-after", "500ms", NULL};
	char *tx[16] = {"--guest", PC_GUEST, "--max-bandwidth", "8M", "--connections", "3"};
	int n = 6;
	for (int i = 0; tx_extra[i] != NULL && n < 15; i++)
		tx[n++] = tx_extra[i];
	tx[n] = NULL;
	mig_receive(m, rfault, rx);
	mig_send(m, NULL, tx);
	mig_wait(m);
}

static void
pc_assert_completed(struct mig *m)
{
	cr_assert_eq(proc_exit_code(&m->s), 0, "send: %s", m->s.errbuf);
	cr_assert_eq(proc_exit_code(&m->r), 0, "receive: %s", m->r.errbuf);
	cr_assert_not_null(strstr(m->s.outbuf, "\"outcome\":\"completed\""), "%s", m->s.outbuf);
	cr_assert_eq(json_num(m->s.outbuf, "postcopy"), 1, "%s", m->s.outbuf);
	cr_assert_eq(json_num(m->r.outbuf, "postcopy"), 1, "%s", m->r.outbuf);
	double pages = json_num(m->s.outbuf, "postcopy_pages");
	cr_assert_gt(pages, 0, "%s", m->s.outbuf);
	cr_assert_eq(json_num(m->r.outbuf, "postcopy_pages"), pages,
	             "both sides count the same stale set");
	cr_assert_eq(json_num(m->r.outbuf, "postcopy_urgent_pages"),
	             json_num(m->s.outbuf, "postcopy_urgent_pages"),
	             "every requested page sent was placed");
	/* The guest ran on the destination and its ledger holds. */
	cr_assert_eq(json_num(m->r.outbuf, "workload_ok"), 1, "%s", m->r.outbuf);
	cr_assert_gt(json_num(m->r.outbuf, "workload_progress_after"),
	             json_num(m->r.outbuf, "workload_progress_at_resume"), "%s", m->r.outbuf);
}

Test(postcopy, after_n_iterations_a_guest_faster_than_the_link_completes, .timeout = 300)
{
	struct mig m;
	char *tx[] = {"--postcopy-after", "2", "--verify", "--timeout", "120s", NULL};
	pc_migrate(&m, NULL, tx);
	pc_assert_completed(&m);
	/* --verify: what arrived, page by page, is the frozen source's memory. */
	cr_assert_eq(json_num(m.s.outbuf, "verified"), 1, "%s", m.s.outbuf);
	cr_assert_eq(json_num(m.r.outbuf, "verified"), 1, "%s", m.r.outbuf);
	cr_assert_not_null(strstr(m.s.outbuf, "not converged after 2 iterations"), "%s",
	                   m.s.outbuf);
}

/* Pre-copy alone times out on this guest; with --postcopy-on-stall the
 * stall detector's verdict switches it, and the reason says so. */
Test(postcopy, on_stall_completes_where_precopy_alone_times_out, .timeout = 300)
{
	struct mig m;
	char *pre[] = {"--stall-window", "1s", "--timeout", "12s", NULL};
	pc_migrate(&m, NULL, pre);
	cr_assert_eq(proc_exit_code(&m.s), 1, "pre-copy converged: %s", m.s.outbuf);
	cr_assert_not_null(strstr(m.s.errbuf, "did not converge"), "%s", m.s.errbuf);
	cr_assert_eq(json_num(m.s.outbuf, "workload_ok"), 1, "source guest not running");

	char *pc[] = {"--stall-window", "1s", "--postcopy-on-stall", "--verify", "--timeout",
	              "120s",           NULL};
	pc_migrate(&m, NULL, pc);
	pc_assert_completed(&m);
	cr_assert_not_null(strstr(m.s.outbuf, "\"postcopy_reason\":\"stalled"), "%s", m.s.outbuf);
}

/* After the switch neither side alone holds the guest: a dead fault
 * handler fails the migration on both sides as "postcopy-failed", and the
 * source does not resume its guest (the destination's ran). */
Test(postcopy, a_killed_fault_handler_fails_both_sides_plainly, .timeout = 300)
{
	struct mig m;
	char *tx[] = {"--postcopy-after", "2", "--timeout", "120s", NULL};
	pc_migrate(&m, "pc-faults@fault#3", tx);
	cr_assert_neq(proc_exit_code(&m.r), 0, "receive: %s", m.r.outbuf);
	cr_assert_not_null(strstr(m.r.errbuf, "postcopy fault handler was killed"), "%s",
	                   m.r.errbuf);
	cr_assert_not_null(strstr(m.r.outbuf, "\"outcome\":\"postcopy-failed\""), "%s", m.r.outbuf);
	cr_assert_eq(proc_exit_code(&m.s), 1, "send: %s", m.s.outbuf);
	cr_assert_not_null(strstr(m.s.outbuf, "\"outcome\":\"postcopy-failed\""), "%s", m.s.outbuf);
	cr_assert_not_null(strstr(m.s.errbuf, "after the postcopy switch"), "%s", m.s.errbuf);
	cr_assert_neq(json_num(m.s.outbuf, "workload_ok"), 1, "the source ran its guest again");
}
