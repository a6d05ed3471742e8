/*
 * tern: the command-line front end of libtern.
 *
 *   tern send --to HOST:PORT --guest SPEC [options]
 *   tern receive --listen HOST:PORT [options]
 *   tern demo [options]
 *
 * A thin layer: it parses arguments, prints progress and the summary, and
 * maps the outcome to the exit status (0 completed, 1 migration failed,
 * 2 bad usage).
 */
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>
#include <nng/nng.h>
#include <nng/protocol/pipeline0/pull.h>

#include "kvm/guest.h"
#include "net/net.h"
#include "tern/tern.h"
#include "tools/cli_opts.h"
#include "tools/ctl.h"
#include "tools/vm.h"

static volatile int stop_requested;

/* Leak check: the process's threads and open fds when main starts, compared
 * with the same counts once the migration (runtime, actors, guest, sockets,
 * trace) is torn down, just before the summary; --json reports the
 * differences as leaked_threads and leaked_fds (0 expected).  Whatever was
 * open at start (stdio, --ready-fd) is in the baseline, and so are nng's
 * process-wide threads and fds (task queues, timer, resolver, poller),
 * started here by opening and closing a socket: they live as long as the
 * process whatever migrations do. */
static long base_threads = -1, base_fds = -1;

/* Entries of a /proc/self directory, not counting "." and "..", nor the
 * fd of the directory stream itself. */
static long
proc_count(const char *path)
{
	DIR *d = opendir(path);
	if (d == NULL)
		return -1;
	long n = 0;
	char self[16];
	snprintf(self, sizeof(self), "%d", dirfd(d));
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		if (strcmp(path, "/proc/self/fd") == 0 && strcmp(e->d_name, self) == 0)
			continue;
		n++;
	}
	closedir(d);
	return n;
}

static void
leaks_baseline(void)
{
	nng_socket s;
	if (nng_pull0_open(&s) == 0)
		nng_close(s);
	base_threads = proc_count("/proc/self/task");
	base_fds = proc_count("/proc/self/fd");
}

/* Prints the JSON object json with the leak counts added before its
 * closing brace; in text mode reports a leak on stderr only. */
static void
leaks_report(char *json)
{
	long t = proc_count("/proc/self/task"), f = proc_count("/proc/self/fd");
	long lt = t >= 0 && base_threads >= 0 ? t - base_threads : -1;
	long lf = f >= 0 && base_fds >= 0 ? f - base_fds : -1;
	if (json == NULL) {
		if (lt != 0 || lf != 0)
			fprintf(stderr,
			        "tern: leak check: %ld thread(s), %ld fd(s) more than at "
			        "start\n",
			        lt, lf);
		return;
	}
	json_t *o = json_loads(json, 0, NULL);
	if (o == NULL) {
		printf("%s\n", json); /* cannot happen: tern_stats_json's own output */
		return;
	}
	json_object_set_new(o, "leaked_threads", json_integer(lt));
	json_object_set_new(o, "leaked_fds", json_integer(lf));
	char *text = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
	printf("%s\n", text != NULL ? text : "{}");
	free(text);
	json_decref(o);
}

static void
on_signal(int sig)
{
	(void)sig;
	stop_requested = 1;
}

static void
human(char *buf, size_t len, double bytes)
{
	const char *u[] = {"B", "KiB", "MiB", "GiB", "TiB"};
	int i = 0;
	while (bytes >= 1024 && i < 4) {
		bytes /= 1024;
		i++;
	}
	snprintf(buf, len, "%.1f %s", bytes, u[i]);
}

/* Progress of `tern send`: on a terminal, one redrawn line with a bar for
 * the current pass; otherwise a plain line at most every 2 s and at each
 * new iteration, for logs. */
struct progress_view {
	int tty;
	uint32_t iteration;  /* the pass the figures below belong to */
	uint64_t pass_start; /* transferred_bytes when it began */
	uint64_t last_line_ms;
};

