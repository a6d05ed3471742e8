/*
 * The tern CLI's options (cli_opts.h): the help text, one table saying which
 * command takes which option, and the parser that fills libtern's option
 * structs from them.
 */
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kvm/guest.h"
#include "tern/tern.h"
#include "tools/cli_opts.h"

void
cli_usage(FILE *f)
{
	fprintf(
	    f,
	    "usage: tern send --to HOST:PORT --guest SPEC [options]\n"
	    "       tern receive --listen HOST:PORT [options]\n"
	    "       tern demo [send options]\n"
	    "       tern vm --guest SPEC --control PATH [--incoming URI|defer]   (tern vm --help)\n"
	    "       tern ctl SOCKET COMMAND [key=value...]                   (tern ctl --help)\n"
	    "\n"
	    "Live-migrates a running guest's memory and state to another process over TCP.\n"
	    "\n"
	    "send options:\n"
	    "  --to HOST:PORT          destination (required)\n"
	    "  --guest SPEC            guest to build and migrate (required), e.g.\n"
	    "                          " DEMO_GUEST "\n"
	    "                          keys: mem=SIZE vcpus=N "
	    "fill=zero|random|PERCENT|random:SIZE\n"
	    "                          backing=memfd|anon-thp workload=idle|memtouch\n"
	    "                          (memtouch: ws=SIZE rate=SIZE/s pattern=seq|random) seed=N\n"
	    "  --downtime-limit DUR    switch over when the expected downtime fits (300ms)\n"
	    "  --timeout DUR           give up, source running, if not done by then (none)\n"
	    "  --connections N         TCP connections, 1..%d (1); 0 carries control too\n"
	    "  --connections-min N     carry on with N if the destination accepts fewer (all)\n"
	    "  --io-timeout DUR        a connection without progress this long is dead (10s)\n"
	    "  --chunk-size SIZE       bytes of pages per work item (1M)\n"
	    "  --dirty-period DUR      background dirty-log harvest period (30ms)\n"
	    "  --zero-pages MODE       detect: announce zero pages instead of sending them;\n"
	    "                          skip-unpopulated: only skip never-touched pages;\n"
	    "                          off: send every page (detect)\n"
	    "  --zero-scanners N       zero-page scanning actors, 1..16 (1)\n"
	    "  --dirty-log MODE        bitmap: userfaultfd write-protect + PAGEMAP_SCAN;\n"
	    "                          ring: per-vCPU dirty rings, a full ring stops its vCPU\n"
	    "                          until harvested (bitmap)\n"
	    "  --ring-size N           entries per vCPU ring, power of two (4096)\n"
	    "  --ring-only             with --dirty-log ring: one walk over memory while ring\n"
	    "                          pages are sent as they arrive, no bitmap rescans\n"
	    "  --ring-step N           ring-only: force a walk step every N ring pages (1024)\n"
	    "  --auto-converge MODE    throttle the vCPUs when iterations do not converge:\n"
	    "                          step: +10%% every 2 iterations from the 2nd;\n"
	    "                          qemu: 20%%, +10%% when dirty > 50%% of sent;\n"
	    "                          rate: straight to what the dirty rate needs; off (off)\n"
	    "  --throttle-initial P, --throttle-increment P, --throttle-max P   (mode's, 10, 99)\n"
	    "  --max-bandwidth RATE    cap page data at RATE bytes/s, e.g. 100M (none)\n"
	    "  --switchover MODE       strict: if the final dirty set would overshoot the\n"
	    "                          downtime limit, resume and iterate; loose: go (strict)\n"
	    "  --stall-window DUR      no shrinking for this long is reported as a stall (5s)\n"
	    "  --postcopy-after N      not converged after N iterations: switch to postcopy\n"
	    "                          (the destination runs the guest and pulls what is\n"
	    "                          missing; a failure after the switch loses the guest)\n"
	    "  --postcopy-on-stall     switch to postcopy when the migration stalls\n"
	    "  --recover-timeout DUR   postcopy: a lost link pauses the migration, and the\n"
	    "                          source dials again for this long (5m); 0: fail at once\n"
	    "  --verify                compare memory digests at switchover; fail on a difference\n"
	    "  --send-direct           let the socket read guest memory (default: copy each\n"
	    "                          frame through a small buffer: several times faster\n"
	    "                          where the kernel's first read of a page faults)\n"
	    "  --tls-creds DIR         TLS 1.3 with x509: DIR holds ca-cert.pem,\n"
	    "                          client-cert.pem, client-key.pem (QEMU's layout)\n"
	    "  --tls-psk-file FILE     TLS 1.3 with a pre-shared key: `identity:hexkey` lines\n"
	    "                          or one hex key, >= 128 bits; mode 600\n"
	    "  --tls-hostname NAME     the name the destination's certificate must carry\n"
	    "                          (default: the host of --to)\n"
	    "  --trace FILE            record every actor message and state change\n"
	    "  --json                  print the summary as one JSON object on stdout\n"
	    "\n"
	    "receive options:\n"
	    "  --listen HOST:PORT      address to listen on (port 0: any free port)\n"
	    "  --exit-after-handoff    exit as soon as the guest runs here\n"
	    "  --run-after DUR         run the guest this long after handoff, check it, exit\n"
	    "                          (default: run until SIGINT/SIGTERM, then check)\n"
	    "  --accept-timeout DUR    give up if no migration arrives (wait forever)\n"
	    "  --no-populate           do not populate memory ahead of the data\n"
	    "  --same-backing          build the guest from the source's layout with its\n"
	    "                          backing (default: anonymous huge pages when the\n"
	    "                          kernel has them, the fastest to populate)\n"
	    "  --max-connections N     refuse connections beyond N (64)\n"
	    "  --max-mem SIZE          refuse a source guest larger than SIZE, before\n"
	    "                          allocating (default: no cap; or use --guest)\n"
	    "  --max-vcpus N           refuse a source guest with more vCPUs (256)\n"
	    "  --io-timeout DUR        as for send\n"
	    "  --recover-timeout DUR   postcopy: a lost link pauses the migration, and this\n"
	    "                          side listens again on the same address for this long\n"
	    "                          for its source to come back (5m); 0: fail at once\n"
	    "  --ready-fd FD           write the listening port to FD once listening\n"
	    "  --guest SPEC            build this destination guest before listening; the\n"
	    "                          source's layout must match it (default: build one\n"
	    "                          from the layout the source announces)\n"
	    "  --prealloc              with --guest: populate its memory before listening\n"
	    "                          (QEMU's prealloc=on; off the migration's clock)\n"
	    "  --tls-creds DIR         TLS 1.3 with x509: DIR holds ca-cert.pem,\n"
	    "                          server-cert.pem, server-key.pem; the source must show\n"
	    "                          a certificate of that CA\n"
	    "  --tls-psk-file FILE     TLS 1.3 with a pre-shared key, as for send\n"
	    "  --insecure              allow plain TCP on a non-loopback address (without\n"
	    "                          TLS, receive refuses to listen beyond loopback)\n"
	    "  --trace FILE, --json    as for send\n"
	    "\n"
	    "demo: runs a destination process and migrates " DEMO_GUEST "\n"
	    "      to it over loopback with --verify (send options override).\n"
	    "\n"
	    "DUR: 300ms, 5s, 10m, 1h (a bare number is milliseconds).  SIZE: 4096, 64K, 1M, 1G.\n"
	    "send cancels on SIGINT/SIGTERM (the source guest runs again; too late once the\n"
	    "handoff has begun).\n"
	    "Exit status: 0 completed, 1 migration failed or cancelled (source guest running),\n"
	    "2 bad usage, 3 migration failed and the source guest could not be resumed (it is\n"
	    "PAUSED).\n"
	    "\n"
	    "environment:\n"
	    "  TERN_FAULT=TRIGGER[,TRIGGER...]   inject faults at named events, for tests and\n"
	    "                          tools/fault-campaign (docs/faults.md, actors/fault.h)\n"
	    "      TRIGGER = WHO[#K]@EVENT[#N]: at WHO's N-th EVENT (from 1), once\n"
	    "      WHO     coordinator, dirty-log, throttle, zero-scan, conn-send, receiver,\n"
	    "              conn-recv: kill that actor (#K: its K-th instance, from 0; any);\n"
	    "              process: SIGKILL this process; guest: that guest call fails\n"
	    "      EVENT   recv:TYPE, send:TYPE (messages, wire frames: DIRTY_TAKE, W_STATE,\n"
	    "              ACK), state:NAME (bulk, iterate, switchover, handoff, ...),\n"
	    "              chunk[:N], iteration, pause, resume, save, load\n"
	    "      e.g. conn-send#1@chunk:3, dirty-log@recv:DIRTY_TAKE#2, "
	    "process@state:switchover\n"
	    "      each fault that fires prints \"tern: fault fired: TRIGGER (...)\" on stderr\n",
	    TERN_MAX_CONNECTIONS);
}

