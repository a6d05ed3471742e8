/*
 * ConnectionActor×N end to end: parallel connections with --verify under a
 * running workload, a destination that accepts fewer, connections dying on
 * either side, a destination that stops reading, and a 1 ms RTT link.
 */
#include <criterion/criterion.h>
#include <libgen.h>

#include "tests/proc.h"

#define TERN tern_cli()
#define GUEST "simvm:mem=256M,vcpus=2,fill=random,workload=memtouch:ws=64M,rate=50M,pattern=random"

struct mig {
	struct proc r, s;
};

static int
mig_receiver(struct mig *m, char *const extra[])
{
	char *argv[24] = { TERN, "receive", "--listen", "127.0.0.1:0", "--ready-fd", "3",
		"--json", "--accept-timeout", "60s", "--exit-after-handoff" };
	int n = 10;
	for (int i = 0; extra != NULL && extra[i] != NULL; i++)
		argv[n++] = extra[i];
	argv[n] = NULL;
	cr_assert_eq(proc_start(&m->r, argv, 1), 0);
	int port = proc_ready_port(&m->r, 10000);
	cr_assert_gt(port, 0);
	return port;
}

static void
mig_send(struct mig *m, int port, char *const extra[])
{
	char to[64];
	snprintf(to, sizeof(to), "127.0.0.1:%d", port);
	char *argv[32] = { TERN, "send", "--to", to, "--json", "--timeout", "120s" };
	int n = 7;
	for (int i = 0; extra[i] != NULL; i++)
		argv[n++] = extra[i];
	argv[n] = NULL;
	cr_assert_eq(proc_start(&m->s, argv, 0), 0);
}

