/*
 * The destination owns its guest: `tern receive --guest SPEC [--prealloc]`
 * builds it before listening, a source whose layout matches migrates into
 * it, a source whose layout differs is refused with both layouts named and
 * keeps running.  Options of one command given to another are usage errors.
 */
#include <criterion/criterion.h>

#include "tests/proc.h"

#define TERN tern_cli()
#define SRC_GUEST "simvm:mem=256M,vcpus=2,fill=random,workload=memtouch:ws=64M,rate=50M,pattern=random"

static void
migrate(const char *dest_guest, int prealloc, struct proc *r, struct proc *s)
{
	/* --run-after: the destination runs its guest a moment, then checks
	 * the workload's invariant. */
	char *ra[16] = { TERN, "receive", "--listen", "127.0.0.1:0", "--ready-fd", "3",
		"--run-after", "300ms", "--accept-timeout", "60s", "--json", "--guest",
		(char *)dest_guest, NULL };
	if (prealloc)
		ra[13] = "--prealloc";
	cr_assert_eq(proc_start(r, ra, 1), 0);
	int port = proc_ready_port(r, 60000);
	cr_assert_gt(port, 0, "the receiver did not listen: %s", r->errbuf);
	char to[64];
	snprintf(to, sizeof(to), "127.0.0.1:%d", port);
	char *sa[] = { TERN, "send", "--to", to, "--guest", SRC_GUEST, "--verify", "--timeout",
		"120s", "--json", NULL };
	cr_assert_eq(proc_start(s, sa, 0), 0);
	cr_assert_eq(proc_wait(s, 150000), 0, "send hung");
	cr_assert_eq(proc_wait(r, 60000), 0, "receive hung");
}

Test(dest_guest, matching_guest_with_prealloc, .timeout = 300)
{
	struct proc r, s;
	migrate(SRC_GUEST, 1, &r, &s);
	cr_assert_eq(proc_exit_code(&s), 0, "send: %s", s.errbuf);
	cr_assert_eq(proc_exit_code(&r), 0, "receive: %s", r.errbuf);
	cr_assert_eq(json_num(s.outbuf, "verified"), 1, "%s", s.outbuf);
	cr_assert_eq(json_num(r.outbuf, "workload_ok"), 1, "%s", r.outbuf);
	cr_assert_geq(json_num(r.outbuf, "populate_ms"), 0, "%s", r.outbuf);
}

Test(dest_guest, matching_guest_without_prealloc, .timeout = 300)
{
	struct proc r, s;
	migrate(SRC_GUEST, 0, &r, &s);
	cr_assert_eq(proc_exit_code(&s), 0, "send: %s", s.errbuf);
	cr_assert_eq(json_num(s.outbuf, "verified"), 1, "%s", s.outbuf);
}

Test(dest_guest, layout_mismatch_is_refused_with_both_layouts, .timeout = 300)
{
	struct proc r, s;
	migrate("simvm:mem=128M,vcpus=2,workload=memtouch:ws=64M,rate=50M,pattern=random", 0, &r,
	    &s);
	cr_assert_eq(proc_exit_code(&s), 1, "send: %s", s.errbuf);
	cr_assert_not_null(strstr(s.errbuf, "refused W_CONFIG"), "%s", s.errbuf);
	cr_assert_not_null(strstr(r.errbuf, "layout refused"), "%s", r.errbuf);
	cr_assert_not_null(strstr(s.errbuf, "268435456 bytes"), "source layout not named: %s",
	    s.errbuf);
	cr_assert_not_null(strstr(s.errbuf, "134217728 bytes"), "destination layout not named: %s",
	    s.errbuf);
	cr_assert_eq(json_num(s.outbuf, "workload_ok"), 1, "source guest not running: %s",
	    s.outbuf);
	cr_assert_neq(proc_exit_code(&r), 0);
}

static void
usage_error(char *const argv[], const char *needle)
{
	struct proc p;
	cr_assert_eq(proc_start(&p, argv, 0), 0);
	cr_assert_eq(proc_wait(&p, 30000), 0);
	cr_assert_eq(proc_exit_code(&p), 2, "%s", p.errbuf);
	cr_assert_not_null(strstr(p.errbuf, needle), "%s", p.errbuf);
}

Test(dest_guest, options_belong_to_their_command)
{
	char *a[] = { TERN, "receive", "--listen", "127.0.0.1:0", "--to", "x:1", NULL };
	usage_error(a, "--to is not an option of receive");
	char *b[] = { TERN, "send", "--listen", "127.0.0.1:0", NULL };
	usage_error(b, "--listen is not an option of send");
	char *c[] = { TERN, "receive", "--listen", "127.0.0.1:0", "--prealloc", NULL };
	usage_error(c, "--prealloc needs --guest");
}

Test(dest_guest, a_rejected_state_says_why, .timeout = 300)
{
	/* Same memory, another workload: simvm's state_load refuses the blob,
	 * and its own reason reaches the source through the public slot. */
	struct proc r, s;
	migrate("simvm:mem=256M,vcpus=2", 0, &r, &s);
	cr_assert_eq(proc_exit_code(&s), 1, "send: %s", s.errbuf);
	cr_assert_not_null(strstr(s.errbuf, "refused W_STATE"), "%s", s.errbuf);
	cr_assert_not_null(strstr(s.errbuf, "state of a guest with"), "no reason: %s", s.errbuf);
	cr_assert_eq(json_num(s.outbuf, "workload_ok"), 1, "source guest not running: %s",
	    s.outbuf);
}
