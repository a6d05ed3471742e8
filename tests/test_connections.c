/*
 * ConnectionActor×N end to end: parallel connections with --verify under a
 * running workload, a destination that accepts fewer, connections dying on
 * either side, a destination that stops reading, and a 1 ms RTT link.
 */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <unistd.h>

#include "messages/trace.h"

#include "tests/proc.h"

#define GUEST "simvm:mem=256M,vcpus=2,fill=random,workload=memtouch:ws=64M,rate=50M,pattern=random"

/* A receiver that exits at the handoff, with the extra arguments. */
static void
start_receiver(struct mig *m, const char *fault, char *const extra[])
{
	char *first[] = {"--exit-after-handoff", NULL}, *rx[24];
	args_join(rx, 24, first, extra);
	mig_receive(m, fault, rx);
}

/* A sender with a 120 s --timeout and the extra arguments, to m->to. */
static void
start_sender(struct mig *m, const char *fault, char *const extra[])
{
	char *first[] = {"--timeout", "120s", NULL}, *tx[32];
	args_join(tx, 32, first, extra);
	mig_send(m, fault, tx);
}

static void
expect_verified(struct mig *m, long long conns)
{
	cr_assert_eq(proc_exit_code(&m->s), 0, "send: %s", m->s.errbuf);
	cr_assert_eq(proc_exit_code(&m->r), 0, "receive: %s", m->r.errbuf);
	cr_assert_eq(json_num(m->s.outbuf, "verified"), 1);
	cr_assert_eq(json_num(m->s.outbuf, "connections"), conns);
}

static void
n_connections(int n)
{
	struct mig m;
	char ns[16];
	snprintf(ns, sizeof(ns), "%d", n);
	start_receiver(&m, NULL, NULL);
	char *extra[] = {"--guest", GUEST, "--verify", "--connections", ns, NULL};
	start_sender(&m, NULL, extra);
	mig_wait(&m);
	expect_verified(&m, n);
	/* Every connection carried data: the shared queue spreads the work. */
	const char *p = strstr(m.s.outbuf, "\"conns\":[");
	cr_assert_not_null(p);
	for (long long i = 0; i < n; i++) {
		p = strstr(p, "\"payload_bytes\":");
		cr_assert_not_null(p);
		cr_assert_gt(atoll(p + 16), 0, "connection %lld sent nothing", i);
		p++;
	}
}

Test(connections, one, .timeout = 300)
{
	n_connections(1);
}

/* Two and four: the counts CI also runs under TSan (.ci/run). */
ParameterizedTestParameters(connections, several)
{
	static int n[] = {2, 4};
	return cr_make_param_array(int, n, sizeof(n) / sizeof(n[0]));
}

ParameterizedTest(int *n, connections, several, .timeout = 300)
{
	n_connections(*n);
}

Test(connections, eight, .timeout = 300)
{
	n_connections(8);
}

Test(connections, destination_accepts_fewer_is_a_clear_error, .timeout = 300)
{
	struct mig m;
	char *rx[] = {"--max-connections", "2", NULL};
	start_receiver(&m, NULL, rx);
	char *extra[] = {"--guest", GUEST, "--connections", "4", NULL};
	start_sender(&m, NULL, extra);
	mig_wait(&m);
	cr_assert_eq(proc_exit_code(&m.s), 1);
	cr_assert(strstr(m.s.errbuf, "at most 2 connections") != NULL, "%s", m.s.errbuf);
	cr_assert(strstr(m.s.outbuf, "\"outcome\":\"aborted\"") != NULL);
	cr_assert_eq(json_num(m.s.outbuf, "workload_ok"), 1, "source guest not running");
}

Test(connections, destination_accepts_fewer_with_minimum, .timeout = 300)
{
	struct mig m;
	char *rx[] = {"--max-connections", "2", NULL};
	start_receiver(&m, NULL, rx);
	char *extra[] = {"--guest",           GUEST, "--verify", "--connections", "4",
	                 "--connections-min", "2",   NULL};
	start_sender(&m, NULL, extra);
	mig_wait(&m);
	expect_verified(&m, 4);
	cr_assert_eq(json_num(m.s.outbuf, "connections_lost"), 2);
}

