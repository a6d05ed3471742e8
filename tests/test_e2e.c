/*
 * End-to-end: real `tern` processes migrating real guests over loopback TCP.
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>

#include "tests/proc.h"

#define TERN tern_cli()

static int
start_receiver(struct proc *r, const char *extra1, const char *extra2)
{
	char *argv[] = { TERN, "receive", "--listen", "127.0.0.1:0", "--ready-fd", "3", "--json",
		"--accept-timeout", "60s", (char *)extra1, (char *)extra2, NULL };
	cr_assert_eq(proc_start(r, argv, 1), 0);
	int port = proc_ready_port(r, 10000);
	cr_assert_gt(port, 0, "receiver did not report its port");
	return port;
}

static void
migrate_ok(const char *guest, const char *conns)
{
	struct proc r, s;
	int port = start_receiver(&r, "--run-after", "1s");
	char to[64];
	snprintf(to, sizeof(to), "127.0.0.1:%d", port);
	char *argv[] = { TERN, "send", "--to", to, "--guest", (char *)guest, "--verify", "--json",
		"--timeout", "120s", "--connections", (char *)conns, NULL };
	cr_assert_eq(proc_start(&s, argv, 0), 0);
	cr_assert_eq(proc_wait(&s, 180000), 0, "send hung");
	cr_assert_eq(proc_wait(&r, 60000), 0, "receive hung");
	cr_log_info("source: %s %s", s.outbuf, s.errbuf);
	cr_log_info("destination: %s %s", r.outbuf, r.errbuf);
	cr_assert_eq(proc_exit_code(&s), 0, "send failed: %s", s.errbuf);
	cr_assert_eq(proc_exit_code(&r), 0, "receive failed: %s", r.errbuf);
	cr_assert(strstr(s.outbuf, "\"outcome\":\"completed\"") != NULL);
	cr_assert_eq(json_num(s.outbuf, "verified"), 1);
	cr_assert_eq(json_num(r.outbuf, "verified"), 1);
	cr_assert_geq(json_num(s.outbuf, "iterations"), 2);
	cr_assert_gt(json_num(s.outbuf, "bytes_sent"), 0);
	/* The workload continues on the destination and its invariant holds. */
	cr_assert_eq(json_num(r.outbuf, "workload_ok"), 1, "%s", r.errbuf);
}

Test(e2e, memtouch_512m_verified, .timeout = 300)
{
	migrate_ok("simvm:mem=512M,vcpus=2,fill=random,workload=memtouch:ws=128M,rate=100M,"
		   "pattern=random",
	    "1");
}

Test(e2e, memtouch_continues_after_resume, .timeout = 300)
{
	struct proc r, s;
	int port = start_receiver(&r, "--run-after", "1s");
	char to[64];
	snprintf(to, sizeof(to), "127.0.0.1:%d", port);
	char *argv[] = { TERN, "send", "--to", to, "--guest",
		"simvm:mem=256M,vcpus=2,fill=50,workload=memtouch:ws=64M,rate=50M,pattern=seq",
		"--verify", "--json", NULL };
	cr_assert_eq(proc_start(&s, argv, 0), 0);
	cr_assert_eq(proc_wait(&s, 120000), 0);
	cr_assert_eq(proc_wait(&r, 60000), 0);
	cr_assert_eq(proc_exit_code(&s), 0, "%s", s.errbuf);
	cr_assert_eq(proc_exit_code(&r), 0, "%s", r.errbuf);
	long long at = json_num(r.outbuf, "workload_progress_at_resume");
	long long after = json_num(r.outbuf, "workload_progress_after");
	cr_assert_gt(at, 0, "no progress carried over: %s", r.outbuf);
	cr_assert_gt(after, at, "the workload did not continue: %s", r.outbuf);
}

Test(e2e, anon_thp_backing_verified, .timeout = 300)
{
	migrate_ok("simvm:mem=256M,vcpus=1,fill=50,backing=anon-thp,workload=memtouch:ws=32M,"
		   "rate=20M",
	    "1");
}

Test(e2e, unreachable_peer_is_one_line_error, .timeout = 60)
{
	/* A port nobody listens on: bind one, close it. */
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(a);
	bind(fd, (struct sockaddr *)&a, sizeof(a));
	getsockname(fd, (struct sockaddr *)&a, &len);
	close(fd);
	char to[64];
	snprintf(to, sizeof(to), "127.0.0.1:%d", ntohs(a.sin_port));
	struct proc s;
	char *argv[] = { TERN, "send", "--to", to, "--guest", "simvm:mem=64M", NULL };
	cr_assert_eq(proc_start(&s, argv, 0), 0);
	cr_assert_eq(proc_wait(&s, 30000), 0, "send hung on a refused connection");
	cr_assert_eq(proc_exit_code(&s), 1);
	cr_assert(strstr(s.errbuf, "refused") != NULL, "stderr: %s", s.errbuf);
}