static int
parse_duration_ms(const char *s, uint64_t *out)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (errno != 0 || end == s || v < 0)
		return -1;
	double mul = 1;
	if (*end == '\0' || strcmp(end, "ms") == 0)
		mul = 1;
	else if (strcmp(end, "s") == 0)
		mul = 1000;
	else if (strcmp(end, "m") == 0 || strcmp(end, "min") == 0)
		mul = 60000;
	else if (strcmp(end, "h") == 0)
		mul = 3600000;
	else
		return -1;
	*out = (uint64_t)(v * mul);
	return 0;
}

int
cli_bad_usage(const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "tern: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nTry 'tern --help'.\n");
	return 2;
}

enum {
	OPT_TO = 256,
	OPT_GUEST,
	OPT_DOWNTIME,
	OPT_TIMEOUT,
	OPT_CONNS,
	OPT_CHUNK,
	OPT_PERIOD,
	OPT_VERIFY,
	OPT_TLS_CREDS,
	OPT_TRACE,
	OPT_JSON,
	OPT_LISTEN,
	OPT_EXIT_AFTER,
	OPT_RUN_AFTER,
	OPT_ACCEPT_TIMEOUT,
	OPT_NO_POPULATE,
	OPT_READY_FD,
	OPT_HELP,
	OPT_CONNS_MIN,
	OPT_IO_TIMEOUT,
	OPT_MAX_CONNS,
	OPT_ZERO_PAGES,
	OPT_ZERO_SCANNERS,
	OPT_DIRTY_LOG,
	OPT_RING_SIZE,
	OPT_AUTO_CONVERGE,
	OPT_THR_INITIAL,
	OPT_THR_INCREMENT,
	OPT_THR_MAX,
	OPT_MAX_BW,
	OPT_SWITCHOVER,
	OPT_STALL_WINDOW,
	OPT_RING_ONLY,
	OPT_RING_STEP,
	OPT_PREALLOC,
	OPT_MAX_MEM,
	OPT_MAX_VCPUS,
	OPT_TLS_PSK,
	OPT_TLS_HOSTNAME,
	OPT_INSECURE,
	OPT_AUTH_REMOVED,
	OPT_PC_AFTER,
	OPT_PC_STALL,
	OPT_SEND_DIRECT,
	OPT_SAME_BACKING,
	OPT_RECOVER_TIMEOUT,
	OPT_END,
};

