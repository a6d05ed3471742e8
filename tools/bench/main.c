/*
 * tern-bench: the project's benchmark driver (a separate program from the
 * tests, as in libuv).
 *
 *   tern-bench machine [--iperf-seconds N]
 *   tern-bench migrate [--guest SPEC] [--connections N] [--chunk-size S]
 *                      [--runs R] [--verify] [--tern PATH] [--no-baseline]
 *   tern-bench link | zero | dirtylog | trace | converge [options]
 *   tern-bench all
 *
 * Every performance figure tern claims comes from here, and is reported next
 * to this machine's own limits measured in the same invocation (memory
 * bandwidth, page-population costs, loopback TCP via iperf3), because on a
 * virtual machine those limits, not the wire, decide what is possible.
 * Results are one JSON object on stdout; progress goes to stderr.
 *
 * This file: the command table, the one option parser every subcommand
 * shares, the help, and `all`.
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kvm/guest.h"
#include "tern/tern.h"
#include "tools/bench/bench.h"

/* ---- options ---- */

/* Every option, with the bit a subcommand's entry uses to accept it. */
#define BENCH_OPTIONS(XX)                                                                          \
	XX(IPERF, "iperf-seconds", required_argument)                                              \
	XX(GUEST, "guest", required_argument)                                                      \
	XX(CONNS, "connections", required_argument)                                                \
	XX(CHUNK, "chunk-size", required_argument)                                                 \
	XX(RUNS, "runs", required_argument)                                                        \
	XX(VERIFY, "verify", no_argument)                                                          \
	XX(TERN, "tern", required_argument)                                                        \
	XX(NO_BASELINE, "no-baseline", no_argument)                                                \
	XX(SAME_BACKING, "same-backing", no_argument)                                              \
	XX(TIMEOUT, "timeout", required_argument)                                                  \
	XX(SIZE, "size", required_argument)                                                        \
	XX(STREAMS, "streams", required_argument)                                                  \
	XX(CHUNKS, "chunks", required_argument)                                                    \
	XX(NO_DELAY, "no-delay", no_argument)                                                      \
	XX(MODES, "modes", required_argument)                                                      \
	XX(SPARSE_MEM, "sparse-mem", required_argument)                                            \
	XX(SPARSE_DATA, "sparse-data", required_argument)                                          \
	XX(SIZES, "sizes", required_argument)                                                      \
	XX(TAKES, "takes", required_argument)                                                      \
	XX(INTERVAL, "interval-ms", required_argument)                                             \
	XX(PERIOD, "period-ms", required_argument)                                                 \
	XX(MEMORY, "memory", required_argument)                                                    \
	XX(MAXBW, "max-bandwidth", required_argument)                                              \
	XX(HELP, "help", no_argument)

enum {
#define XX(id, name, arg) OPT_##id,
	BENCH_OPTIONS(XX)
#undef XX
	    OPT_N
};

static const struct option bench_long_opts[] = {
#define XX(id, name, arg) {name, arg, NULL, 256 + OPT_##id},
    BENCH_OPTIONS(XX)
#undef XX
        {NULL, 0, NULL, 0},
};

#define O(id) (1u << OPT_##id)
/* migrate's options; all takes them too but --guest (it migrates its own). */
#define OPTS_MIGRATE                                                                               \
	(O(IPERF) | O(GUEST) | O(CONNS) | O(CHUNK) | O(RUNS) | O(VERIFY) | O(TERN) |               \
	 O(NO_BASELINE) | O(TIMEOUT) | O(SAME_BACKING))
/* The benchmarks of one aspect share their option set. */
#define OPTS_ASPECT                                                                                \
	(O(SIZE) | O(STREAMS) | O(CHUNKS) | O(RUNS) | O(IPERF) | O(TERN) | O(TIMEOUT) |            \
	 O(NO_DELAY) | O(MODES) | O(SPARSE_MEM) | O(SPARSE_DATA) | O(SIZES) | O(TAKES) |           \
	 O(INTERVAL) | O(PERIOD) | O(MAXBW) | O(MEMORY))

static int bench_all(const struct bench_cfg *cfg, json_t *report);

/* ---- the command table ---- */

