/*
 * End-to-end: real `tern` processes migrating real guests over loopback TCP.
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <uv.h>

#include "tests/proc.h"

#define TERN tern_cli()

/* Migrates with the sender's extra arguments to a receiver that runs the
 * guest 1 s after the handoff, asserting that both completed. */
static void
migrate_completes(struct mig *m, char *const tx[])
{
	char *rx[] = {"--run-after", "1s", NULL};
	mig_receive(m, NULL, rx);
	mig_send(m, NULL, tx);
	mig_wait(m);
	cr_assert_eq(proc_exit_code(&m->s), 0, "send failed: %s", m->s.errbuf);
	cr_assert_eq(proc_exit_code(&m->r), 0, "receive failed: %s", m->r.errbuf);
}

static void
migrate_ok(const char *guest, const char *conns)
{
	struct mig m;
	char *tx[] = {"--guest", (char *)guest,   "--verify",    "--timeout",
	              "120s",    "--connections", (char *)conns, NULL};
	migrate_completes(&m, tx);
	cr_assert(strstr(m.s.outbuf, "\"outcome\":\"completed\"") != NULL);
	cr_assert_eq(json_num(m.s.outbuf, "verified"), 1);
	cr_assert_eq(json_num(m.r.outbuf, "verified"), 1);
	cr_assert_geq(json_num(m.s.outbuf, "iterations"), 2);
	cr_assert_gt(json_num(m.s.outbuf, "bytes_sent"), 0);
	/* The workload continues on the destination and its invariant holds. */
	cr_assert_eq(json_num(m.r.outbuf, "workload_ok"), 1, "%s", m.r.errbuf);
}

Test(e2e, memtouch_512m_verified, .timeout = 300)
{
	migrate_ok("simvm:mem=512M,vcpus=2,fill=random,workload=memtouch:ws=128M,rate=100M,"
	           "pattern=random",
	           "1");
}

Test(e2e, memtouch_continues_after_resume, .timeout = 300)
{
	struct mig m;
	char *tx[] = {
	    "--guest",
	    "simvm:mem=256M,vcpus=2,fill=50,workload=memtouch:ws=64M,rate=50M,pattern=seq",
	    "--verify", NULL};
	migrate_completes(&m, tx);
	long long at = json_num(m.r.outbuf, "workload_progress_at_resume");
	long long after = json_num(m.r.outbuf, "workload_progress_after");
	cr_assert_gt(at, 0, "no progress carried over: %s", m.r.outbuf);
	cr_assert_gt(after, at, "the workload did not continue: %s", m.r.outbuf);
}

Test(e2e, anon_thp_backing_verified, .timeout = 300)
{
	migrate_ok("simvm:mem=256M,vcpus=1,fill=50,backing=anon-thp,workload=memtouch:ws=32M,"
	           "rate=20M",
	           "1");
}

/* A loopback TCP socket on a free port, listening when listening is set;
 * "127.0.0.1:PORT" into to. */
static int
loopback_socket(int listening, char *to, size_t len)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t alen = sizeof(a);
	cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	if (listening)
		cr_assert_eq(listen(fd, 4), 0);
	cr_assert_eq(getsockname(fd, (struct sockaddr *)&a, &alen), 0);
	snprintf(to, len, "127.0.0.1:%d", ntohs(a.sin_port));
	return fd;
}

/* Sends a small guest to a peer that is no tern destination: the sender
 * must end by itself (a liveness bound) and exit 1. */
static void
send_fails(struct proc *s, const char *to, const char *peer)
{
	char *argv[] = {TERN, "send", "--to", (char *)to, "--guest", "simvm:mem=64M", NULL};
	cr_assert_eq(proc_run(s, argv, 30000), 1, "send to %s: %s", peer, s->errbuf);
}

Test(e2e, unreachable_peer_is_one_line_error, .timeout = 60)
{
	/* A port nobody listens on: bind one, close it. */
	char to[64];
	close(loopback_socket(0, to, sizeof(to)));
	struct proc s;
	send_fails(&s, to, "a refused connection");
	cr_assert(strstr(s.errbuf, "refused") != NULL, "stderr: %s", s.errbuf);
}