/* Which commands take each option: a send option given to receive is an
 * error, not silently ignored. */
static const unsigned char opt_for[OPT_END - OPT_TO] = {
    [OPT_TO - OPT_TO] = FOR_SEND,
    [OPT_GUEST - OPT_TO] = FOR_ALL,
    [OPT_DOWNTIME - OPT_TO] = FOR_SEND | FOR_DEMO,
    [OPT_TIMEOUT - OPT_TO] = FOR_SEND | FOR_DEMO,
    [OPT_CONNS - OPT_TO] = FOR_SEND | FOR_DEMO,
    [OPT_CHUNK - OPT_TO] = FOR_SEND | FOR_DEMO,
    [OPT_PERIOD - OPT_TO] = FOR_SEND | FOR_DEMO,
    [OPT_VERIFY - OPT_TO] = FOR_SEND | FOR_DEMO,
    [OPT_TLS_CREDS - OPT_TO] = FOR_ALL,
    [OPT_TRACE - OPT_TO] = FOR_ALL,
    [OPT_JSON - OPT_TO] = FOR_ALL,
    [OPT_LISTEN - OPT_TO] = FOR_RECV,
    [OPT_EXIT_AFTER - OPT_TO] = FOR_RECV,
    [OPT_RUN_AFTER - OPT_TO] = FOR_RECV,
    [OPT_ACCEPT_TIMEOUT - OPT_TO] = FOR_RECV,
    [OPT_NO_POPULATE - OPT_TO] = FOR_RECV,
    [OPT_READY_FD - OPT_TO] = FOR_RECV,
    [OPT_HELP - OPT_TO] = FOR_ALL,
    [OPT_CONNS_MIN - OPT_TO] = FOR_SEND | FOR_DEMO,
    [OPT_IO_TIMEOUT - OPT_TO] = FOR_ALL,
    [OPT_MAX_CONNS - OPT_TO] = FOR_RECV,
    [OPT_ZERO_PAGES - OPT_TO] = FOR_SEND | FOR_DEMO,
    [OPT_ZERO_SCANNERS - OPT_TO] = FOR_SEND | FOR_DEMO,
    [OPT_DIRTY_LOG - OPT_TO] = FOR_SEND | FOR_DEMO,
    [OPT_RING_SIZE - OPT_TO] = FOR_SEND | FOR_DEMO,
    [OPT_AUTO_CONVERGE - OPT_TO] = FOR_SEND | FOR_DEMO,
    [OPT_THR_INITIAL - OPT_TO] = FOR_SEND | FOR_DEMO,
    [OPT_THR_INCREMENT - OPT_TO] = FOR_SEND | FOR_DEMO,
    [OPT_THR_MAX - OPT_TO] = FOR_SEND | FOR_DEMO,
    [OPT_MAX_BW - OPT_TO] = FOR_SEND | FOR_DEMO,
    [OPT_SWITCHOVER - OPT_TO] = FOR_SEND | FOR_DEMO,
    [OPT_STALL_WINDOW - OPT_TO] = FOR_SEND | FOR_DEMO,
    [OPT_RING_ONLY - OPT_TO] = FOR_SEND | FOR_DEMO,
    [OPT_RING_STEP - OPT_TO] = FOR_SEND | FOR_DEMO,
    [OPT_PREALLOC - OPT_TO] = FOR_RECV,
    [OPT_MAX_MEM - OPT_TO] = FOR_RECV,
    [OPT_MAX_VCPUS - OPT_TO] = FOR_RECV,
    [OPT_TLS_PSK - OPT_TO] = FOR_ALL,
    [OPT_TLS_HOSTNAME - OPT_TO] = FOR_SEND | FOR_DEMO,
    [OPT_INSECURE - OPT_TO] = FOR_RECV,
    [OPT_AUTH_REMOVED - OPT_TO] = FOR_ALL,
    [OPT_PC_AFTER - OPT_TO] = FOR_SEND | FOR_DEMO,
    [OPT_PC_STALL - OPT_TO] = FOR_SEND | FOR_DEMO,
    [OPT_SEND_DIRECT - OPT_TO] = FOR_SEND | FOR_DEMO,
    [OPT_SAME_BACKING - OPT_TO] = FOR_RECV,
    [OPT_RECOVER_TIMEOUT - OPT_TO] = FOR_ALL,
};