struct bench_cmd {
	const char *name;
	bench_run_fn *run;
	unsigned opts;          /* the options it takes: O(...) bits */
	void (*usage)(FILE *f); /* its --help */
	int aspect;             /* one of the benchmarks `all` runs at small sizes */
};

static const struct bench_cmd bench_cmds[] = {
    {.name = "machine", .run = bench_machine, .opts = O(IPERF), .usage = bench_usage},
    {.name = "migrate", .run = bench_migrate, .opts = OPTS_MIGRATE, .usage = bench_usage},
    {.name = "link",
     .run = bench_link,
     .opts = OPTS_ASPECT,
     .usage = bench_aspect_usage,
     .aspect = 1},
    {.name = "zero",
     .run = bench_zero,
     .opts = OPTS_ASPECT,
     .usage = bench_aspect_usage,
     .aspect = 1},
    {.name = "dirtylog",
     .run = bench_dirtylog,
     .opts = OPTS_ASPECT,
     .usage = bench_aspect_usage,
     .aspect = 1},
    {.name = "tls",
     .run = bench_tls,
     .opts = OPTS_ASPECT,
     .usage = bench_aspect_usage,
     .aspect = 0},
    {.name = "dest",
     .run = bench_dest,
     .opts = OPTS_ASPECT | O(CHUNK),
     .usage = bench_aspect_usage,
     .aspect = 0},
    {.name = "trace",
     .run = bench_trace,
     .opts = OPTS_ASPECT,
     .usage = bench_aspect_usage,
     .aspect = 1},
    {.name = "converge",
     .run = bench_converge,
     .opts = OPTS_ASPECT | O(GUEST),
     .usage = bench_aspect_usage,
     .aspect = 1},
    {.name = "postcopy",
     .run = bench_postcopy,
     .opts = OPTS_ASPECT | O(GUEST),
     .usage = bench_aspect_usage,
     .aspect = 0},
    {.name = "all", .run = bench_all, .opts = OPTS_MIGRATE & ~O(GUEST), .usage = bench_usage},
};
#define BENCH_NCMDS (sizeof(bench_cmds) / sizeof(bench_cmds[0]))

static const struct bench_cmd *
bench_cmd_find(const char *name)
{
	for (size_t i = 0; i < BENCH_NCMDS; i++)
		if (strcmp(bench_cmds[i].name, name) == 0)
			return &bench_cmds[i];
	return NULL;
}

static int
bench_bad_usage(const char *fmt, const char *arg)
{
	fprintf(stderr, "tern-bench: ");
	fprintf(stderr, fmt, arg);
	fprintf(stderr, "\nTry 'tern-bench --help'.\n");
	return 2;
}

/* ---- parsing ---- */

/* Each subcommand's defaults; small: the sizes `all` runs it at. */
static void
bench_defaults(struct bench_cfg *x, const char *cmd, int small)
{
	memset(x, 0, sizeof(*x));
	x->size = small ? (512ull << 20) : (1ull << 30);
	x->streams[0] = 1, x->streams[1] = 2, x->streams[2] = 4, x->nstreams = 3;
	x->chunks[0] = 256 << 10, x->chunks[1] = 1 << 20, x->chunks[2] = 4 << 20, x->nchunks = 3;
	x->sizes[0] = 1ull << 30, x->sizes[1] = 4ull << 30, x->sizes[2] = 8ull << 30, x->nsizes = 3;
	x->runs = small && strcmp(cmd, "trace") != 0 ? 1 : 3;
	/* link's iperf3 runs; machine and migrate choose theirs when 0 */
	x->iperf_seconds = strcmp(cmd, "link") == 0 ? 2 : 0;
	x->timeout_s = 300;
	x->modes = "detect,skip-unpopulated,off";
	x->sparse_mem = 1ull << 40;
	x->sparse_data = small ? (512ull << 20) : (1ull << 30);
	x->takes = small ? 50 : 100;
	x->interval_ms = 50;
	x->period_ms = 30;
	x->dl_sparse = x->dl_populated = 1;
	if (strcmp(cmd, "trace") == 0)
		x->size = 1ull << 30;
	if (strcmp(cmd, "dest") == 0) {
		x->modes = "ready,unready";
		x->nsizes = 2; /* 1G, 4G */
		x->runs = 2;   /* A B B A */
	}
	if (strcmp(cmd, "converge") == 0)
		x->timeout_s = 40; /* the scenario's: a guest that never converges gives up */
}

