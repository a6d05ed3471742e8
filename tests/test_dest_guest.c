/*
 * The destination owns its guest: `tern receive --guest SPEC [--prealloc]`
 * builds it before listening, a source whose layout matches migrates into
 * it, a source whose layout differs is refused with both layouts named and
 * keeps running.  Options of one command given to another are usage errors.
 */
#include <criterion/criterion.h>

#include "tests/proc.h"

#define TERN tern_cli()
#define SRC_GUEST                                                                                  \
	"simvm:mem=256M,vcpus=2,fill=random,workload=memtouch:ws=64M,rate=50M,pattern=random"

static void
migrate_from(struct mig *m, const char *src_guest, const char *dest_guest, int prealloc)
{
	/* --run-after: the destination runs its guest a moment, then checks
	 * the workload's invariant. */
	char *rx[] = {
	    "--run-after", "300ms", "--guest", (char *)dest_guest, prealloc ? "--prealloc" : NULL,
	    NULL};
	char *tx[] = {"--guest", (char *)src_guest, "--verify", "--timeout", "120s", NULL};
	mig_receive(m, NULL, rx);
	mig_send(m, NULL, tx);
	mig_wait(m);
}

static void
migrate(struct mig *m, const char *dest_guest, int prealloc)
{
	migrate_from(m, SRC_GUEST, dest_guest, prealloc);
}

Test(dest_guest, matching_guest_with_prealloc, .timeout = 300)
{
	struct mig m;
	migrate(&m, SRC_GUEST, 1);
	cr_assert_eq(proc_exit_code(&m.s), 0, "send: %s", m.s.errbuf);
	cr_assert_eq(proc_exit_code(&m.r), 0, "receive: %s", m.r.errbuf);
	cr_assert_eq(json_num(m.s.outbuf, "verified"), 1, "%s", m.s.outbuf);
	cr_assert_eq(json_num(m.r.outbuf, "workload_ok"), 1, "%s", m.r.outbuf);
	cr_assert_geq(json_num(m.r.outbuf, "populate_ms"), 0, "%s", m.r.outbuf);
}

Test(dest_guest, matching_guest_without_prealloc, .timeout = 300)
{
	struct mig m;
	migrate(&m, SRC_GUEST, 0);
	cr_assert_eq(proc_exit_code(&m.s), 0, "send: %s", m.s.errbuf);
	cr_assert_eq(json_num(m.s.outbuf, "verified"), 1, "%s", m.s.outbuf);
}

Test(dest_guest, layout_mismatch_is_refused_with_both_layouts, .timeout = 300)
{
	struct mig m;
	migrate(&m, "simvm:mem=128M,vcpus=2,workload=memtouch:ws=64M,rate=50M,pattern=random", 0);
	cr_assert_eq(proc_exit_code(&m.s), 1, "send: %s", m.s.errbuf);
	cr_assert_not_null(strstr(m.s.errbuf, "refused W_CONFIG"), "%s", m.s.errbuf);
	cr_assert_not_null(strstr(m.r.errbuf, "layout refused"), "%s", m.r.errbuf);
	cr_assert_not_null(strstr(m.s.errbuf, "source's guest has 1 region: 256M at 0x0"),
	                   "source layout not named: %s", m.s.errbuf);
	cr_assert_not_null(strstr(m.s.errbuf, "this guest has 1 region: 128M at 0x0"),
	                   "destination layout not named: %s", m.s.errbuf);
	cr_assert_eq(json_num(m.s.outbuf, "workload_ok"), 1, "source guest not running: %s",
	             m.s.outbuf);
	cr_assert_neq(proc_exit_code(&m.r), 0);
}

/* Same memory, cut into another number of regions: a VMM with other
 * memslots is another machine. */
Test(dest_guest, region_count_mismatch_is_refused, .timeout = 300)
{
	struct mig m;
	migrate_from(&m, SRC_GUEST ",regions=2", SRC_GUEST, 0);
	cr_assert_eq(proc_exit_code(&m.s), 1, "send: %s", m.s.errbuf);
	cr_assert_not_null(strstr(m.s.errbuf, "2 regions: 128M at 0x0, 128M at 0x48000000"), "%s",
	                   m.s.errbuf);
	cr_assert_not_null(strstr(m.s.errbuf, "this guest has 1 region: 256M at 0x0"), "%s",
	                   m.s.errbuf);
	cr_assert_eq(json_num(m.s.outbuf, "workload_ok"), 1, "source guest not running: %s",
	             m.s.outbuf);
}

/* Three regions (not multiples of 64 pages, 1 GiB gpa holes between them)
 * into a destination that built the same layout: verified, and the
 * workload's ledger, which spans the regions, holds after it ran there. */
Test(dest_guest, several_regions_migrate_into_the_same_layout, .timeout = 300)
{
	struct mig m;
	migrate_from(&m, SRC_GUEST ",regions=3", SRC_GUEST ",regions=3", 1);
	cr_assert_eq(proc_exit_code(&m.s), 0, "send: %s", m.s.errbuf);
	cr_assert_eq(proc_exit_code(&m.r), 0, "receive: %s", m.r.errbuf);
	cr_assert_eq(json_num(m.s.outbuf, "verified"), 1, "%s", m.s.outbuf);
	cr_assert_eq(json_num(m.r.outbuf, "workload_ok"), 1, "%s", m.r.outbuf);
}

Test(dest_guest, options_belong_to_their_command)
{
	char *a[] = {TERN, "receive", "--listen", "127.0.0.1:0", "--to", "x:1", NULL};
	proc_assert_usage_error(a, "--to is not an option of receive");
	char *b[] = {TERN, "send", "--listen", "127.0.0.1:0", NULL};
	proc_assert_usage_error(b, "--listen is not an option of send");
	char *c[] = {TERN, "receive", "--listen", "127.0.0.1:0", "--prealloc", NULL};
	proc_assert_usage_error(c, "--prealloc needs --guest");
}

Test(dest_guest, a_rejected_state_says_why, .timeout = 300)
{
	/* Same memory, another workload: simvm's state_load refuses the blob,
	 * and its own reason reaches the source through the public slot. */
	struct mig m;
	migrate(&m, "simvm:mem=256M,vcpus=2", 0);
	cr_assert_eq(proc_exit_code(&m.s), 1, "send: %s", m.s.errbuf);
	cr_assert_not_null(strstr(m.s.errbuf, "refused W_STATE"), "%s", m.s.errbuf);
	cr_assert_not_null(strstr(m.s.errbuf, "state of a guest with"), "no reason: %s",
	                   m.s.errbuf);
	cr_assert_eq(json_num(m.s.outbuf, "workload_ok"), 1, "source guest not running: %s",
	             m.s.outbuf);
}