static void
expect_usage_error(char *const argv[], const char *needle)
{
	struct proc p;
	cr_assert_eq(proc_start(&p, argv, 0), 0);
	cr_assert_eq(proc_wait(&p, 10000), 0);
	cr_assert_eq(proc_exit_code(&p), 2, "exit %d, stderr: %s", proc_exit_code(&p), p.errbuf);
	cr_assert(strstr(p.errbuf, needle) != NULL, "stderr lacks '%s': %s", needle, p.errbuf);
}

Test(e2e, bad_arguments, .timeout = 60)
{
	char *a1[] = { TERN, "send", "--to", "127.0.0.1:1", "--guest", "simvm:mem=64M",
		"--connections", "0", NULL };
	expect_usage_error(a1, "--connections");
	char *a2[] = { TERN, "send", "--to", "127.0.0.1:1", "--guest", "simvm:mem=64M,colour=red",
		NULL };
	expect_usage_error(a2, "colour");
	char *a3[] = { TERN, "send", "--to", "127.0.0.1:1", "--guest", "simvm:mem=1000", NULL };
	expect_usage_error(a3, "mem");
	char *a4[] = { TERN, "frobnicate", NULL };
	expect_usage_error(a4, "unknown command");
	char *a5[] = { TERN, "receive", NULL };
	expect_usage_error(a5, "--listen");
	char *a6[] = { TERN, "send", "--to", "127.0.0.1:1", "--guest", "simvm:mem=64M",
		"--downtime-limit", "soon", NULL };
	expect_usage_error(a6, "downtime-limit");
	char *a7[] = { TERN, "send", "--guest", "simvm:mem=64M", NULL };
	expect_usage_error(a7, "--to");

	struct proc p;
	char *a8[] = { TERN, "receive", "--listen", "999.1.2.3:80", NULL };
	cr_assert_eq(proc_start(&p, a8, 0), 0);
	cr_assert_eq(proc_wait(&p, 10000), 0);
	cr_assert_eq(proc_exit_code(&p), 1);
	cr_assert(strstr(p.errbuf, "999.1.2.3") != NULL, "%s", p.errbuf);
}

/* A peer that is not a tern destination. */
static void *
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
	return NULL;
}

Test(e2e, garbage_peer_fails_cleanly, .timeout = 60)
{
	int lfd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(a);
	cr_assert_eq(bind(lfd, (struct sockaddr *)&a, sizeof(a)), 0);
	listen(lfd, 4);
	getsockname(lfd, (struct sockaddr *)&a, &len);
	pthread_t t;
	pthread_create(&t, NULL, garbage_server, &lfd);
	char to[64];
	snprintf(to, sizeof(to), "127.0.0.1:%d", ntohs(a.sin_port));
	struct proc s;
	char *argv[] = { TERN, "send", "--to", to, "--guest", "simvm:mem=64M", NULL };
	cr_assert_eq(proc_start(&s, argv, 0), 0);
	cr_assert_eq(proc_wait(&s, 30000), 0, "send hung on a garbage peer");
	pthread_join(t, NULL);
	close(lfd);
	cr_assert_eq(proc_exit_code(&s), 1);
	cr_assert(strstr(s.errbuf, "handshake") != NULL, "stderr: %s", s.errbuf);
	cr_assert(strchr(s.errbuf, '\n') == s.errbuf + strlen(s.errbuf) - 1,
	    "not one line: %s", s.errbuf);
}

Test(e2e, stray_client_does_not_break_receiver, .timeout = 300)
{
	struct proc r, s;
	int port = start_receiver(&r, "--exit-after-handoff", NULL);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
		.sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	const char *g = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
	(void)!write(fd, g, strlen(g));
	char buf[256];
	(void)!read(fd, buf, sizeof(buf)); /* the refusal, then EOF */
	close(fd);
	char to[64];
	snprintf(to, sizeof(to), "127.0.0.1:%d", port);
	char *argv[] = { TERN, "send", "--to", to, "--guest", "simvm:mem=64M,fill=random",
		"--verify", "--json", NULL };
	cr_assert_eq(proc_start(&s, argv, 0), 0);
	cr_assert_eq(proc_wait(&s, 60000), 0);
	cr_assert_eq(proc_wait(&r, 60000), 0);
	cr_assert_eq(proc_exit_code(&s), 0, "%s", s.errbuf);
	cr_assert_eq(proc_exit_code(&r), 0, "%s", r.errbuf);
	cr_assert(strstr(r.errbuf, "refused") != NULL, "%s", r.errbuf);
}