static int
bench_int(const char *s, long lo, long hi, int *out)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi)
		return -EINVAL;
	*out = (int)v;
	return 0;
}

/* --memory: "sparse", "populated" or both, comma-separated. */
static int
bench_memory_list(const char *s, struct bench_cfg *x)
{
	x->dl_sparse = x->dl_populated = 0;
	while (*s != '\0') {
		size_t n = strcspn(s, ",");
		if (n == 6 && strncmp(s, "sparse", n) == 0)
			x->dl_sparse = 1;
		else if (n == 9 && strncmp(s, "populated", n) == 0)
			x->dl_populated = 1;
		else
			return -EINVAL;
		s += n + (s[n] == ',');
	}
	return x->dl_sparse || x->dl_populated ? 0 : -EINVAL;
}

static int
bench_list_sizes(const char *s, uint64_t *out, int max, int *n)
{
	char buf[256];
	snprintf(buf, sizeof(buf), "%s", s);
	*n = 0;
	for (char *save = NULL, *t = strtok_r(buf, ",", &save); t != NULL;
	     t = strtok_r(NULL, ",", &save)) {
		if (*n == max || tern_parse_size(t, &out[*n]) != 0 || out[*n] == 0)
			return -EINVAL;
		(*n)++;
	}
	return *n > 0 ? 0 : -EINVAL;
}

/* The options of migrate and all. */
static int
bench_opt_migrate(int opt, const char *arg, struct bench_cfg *x)
{
	uint64_t sz;
	int n;
	char why[256];
	struct tern_guest_config cfg;

	switch (opt) {
	case OPT_GUEST:
		if (tern_guest_spec_parse(arg, &cfg, why, sizeof(why)) != 0)
			return bench_bad_usage("bad --guest: %s", why);
		x->guest = arg;
		return 0;
	case OPT_CONNS:
		if (bench_int(arg, 1, TERN_MAX_CONNECTIONS, &n) != 0)
			return bench_bad_usage("bad --connections '%s': must be 1..64", arg);
		x->connections = arg;
		return 0;
	case OPT_CHUNK:
		if (tern_parse_size(arg, &sz) != 0 || sz < BENCH_PAGE || sz > (32ull << 20) ||
		    sz % BENCH_PAGE)
			return bench_bad_usage("bad --chunk-size '%s': 4K..32M, page multiple",
			                       arg);
		x->chunk_size = arg;
		return 0;
	case OPT_VERIFY:
		x->verify = 1;
		return 0;
	case OPT_NO_BASELINE:
		x->no_baseline = 1;
		return 0;
	case OPT_SAME_BACKING:
		x->same_backing = 1;
		return 0;
	}
	return 1; /* not one of these */
}

