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

/* PC_GUEST over 3 connections capped at 8 MB/s, with faults (NULL: none)
 * and extra options on each side. */
static void
pc_run(struct mig *m, const char *sfault, const char *rfault, char *const rx_extra[],
       char *const tx_extra[])
{
	char *rx[8] = {"--run-after", "500ms"};
	char *tx[20] = {"--guest", PC_GUEST, "--max-bandwidth", "8M", "--connections", "3"};
	int n = 6, k = 2;
	for (int i = 0; tx_extra[i] != NULL && n < 19; i++)
		tx[n++] = tx_extra[i];
	tx[n] = NULL;
	for (int i = 0; rx_extra != NULL && rx_extra[i] != NULL && k < 7; i++)
		rx[k++] = rx_extra[i];
	rx[k] = NULL;
	mig_receive(m, rfault, rx);
	mig_send(m, sfault, tx);
	mig_wait(m);
}

static void
pc_migrate(struct mig *m, const char *rfault, char *const tx_extra[])
{
	pc_run(m, NULL, rfault, NULL, tx_extra);
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
	/* Every requested page sent was placed, but those a cut link lost. */
	if (json_num(m->s.outbuf, "postcopy_pauses") == 0)
		cr_assert_eq(json_num(m->r.outbuf, "postcopy_urgent_pages"),
		             json_num(m->s.outbuf, "postcopy_urgent_pages"),
		             "every requested page sent was placed");
	else
		cr_assert_leq(json_num(m->r.outbuf, "postcopy_urgent_pages"),
		              json_num(m->s.outbuf, "postcopy_urgent_pages"));
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

/* Recovery (docs/postcopy.md): the link is cut on the source at its 10th
 * page request, every connection at once, as a network failure would.
 * Both sides pause, the source dials again, the destination takes only its
 * own source back, and the stream goes on.  Then a data connection of the
 * recovered link is killed at its 2nd page frame (instances 3..5 are the
 * recovered connections): with --connections-min 2 that is no pause, its
 * chunks go again on the other data connection.  Nothing
 * is lost: --verify compares every page, the ledger holds. */
Test(postcopy, a_cut_link_recovers_and_loses_no_page, .timeout = 300)
{
	struct mig m;
	const char *cut = "link@recv:W_PAGE_REQ#10";
	const char *kill = "conn-recv#5@recv:W_PAGES#2";
	char *rx[] = {"--recover-timeout", "60s", NULL};
	char *tx[] = {"--connections-min", "2",    "--postcopy-after",  "2",   "--verify",
	              "--timeout",         "120s", "--recover-timeout", "60s", NULL};
	pc_run(&m, cut, kill, rx, tx);
	mig_assert_fired(&m, "source", cut);
	mig_assert_fired(&m, "destination", kill);
	pc_assert_completed(&m);
	cr_assert_eq(json_num(m.s.outbuf, "verified"), 1, "%s", m.s.outbuf);
	cr_assert_eq(json_num(m.r.outbuf, "verified"), 1, "%s", m.r.outbuf);
	cr_assert_eq(json_num(m.s.outbuf, "postcopy_pauses"), 1, "%s", m.s.outbuf);
	cr_assert_eq(json_num(m.r.outbuf, "postcopy_pauses"), 1, "%s", m.r.outbuf);
	cr_assert_not_null(strstr(m.r.errbuf, "postcopy paused"), "%s", m.r.errbuf);
	cr_assert_not_null(strstr(m.r.errbuf, "resuming migration"), "%s", m.r.errbuf);
	cr_assert_geq(json_num(m.r.outbuf, "connections_lost"), 1, "%s", m.r.outbuf);
}

/* Killing the destination's connection 0 at its 5th requested-pages frame
 * is a lost link too: both sides pause, the source comes back, the
 * requests still unanswered are asked again, and nothing is lost. */
Test(postcopy, a_killed_control_connection_recovers, .timeout = 300)
{
	struct mig m;
	const char *kill = "conn-recv#0@recv:W_URGENT#5";
	char *tx[] = {"--postcopy-after",  "2",   "--verify", "--timeout", "120s",
	              "--recover-timeout", "60s", NULL};
	pc_migrate(&m, kill, tx);
	mig_assert_fired(&m, "destination", kill);
	pc_assert_completed(&m);
	cr_assert_eq(json_num(m.r.outbuf, "verified"), 1, "%s", m.r.outbuf);
	cr_assert_eq(json_num(m.s.outbuf, "postcopy_pauses"), 1, "%s", m.s.outbuf);
	cr_assert_eq(json_num(m.r.outbuf, "postcopy_pauses"), 1, "%s", m.r.outbuf);
}

/* A destination that is gone for good (SIGKILLed after the switch) never
 * comes back: the source dials until --recover-timeout, then fails as
 * "postcopy-failed", its guest still paused (the destination's ran). */
Test(postcopy, a_destination_that_never_comes_back_fails_after_the_recover_timeout, .timeout = 300)
{
	struct mig m;
	const char *die = "process@fault#5";
	char *tx[] = {
	    "--postcopy-after", "2", "--recover-timeout", "3s", "--timeout", "120s", NULL};
	pc_migrate(&m, die, tx);
	mig_assert_fired(&m, "destination", die);
	cr_assert_eq(proc_exit_code(&m.s), 1, "send: %s", m.s.errbuf);
	cr_assert_not_null(strstr(m.s.outbuf, "\"outcome\":\"postcopy-failed\""), "%s", m.s.outbuf);
	cr_assert_not_null(strstr(m.s.errbuf, "did not come back in 3000 ms"), "%s", m.s.errbuf);
	cr_assert_eq(json_num(m.s.outbuf, "postcopy_pauses"), 1, "%s", m.s.outbuf);
	cr_assert_neq(json_num(m.s.outbuf, "workload_ok"), 1, "the source ran its guest again");
}

/* --recover-timeout 0: no recovery, a cut link fails both sides at once. */
Test(postcopy, without_recovery_a_cut_link_fails_both_sides, .timeout = 300)
{
	struct mig m;
	const char *cut = "link@recv:W_PAGE_REQ#3";
	char *off[] = {"--recover-timeout", "0", NULL};
	char *tx[] = {"--postcopy-after", "2", "--recover-timeout", "0", NULL};
	pc_run(&m, cut, NULL, off, tx);
	mig_assert_fired(&m, "source", cut);
	cr_assert_eq(proc_exit_code(&m.s), 1, "send: %s", m.s.errbuf);
	cr_assert_neq(proc_exit_code(&m.r), 0, "receive: %s", m.r.errbuf);
	cr_assert_not_null(strstr(m.s.outbuf, "\"outcome\":\"postcopy-failed\""), "%s", m.s.outbuf);
	cr_assert_not_null(strstr(m.r.outbuf, "\"outcome\":\"postcopy-failed\""), "%s", m.r.outbuf);
	cr_assert_eq(json_num(m.s.outbuf, "postcopy_pauses"), 0, "%s", m.s.outbuf);
}
