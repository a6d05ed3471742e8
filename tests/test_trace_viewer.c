/*
 * tern-trace on traces of real migrations: the tern CLI migrates a simvm
 * guest between two processes with --trace on both sides (once completing,
 * once with the coordinator killed, once with the sender SIGKILLed and its
 * trace cut mid-record), then summary, export --perfetto and html run on the
 * traces.  The HTML report is loaded in headless Chromium when
 * /usr/bin/chromium exists: no uncaught errors, the plots drawn from the
 * trace's data, and a screenshot next to this test binary.
 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <libgen.h>
#include <sys/stat.h>

#include "messages/trace.h"
#include "tests/proc.h"

#define GUEST "simvm:mem=256M,vcpus=2,fill=random,workload=memtouch:ws=64M,rate=100M"
#define CHROMIUM "/usr/bin/chromium"

static char dir[64];

static void
tv_setup(void)
{
	snprintf(dir, sizeof(dir), "/tmp/tern-trace-test-XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
}

static void
tv_teardown(void)
{
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (dir[0] != '\0' && system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", dir);
}

/* tern-trace is built next to tern. */
#define TRACE_TOOL proc_tool("tern-trace")

static char *
in_dir(const char *name)
{
	static char bufs[8][128];
	static int next;
	char *b = bufs[next++ % 8];
	snprintf(b, sizeof(bufs[0]), "%s/%s", dir, name);
	return b;
}

/* Migrates GUEST with both sides traced into dir/src.trace, dir/dst.trace.
 * fault: TERN_FAULT for the sender (NULL: none), which must fire.  Returns
 * the sender's exit code. */
static int
migrate(const char *conns, const char *fault)
{
	struct mig m;
	char *rx[] = {"--exit-after-handoff", "--trace", in_dir("dst.trace"), NULL};
	char *tx[] = {"--guest",       GUEST,         "--trace", in_dir("src.trace"),
	              "--connections", (char *)conns, NULL};
	mig_receive(&m, NULL, rx);
	mig_send(&m, fault, tx);
	mig_wait(&m);
	if (fault != NULL)
		mig_assert_fired(&m, "source", fault);
	return proc_exit_code(&m.s);
}

static size_t
count(const char *s, const char *what)
{
	size_t n = 0;
	for (const char *p = s; (p = strstr(p, what)) != NULL; p += strlen(what))
		n++;
	return n;
}

static char *
slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "r");
	cr_assert_not_null(f, "cannot open %s", path);
	fseek(f, 0, SEEK_END);
	long n = ftell(f);
	fseek(f, 0, SEEK_SET);
	char *b = malloc((size_t)n + 1);
	cr_assert_not_null(b);
	cr_assert_eq(fread(b, 1, (size_t)n, f), (size_t)n);
	b[n] = '\0';
	fclose(f);
	if (len != NULL)
		*len = (size_t)n;
	return b;
}

/* Whether s is one JSON text (RFC 8259), nothing but white space after it:
 * jansson parses it (the project's JSON library, not a hand-written one). */
static bool
is_json(const char *s, char *why, size_t len)
{
	json_error_t err;
	json_t *v = json_loads(s, 0, &err);
	if (v == NULL)
		snprintf(why, len, "line %d column %d: %s", err.line, err.column, err.text);
	bool ok = v != NULL;
	json_decref(v);
	return ok;
}

static void
check_html_in_chromium(const char *html)
{
	if (access(CHROMIUM, X_OK) != 0) {
		cr_skip_test("%s is not installed (apt-get install chromium): the HTML report "
		             "was written but not rendered",
		             CHROMIUM);
	}
	char url[160], profile[96], shot[600], size[] = "--window-size=1400,1200";
	snprintf(url, sizeof(url), "file://%s", html);
	snprintf(profile, sizeof(profile), "--user-data-dir=%s", in_dir("chromium-profile"));
	char self[512];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	cr_assert_gt(n, 0);
	self[n] = '\0';
	char png[560];
	snprintf(png, sizeof(png), "%s/trace-report.png", dirname(self));
	snprintf(shot, sizeof(shot), "--screenshot=%s", png);
	struct proc p;
	/* Headless, and quiet: nothing fetched, nothing updated. */
	char *chromium[] = {CHROMIUM,
	                    "--headless",
	                    "--no-sandbox",
	                    "--disable-gpu",
	                    "--disable-quic",
	                    "--no-first-run",
	                    "--disable-background-networking",
	                    "--disable-component-update",
	                    "--disable-sync",
	                    profile,
	                    size,
	                    NULL};
	char *dom_args[] = {"--enable-logging=stderr", "--v=0", "--dump-dom", url, NULL};
	char *dom[24];
	args_join(dom, 24, chromium, dom_args);
	cr_assert_eq(proc_run(&p, dom, 60000), 0, "chromium failed: %s", p.errbuf);
	cr_assert_null(strstr(p.errbuf, "Uncaught"), "the report has script errors:\n%s", p.errbuf);
	cr_assert_not_null(strstr(p.outbuf, "data-plots-drawn=\"4\""), "plots not drawn");
	/* dirty rate, remaining bytes and throughput come from this trace. */
	cr_assert(strstr(p.outbuf, "data-plots-with-data=\"3\"") != NULL ||
	              strstr(p.outbuf, "data-plots-with-data=\"4\"") != NULL,
	          "the plots have no data");
	cr_assert_null(strstr(p.outbuf, "data-slices-drawn=\"0\""));
	cr_assert_not_null(strstr(p.outbuf, "data-slices-drawn=\""), "timeline not drawn");
	unlink(png);
	char *shot_args[] = {"--hide-scrollbars", shot, url, NULL};
	char *shotv[24];
	args_join(shotv, 24, chromium, shot_args);
	cr_assert_eq(proc_run(&p, shotv, 60000), 0, "chromium screenshot failed: %s", p.errbuf);
	struct stat st;
	cr_assert_eq(stat(png, &st), 0, "no screenshot at %s", png);
	cr_assert_gt(st.st_size, 20000, "the screenshot is nearly empty");
	fprintf(stderr, "trace report screenshot: %s\n", png);
	cr_log_info("trace report screenshot: %s", png);
}