static void
on_progress(const struct tern_progress *p, void *arg)
{
	struct progress_view *v = arg;
	char t[32], r[32], bw[32], d[32], bar[24];
	if (!v->tty && strcmp(p->state, "setup") == 0)
		return; /* a log line has nothing to say before the first pass */
	int new_pass = p->iteration != v->iteration;

	if (new_pass) {
		v->iteration = p->iteration;
		v->pass_start = p->transferred_bytes;
	}
	uint64_t sent = p->transferred_bytes - v->pass_start;
	double pct = sent + p->remaining_bytes
	                 ? 100.0 * (double)sent / (double)(sent + p->remaining_bytes)
	                 : 0;
	human(t, sizeof(t), (double)p->transferred_bytes);
	human(r, sizeof(r), (double)p->remaining_bytes);
	human(bw, sizeof(bw), (double)p->bandwidth_bps);
	human(d, sizeof(d), (double)p->dirty_rate_pps * 4096);
	if (v->tty) {
		int fill = (int)(pct / 5);
		for (int i = 0; i < 20; i++)
			bar[i] = i < fill ? '#' : '-';
		bar[20] = '\0';
		fprintf(stderr,
		        "\r\033[K%-10.24s pass %-3u [%s] %3.0f%%  %s/s  eta %" PRIu64
		        " s  left %s  dirty %s/s  %" PRIu64 " s",
		        p->state, p->iteration, bar, pct, bw, (p->eta_ms + 999) / 1000, r, d,
		        p->elapsed_ms / 1000);
	} else {
		if (!new_pass && p->elapsed_ms < v->last_line_ms + 2000)
			return;
		v->last_line_ms = p->elapsed_ms;
		fprintf(stderr,
		        "tern: %s, pass %u %.0f%%, sent %s, left %s, %s/s, eta %" PRIu64
		        " ms, dirty %s/s, %" PRIu64 " ms\n",
		        p->state, p->iteration, pct, t, r, bw, p->eta_ms, d, p->elapsed_ms);
	}
	fflush(stderr);
}

static void
print_summary(const char *side, const struct tern_stats *s, int json)
{
	if (json) {
		char buf[16384];
		if (tern_stats_json(s, buf, sizeof(buf)) == 0)
			leaks_report(buf);
		fflush(stdout);
		return;
	}
	leaks_report(NULL);
	char b[32], p[32], bw[32];
	human(b, sizeof(b), (double)s->bytes_sent);
	human(p, sizeof(p), (double)s->payload_bytes);
	double secs = s->total_ms ? (double)s->total_ms / 1000.0 : 0;
	human(bw, sizeof(bw), secs > 0 ? (double)s->payload_bytes / secs : 0);
	printf("%s: %s\n", side, s->outcome);
	printf("  total time       %" PRIu64 " ms (guest build %" PRIu64 " ms, reported apart)\n",
	       s->total_ms, s->guest_build_ms);
	if (strcmp(side, "source") == 0) {
		printf("  downtime         %" PRIu64 " ms (expected %" PRIu64
		       " ms, vCPU pause %" PRIu64 " us)\n",
		       s->downtime_ms, s->expected_downtime_ms, s->pause_latency_us);
		printf("  iterations       %" PRIu64 " (final: %" PRIu64 " pages while paused)\n",
		       s->iterations, s->final_pages);
		printf("  device state     %" PRIu64 " bytes, saved in %" PRIu64 " ms\n",
		       s->state_bytes, s->state_save_ms);
		printf("  dirty rate       %" PRIu64 " pages/s\n", s->dirty_rate_pps);
		if (s->throttle_max_pct)
			printf("  throttle         %u%% at switchover (max %u%%)\n",
			       s->throttle_pct, s->throttle_max_pct);
		if (s->switchover_retries)
			printf("  switchover       %u attempt(s) resumed to avoid overshooting\n",
			       s->switchover_retries);
		if (s->stall_reason[0])
			printf("  stalled          %s\n", s->stall_reason);
	}
	if (s->postcopy) {
		printf("  postcopy         %" PRIu64 " pages stale at the switch, %" PRIu64
		       " placed on request%s%s\n",
		       s->postcopy_pages, s->postcopy_urgent_pages,
		       s->postcopy_reason[0] ? "; " : "", s->postcopy_reason);
		if (s->postcopy_faults)
			printf("  page faults      %" PRIu64 " (%" PRIu64 " zero), %" PRIu64
			       " requests, wait p50 %" PRIu64 " us, p99 %" PRIu64 " us\n",
			       s->postcopy_faults, s->postcopy_zero_pages, s->postcopy_requests,
			       s->postcopy_fault_p50_us, s->postcopy_fault_p99_us);
		if (s->postcopy_pauses)
			printf("  link lost        %" PRIu64 " time(s), paused %" PRIu64
			       " ms in all until it was back\n",
			       s->postcopy_pauses, s->postcopy_recover_ms);
	}
	printf("  bytes on wire    %s (%" PRIu64 " bytes)\n", b, s->bytes_sent);
	printf("  page data        %s, %" PRIu64 " pages sent, %" PRIu64
	       " zero pages announced, %" PRIu64 " untouched pages skipped\n",
	       p, s->pages_sent, s->pages_zero, s->pages_skipped);
	printf("  throughput       %s/s over the whole migration\n", bw);
	if (s->verified)
		printf("  verify           digests equal (hashing %" PRIu64
		       " ms, not in downtime)\n",
		       s->verify_ms);
	if (s->workload_ok)
		printf("  workload         %s after resume (progress %" PRIu64 " -> %" PRIu64 ")\n",
		       s->workload_ok > 0 ? "consistent and running" : "CORRUPT",
		       s->workload_progress_at_resume, s->workload_progress_after);
	fflush(stdout);
}