static void
mig_wait(struct mig *m)
{
	cr_assert_eq(proc_wait(&m->s, 150000), 0, "send hung");
	cr_assert_eq(proc_wait(&m->r, 60000), 0, "receive hung");
	cr_log_info("source: %s%s", m->s.outbuf, m->s.errbuf);
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
n_connections(const char *n)
{
	struct mig m;
	int port = mig_receiver(&m, NULL);
	char *extra[] = { "--guest", GUEST, "--verify", "--connections", (char *)n, NULL };
	mig_send(&m, port, extra);
	mig_wait(&m);
	expect_verified(&m, atoll(n));
	/* Every connection carried data: the shared queue spreads the work. */
	const char *p = strstr(m.s.outbuf, "\"conns\":[");
	cr_assert_not_null(p);
	for (long long i = 0; i < atoll(n); i++) {
		p = strstr(p, "\"payload_bytes\":");
		cr_assert_not_null(p);
		cr_assert_gt(atoll(p + 16), 0, "connection %lld sent nothing", i);
		p++;
	}
}

Test(connections, one, .timeout = 300) { n_connections("1"); }
Test(connections, two, .timeout = 300) { n_connections("2"); }
Test(connections, four, .timeout = 300) { n_connections("4"); }
Test(connections, eight, .timeout = 300) { n_connections("8"); }

Test(connections, destination_accepts_fewer_is_a_clear_error, .timeout = 120)
{
	struct mig m;
	char *rx[] = { "--max-connections", "2", NULL };
	int port = mig_receiver(&m, rx);
	char *extra[] = { "--guest", GUEST, "--connections", "4", NULL };
	mig_send(&m, port, extra);
	mig_wait(&m);
	cr_assert_eq(proc_exit_code(&m.s), 1);
	cr_assert(strstr(m.s.errbuf, "at most 2 connections") != NULL, "%s", m.s.errbuf);
	cr_assert(strstr(m.s.outbuf, "\"outcome\":\"aborted\"") != NULL);
	cr_assert_eq(json_num(m.s.outbuf, "workload_ok"), 1, "source guest not running");
}

Test(connections, destination_accepts_fewer_with_minimum, .timeout = 120)
{
	struct mig m;
	char *rx[] = { "--max-connections", "2", NULL };
	int port = mig_receiver(&m, rx);
	char *extra[] = { "--guest", GUEST, "--verify", "--connections", "4",
		"--connections-min", "2", NULL };
	mig_send(&m, port, extra);
	mig_wait(&m);
	expect_verified(&m, 4);
	cr_assert_eq(json_num(m.s.outbuf, "connections_lost"), 2);
}

static void
connection_dies(const char *side, const char *fault)
{
	struct mig m;
	if (strcmp(side, "destination") == 0)
		setenv("TERN_FAULT", fault, 1);
	int port = mig_receiver(&m, NULL);
	unsetenv("TERN_FAULT");
	if (strcmp(side, "source") == 0)
		setenv("TERN_FAULT", fault, 1);
	char *extra[] = { "--guest", GUEST, "--verify", "--connections", "4",
		"--connections-min", "1", NULL };
	mig_send(&m, port, extra);
	unsetenv("TERN_FAULT");
	mig_wait(&m);
	char fired[160];
	snprintf(fired, sizeof(fired), "tern: fault fired: %s", fault);
	struct proc *faulty = strcmp(side, "source") == 0 ? &m.s : &m.r;
	cr_assert_not_null(strstr(faulty->errbuf, fired), "the fault %s never fired: %s", fault,
	    faulty->errbuf);
	expect_verified(&m, 4);
	cr_assert_eq(json_num(m.s.outbuf, "connections_lost"), 1, "%s", m.s.outbuf);
}

Test(connections, source_data_connection_dies_midway, .timeout = 200)
{
	connection_dies("source", "conn-send#2@chunk:3");
}

Test(connections, destination_data_connection_dies_midway, .timeout = 200)
{
	connection_dies("destination", "conn-recv#1@send:ACK#2");
}

Test(connections, destination_stops_reading, .timeout = 120)
{
	struct mig m;
	int port = mig_receiver(&m, NULL);
	char *extra[] = { "--guest",
		"simvm:mem=512M,vcpus=2,fill=random,workload=memtouch:ws=128M,pattern=random",
		"--downtime-limit", "1ms", "--connections", "2", "--io-timeout", "1s", NULL };
	mig_send(&m, port, extra);
	cr_assert_eq(proc_wait_stderr(&m.r, "receiving migration", 60000), 0);
	usleep(500 * 1000);
	kill(m.r.pid, SIGSTOP);
	uint64_t t0 = proc_now_ms();
	/* Detected by the 1 s deadline; teardown bounded: never a hang. */
	cr_assert_eq(proc_wait(&m.s, 30000), 0, "the source hung on a peer that stopped reading");
	uint64_t took = proc_now_ms() - t0;
	kill(m.r.pid, SIGCONT);
	proc_wait(&m.r, 30000);
	cr_log_info("source gave up %llu ms after the destination stopped", (unsigned long long)took);
	cr_assert_eq(proc_exit_code(&m.s), 1, "exit %d: %s", proc_exit_code(&m.s), m.s.errbuf);
	cr_assert(strstr(m.s.outbuf, "\"outcome\":\"aborted\"") != NULL, "%s", m.s.outbuf);
	cr_assert_eq(json_num(m.s.outbuf, "workload_ok"), 1, "source guest not running");
}

Test(connections, one_ms_rtt_relay, .timeout = 200)
{
	struct mig m;
	struct proc relay;
	char relay_path[512], cli[512];
	snprintf(cli, sizeof(cli), "%s", TERN_CLI_PATH); /* dirname writes into it */
	snprintf(relay_path, sizeof(relay_path), "%s/tern-relay", dirname(cli));
	int port = mig_receiver(&m, NULL);
	char to[64];
	snprintf(to, sizeof(to), "127.0.0.1:%d", port);
	char *ra[] = { relay_path, "--listen", "127.0.0.1:0", "--to", to, "--delay", "500us",
		"--ready-fd", "3", NULL };
	cr_assert_eq(proc_start(&relay, ra, 1), 0);
	int rport = proc_ready_port(&relay, 10000);
	cr_assert_gt(rport, 0);
	char *extra[] = { "--guest", GUEST, "--verify", "--connections", "4", NULL };
	mig_send(&m, rport, extra);
	mig_wait(&m);
	kill(relay.pid, SIGKILL);
	proc_wait(&relay, 5000);
	expect_verified(&m, 4);
	cr_log_info("through a 1 ms RTT relay: total_ms %lld payload %lld",
	    json_num(m.s.outbuf, "total_ms"), json_num(m.s.outbuf, "payload_bytes"));
}