Test(e2e, bad_arguments, .timeout = 60)
{
	char *a1[] = {TERN,      "send",          "--to",          "127.0.0.1:1",
	              "--guest", "simvm:mem=64M", "--connections", "0",
	              NULL};
	proc_assert_usage_error(a1, "--connections");
	char *a2[] = {TERN, "send", "--to", "127.0.0.1:1", "--guest", "simvm:mem=64M,colour=red",
	              NULL};
	proc_assert_usage_error(a2, "colour");
	char *a3[] = {TERN, "send", "--to", "127.0.0.1:1", "--guest", "simvm:mem=1000", NULL};
	proc_assert_usage_error(a3, "mem");
	char *a4[] = {TERN, "frobnicate", NULL};
	proc_assert_usage_error(a4, "unknown command");
	char *a5[] = {TERN, "receive", NULL};
	proc_assert_usage_error(a5, "--listen");
	char *a6[] = {
	    TERN,   "send", "--to", "127.0.0.1:1", "--guest", "simvm:mem=64M", "--downtime-limit",
	    "soon", NULL};
	proc_assert_usage_error(a6, "downtime-limit");
	char *a7[] = {TERN, "send", "--guest", "simvm:mem=64M", NULL};
	proc_assert_usage_error(a7, "--to");

	struct proc p;
	char *a8[] = {TERN, "receive", "--listen", "999.1.2.3:80", NULL};
	cr_assert_eq(proc_run(&p, a8, 30000), 1, "%s", p.errbuf);
	cr_assert(strstr(p.errbuf, "999.1.2.3") != NULL, "%s", p.errbuf);
}

/* A peer that is not a tern destination. */
static void
garbage_server(void *arg)
{
	int lfd = *(int *)arg;
	int c = accept(lfd, NULL, NULL);
	if (c >= 0) {
		const char *g = "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n";
		(void)!write(c, g, strlen(g));
		usleep(100000);
		close(c);
	}
}

Test(e2e, garbage_peer_fails_cleanly, .timeout = 60)
{
	char to[64];
	int lfd = loopback_socket(1, to, sizeof(to));
	uv_thread_t t;
	cr_assert_eq(uv_thread_create(&t, garbage_server, &lfd), 0);
	struct proc s;
	send_fails(&s, to, "a garbage peer");
	cr_assert_eq(uv_thread_join(&t), 0);
	close(lfd);
	cr_assert(strstr(s.errbuf, "handshake") != NULL, "stderr: %s", s.errbuf);
	cr_assert(strchr(s.errbuf, '\n') == s.errbuf + strlen(s.errbuf) - 1, "not one line: %s",
	          s.errbuf);
}

Test(e2e, stray_client_does_not_break_receiver, .timeout = 300)
{
	struct mig m;
	char *rx[] = {"--exit-after-handoff", NULL};
	mig_receive(&m, NULL, rx);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET,
	                        .sin_port = htons((uint16_t)m.port),
	                        .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	const char *g = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
	(void)!write(fd, g, strlen(g));
	char buf[256];
	(void)!read(fd, buf, sizeof(buf)); /* the refusal, then EOF */
	close(fd);
	char *tx[] = {"--guest", "simvm:mem=64M,fill=random", "--verify", NULL};
	mig_send(&m, NULL, tx);
	mig_wait(&m);
	cr_assert_eq(proc_exit_code(&m.s), 0, "%s", m.s.errbuf);
	cr_assert_eq(proc_exit_code(&m.r), 0, "%s", m.r.errbuf);
	cr_assert(strstr(m.r.errbuf, "refused") != NULL, "%s", m.r.errbuf);
}

Test(e2e, no_convergence_times_out_with_reason, .timeout = 300)
{
	struct mig m;
	char *rx[] = {"--exit-after-handoff", NULL};
	mig_receive(&m, NULL, rx);
	/* An unthrottled writer over 128 MiB against a 1 ms limit cannot fit. */
	char *tx[] = {"--guest",
	              "simvm:mem=256M,vcpus=2,fill=random,workload=memtouch:ws=128M,pattern=random",
	              "--downtime-limit",
	              "1ms",
	              "--timeout",
	              "3s",
	              NULL};
	mig_send(&m, NULL, tx);
	/* It must end by its own --timeout (the bound only catches a hang). */
	mig_wait(&m);
	cr_assert_eq(proc_exit_code(&m.s), 1, "exit %d: %s %s", proc_exit_code(&m.s), m.s.errbuf,
	             m.s.outbuf);
	cr_assert(strstr(m.s.errbuf, "converge") != NULL || strstr(m.s.errbuf, "timed out") != NULL,
	          "%s", m.s.errbuf);
	cr_assert(strstr(m.s.outbuf, "\"outcome\":\"aborted\"") != NULL, "%s", m.s.outbuf);
	cr_assert_eq(proc_exit_code(&m.r), 1);
	cr_assert(strstr(m.r.errbuf, "aborted") != NULL, "%s", m.r.errbuf);
}