Test(e2e, no_convergence_times_out_with_reason, .timeout = 120)
{
	struct proc r, s;
	int port = start_receiver(&r, "--exit-after-handoff", NULL);
	char to[64];
	snprintf(to, sizeof(to), "127.0.0.1:%d", port);
	/* An unthrottled writer over 128 MiB against a 1 ms limit cannot fit. */
	char *argv[] = { TERN, "send", "--to", to, "--guest",
		"simvm:mem=256M,vcpus=2,fill=random,workload=memtouch:ws=128M,pattern=random",
		"--downtime-limit", "1ms", "--timeout", "3s", "--json", NULL };
	cr_assert_eq(proc_start(&s, argv, 0), 0);
	cr_assert_eq(proc_wait(&s, 60000), 0, "send hung past its timeout");
	cr_assert_eq(proc_wait(&r, 30000), 0, "receiver hung after the source aborted");
	cr_assert_eq(proc_exit_code(&s), 1, "exit %d: %s %s", proc_exit_code(&s), s.errbuf,
	    s.outbuf);
	cr_assert(strstr(s.errbuf, "converge") != NULL || strstr(s.errbuf, "timed out") != NULL,
	    "%s", s.errbuf);
	cr_assert(strstr(s.outbuf, "\"outcome\":\"aborted\"") != NULL, "%s", s.outbuf);
	cr_assert_eq(proc_exit_code(&r), 1);
	cr_assert(strstr(r.errbuf, "aborted") != NULL, "%s", r.errbuf);
}

static void
kill_midway(int kill_source)
{
	struct proc r, s;
	int port = start_receiver(&r, "--exit-after-handoff", NULL);
	char to[64];
	snprintf(to, sizeof(to), "127.0.0.1:%d", port);
	char *argv[] = { TERN, "send", "--to", to, "--guest",
		"simvm:mem=256M,vcpus=2,fill=random,workload=memtouch:ws=128M,pattern=random",
		"--downtime-limit", "1ms", "--timeout", "30s", "--json", NULL };
	cr_assert_eq(proc_start(&s, argv, 0), 0);
	cr_assert_eq(proc_wait_stderr(&r, "receiving migration", 60000), 0,
	    "the migration never started: %s", r.errbuf);
	usleep(1000 * 1000); /* well into the pre-copy iterations */
	kill(kill_source ? s.pid : r.pid, SIGKILL);
	struct proc *survivor = kill_source ? &r : &s;
	cr_assert_eq(proc_wait(survivor, 20000), 0, "the survivor hung");
	proc_wait(kill_source ? &s : &r, 20000);
	cr_assert_eq(proc_exit_code(survivor), 1, "%s", survivor->errbuf);
	cr_assert(strlen(survivor->errbuf) > 0);
	if (!kill_source)
		cr_assert(strstr(s.outbuf, "\"outcome\":\"aborted\"") != NULL, "%s", s.outbuf);
}

Test(e2e, source_killed_destination_exits, .timeout = 120)
{
	kill_midway(1);
}

Test(e2e, destination_killed_source_aborts, .timeout = 120)
{
	kill_midway(0);
}

#include "messages/trace.h"

/* Counts records of a kind (and, when text is non-NULL, with that text). */
static int
trace_count(const char *path, uint32_t kind, const char *text, const char *actor)
{
	struct tern_trace_reader *rd;
	struct tern_trace_header h;
	struct tern_trace_record rec;
	int n = 0, rc;
	cr_assert_eq(tern_trace_reader_open(&rd, path, &h), 0, "cannot open %s", path);
	while ((rc = tern_trace_reader_next(rd, &rec)) == 1) {
		if (rec.kind != kind)
			continue;
		if (text != NULL && strcmp(rec.text, text) != 0)
			continue;
		if (actor != NULL && strcmp(rec.actor_name, actor) != 0)
			continue;
		n++;
	}
	cr_assert_eq(rc, 0, "trace %s is corrupt", path);
	tern_trace_reader_close(rd);
	return n;
}

