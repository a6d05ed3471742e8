/*
 * TLS 1.3 between real `tern send` and `tern receive` processes, with
 * credentials made at test time by the `openssl` command: a CA with server
 * and client certificates, a second CA that is not trusted, and PSK files.
 *
 * Each refusal is checked from both ends: the source fails with a reason,
 * and the destination logs the refusal and keeps waiting — a right source
 * then migrates to the same process, memory verified.
 */
#include <criterion/criterion.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include "net/net.h"
#include "proc.h"

#define GUEST "simvm:mem=64M,vcpus=2,fill=random,workload=memtouch:ws=16M,rate=20M"

static char dir[256];              /* the test's credentials */
static char good[300], other[300]; /* x509 directories: trusted CA, another CA */
static char psk[300], psk_wrong[300], psk_open[300];

static void sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void
sh(const char *fmt, ...)
{
	char cmd[4096];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	int rc = system(cmd);
	cr_assert_eq(rc, 0, "command failed (%d): %s", rc, cmd);
}

/* make_ca writes a CA and its server (localhost, 127.0.0.1) and client
 * certificates into d, in QEMU's file names. */
static void
make_ca(const char *d, const char *name)
{
	const char *ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";

	sh("mkdir -p %s && cd %s && "
	   "openssl req -x509 %s -keyout ca-key.pem -out ca-cert.pem -subj /CN=%s -days 2 "
	   ">/dev/null 2>&1 && "
	   "printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\n' > server.ext && "
	   "openssl req %s -keyout server-key.pem -out server.csr -subj /CN=localhost "
	   ">/dev/null 2>&1 && "
	   "openssl x509 -req -in server.csr -CA ca-cert.pem -CAkey ca-key.pem -CAcreateserial "
	   "-out server-cert.pem -days 2 -extfile server.ext >/dev/null 2>&1 && "
	   "openssl req %s -keyout client-key.pem -out client.csr -subj /CN=tern-source "
	   ">/dev/null 2>&1 && "
	   "openssl x509 -req -in client.csr -CA ca-cert.pem -CAkey ca-key.pem -CAcreateserial "
	   "-out client-cert.pem -days 2 >/dev/null 2>&1 && chmod 600 *-key.pem",
	   d, d, ec, name, ec, ec);
}