Test(trace_viewer, real_migration, .init = tv_setup, .fini = tv_teardown, .timeout = 120)
{
	cr_assert_eq(migrate("2", NULL), 0, "the migration failed");
	char *src = in_dir("src.trace"), *dst = in_dir("dst.trace");
	struct proc p;

	char *sum[] = {TRACE_TOOL, "summary", src, dst, NULL};
	cr_assert_eq(proc_run(&p, sum, 30000), 0, "summary failed: %s", p.errbuf);
	const char *want[] = {"Phases (src coordinator)",
	                      "setup",
	                      "bulk",
	                      "switchover",
	                      "completed",
	                      "Phases (dst receiver)",
	                      "resumed",
	                      "pause vCPUs",
	                      "final harvest",
	                      "final send",
	                      "destination resume",
	                      "destination resumed",
	                      "Iterations",
	                      "src conn-send 1",
	                      "median",
	                      "p99",
	                      "handshake (peer_clock_offset_ns)"};
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
		cr_expect_not_null(strstr(p.outbuf, want[i]), "summary lacks '%s':\n%s", want[i],
		                   p.outbuf);
	cr_expect_null(strstr(p.outbuf, "killed"), "a clean migration shows a kill:\n%s", p.outbuf);
	/* The actor table counts what the trace holds. */
	const char *row = strstr(p.outbuf, "\n  src coordinator ");
	cr_assert_not_null(row, "%s", p.outbuf);
	cr_expect_eq(strtoull(row + strlen("\n  src coordinator "), NULL, 10),
	             (unsigned long long)trace_count(src, TERN_TRACE_SEND, NULL, "coordinator"),
	             "%s", p.outbuf);

	char *json = in_dir("out.json");
	char *exp[] = {TRACE_TOOL, "export", "--perfetto", src, dst, "-o", json, NULL};
	cr_assert_eq(proc_run(&p, exp, 30000), 0, "export failed: %s", p.errbuf);
	size_t len;
	char *j = slurp(json, &len);
	cr_assert_eq(strncmp(j, "{\"traceEvents\":[", 16), 0);
	char why[256];
	/* One JSON text: a syntax error or garbage after it fails to load. */
	cr_assert(is_json(j, why, sizeof(why)), "the export is not JSON: %s", why);
	size_t recv = (size_t)(trace_count(src, TERN_TRACE_RECV, NULL, NULL) +
	                       trace_count(dst, TERN_TRACE_RECV, NULL, NULL));
	cr_expect_eq(count(j, "\"cat\":\"msg\""), recv, "one slice per RECV record");
	size_t flows = count(j, "\"ph\":\"s\"");
	cr_expect_eq(flows, count(j, "\"ph\":\"f\""));
	cr_expect_gt(flows, recv / 2, "most messages have their flow arrow");
	cr_expect_leq(flows, (size_t)(trace_count(src, TERN_TRACE_SEND, NULL, NULL) +
	                              trace_count(dst, TERN_TRACE_SEND, NULL, NULL)));
	cr_expect_gt(count(j, "\"name\":\"dirty_rate_pps (dirty-log)\""), 0);
	cr_expect_gt(count(j, "\"name\":\"throughput MB/s (conn-send 1)\""), 0);
	cr_expect_gt(count(j, "\"name\":\"state: switchover\""), 0);
	cr_expect_gt(count(j, "\"name\":\"state: resumed\""), 0);
	free(j);

	char *html = in_dir("report.html");
	char *h[] = {TRACE_TOOL, "html", src, dst, "-o", html, NULL};
	cr_assert_eq(proc_run(&p, h, 30000), 0, "html failed: %s", p.errbuf);
	char *page = slurp(html, NULL);
	cr_expect_null(strstr(page, "http://"), "the report must not load anything");
	cr_expect_null(strstr(page, "https://"), "the report must not load anything");
	cr_expect_null(strstr(page, "@TRACE_DATA@"), "the data was not spliced in");
	free(page);
	check_html_in_chromium(html);
}