/* The options of the aspect benchmarks (link ... converge). */
static int
bench_opt_aspect(int opt, const char *arg, struct bench_cfg *x)
{
	uint64_t tmp[8];
	int n;

	switch (opt) {
	case OPT_SIZE:
		if (tern_parse_size(arg, &x->size) != 0 || x->size < (1u << 20) ||
		    x->size % (1u << 20))
			return bench_bad_usage("bad --size '%s': a multiple of 1M", arg);
		return 0;
	case OPT_STREAMS:
		if (bench_list_sizes(arg, tmp, 8, &n) != 0)
			return bench_bad_usage("bad --streams '%s': e.g. 1,2,4", arg);
		for (int i = 0; i < n; i++) {
			if (tmp[i] > 8)
				return bench_bad_usage("bad --streams '%s': 1..8 each", arg);
			x->streams[i] = (int)tmp[i];
		}
		x->nstreams = n;
		return 0;
	case OPT_CHUNKS:
		if (bench_list_sizes(arg, x->chunks, 8, &x->nchunks) != 0)
			return bench_bad_usage("bad --chunks '%s': e.g. 256K,1M,4M", arg);
		return 0;
	case OPT_SIZES:
		if (bench_list_sizes(arg, x->sizes, 8, &x->nsizes) != 0)
			return bench_bad_usage("bad --sizes '%s': e.g. 1G,4G,8G", arg);
		return 0;
	case OPT_SPARSE_MEM:
		if (tern_parse_size(arg, &x->sparse_mem) != 0 || x->sparse_mem == 0)
			return bench_bad_usage("bad --sparse-mem '%s'", arg);
		return 0;
	case OPT_SPARSE_DATA:
		if (tern_parse_size(arg, &x->sparse_data) != 0 || x->sparse_data == 0)
			return bench_bad_usage("bad --sparse-data '%s'", arg);
		return 0;
	case OPT_TAKES:
		if (bench_int(arg, 1, 100000, &x->takes) != 0)
			return bench_bad_usage("bad --takes '%s': 1..100000", arg);
		return 0;
	case OPT_INTERVAL:
		if (bench_int(arg, 1, 10000, &x->interval_ms) != 0)
			return bench_bad_usage("bad --interval-ms '%s': 1..10000", arg);
		return 0;
	case OPT_PERIOD:
		if (bench_int(arg, 1, 10000, &x->period_ms) != 0)
			return bench_bad_usage("bad --period-ms '%s': 1..10000", arg);
		return 0;
	case OPT_MEMORY:
		if (bench_memory_list(arg, x) != 0)
			return bench_bad_usage("bad --memory '%s': sparse, populated or both", arg);
		return 0;
	case OPT_NO_DELAY:
		x->no_delay = 1;
		return 0;
	case OPT_MAXBW:
		if (tern_parse_size(arg, &tmp[0]) != 0 || tmp[0] < 4096)
			return bench_bad_usage("bad --max-bandwidth '%s': e.g. 50M", arg);
		x->max_bandwidth = arg;
		return 0;
	case OPT_MODES:
		x->modes = arg;
		return 0;
	}
	return 1;
}

/* The options every subcommand may take. */
static int
bench_opt_common(int opt, const char *arg, struct bench_cfg *x)
{
	char secs[32];

	switch (opt) {
	case OPT_RUNS:
		if (bench_int(arg, 1, BENCH_MAX_RUNS, &x->runs) != 0)
			return bench_bad_usage("bad --runs '%s': 1..64", arg);
		return 0;
	case OPT_IPERF:
		if (bench_int(arg, 1, 600, &x->iperf_seconds) != 0)
			return bench_bad_usage("bad --iperf-seconds '%s': 1..600", arg);
		return 0;
	case OPT_TIMEOUT:
		/* "40" or "40s", as tern send takes it */
		snprintf(secs, sizeof(secs), "%s", arg);
		if (strlen(secs) > 1 && secs[strlen(secs) - 1] == 's')
			secs[strlen(secs) - 1] = '\0';
		if (bench_int(secs, 1, 86400, &x->timeout_s) != 0)
			return bench_bad_usage("bad --timeout '%s': seconds, 1..86400", arg);
		return 0;
	case OPT_TERN:
		x->tern = arg;
		return 0;
	}
	return 1;
}

static int
bench_parse(int argc, char **argv, const struct bench_cmd *cmd, struct bench_cfg *x)
{
	int opt;

	bench_defaults(x, cmd->name, 0);
	optind = 1;
	while ((opt = getopt_long(argc, argv, "h", bench_long_opts, NULL)) != -1) {
		if (opt == 'h' || opt == 256 + OPT_HELP) {
			cmd->usage(stdout);
			exit(0);
		}
		if (opt < 256 || opt >= 256 + OPT_N)
			return bench_bad_usage("%s", "unknown option");
		opt -= 256;
		if (!(cmd->opts & (1u << opt))) {
			char what[96];
			snprintf(what, sizeof(what), "'%s' does not take --%s", cmd->name,
			         bench_long_opts[opt].name);
			return bench_bad_usage("%s", what);
		}
		int rc = bench_opt_common(opt, optarg, x);
		if (rc == 1)
			rc = bench_opt_migrate(opt, optarg, x);
		if (rc == 1)
			rc = bench_opt_aspect(opt, optarg, x);
		if (rc != 0)
			return rc;
	}
	if (optind < argc)
		return bench_bad_usage("unexpected argument '%s'", argv[optind]);
	if (x->sparse_data > x->sparse_mem)
		return bench_bad_usage("--sparse-data larger than --sparse-mem%s", "");
	return 0;
}