static void
setup(void)
{
	signal(SIGPIPE, SIG_IGN);
	snprintf(dir, sizeof(dir), "/tmp/tern-tls-XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
	snprintf(good, sizeof(good), "%s/good", dir);
	snprintf(other, sizeof(other), "%s/other", dir);
	make_ca(good, "tern-test-ca");
	make_ca(other, "some-other-ca");
	snprintf(psk, sizeof(psk), "%s/keys.psk", dir);
	snprintf(psk_wrong, sizeof(psk_wrong), "%s/wrong.psk", dir);
	snprintf(psk_open, sizeof(psk_open), "%s/open.psk", dir);
	sh("cd %s && printf '# migration keys\\nqemu:%s\\n' > keys.psk && "
	   "printf 'qemu:%s\\n' > wrong.psk && cp keys.psk open.psk && "
	   "chmod 600 keys.psk wrong.psk && chmod 644 open.psk",
	   dir, "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
	   "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1e");
}

static void
teardown(void)
{
	sh("rm -rf %s", dir);
}

TestSuite(tls, .init = setup, .fini = teardown, .timeout = 300);

/* send_ok sends to m's receiver with extra and asserts it completed. */
static void
send_ok(struct mig *m, char *const extra[])
{
	char *base[] = {"--guest", GUEST, "--verify", "--connections", "2", NULL};
	char *args[32];

	args_join(args, 32, base, extra);
	mig_send(m, NULL, args);
	mig_wait(m);
	cr_assert_eq(proc_exit_code(&m->s), 0, "send failed: %s", m->s.errbuf);
	cr_assert_eq(proc_exit_code(&m->r), 0, "receive failed: %s", m->r.errbuf);
	cr_assert_eq(json_num(m->s.outbuf, "verified"), 1, "%s", m->s.outbuf);
}

/* send_refused runs a source that must fail against m's receiver, with
 * needle in its reason; the receiver must log the refusal and stay. */
static void
send_refused(struct mig *m, char *const extra[], const char *needle)
{
	char *base[] = {tern_cli(), "send", "--to", m->to, "--guest", GUEST, "--json", NULL};
	char *args[32];
	struct proc s;

	args_join(args, 32, base, extra);
	cr_assert_eq(proc_run(&s, args, MIG_SEND_BOUND_MS), 1, "the source did not fail: %s",
	             s.errbuf);
	cr_assert(strstr(s.errbuf, needle) != NULL, "want '%s' in: %s", needle, s.errbuf);
	/* Its guest runs again: the source side of a refusal is an abort. */
	cr_assert(strstr(s.outbuf, "\"outcome\":\"aborted\"") != NULL, "%s", s.outbuf);
	cr_assert_eq(proc_wait_stderr(&m->r, "refused a connection", 30000), 0,
	             "the destination did not log the refusal: %s", m->r.errbuf);
	cr_assert_eq(kill(m->r.pid, 0), 0, "the destination ended: %s", m->r.errbuf);
}

/* migrates_with: both sides given creds; the destination says how. */
static void
migrates_with(const char *opt, const char *path, const char *how)
{
	struct mig m;
	char *rx[] = {(char *)opt, (char *)path, "--exit-after-handoff", NULL};
	char *tx[] = {(char *)opt, (char *)path, NULL};

	mig_receive(&m, NULL, rx);
	send_ok(&m, tx);
	cr_assert(strstr(m.r.errbuf, how) != NULL, "%s", m.r.errbuf);
}

Test(tls, x509_migrates_both_sides_authenticated)
{
	migrates_with("--tls-creds", good, "TLS 1.3, x509");
}

Test(tls, psk_migrates)
{
	migrates_with("--tls-psk-file", psk, "pre-shared key (identity qemu)");
}

/* refused_then_right: a destination with rx refuses a source with bad
 * (needle in its reason), keeps waiting, then takes a source with right. */
static void
refused_then_right(char *const rx[], char *const bad[], const char *needle, char *const right[])
{
	struct mig m;
	char *args[16];
	char *const exit_after[] = {"--exit-after-handoff", NULL};

	args_join(args, 16, rx, exit_after);
	mig_receive(&m, NULL, args);
	send_refused(&m, bad, needle);
	send_ok(&m, right);
}

/* A source whose certificate another CA signed is refused by the
 * destination; one that trusts another CA refuses the destination. */
Test(tls, another_ca_is_refused_and_the_destination_keeps_waiting)
{
	char *x509[] = {"--tls-creds", good, NULL};
	char *other_ca[] = {"--tls-creds", other, NULL};
	refused_then_right(x509, other_ca, "TLS", x509);
}

Test(tls, wrong_psk_is_refused_and_the_destination_keeps_waiting)
{
	char *keys[] = {"--tls-psk-file", psk, NULL};
	char *wrong[] = {"--tls-psk-file", psk_wrong, NULL};
	refused_then_right(keys, wrong, "TLS", keys);
}

/* The source checks the destination's name: a certificate for localhost is
 * not one for another host. */
Test(tls, source_checks_the_destination_name)
{
	char *x509[] = {"--tls-creds", good, NULL};
	char *elsewhere[] = {"--tls-creds", good, "--tls-hostname", "db.example.com", NULL};
	char *here[] = {"--tls-creds", good, "--tls-hostname", "localhost", NULL};
	refused_then_right(x509, elsewhere, "certificate", here);
}

/* A plain source never gets past a TLS destination's handshake. */
Test(tls, plain_source_is_refused)
{
	char *keys[] = {"--tls-psk-file", psk, NULL};
	refused_then_right(keys, NULL, "handshake", keys);
}

/* Idle connections hold handshake slots only until newer ones need them:
 * more idle sockets than slots, then a real source still migrates. */
Test(tls, idle_connections_do_not_starve_the_source)
{
	struct mig m;
	char *rx[] = {"--tls-psk-file", psk, "--exit-after-handoff", NULL};
	char *tx[] = {"--tls-psk-file", psk, NULL};
	char why[256];
	int idle[24];

	mig_receive(&m, NULL, rx);
	for (int i = 0; i < 24; i++)
		cr_assert_eq(tern_net_connect(m.to, 10000, &idle[i], why, sizeof(why)), 0, "%s",
		             why);
	send_ok(&m, tx);
	/* Some were dropped: cut off for newer ones (or, on a machine slow
	 * enough, at their handshake deadline). */
	cr_assert(strstr(m.r.errbuf, "refused a connection") != NULL, "%s", m.r.errbuf);
	for (int i = 0; i < 24; i++)
		close(idle[i]);
}

Test(tls, secret_files_readable_by_others_are_refused)
{
	struct mig m;
	char *rx[] = {"--tls-psk-file", psk, "--exit-after-handoff", NULL};
	char *tx[] = {"--tls-psk-file", psk_open, NULL};
	struct proc s;
	char *args[32];
	char *base[] = {tern_cli(), "send", "--to", NULL, "--guest", GUEST, NULL};

	mig_receive(&m, NULL, rx);
	base[3] = m.to;
	args_join(args, 32, base, tx);
	cr_assert_eq(proc_run(&s, args, MIG_SEND_BOUND_MS), 1, "%s", s.errbuf);
	cr_assert(strstr(s.errbuf, "accessible by others") != NULL, "%s", s.errbuf);
	kill(m.r.pid, SIGTERM);
	proc_wait(&m.r, MIG_RECV_BOUND_MS);
}

/* Without TLS, receive listens on loopback only, unless told --insecure. */
Test(tls, plain_receive_beyond_loopback_needs_insecure)
{
	char *refused[] = {tern_cli(), "receive", "--listen", "0.0.0.0:0", NULL};
	char *allowed[] = {tern_cli(),   "receive", "--listen",   "0.0.0.0:0",
	                   "--ready-fd", "3",       "--insecure", NULL};
	char *auth[] = {tern_cli(), "send", "--to", "127.0.0.1:1", "--auth", "s3cret", NULL};
	struct proc p;

	proc_assert_usage_error(refused, "without TLS");
	cr_assert_eq(proc_start(&p, allowed, 1), 0);
	cr_assert_gt(proc_ready_port(&p, 60000), 0, "--insecure did not listen: %s", p.errbuf);
	kill(p.pid, SIGTERM);
	proc_wait(&p, 60000);
	proc_assert_usage_error(auth, "--tls-psk-file");
}