/* One side SIGKILLs itself well into the pre-copy iterations (at a named
 * event: the source entering its 3rd pass over memory, or the destination
 * taking in its 20th message of pages, well inside the 256 MiB bulk pass);
 * the other must end with an error.  The guest never converges within 1 ms,
 * and the timeout is generous, so the event comes however slow the host. */
static void
kill_midway(int kill_source)
{
	struct mig m;
	const char *side = kill_source ? "source" : "destination";
	const char *fault = kill_source ? "process@iteration#3" : "process@recv:PAGES_IN#20";
	char *rx[] = {"--exit-after-handoff", NULL};
	mig_receive(&m, kill_source ? NULL : fault, rx);
	char *tx[] = {"--guest",
	              "simvm:mem=256M,vcpus=2,fill=random,workload=memtouch:ws=128M,pattern=random",
	              "--downtime-limit",
	              "1ms",
	              "--timeout",
	              "120s",
	              NULL};
	mig_send(&m, kill_source ? fault : NULL, tx);
	mig_wait(&m);
	mig_assert_fired(&m, side, fault);
	struct proc *killed = kill_source ? &m.s : &m.r;
	struct proc *survivor = kill_source ? &m.r : &m.s;
	cr_assert_eq(proc_exit_code(killed), 128 + SIGKILL, "%s", killed->errbuf);
	cr_assert_eq(proc_exit_code(survivor), 1, "%s", survivor->errbuf);
	cr_assert(strlen(survivor->errbuf) > 0);
	if (!kill_source)
		cr_assert(strstr(m.s.outbuf, "\"outcome\":\"aborted\"") != NULL, "%s", m.s.outbuf);
}

Test(e2e, source_killed_destination_exits, .timeout = 300)
{
	kill_midway(1);
}

Test(e2e, destination_killed_source_aborts, .timeout = 300)
{
	kill_midway(0);
}

#include "messages/trace.h"

Test(e2e, traces_record_both_sides, .timeout = 300)
{
	char spath[] = "/tmp/tern-e2e-src-XXXXXX", dpath[] = "/tmp/tern-e2e-dst-XXXXXX";
	close(mkstemp(spath));
	close(mkstemp(dpath));
	struct mig m;
	char *rx[] = {"--exit-after-handoff", "--trace", dpath, NULL};
	char *tx[] = {"--guest", "simvm:mem=128M,fill=random,workload=memtouch:ws=32M,rate=20M",
	              "--trace", spath, NULL};
	mig_receive(&m, NULL, rx);
	mig_send(&m, NULL, tx);
	mig_wait(&m);
	cr_assert_eq(proc_exit_code(&m.s), 0, "%s", m.s.errbuf);
	cr_assert_eq(proc_exit_code(&m.r), 0, "%s", m.r.errbuf);
	/* Source: every actor spawned and exited, the state machine's path. */
	cr_assert_eq(trace_count(spath, TERN_TRACE_SPAWN, NULL, "coordinator"), 1);
	cr_assert_eq(trace_count(spath, TERN_TRACE_SPAWN, NULL, "dirty-log"), 1);
	cr_assert_eq(trace_count(spath, TERN_TRACE_SPAWN, NULL, "conn-send"), 1);
	cr_assert_geq(trace_count(spath, TERN_TRACE_EXIT, NULL, NULL), 3);
	cr_assert_eq(trace_count(spath, TERN_TRACE_STATE, "bulk", "coordinator"), 1);
	cr_assert_eq(trace_count(spath, TERN_TRACE_STATE, "switchover", "coordinator"), 1);
	cr_assert_eq(trace_count(spath, TERN_TRACE_STATE, "completed", "coordinator"), 1);
	cr_assert_gt(trace_count(spath, TERN_TRACE_SEND, NULL, "conn-send"), 10);
	cr_assert_gt(trace_count(spath, TERN_TRACE_RECV, NULL, "coordinator"), 10);
	cr_assert_gt(trace_count(spath, TERN_TRACE_COUNTER, "dirty_rate_pps", NULL), 0);
	/* Destination. */
	cr_assert_eq(trace_count(dpath, TERN_TRACE_STATE, "configured", "receiver"), 1);
	cr_assert_eq(trace_count(dpath, TERN_TRACE_STATE, "resumed", "receiver"), 1);
	cr_assert_gt(trace_count(dpath, TERN_TRACE_RECV, NULL, "receiver"), 10);
	unlink(spath);
	unlink(dpath);
}