static int
run_send(struct cli *c)
{
	char err[512] = "";
	struct tern_stats st;
	struct progress_view view = {.tty = isatty(STDERR_FILENO), .iteration = UINT32_MAX};
	c->send.progress = on_progress;
	c->send.progress_arg = &view;
	/* SIGINT/SIGTERM cancel: the source guest runs again, exit 1. */
	c->send.stop_flag = &stop_requested;
	int rc = tern_migrate_send(&c->send, &st, err, sizeof(err));
	if (view.tty)
		fprintf(stderr, "\r\033[K");
	if (rc != 0) {
		fprintf(stderr, "tern: migration failed: %s\n", err[0] ? err : tern_strerror(rc));
		if (st.handoff_unknown)
			fprintf(stderr, "tern: the destination may be running the guest; the "
			                "source guest was left paused\n");
	}
	if (rc == 0 || c->json || strcmp(st.outcome, "aborted") == 0)
		print_summary("source", &st, c->json);
	return rc == 0 ? 0 : st.source_resume_failed ? 3 : 1;
}

static void
on_log(const char *line, void *arg)
{
	(void)arg;
	fprintf(stderr, "tern: %s\n", line);
}

static int
run_receive(struct cli *c)
{
	char err[512] = "";
	struct tern_stats st;
	c->recv.stop_flag = &stop_requested;
	c->recv.log = on_log;
	if (c->recv.listen != NULL && c->recv.tls_creds == NULL && c->recv.tls_psk_file == NULL &&
	    !c->recv.insecure && tern_net_is_loopback(c->recv.listen) == 0)
		return cli_bad_usage(
		    "refusing to listen on %s without TLS: give --tls-creds DIR or "
		    "--tls-psk-file FILE (or --insecure)",
		    c->recv.listen);
	int rc = tern_migrate_receive(&c->recv, &st, err, sizeof(err));
	if (rc != 0)
		fprintf(stderr, "tern: receive failed: %s\n", err[0] ? err : tern_strerror(rc));
	if (rc == 0 || c->json)
		print_summary("destination", &st, c->json);
	return rc == 0 ? 0 : 1;
}