static const struct option long_opts[] = {
    {"to", required_argument, NULL, OPT_TO},
    {"guest", required_argument, NULL, OPT_GUEST},
    {"downtime-limit", required_argument, NULL, OPT_DOWNTIME},
    {"timeout", required_argument, NULL, OPT_TIMEOUT},
    {"connections", required_argument, NULL, OPT_CONNS},
    {"chunk-size", required_argument, NULL, OPT_CHUNK},
    {"dirty-period", required_argument, NULL, OPT_PERIOD},
    {"verify", no_argument, NULL, OPT_VERIFY},
    {"tls-creds", required_argument, NULL, OPT_TLS_CREDS},
    {"tls-psk-file", required_argument, NULL, OPT_TLS_PSK},
    {"tls-hostname", required_argument, NULL, OPT_TLS_HOSTNAME},
    {"insecure", no_argument, NULL, OPT_INSECURE},
    {"auth", required_argument, NULL, OPT_AUTH_REMOVED},
    {"trace", required_argument, NULL, OPT_TRACE},
    {"json", no_argument, NULL, OPT_JSON},
    {"listen", required_argument, NULL, OPT_LISTEN},
    {"exit-after-handoff", no_argument, NULL, OPT_EXIT_AFTER},
    {"run-after", required_argument, NULL, OPT_RUN_AFTER},
    {"accept-timeout", required_argument, NULL, OPT_ACCEPT_TIMEOUT},
    {"no-populate", no_argument, NULL, OPT_NO_POPULATE},
    {"ready-fd", required_argument, NULL, OPT_READY_FD},
    {"help", no_argument, NULL, OPT_HELP},
    {"connections-min", required_argument, NULL, OPT_CONNS_MIN},
    {"io-timeout", required_argument, NULL, OPT_IO_TIMEOUT},
    {"max-connections", required_argument, NULL, OPT_MAX_CONNS},
    {"zero-pages", required_argument, NULL, OPT_ZERO_PAGES},
    {"zero-scanners", required_argument, NULL, OPT_ZERO_SCANNERS},
    {"dirty-log", required_argument, NULL, OPT_DIRTY_LOG},
    {"ring-size", required_argument, NULL, OPT_RING_SIZE},
    {"auto-converge", required_argument, NULL, OPT_AUTO_CONVERGE},
    {"throttle-initial", required_argument, NULL, OPT_THR_INITIAL},
    {"throttle-increment", required_argument, NULL, OPT_THR_INCREMENT},
    {"throttle-max", required_argument, NULL, OPT_THR_MAX},
    {"max-bandwidth", required_argument, NULL, OPT_MAX_BW},
    {"switchover", required_argument, NULL, OPT_SWITCHOVER},
    {"stall-window", required_argument, NULL, OPT_STALL_WINDOW},
    {"postcopy-after", required_argument, NULL, OPT_PC_AFTER},
    {"postcopy-on-stall", no_argument, NULL, OPT_PC_STALL},
    {"ring-only", no_argument, NULL, OPT_RING_ONLY},
    {"ring-step", required_argument, NULL, OPT_RING_STEP},
    {"prealloc", no_argument, NULL, OPT_PREALLOC},
    {"max-mem", required_argument, NULL, OPT_MAX_MEM},
    {"max-vcpus", required_argument, NULL, OPT_MAX_VCPUS},
    {"send-direct", no_argument, NULL, OPT_SEND_DIRECT},
    {"same-backing", no_argument, NULL, OPT_SAME_BACKING},
    {"recover-timeout", required_argument, NULL, OPT_RECOVER_TIMEOUT},
    {NULL, 0, NULL, 0},
};