/* dirname(/proc/self/exe)/tern: the tern built with this tern-bench. */
static int
bench_default_tern(char *out, size_t len)
{
	char self[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n <= 0)
		return -errno;
	self[n] = '\0';
	char *slash = strrchr(self, '/');
	if (slash == NULL)
		return -ENOENT;
	*slash = '\0';
	return snprintf(out, len, "%s/tern", self) < (int)len ? 0 : -ENAMETOOLONG;
}

/* ---- all ---- */

/* A subcommand's report inside `all`: "bench" names it, no "host". */
static json_t *
bench_section(const char *name)
{
	json_t *o = json_object();
	bench_set_str(o, "bench", name);
	return o;
}

static int
bench_all(const struct bench_cfg *cfg, json_t *report)
{
	struct bench_baseline b;
	int rc = 0;

	/* The migrations are compared with the limits just measured. */
	bench_machine_run(cfg, bench_set_obj(report, "machine"), &b);
	json_t *migrate = bench_set_arr(report, "migrate");
	const char *guests[2] = {BENCH_DEFAULT_GUEST, BENCH_DEMO_GUEST};
	for (int g = 0; g < 2; g++) {
		json_t *o = bench_section("migrate");
		(void)json_array_append_new(migrate, o);
		if (bench_migrate_set(cfg, guests[g], &b, o) != 0)
			rc = 1;
	}
	/* The aspect benchmarks at small sizes, so that all stays under ~12 min. */
	for (size_t i = 0; i < BENCH_NCMDS; i++) {
		const struct bench_cmd *c = &bench_cmds[i];
		struct bench_cfg x;
		if (!c->aspect)
			continue;
		bench_defaults(&x, c->name, 1);
		x.tern = cfg->tern;
		/* converge keeps its own 40 s: its off mode runs into it by design. */
		if (strcmp(c->name, "converge") != 0)
			x.timeout_s = cfg->timeout_s;
		json_t *o = bench_section(c->name);
		bench_set(report, c->name, o);
		if (c->run(&x, o) != 0)
			rc = 1;
	}
	return rc;
}

int
main(int argc, char **argv)
{
	char tern_path[PATH_MAX];
	struct bench_cfg cfg;

	if (argc < 2) {
		bench_usage(stderr);
		return 2;
	}
	const char *name = argv[1];
	if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0 || strcmp(name, "help") == 0) {
		bench_usage(stdout);
		fputs("\n", stdout);
		bench_aspect_usage(stdout);
		return 0;
	}
	const struct bench_cmd *cmd = bench_cmd_find(name);
	if (cmd == NULL)
		return bench_bad_usage("unknown command '%s' (machine, migrate, link, zero, "
		                       "dirtylog, trace, converge, all)",
		                       name);
	int rc = bench_parse(argc - 1, argv + 1, cmd, &cfg);
	if (rc != 0)
		return rc;
	if (cfg.tern == NULL) {
		if (bench_default_tern(tern_path, sizeof(tern_path)) != 0)
			return bench_bad_usage("%s",
			                       "cannot find tern next to tern-bench; use --tern");
		cfg.tern = tern_path;
	}
	if (strcmp(cmd->name, "machine") != 0 && access(cfg.tern, X_OK) != 0)
		return bench_bad_usage("no executable tern at '%s' (use --tern PATH)", cfg.tern);

	bench_load_start = bench_loadavg();
	struct sigaction sa = {.sa_handler = bench_on_signal};
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	json_t *report = json_object();
	if (report == NULL)
		return 1;
	bench_set_str(report, "bench", cmd->name);
	bench_set(report, "host", bench_host());
	rc = cmd->run(&cfg, report) == 0 ? 0 : 1;
	/* How busy the machine was at the end, the report's last member. */
	bench_set_num(report, "loadavg_1m_end", bench_loadavg(), 2);
	if (bench_print(report) != 0)
		rc = 1;
	json_decref(report);
	return rc;
}
