/*
 * tern-trace internals: one or two trace files loaded into one model on one
 * time line, the analysis shared by every output (phases, iterations,
 * connections, counter series: trace_analysis.h), and the three outputs (summary, Perfetto
 * JSON, HTML report).  Not a public header: only tools/tern-trace.c and
 * tools/trace_*.c include it.
 */
#ifndef TERN_TOOLS_TRACE_VIEWER_H
#define TERN_TOOLS_TRACE_VIEWER_H

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "messages/trace.h"

#define TV_MAX_FILES 2

struct tv_file {
	const char *path;
	struct tern_trace_header hdr;
	uint64_t nrecs;
	/* This file's CLOCK_MONOTONIC minus the common (source) clock. */
	int64_t offset_ns;
	const char *offset_from; /* how offset_ns was found, for the report */
	char offset_note[160];
};

/* One record, compacted: the model may hold millions. */
struct tv_rec {
	int64_t t; /* common clock, ns since tv_model.t0 */
	uint64_t value, seq, re;
	uint32_t kind, actor; /* actor: index into tv_model.actors */
	uint32_t peer;        /* the peer's raw id in the same file */
	uint32_t type;        /* message type */
	uint32_t text;        /* index into the string table */
	uint8_t file;
};

struct tv_actor {
	uint8_t file;
	uint32_t id;
	char name[64];  /* descriptor name, "coordinator" */
	char label[96]; /* what a person reads: "conn-send 2", "dst receiver" */
	int conn;       /* connection index for conn-send / conn-recv, else -1 */
	int spawned, exited;
	int64_t first_t, last_t, spawn_t, exit_t;
	uint64_t exit_reason;
	uint32_t exit_why;
	uint64_t nsend, nrecv;
};

/* A named counter of one actor, in time order. */
struct tv_series {
	uint32_t actor, name; /* name: string index */
	size_t n, cap;
	int64_t *t;
	double *v;
};

struct tv_phase {
	uint32_t actor;
	uint32_t name;
	int64_t start, end;
	int open; /* no later state or exit: the trace ends in it */
};

struct tv_iter {
	uint32_t n;
	int64_t start, end;
	uint64_t bytes, chunks, dirty_taken;
	int have_bytes, have_taken, final, complete;
};

struct tv_conn {
	uint32_t actor;
	int64_t first, last; /* first chunk taken, last chunk acknowledged */
	uint64_t chunks, bytes;
	int have_bytes;
	struct tv_series rate; /* derived throughput, bytes/s */
};

struct tv_model {
	struct tv_file files[TV_MAX_FILES];
	int nfiles;
	int src, dst;    /* file index of each side, -1 when absent */
	int64_t t0_mono; /* common-clock ns of t = 0 */
	int64_t span;    /* last record's t */
	struct tv_rec *recs;
	size_t nrecs, caprecs;
	struct tv_actor *actors;
	uint32_t nactors, capactors;
	char **strs;
	uint32_t nstrs, capstrs;
	uint32_t *strhash; /* open addressing, capstrhash slots, 0 = empty */
	uint32_t capstrhash;

	/* analysis (tv_analyse) */
	struct tv_series *series;
	size_t nseries;
	struct tv_phase *phases;
	size_t nphases;
	struct tv_iter *iters;
	size_t niters;
	struct tv_conn *conns;
	size_t nconns;
	int64_t coordinator, receiver; /* actor index or -1 */
};

/* tv_load reads paths (1 or 2 trace files) into m and analyses them.  On
 * failure err holds one line saying why.  Returns 0, TERN_EMSG for a file
 * that is not a trace, or another negative code. */
int tv_load(struct tv_model *m, const char *const *paths, int n, char *err, size_t errlen);

/* tv_free releases everything tv_load allocated; safe on a zeroed model. */
void tv_free(struct tv_model *m);

/* tv_str returns string idx of the model's string table ("" for 0). */
const char *tv_str(const struct tv_model *m, uint32_t idx);

/* tv_bits_double reads a counter record's value (a double's bits). */
static inline double
tv_bits_double(uint64_t bits)
{
	double d;
	memcpy(&d, &bits, sizeof(d));
	return d;
}

/* tv_side_name is "src" or "dst" for file f. */
const char *tv_side_name(const struct tv_model *m, int f);

/* The analysis (tools/trace_analysis.c). */
#include "tools/trace_analysis.h"

/* The outputs; each returns 0 or -errno of a failed write. */
int tv_summary(const struct tv_model *m, FILE *out);
int tv_perfetto(const struct tv_model *m, FILE *out);
int tv_html(const struct tv_model *m, FILE *out);
int tv_dump(const struct tv_model *m, FILE *out);

/* What the two JSON writers share (tools/trace_json.c).  The json_t
 * arguments are jansson's; NULL stands for a value that could not be built. */
struct json_t;

/* tv_json_put writes v compactly (with '<', '>' and '&' escaped, so the
 * output may sit inside an HTML <script>) and releases it: 0, -ENOMEM when
 * v is NULL, -EIO when the write failed. */
int tv_json_put(FILE *out, struct json_t *v);

/* tv_json_first keeps the first error of a sequence of writes. */
int tv_json_first(int rc, int next);

/* tv_json_num: a measured value (integers stay integers, others keep 6
 * significant digits, NaN and infinities become 0). */
struct json_t *tv_json_num(double v);

/* tv_json_int: a record's unsigned counter, capped at INT64_MAX. */
struct json_t *tv_json_int(uint64_t v);

/* A chunk in flight: taken from the queue by a connection's actor until its
 * CHUNK_DONE (acked), or until the actor's last record. */
struct tv_flight {
	uint32_t actor;
	int64_t start, end;
	int acked;
};

/* tv_flights lists every chunk in flight, connection by connection (n of
 * them); NULL when out of memory.  The caller frees it. */
struct tv_flight *tv_flights(const struct tv_model *m, size_t *n);

#endif /* TERN_TOOLS_TRACE_VIEWER_H */