static void
connection_dies(const char *side, const char *fault)
{
	struct mig m;
	int dst = strcmp(side, "destination") == 0;
	start_receiver(&m, dst ? fault : NULL, NULL);
	char *extra[] = {"--guest",           GUEST, "--verify", "--connections", "4",
	                 "--connections-min", "1",   NULL};
	start_sender(&m, dst ? NULL : fault, extra);
	mig_wait(&m);
	mig_assert_fired(&m, side, fault);
	expect_verified(&m, 4);
	cr_assert_eq(json_num(m.s.outbuf, "connections_lost"), 1, "%s", m.s.outbuf);
	/* What was in flight on it was resent only after the destination
	 * fenced it (nothing in flight: nothing to fence). */
	cr_assert_eq(json_num(m.s.outbuf, "connections_fenced"),
	             json_num(m.s.outbuf, "chunks_requeued") > 0 ? 1 : 0, "%s", m.s.outbuf);
}

Test(connections, source_data_connection_dies_midway, .timeout = 300)
{
	connection_dies("source", "conn-send#2@chunk:3");
}

Test(connections, destination_data_connection_dies_midway, .timeout = 300)
{
	connection_dies("destination", "conn-recv#1@send:ACK#2");
}

Test(connections, destination_stops_reading, .timeout = 300)
{
	struct mig m;
	char trace[] = "/tmp/tern-stops-reading-XXXXXX";
	close(mkstemp(trace));
	char *rx[] = {"--trace", trace, NULL};
	start_receiver(&m, NULL, rx);
	char *extra[] = {
	    "--guest",
	    "simvm:mem=512M,vcpus=2,fill=random,workload=memtouch:ws=128M,pattern=random",
	    "--downtime-limit",
	    "1ms",
	    "--connections",
	    "2",
	    "--io-timeout",
	    "1s",
	    NULL};
	start_sender(&m, NULL, extra);
	/* Stopped at an event, not after a while: once the destination's
	 * receiver has taken in 50 messages it is mid-stream (the setup is a
	 * few, a 512 MiB guest's pages hundreds more).  It writes its trace as
	 * it goes. */
	trace_wait_count(trace, TERN_TRACE_RECV, NULL, "receiver", 50, 120000);
	kill(m.r.pid, SIGSTOP);
	uint64_t t0 = proc_now_ms();
	/* Detected by the 1 s deadline; teardown bounded: never a hang. */
	cr_assert_eq(proc_wait(&m.s, MIG_SEND_BOUND_MS), 0,
	             "the source hung on a peer that stopped reading");
	uint64_t took = proc_now_ms() - t0;
	kill(m.r.pid, SIGCONT);
	mig_wait(&m);
	unlink(trace);
	cr_log_info("source gave up %llu ms after the destination stopped",
	            (unsigned long long)took);
	cr_assert_eq(proc_exit_code(&m.s), 1, "exit %d: %s", proc_exit_code(&m.s), m.s.errbuf);
	cr_assert(strstr(m.s.outbuf, "\"outcome\":\"aborted\"") != NULL, "%s", m.s.outbuf);
	cr_assert_eq(json_num(m.s.outbuf, "workload_ok"), 1, "source guest not running");
}

Test(connections, one_ms_rtt_relay, .timeout = 300)
{
	struct mig m;
	struct proc relay;
	start_receiver(&m, NULL, NULL);
	char *ra[] = {proc_tool("tern-relay"),
	              "--listen",
	              "127.0.0.1:0",
	              "--to",
	              m.to,
	              "--delay",
	              "500us",
	              "--ready-fd",
	              "3",
	              NULL};
	/* The sender goes through the relay. */
	proc_listen(&relay, ra, NULL, m.to, sizeof(m.to));
	char *extra[] = {"--guest", GUEST, "--verify", "--connections", "4", NULL};
	start_sender(&m, NULL, extra);
	mig_wait(&m);
	kill(relay.pid, SIGKILL);
	proc_wait(&relay, 5000);
	expect_verified(&m, 4);
	cr_log_info("through a 1 ms RTT relay: total_ms %lld payload %lld",
	            json_num(m.s.outbuf, "total_ms"), json_num(m.s.outbuf, "payload_bytes"));
}