/* A writer over ws of a 256 MiB guest, migrated with dirty rings and the
 * extra arguments: it verifies, and the workload holds on the destination. */
static void
ring_migrates(struct mig *m, const char *ws, char *const extra[])
{
	char guest[160], *tx[16];
	snprintf(
	    guest, sizeof(guest),
	    "simvm:mem=256M,vcpus=2,fill=random,workload=memtouch:ws=%s,rate=100M,pattern=random",
	    ws);
	char *base[] = {"--guest", guest, "--dirty-log", "ring", "--verify", NULL};
	args_join(tx, 16, base, extra);
	migrate_completes(m, tx);
	cr_assert_eq(json_num(m->s.outbuf, "verified"), 1);
	cr_assert_eq(json_num(m->r.outbuf, "workload_ok"), 1, "%s", m->r.errbuf);
}

Test(e2e, dirty_ring_mode_verified, .timeout = 300)
{
	struct mig m;
	/* A small ring under a fast writer: vCPUs stall on full rings and the
	 * harvests must still catch every page. */
	char *ring[] = {"--ring-size", "64", NULL};
	ring_migrates(&m, "64M", ring);
	cr_assert_gt(json_num(m.r.outbuf, "workload_progress_after"),
	             json_num(m.r.outbuf, "workload_progress_at_resume"));
}

Test(e2e, bad_dirty_log_mode, .timeout = 30)
{
	char *a[] = {TERN,          "send", "--to", "127.0.0.1:1", "--guest", "simvm:mem=64M",
	             "--dirty-log", "pml",  NULL};
	proc_assert_usage_error(a, "dirty-log");
}

Test(e2e, ring_only_pass_verified, .timeout = 300)
{
	struct mig m;
	/* One walk over memory while the rings' pages are sent as they come,
	 * a walk step forced every 128 ring pages. */
	char *ring[] = {"--ring-only", "--ring-step", "128", NULL};
	ring_migrates(&m, "128M", ring);
	cr_assert_gt(json_num(m.s.outbuf, "ring_pass_pages"), 0,
	             "no ring page went during the walk");
	char *bad[] = {TERN, "send", "--to", m.to, "--guest", "simvm:mem=64M", "--ring-only", NULL};
	proc_assert_usage_error(bad, "--dirty-log ring");
}

Test(e2e, waiting_receiver_stops_on_sigint, .timeout = 120)
{
	struct proc r;
	char to[64];
	char *ra[] = {TERN, "receive", "--listen", "127.0.0.1:0", "--ready-fd", "3", NULL};
	proc_listen(&r, ra, NULL, to, sizeof(to));
	kill(r.pid, SIGINT);
	/* No accept timeout was given: only the signal can end the wait. */
	cr_assert_eq(proc_wait(&r, 60000), 0, "the receiver ignored SIGINT while waiting");
	cr_assert_eq(proc_exit_code(&r), 1);
	cr_assert(strstr(r.errbuf, "stopped while waiting") != NULL, "%s", r.errbuf);
}

/* Live figures: while the first pass runs, progress shows the bandwidth
 * measured from acknowledged bytes (not 0 until the pass ends).  The cap
 * makes the pass last seconds on any machine (it can only be slower), so
 * several progress samples fall inside it. */
Test(e2e, progress_shows_bandwidth_during_the_first_pass, .timeout = 300)
{
	struct mig m;
	char *rx[] = {"--exit-after-handoff", NULL};
	char *tx[] = {"--guest", "simvm:mem=64M,vcpus=1,fill=random", "--max-bandwidth", "16M",
	              NULL};
	mig_receive(&m, NULL, rx);
	mig_send(&m, NULL, tx);
	mig_wait(&m);
	cr_assert_eq(proc_exit_code(&m.s), 0, "send failed: %s", m.s.errbuf);
	int bulk_lines = 0, live = 0;
	for (const char *l = m.s.errbuf; (l = strstr(l, "tern: bulk, pass 0")) != NULL; l++) {
		const char *end = strchr(l, '\n');
		const char *rate = strstr(l, "/s, eta");
		bulk_lines++;
		if (rate != NULL && (end == NULL || rate < end) &&
		    strncmp(rate - 5, "0.0 B", 5) != 0)
			live++;
	}
	cr_assert_gt(bulk_lines, 0, "no progress line during the first pass: %s", m.s.errbuf);
	cr_assert_gt(live, 0, "the first pass showed no bandwidth: %s", m.s.errbuf);
}