Test(trace_viewer, killed_coordinator, .init = tv_setup, .fini = tv_teardown, .timeout = 120)
{
	cr_assert_neq(migrate("2", "coordinator@state:bulk"), 0, "the coordinator was not killed");
	struct proc p;
	char *sum[] = {TRACE_TOOL, "summary", in_dir("src.trace"), in_dir("dst.trace"), NULL};
	cr_assert_eq(proc_run(&p, sum, 30000), 0, "summary failed: %s", p.errbuf);
	cr_expect_not_null(strstr(p.outbuf, "src coordinator"), "%s", p.outbuf);
	cr_expect_not_null(strstr(p.outbuf, "killed: killed"), "the kill is not reported:\n%s",
	                   p.outbuf);
	cr_expect_not_null(strstr(p.outbuf, "Switchover: not reached"), "%s", p.outbuf);
	char *h[] = {TRACE_TOOL,       "html", in_dir("src.trace"), in_dir("dst.trace"), "-o",
	             in_dir("r.html"), NULL};
	cr_expect_eq(proc_run(&p, h, 30000), 0, "html failed: %s", p.errbuf);
}

Test(trace_viewer, sigkilled_sender_truncated, .init = tv_setup, .fini = tv_teardown,
     .timeout = 120)
{
	/* The sender SIGKILLs itself mid-bulk (at its 20th chunk), at an event
	 * rather than once its trace has grown large enough. */
	cr_assert_eq(migrate("2", "process@chunk#20"), 128 + SIGKILL, "the sender was not killed");
	char *src = in_dir("src.trace");
	struct stat st;
	cr_assert_eq(stat(src, &st), 0);
	/* Cut the last record in half, as a crash in the middle of write(2)
	 * could (a single write makes it rare, not impossible). */
	cr_assert_eq(truncate(src, st.st_size - 7), 0);
	size_t recs = (size_t)trace_count(src, TERN_TRACE_SPAWN, NULL, NULL);
	cr_assert_gt(recs, 0, "the killed sender's trace holds nothing");
	struct proc p;
	char *sum[] = {TRACE_TOOL, "summary", src, NULL};
	cr_assert_eq(proc_run(&p, sum, 30000), 0, "summary failed: %s", p.errbuf);
	cr_expect_not_null(strstr(p.outbuf, "no exit recorded"), "%s", p.outbuf);
	cr_expect_not_null(strstr(p.outbuf, "(the trace ends in this phase)"), "%s", p.outbuf);
	char *exp[] = {TRACE_TOOL, "export", "--perfetto", src, "-o", in_dir("k.json"), NULL};
	cr_assert_eq(proc_run(&p, exp, 30000), 0, "export failed: %s", p.errbuf);
	char *j = slurp(in_dir("k.json"), NULL);
	char why[256];
	cr_expect(is_json(j, why, sizeof(why)), "the export of a truncated trace is not JSON: %s",
	          why);
	free(j);
}

Test(trace_viewer, errors_and_usage, .init = tv_setup, .fini = tv_teardown)
{
	struct proc p;
	FILE *f = fopen(in_dir("not.trace"), "w");
	cr_assert_not_null(f);
	fputs("hello, I am not a trace\n", f);
	fclose(f);
	char *bad[] = {TRACE_TOOL, "summary", in_dir("not.trace"), NULL};
	cr_expect_eq(proc_run(&p, bad, 10000), 1);
	cr_expect_not_null(strstr(p.errbuf, "not a tern trace file"), "%s", p.errbuf);
	cr_expect_eq(count(p.errbuf, "\n"), 1, "one line, got: %s", p.errbuf);
	char *missing[] = {TRACE_TOOL, "html", in_dir("none.trace"), "-o", in_dir("x.html"), NULL};
	cr_expect_eq(proc_run(&p, missing, 10000), 1);
	char *none[] = {TRACE_TOOL, NULL};
	cr_expect_eq(proc_run(&p, none, 10000), 2);
	char *unknown[] = {TRACE_TOOL, "frobnicate", "x", NULL};
	cr_expect_eq(proc_run(&p, unknown, 10000), 2);
	char *noformat[] = {TRACE_TOOL, "export", in_dir("not.trace"), NULL};
	cr_expect_eq(proc_run(&p, noformat, 10000), 2);
	char *three[] = {TRACE_TOOL, "summary", "a", "b", "c", NULL};
	cr_expect_eq(proc_run(&p, three, 10000), 2);
	char *help[] = {TRACE_TOOL, "--help", NULL};
	cr_expect_eq(proc_run(&p, help, 10000), 0);
	cr_expect_not_null(strstr(p.outbuf, "export --perfetto"));
	cr_expect_not_null(strstr(p.outbuf, "peer_clock_offset_ns"));
}