static int
run_demo(struct cli *c, const char *self)
{
	int pfd[2];
	if (pipe(pfd) != 0)
		return 1;
	pid_t pid = fork();
	if (pid < 0) {
		perror("tern: fork");
		return 1;
	}
	if (pid == 0) {
		char fdarg[16];
		close(pfd[0]);
		snprintf(fdarg, sizeof(fdarg), "%d", pfd[1]);
		execl(self, self, "receive", "--listen", "127.0.0.1:0", "--ready-fd", fdarg,
		      "--run-after", "1s", "--accept-timeout", "30s", c->json ? "--json" : NULL,
		      (char *)NULL);
		perror("tern: exec");
		_exit(127);
	}
	close(pfd[1]);
	char line[32] = "";
	ssize_t n = read(pfd[0], line, sizeof(line) - 1);
	close(pfd[0]);
	int port = n > 0 ? atoi(line) : 0;
	if (port <= 0) {
		fprintf(stderr, "tern: the destination process did not start\n");
		kill(pid, SIGTERM);
		waitpid(pid, NULL, 0);
		return 1;
	}
	char to[64];
	snprintf(to, sizeof(to), "127.0.0.1:%d", port);
	c->send.to = to;
	if (c->send.guest == NULL)
		c->send.guest = DEMO_GUEST;
	c->send.verify = 1;
	if (!c->json)
		printf("demo: migrating %s\n      to a destination process (pid %d) on %s\n",
		       c->send.guest, (int)pid, to);
	fflush(stdout);
	int rc = run_send(c);
	int status = 0;
	if (rc != 0)
		kill(pid, SIGTERM);
	waitpid(pid, &status, 0);
	if (rc == 0 && !(WIFEXITED(status) && WEXITSTATUS(status) == 0))
		rc = 1;
	return rc;
}

int
main(int argc, char **argv)
{
	leaks_baseline();
	if (argc < 2) {
		cli_usage(stderr);
		return 2;
	}
	const char *cmd = argv[1];
	if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
		cli_usage(stdout);
		return 0;
	}
	/* Long-lived and client commands own their signals and options. */
	if (strcmp(cmd, "vm") == 0)
		return vm_main(argc - 1, argv + 1);
	if (strcmp(cmd, "ctl") == 0)
		return ctl_main(argc - 1, argv + 1);
	struct sigaction sa = {.sa_handler = on_signal};
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	struct cli c;
	memset(&c, 0, sizeof(c));
	tern_send_opts_init(&c.send);
	tern_recv_opts_init(&c.recv);
	unsigned scope = strcmp(cmd, "send") == 0      ? FOR_SEND
	                 : strcmp(cmd, "receive") == 0 ? FOR_RECV
	                 : strcmp(cmd, "demo") == 0    ? FOR_DEMO
	                                               : 0;
	if (scope == 0)
		return cli_bad_usage("unknown command '%s' (send, receive, demo, vm, ctl)", cmd);
	int rc = cli_parse_opts(argc - 1, argv + 1, &c, scope, cmd);
	if (rc != 0)
		return rc;
	if (c.send.ring_only && (c.send.dirty_log == NULL || strcmp(c.send.dirty_log, "ring") != 0))
		return cli_bad_usage("%s", "--ring-only needs --dirty-log ring");
	if (c.send.guest != NULL) {
		struct tern_guest_config cfg;
		char why[256];
		if (tern_guest_spec_parse(c.send.guest, &cfg, why, sizeof(why)) != 0)
			return cli_bad_usage("bad --guest: %s", why);
	}
	if (strcmp(cmd, "send") == 0) {
		if (c.send.to == NULL || c.send.guest == NULL)
			return cli_bad_usage("%s", "send needs --to HOST:PORT and --guest SPEC");
		return run_send(&c);
	}
	if (strcmp(cmd, "receive") == 0) {
		if (c.recv.listen == NULL)
			return cli_bad_usage("%s", "receive needs --listen HOST:PORT");
		if (c.recv.prealloc && c.recv.guest == NULL)
			return cli_bad_usage(
			    "%s", "--prealloc needs --guest SPEC (the guest to populate)");
		return run_receive(&c);
	}
	if (strcmp(cmd, "demo") == 0)
		return run_demo(&c, "/proc/self/exe");
	return cli_bad_usage("unknown command '%s' (send, receive, demo, vm, ctl)", cmd);
}
