/*
 * tern-trace: the viewer of tern's actor traces (`tern send|receive --trace`).
 *
 *   tern-trace summary FILE [FILE2]
 *   tern-trace export --perfetto FILE [FILE2] [-o OUT.json]
 *   tern-trace html FILE [FILE2] [-o REPORT.html]
 *   tern-trace dump FILE [FILE2]
 *
 * Exit status: 0 done, 1 a file could not be read or written (one line on
 * stderr says why), 2 bad usage.  docs/tern-trace.md has the details.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tern/error.h"
#include "tools/trace_viewer.h"

static void
usage(FILE *f)
{
	fprintf(
	    f,
	    "usage: tern-trace COMMAND [options] FILE [FILE2]\n"
	    "\n"
	    "Reads the actor traces written by `tern send --trace FILE` and `tern receive\n"
	    "--trace FILE`.  Give one trace, or the source and the destination trace of the\n"
	    "same migration (either order): the two are merged onto the source's clock, the\n"
	    "destination shifted by the clock offset the source measured in the connection\n"
	    "handshake (counter peer_clock_offset_ns), or by the headers' wall clocks when the\n"
	    "trace lacks it.  A truncated trace (the process was killed) shows what it holds.\n"
	    "\n"
	    "commands:\n"
	    "  summary FILE [FILE2]        terminal report: phases and their durations, the\n"
	    "                              switchover step by step (pause, final harvest, final\n"
	    "                              send, state, verify, destination resume), iterations\n"
	    "                              (dirty pages, bytes, duration, bandwidth), connections\n"
	    "                              (chunks, bytes, throughput), per-actor message counts\n"
	    "                              and handling time (median, p99, max), abnormal exits\n"
	    "  export --perfetto FILE [FILE2] [-o OUT.json]\n"
	    "                              Chrome trace-event JSON for ui.perfetto.dev or\n"
	    "                              chrome://tracing: a process per side, a track per\n"
	    "                              actor (conn-send N is connection N), slices for "
	    "message\n"
	    "                              handling, flow arrows from each send to its receipt,\n"
	    "                              chunks in flight per connection, counters (dirty rate,\n"
	    "                              remaining bytes, bandwidth, per-connection throughput,\n"
	    "                              throttle %%), instants for state changes and exits\n"
	    "  html FILE [FILE2] [-o REPORT.html]\n"
	    "                              one self-contained HTML page (no network needed): a\n"
	    "                              timeline of phases, iterations and actors, and plots "
	    "of\n"
	    "                              dirty rate, remaining bytes, throughput per connection\n"
	    "                              and throttle %%; hover for values, drag to zoom,\n"
	    "                              double-click to reset\n"
	    "  dump FILE [FILE2]           every record as one line of text, merged and sorted\n"
	    "\n"
	    "options:\n"
	    "  -o, --output FILE           where export/html write (default: standard output)\n"
	    "  -h, --help                  this text\n"
	    "\n"
	    "exit status: 0 done, 1 a file is not a trace or cannot be read/written, 2 bad "
	    "usage\n");
}

static int
bad_usage(const char *fmt, const char *arg)
{
	fprintf(stderr, "tern-trace: ");
	fprintf(stderr, fmt, arg);
	fprintf(stderr, " (tern-trace --help)\n");
	return 2;
}

int
tv_dump(const struct tv_model *m, FILE *out)
{
	static const char *kinds[] = {"?",     "SPAWN", "SEND",    "RECV",
	                              "STATE", "EXIT",  "COUNTER", "FAULT"};
	for (size_t i = 0; i < m->nrecs; i++) {
		const struct tv_rec *r = &m->recs[i];
		const struct tv_actor *a = &m->actors[r->actor];
		fprintf(out, "%12.6f %s %-7s %-16s", (double)r->t / 1e6, tv_side_name(m, r->file),
		        kinds[r->kind <= 7 ? r->kind : 0], a->label);
		switch (r->kind) {
		case TERN_TRACE_SEND:
		case TERN_TRACE_RECV:
			fprintf(out, " %s seq %" PRIu64 " %s #%u", tern_msg_name(r->type), r->seq,
			        r->kind == TERN_TRACE_SEND ? "to" : "from", r->peer);
			if (r->re)
				fprintf(out, " re %" PRIu64, r->re);
			if (r->kind == TERN_TRACE_RECV && r->value)
				fprintf(out, " handled %" PRIu64 " ns", r->value);
			break;
		case TERN_TRACE_COUNTER: {
			double v;
			memcpy(&v, &r->value, sizeof(v));
			fprintf(out, " %s = %.17g", tv_str(m, r->text), v);
			break;
		}
		case TERN_TRACE_EXIT:
			fprintf(out, " reason %" PRIu64 " %s", r->value, tv_str(m, r->text));
			break;
		default:
			fprintf(out, " %s", tv_str(m, r->text));
		}
		fputc('\n', out);
	}
	return ferror(out) ? -EIO : 0;
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"output", required_argument, NULL, 'o'},
	    {"perfetto", no_argument, NULL, 'p'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	const char *outpath = NULL;
	int perfetto = 0, c;

	if (argc < 2)
		return bad_usage("%s", "a command is needed");
	if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0 ||
	    strcmp(argv[1], "help") == 0) {
		usage(stdout);
		return 0;
	}
	const char *cmd = argv[1];
	if (strcmp(cmd, "summary") != 0 && strcmp(cmd, "export") != 0 && strcmp(cmd, "html") != 0 &&
	    strcmp(cmd, "dump") != 0)
		return bad_usage("unknown command '%s'", cmd);
	optind = 2;
	while ((c = getopt_long(argc, argv, "o:h", longopts, NULL)) != -1) {
		switch (c) {
		case 'o':
			outpath = optarg;
			break;
		case 'p':
			perfetto = 1;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			return 2; /* getopt said why */
		}
	}
	int nfiles = argc - optind;
	if (nfiles < 1 || nfiles > TV_MAX_FILES)
		return bad_usage("%s", "give one trace file, or the source and destination traces");
	if (strcmp(cmd, "export") == 0 && !perfetto)
		return bad_usage("%s", "export needs a format: --perfetto");
	if (perfetto && strcmp(cmd, "export") != 0)
		return bad_usage("--perfetto belongs to export, not %s", cmd);
	if (outpath != NULL && (strcmp(cmd, "summary") == 0 || strcmp(cmd, "dump") == 0))
		return bad_usage("%s writes to standard output: no -o", cmd);

	struct tv_model m;
	char err[512];
	if (tv_load(&m, (const char *const *)&argv[optind], nfiles, err, sizeof(err)) != 0) {
		fprintf(stderr, "tern-trace: %s\n", err);
		tv_free(&m);
		return 1;
	}
	FILE *out = stdout;
	if (outpath != NULL && strcmp(outpath, "-") != 0 && (out = fopen(outpath, "w")) == NULL) {
		fprintf(stderr, "tern-trace: %s: %s\n", outpath, strerror(errno));
		tv_free(&m);
		return 1;
	}
	int rc;
	if (strcmp(cmd, "summary") == 0)
		rc = tv_summary(&m, out);
	else if (strcmp(cmd, "export") == 0)
		rc = tv_perfetto(&m, out);
	else if (strcmp(cmd, "html") == 0)
		rc = tv_html(&m, out);
	else
		rc = tv_dump(&m, out);
	if (fflush(out) != 0 && rc == 0)
		rc = -errno;
	if (out != stdout && fclose(out) != 0 && rc == 0)
		rc = -errno;
	tv_free(&m);
	if (rc != 0) {
		fprintf(stderr, "tern-trace: writing %s: %s\n", outpath ? outpath : "output",
		        tern_strerror(rc));
		return 1;
	}
	return 0;
}