Test(e2e, traces_record_both_sides, .timeout = 300)
{
	char spath[] = "/tmp/tern-e2e-src-XXXXXX", dpath[] = "/tmp/tern-e2e-dst-XXXXXX";
	close(mkstemp(spath));
	close(mkstemp(dpath));
	struct proc r, s;
	char *ra[] = { TERN, "receive", "--listen", "127.0.0.1:0", "--ready-fd", "3",
		"--exit-after-handoff", "--trace", dpath, NULL };
	cr_assert_eq(proc_start(&r, ra, 1), 0);
	int port = proc_ready_port(&r, 10000);
	char to[64];
	snprintf(to, sizeof(to), "127.0.0.1:%d", port);
	char *sa[] = { TERN, "send", "--to", to, "--guest",
		"simvm:mem=128M,fill=random,workload=memtouch:ws=32M,rate=20M", "--trace", spath,
		NULL };
	cr_assert_eq(proc_start(&s, sa, 0), 0);
	cr_assert_eq(proc_wait(&s, 60000), 0);
	cr_assert_eq(proc_wait(&r, 60000), 0);
	cr_assert_eq(proc_exit_code(&s), 0, "%s", s.errbuf);
	cr_assert_eq(proc_exit_code(&r), 0, "%s", r.errbuf);
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

Test(e2e, dirty_ring_mode_verified, .timeout = 300)
{
	struct proc r, s;
	int port = start_receiver(&r, "--run-after", "1s");
	char to[64];
	snprintf(to, sizeof(to), "127.0.0.1:%d", port);
	/* A small ring under a fast writer: vCPUs stall on full rings and the
	 * harvests must still catch every page. */
	char *argv[] = { TERN, "send", "--to", to, "--guest",
		"simvm:mem=256M,vcpus=2,fill=random,workload=memtouch:ws=64M,rate=100M,pattern=random",
		"--dirty-log", "ring", "--ring-size", "64", "--verify", "--json", NULL };
	cr_assert_eq(proc_start(&s, argv, 0), 0);
	cr_assert_eq(proc_wait(&s, 120000), 0);
	cr_assert_eq(proc_wait(&r, 60000), 0);
	cr_assert_eq(proc_exit_code(&s), 0, "%s", s.errbuf);
	cr_assert_eq(proc_exit_code(&r), 0, "%s", r.errbuf);
	cr_assert_eq(json_num(s.outbuf, "verified"), 1);
	cr_assert_eq(json_num(r.outbuf, "workload_ok"), 1, "%s", r.errbuf);
	cr_assert_gt(json_num(r.outbuf, "workload_progress_after"),
	    json_num(r.outbuf, "workload_progress_at_resume"));
}

Test(e2e, bad_dirty_log_mode, .timeout = 30)
{
	char *a[] = { TERN, "send", "--to", "127.0.0.1:1", "--guest", "simvm:mem=64M",
		"--dirty-log", "pml", NULL };
	expect_usage_error(a, "dirty-log");
}

Test(e2e, ring_only_pass_verified, .timeout = 300)
{
	struct proc r, s;
	int port = start_receiver(&r, "--run-after", "1s");
	char to[64];
	snprintf(to, sizeof(to), "127.0.0.1:%d", port);
	/* One walk over memory while the rings' pages are sent as they come,
	 * a walk step forced every 128 ring pages. */
	char *argv[] = { TERN, "send", "--to", to, "--guest",
		"simvm:mem=256M,vcpus=2,fill=random,workload=memtouch:ws=128M,rate=100M,pattern=random",
		"--dirty-log", "ring", "--ring-only", "--ring-step", "128", "--verify", "--json", NULL };
	cr_assert_eq(proc_start(&s, argv, 0), 0);
	cr_assert_eq(proc_wait(&s, 120000), 0);
	cr_assert_eq(proc_wait(&r, 60000), 0);
	cr_assert_eq(proc_exit_code(&s), 0, "%s", s.errbuf);
	cr_assert_eq(proc_exit_code(&r), 0, "%s", r.errbuf);
	cr_assert_eq(json_num(s.outbuf, "verified"), 1);
	cr_assert_gt(json_num(s.outbuf, "ring_pass_pages"), 0, "no ring page went during the walk");
	cr_assert_eq(json_num(r.outbuf, "workload_ok"), 1, "%s", r.errbuf);
	char *bad[] = { TERN, "send", "--to", to, "--guest", "simvm:mem=64M", "--ring-only", NULL };
	expect_usage_error(bad, "--dirty-log ring");
}

Test(e2e, waiting_receiver_stops_on_sigint, .timeout = 60)
{
	struct proc r;
	char *ra[] = { TERN, "receive", "--listen", "127.0.0.1:0", "--ready-fd", "3", NULL };
	cr_assert_eq(proc_start(&r, ra, 1), 0);
	cr_assert_gt(proc_ready_port(&r, 10000), 0);
	kill(r.pid, SIGINT);
	/* No accept timeout was given: only the signal can end the wait. */
	cr_assert_eq(proc_wait(&r, 5000), 0, "the receiver ignored SIGINT while waiting");
	cr_assert_eq(proc_exit_code(&r), 1);
	cr_assert(strstr(r.errbuf, "stopped while waiting") != NULL, "%s", r.errbuf);
}