int
cli_parse_opts(int argc, char **argv, struct cli *c, unsigned scope, const char *cmd)
{
	uint64_t v;
	int opt, idx = -1;
	optind = 1;
	while ((opt = getopt_long(argc, argv, "h", long_opts, &idx)) != -1) {
		if (opt >= OPT_TO && opt < OPT_END && !(opt_for[opt - OPT_TO] & scope) && idx >= 0)
			return cli_bad_usage("--%s is not an option of %s (tern --help)",
			                     long_opts[idx].name, cmd);
		idx = -1;
		switch (opt) {
		case OPT_PREALLOC:
			c->recv.prealloc = 1;
			break;
		case OPT_TO:
			c->send.to = optarg;
			break;
		case OPT_GUEST:
			c->send.guest = optarg;
			c->recv.guest = optarg;
			break;
		case OPT_DOWNTIME:
			if (parse_duration_ms(optarg, &v) != 0 || v == 0 || v > 2000000)
				return cli_bad_usage("bad --downtime-limit '%s' (e.g. 300ms)",
				                     optarg);
			c->send.downtime_limit_ms = (uint32_t)v;
			break;
		case OPT_TIMEOUT:
			if (parse_duration_ms(optarg, &v) != 0 || v == 0)
				return cli_bad_usage("bad --timeout '%s' (e.g. 10m)", optarg);
			c->send.timeout_ms = v;
			break;
		case OPT_CONNS: {
			char *end;
			long n = strtol(optarg, &end, 10);
			if (*end != '\0' || n < 1 || n > TERN_MAX_CONNECTIONS)
				return cli_bad_usage("bad --connections '%s': must be 1..64",
				                     optarg);
			c->send.connections = (uint32_t)n;
			break;
		}
		case OPT_CONNS_MIN:
		case OPT_MAX_CONNS: {
			char *end;
			long n = strtol(optarg, &end, 10);
			if (*end != '\0' || n < 1 || n > TERN_MAX_CONNECTIONS)
				return cli_bad_usage(
				    opt == OPT_CONNS_MIN
				        ? "bad --connections-min '%s': must be 1..64"
				        : "bad --max-connections '%s': must be 1..64",
				    optarg);
			if (opt == OPT_CONNS_MIN)
				c->send.connections_min = (uint32_t)n;
			else
				c->recv.max_connections = (uint32_t)n;
			break;
		}
		case OPT_MAX_MEM: {
			uint64_t v;
			if (tern_parse_size(optarg, &v) != 0 || v < TERN_PAGE_SIZE)
				return cli_bad_usage("bad --max-mem '%s' (a size, at least 4K)",
				                     optarg);
			c->recv.max_mem = v;
			break;
		}
		case OPT_MAX_VCPUS: {
			char *end;
			long n = strtol(optarg, &end, 10);
			if (*end != '\0' || n < 1 || n > 256)
				return cli_bad_usage("bad --max-vcpus '%s': must be 1..256",
				                     optarg);
			c->recv.max_vcpus = (uint32_t)n;
			break;
		}
		case OPT_RING_ONLY:
			c->send.ring_only = 1;
			break;
		case OPT_PC_AFTER: {
			char *end;
			long n = strtol(optarg, &end, 10);
			if (*end != '\0' || n < 1 || n > 100000)
				return cli_bad_usage(
				    "bad --postcopy-after '%s': iterations, 1..100000", optarg);
			c->send.postcopy_after = (uint32_t)n;
			break;
		}
		case OPT_PC_STALL:
			c->send.postcopy_on_stall = 1;
			break;
		case OPT_RING_STEP: {
			char *end;
			long n = strtol(optarg, &end, 10);
			if (*end != '\0' || n < 1 || n > (1 << 24))
				return cli_bad_usage("bad --ring-step '%s': pages, 1..16777216",
				                     optarg);
			c->send.ring_step = (uint32_t)n;
			break;
		}
		case OPT_AUTO_CONVERGE:
			if (strcmp(optarg, "off") == 0)
				c->send.auto_converge = TERN_CONVERGE_OFF;
			else if (strcmp(optarg, "step") == 0)
				c->send.auto_converge = TERN_CONVERGE_STEP;
			else if (strcmp(optarg, "qemu") == 0)
				c->send.auto_converge = TERN_CONVERGE_QEMU;
			else if (strcmp(optarg, "rate") == 0)
				c->send.auto_converge = TERN_CONVERGE_RATE;
			else
				return cli_bad_usage(
				    "bad --auto-converge '%s': off, step, qemu or rate", optarg);
			break;
		case OPT_THR_INITIAL:
		case OPT_THR_INCREMENT:
		case OPT_THR_MAX: {
			char *end;
			long n = strtol(optarg, &end, 10);
			if (*end != '\0' || n < 1 || n > 99)
				return cli_bad_usage("bad throttle percentage '%s': 1..99", optarg);
			if (opt == OPT_THR_INITIAL)
				c->send.throttle_initial = (uint32_t)n;
			else if (opt == OPT_THR_INCREMENT)
				c->send.throttle_increment = (uint32_t)n;
			else
				c->send.throttle_max = (uint32_t)n;
			break;
		}
		case OPT_MAX_BW:
			if (tern_parse_size(optarg, &v) != 0 || v < 4096)
				return cli_bad_usage(
				    "bad --max-bandwidth '%s' (bytes/s, e.g. 100M)", optarg);
			c->send.max_bandwidth = v;
			break;
		case OPT_SWITCHOVER:
			if (strcmp(optarg, "strict") == 0)
				c->send.switchover_loose = 0;
			else if (strcmp(optarg, "loose") == 0)
				c->send.switchover_loose = 1;
			else
				return cli_bad_usage("bad --switchover '%s': strict or loose",
				                     optarg);
			break;
		case OPT_STALL_WINDOW:
			if (parse_duration_ms(optarg, &v) != 0 || v < 100 || v > 3600000)
				return cli_bad_usage("bad --stall-window '%s' (e.g. 5s)", optarg);
			c->send.stall_window_ms = (uint32_t)v;
			break;
		case OPT_DIRTY_LOG:
			if (strcmp(optarg, "bitmap") != 0 && strcmp(optarg, "ring") != 0)
				return cli_bad_usage("bad --dirty-log '%s': bitmap or ring",
				                     optarg);
			c->send.dirty_log = optarg;
			break;
		case OPT_RING_SIZE: {
			char *end;
			unsigned long n = strtoul(optarg, &end, 10);
			if (*end != '\0' || n < 16 || n > (1ul << 20) || (n & (n - 1)) != 0)
				return cli_bad_usage(
				    "bad --ring-size '%s': a power of two, 16..1048576", optarg);
			c->send.ring_size = (uint32_t)n;
			break;
		}
		case OPT_ZERO_PAGES:
			if (strcmp(optarg, "detect") == 0)
				c->send.zero_pages = TERN_ZERO_DETECT;
			else if (strcmp(optarg, "skip-unpopulated") == 0)
				c->send.zero_pages = TERN_ZERO_SKIP_UNPOPULATED;
			else if (strcmp(optarg, "off") == 0)
				c->send.zero_pages = TERN_ZERO_OFF;
			else
				return cli_bad_usage(
				    "bad --zero-pages '%s': detect, skip-unpopulated or off",
				    optarg);
			break;
		case OPT_ZERO_SCANNERS: {
			char *end;
			long n = strtol(optarg, &end, 10);
			if (*end != '\0' || n < 1 || n > 16)
				return cli_bad_usage("bad --zero-scanners '%s': must be 1..16",
				                     optarg);
			c->send.zero_scanners = (uint32_t)n;
			break;
		}
		case OPT_RECOVER_TIMEOUT:
			if (parse_duration_ms(optarg, &v) != 0 || v > 24 * 3600000ull)
				return cli_bad_usage("bad --recover-timeout '%s' (0 or up to 24h)",
				                     optarg);
			c->send.recover_timeout_ms = c->recv.recover_timeout_ms = (uint32_t)v;
			c->send.no_recover = c->recv.no_recover = v == 0;
			break;
		case OPT_IO_TIMEOUT:
			if (parse_duration_ms(optarg, &v) != 0 || v < 100 || v > 3600000)
				return cli_bad_usage("bad --io-timeout '%s' (100ms..1h)", optarg);
			c->send.io_timeout_ms = c->recv.io_timeout_ms = (uint32_t)v;
			break;
		case OPT_CHUNK:
			if (tern_parse_size(optarg, &v) != 0 || v < TERN_PAGE_SIZE ||
			    v > (32ull << 20) || v % TERN_PAGE_SIZE)
				return cli_bad_usage(
				    "bad --chunk-size '%s': 4K..32M, page multiple", optarg);
			c->send.chunk_size = v;
			break;
		case OPT_PERIOD:
			if (parse_duration_ms(optarg, &v) != 0 || v == 0 || v > 10000)
				return cli_bad_usage("bad --dirty-period '%s' (e.g. 30ms)", optarg);
			c->send.dirty_period_ms = (uint32_t)v;
			break;
		case OPT_VERIFY:
			c->send.verify = 1;
			break;
		case OPT_TLS_CREDS:
			c->send.tls_creds = c->recv.tls_creds = optarg;
			break;
		case OPT_TLS_PSK:
			c->send.tls_psk_file = c->recv.tls_psk_file = optarg;
			break;
		case OPT_TLS_HOSTNAME:
			c->send.tls_hostname = optarg;
			break;
		case OPT_INSECURE:
			c->recv.insecure = 1;
			break;
		case OPT_AUTH_REMOVED:
			return cli_bad_usage("%s",
			                     "--auth is gone: a secret on the command line is "
			                     "visible to every user; use --tls-psk-file FILE");
		case OPT_TRACE:
			c->send.trace_path = c->recv.trace_path = optarg;
			break;
		case OPT_JSON:
			c->json = 1;
			break;
		case OPT_LISTEN:
			c->recv.listen = optarg;
			break;
		case OPT_EXIT_AFTER:
			c->recv.exit_after_handoff = 1;
			break;
		case OPT_RUN_AFTER:
			if (parse_duration_ms(optarg, &v) != 0 || v == 0)
				return cli_bad_usage("bad --run-after '%s' (e.g. 1s)", optarg);
			c->recv.run_after_ms = v;
			break;
		case OPT_ACCEPT_TIMEOUT:
			if (parse_duration_ms(optarg, &v) != 0 || v == 0)
				return cli_bad_usage("bad --accept-timeout '%s' (e.g. 30s)",
				                     optarg);
			c->recv.accept_timeout_ms = v;
			break;
		case OPT_NO_POPULATE:
			c->recv.no_populate = 1;
			break;
		case OPT_SEND_DIRECT:
			c->send.send_direct = 1;
			break;
		case OPT_SAME_BACKING:
			c->recv.same_backing = 1;
			break;
		case OPT_READY_FD: {
			char *end;
			long n = strtol(optarg, &end, 10);
			if (*end != '\0' || n < 0 || n > 1 << 20)
				return cli_bad_usage("bad --ready-fd '%s'", optarg);
			c->recv.ready_fd = (int)n;
			break;
		}
		case OPT_HELP:
		case 'h':
			cli_usage(stdout);
			exit(0);
		default:
			return cli_bad_usage("%s", "unknown option");
		}
	}
	if (optind < argc)
		return cli_bad_usage("unexpected argument '%s'", argv[optind]);
	return 0;
}
