/*
 * tern-trace export --perfetto: the Chrome trace-event format (the "JSON
 * Array/Object Format" document), which ui.perfetto.dev and chrome://tracing
 * both load.  A RECV record is stamped when the handler returned and carries
 * the handling time, so its slice starts at t - value.  Flow arrows pair a
 * SEND with the RECV of the same seq (sequence numbers are unique per
 * process).
 *
 * A model may hold millions of records, so the events are not built into
 * one tree: each is built and encoded by jansson on its own (tv_json_put) and
 * only the fixed envelope around the array is written here.
 */
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tools/json_text.h"
#include "tools/trace_viewer.h"

/* Microseconds with nanosecond precision, as the trace-event format wants. */
static json_t *
tv_us(int64_t ns)
{
	if (ns % 1000 == 0)
		return json_integer(ns / 1000);
	return json_real((double)ns / 1000.0);
}

/* ---- matching sends with receipts ---- */

struct tv_key {
	uint64_t seq;
	uint32_t file;
	uint32_t rec;
};

static int
tv_cmp_key(const void *a, const void *b)
{
	const struct tv_key *x = a, *y = b;
	if (x->file != y->file)
		return x->file < y->file ? -1 : 1;
	if (x->seq != y->seq)
		return x->seq < y->seq ? -1 : 1;
	return x->rec < y->rec ? -1 : x->rec > y->rec;
}

/* tv_recv_index lists every RECV by (file, seq), sorted for tv_recv_of. */
static struct tv_key *
tv_recv_index(const struct tv_model *m, size_t *n)
{
	struct tv_key *k = malloc((m->nrecs ? m->nrecs : 1) * sizeof(*k));
	*n = 0;
	if (k == NULL)
		return NULL;
	for (size_t i = 0; i < m->nrecs; i++)
		if (m->recs[i].kind == TERN_TRACE_RECV && m->recs[i].seq != 0)
			k[(*n)++] = (struct tv_key){m->recs[i].seq, m->recs[i].file, (uint32_t)i};
	qsort(k, *n, sizeof(*k), tv_cmp_key);
	return k;
}

static int64_t
tv_recv_of(const struct tv_key *k, size_t n, const struct tv_rec *send)
{
	size_t lo = 0, hi = n;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (k[mid].file < send->file ||
		    (k[mid].file == send->file && k[mid].seq < send->seq))
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo < n && k[lo].file == send->file && k[lo].seq == send->seq)
		return k[lo].rec;
	return -1;
}

/* ---- Perfetto ---- */

/* tv_pf_put writes one event of the traceEvents array, one per line. */
static int
tv_pf_put(FILE *out, json_t *ev)
{
	int rc = tv_json_put(out, ev);
	fputs(",\n", out);
	return rc;
}

static json_t *
tv_counter_name(const struct tv_model *m, const char *name, uint32_t actor)
{
	char buf[256];
	snprintf(buf, sizeof(buf), "%s (%s)", name, m->actors[actor].label);
	return tools_json_text(buf);
}

/* A metadata event: {"ph":"M", pid, tid, name, "args": {key: value}}. */
static json_t *
tv_pf_meta_event(int pid, uint32_t tid, const char *name, const char *key, json_t *value)
{
	return json_pack("{s:s,s:i,s:I,s:s,s:{s:o}}", "ph", "M", "pid", pid, "tid", (json_int_t)tid,
	                 "name", name, "args", key, value);
}

static int
tv_pf_meta(const struct tv_model *m, FILE *out)
{
	int rc = 0;
	for (int f = 0; f < m->nfiles; f++) {
		char name[96];
		snprintf(name, sizeof(name), "%s (pid %" PRId64 ")", m->files[f].hdr.side,
		         m->files[f].hdr.pid);
		rc = tv_json_first(rc,
		                   tv_pf_put(out, tv_pf_meta_event(f + 1, 0, "process_name", "name",
		                                                   tools_json_text(name))));
		rc = tv_json_first(
		    rc,
		    tv_pf_put(out, tv_pf_meta_event(f + 1, 0, "process_sort_index", "sort_index",
		                                    json_integer(f == m->dst ? 2 : 1))));
	}
	for (uint32_t a = 0; a < m->nactors; a++) {
		int pid = m->actors[a].file + 1;
		rc = tv_json_first(
		    rc, tv_pf_put(out, tv_pf_meta_event(pid, a + 1, "thread_name", "name",
		                                        tools_json_text(m->actors[a].label))));
		rc = tv_json_first(rc,
		                   tv_pf_put(out, tv_pf_meta_event(pid, a + 1, "thread_sort_index",
		                                                   "sort_index", json_integer(a))));
	}
	return rc;
}

/* The fields every event but a counter starts with; the caller adds the
 * rest with tv_pf_set. */
static json_t *
tv_pf_event(const char *ph, int pid, uint32_t tid, int64_t ts, const char *name)
{
	return json_pack("{s:s,s:i,s:I,s:o,s:o}", "ph", ph, "pid", pid, "tid", (json_int_t)tid,
	                 "ts", tv_us(ts), "name", tools_json_text(name));
}

/* tv_pf_set adds key to ev; an allocation failure anywhere leaves NULL. */
static json_t *
tv_pf_set(json_t *ev, const char *key, json_t *v)
{
	if (json_object_set_new(ev, key, v) != 0) {
		json_decref(ev);
		return NULL;
	}
	return ev;
}

static json_t *
tv_pf_instant(const char *ph, int pid, uint32_t tid, int64_t ts, const char *name, const char *cat,
              const char *scope)
{
	json_t *ev = tv_pf_event(ph, pid, tid, ts, name);
	ev = tv_pf_set(ev, "cat", json_string(cat));
	return tv_pf_set(ev, "s", json_string(scope));
}

/* tv_in_slice marks the records that lie inside a handler (a RECV slice)
 * of their actor: one backward pass remembering each actor's next RECV. The
 * slices of one actor never overlap (one thread) and end in record order. */
static uint8_t *
tv_in_slice(const struct tv_model *m)
{
	uint8_t *in = calloc(m->nrecs ? m->nrecs : 1, 1);
	int64_t *next = malloc((m->nactors ? m->nactors : 1) * sizeof(*next));
	if (in == NULL || next == NULL) {
		free(in);
		free(next);
		return NULL;
	}
	for (uint32_t a = 0; a < m->nactors; a++)
		next[a] = INT64_MAX; /* start of the actor's next slice */
	for (size_t i = m->nrecs; i-- > 0;) {
		const struct tv_rec *r = &m->recs[i];
		in[i] = next[r->actor] <= r->t;
		/* Replies received inside a handler (value 0) do not end it. */
		if (r->kind == TERN_TRACE_RECV && r->value > 0)
			next[r->actor] = r->t - (int64_t)r->value;
	}
	free(next);
	return in;
}

/* tv_pf_record writes the events of record i (none, one, or a send with
 * its flow arrow). */
static int
tv_pf_record(const struct tv_model *m, FILE *out, size_t i, const struct tv_key *keys, size_t nk,
             const uint8_t *in, uint64_t *flow)
{
	const struct tv_rec *r = &m->recs[i];
	int pid = r->file + 1;
	uint32_t tid = r->actor + 1;
	char name[320];
	json_t *ev;
	switch (r->kind) {
	case TERN_TRACE_RECV:
		/* Replies and queue takes are not dispatched (value 0):
		 * a 1 ns slice keeps them visible and flow targets. */
		ev = tv_pf_event("X", pid, tid, r->t - (int64_t)r->value, tern_msg_name(r->type));
		ev = tv_pf_set(ev, "cat", json_string("msg"));
		ev = tv_pf_set(ev, "dur", tv_us(r->value ? (int64_t)r->value : 1));
		ev = tv_pf_set(ev, "args",
		               json_pack("{s:o,s:I,s:o}", "seq", tv_json_int(r->seq), "from",
		                         (json_int_t)r->peer, "re", tv_json_int(r->re)));
		return tv_pf_put(out, ev);
	case TERN_TRACE_SEND: {
		int64_t k = tv_recv_of(keys, nk, r);
		if (k < 0)
			return 0; /* never received: the receiver died, or the trace ends */
		const struct tv_rec *rv = &m->recs[k];
		int rc = 0;
		if (!in[i]) { /* flows start inside a slice */
			snprintf(name, sizeof(name), "send %s", tern_msg_name(r->type));
			ev = tv_pf_event("X", pid, tid, r->t, name);
			ev = tv_pf_set(ev, "cat", json_string("send"));
			rc = tv_json_first(rc,
			                   tv_pf_put(out, tv_pf_set(ev, "dur", json_real(0.001))));
		}
		++*flow;
		ev = tv_pf_event("s", pid, tid, r->t, tern_msg_name(r->type));
		ev = tv_pf_set(ev, "cat", json_string("flow"));
		rc = tv_json_first(rc, tv_pf_put(out, tv_pf_set(ev, "id", tv_json_int(*flow))));
		ev = tv_pf_event("f", rv->file + 1, rv->actor + 1, rv->t - (int64_t)rv->value,
		                 tern_msg_name(r->type));
		ev = tv_pf_set(ev, "cat", json_string("flow"));
		ev = tv_pf_set(ev, "bp", json_string("e"));
		return tv_json_first(rc, tv_pf_put(out, tv_pf_set(ev, "id", tv_json_int(*flow))));
	}
	case TERN_TRACE_STATE:
		snprintf(name, sizeof(name), "state: %s", tv_str(m, r->text));
		return tv_pf_put(out, tv_pf_instant("i", pid, tid, r->t, name, "state", "t"));
	case TERN_TRACE_FAULT:
		snprintf(name, sizeof(name), "fault: %s", tv_str(m, r->text));
		return tv_pf_put(out, tv_pf_instant("i", pid, tid, r->t, name, "fault", "p"));
	case TERN_TRACE_SPAWN:
		return tv_pf_put(out, tv_pf_instant("i", pid, tid, r->t, "spawn", "life", "t"));
	case TERN_TRACE_EXIT:
		snprintf(name, sizeof(name), "exit: %s%s%s",
		         r->value == 0   ? "normal"
		         : r->value == 1 ? "error"
		                         : "killed",
		         tv_str(m, r->text)[0] ? ": " : "", tv_str(m, r->text));
		ev = tv_pf_instant("i", pid, tid, r->t, name, "life", r->value ? "p" : "t");
		return tv_pf_put(
		    out,
		    tv_pf_set(ev, "args", json_pack("{s:o}", "reason", tv_json_int(r->value))));
	case TERN_TRACE_COUNTER: {
		double v;
		memcpy(&v, &r->value, sizeof(v));
		return tv_pf_put(out, json_pack("{s:s,s:i,s:o,s:o,s:{s:o}}", "ph", "C", "pid", pid,
		                                "ts", tv_us(r->t), "name",
		                                tv_counter_name(m, tv_str(m, r->text), r->actor),
		                                "args", "value", tv_json_num(v)));
	}
	}
	return 0;
}

int
tv_perfetto(const struct tv_model *m, FILE *out)
{
	size_t nk, nf;
	struct tv_key *keys = tv_recv_index(m, &nk);
	struct tv_flight *fl = tv_flights(m, &nf);
	uint8_t *in = tv_in_slice(m);
	int rc = 0;
	if (keys == NULL || fl == NULL || in == NULL) {
		rc = -ENOMEM;
		goto out;
	}
	fprintf(out, "{\"traceEvents\":[\n");
	rc = tv_json_first(rc, tv_pf_meta(m, out));
	uint64_t flow = 0;
	for (size_t i = 0; i < m->nrecs && rc == 0; i++)
		rc = tv_json_first(rc, tv_pf_record(m, out, i, keys, nk, in, &flow));
	for (size_t c = 0; c < m->nconns && rc == 0; c++) {
		const struct tv_conn *cn = &m->conns[c];
		for (size_t j = 0; j < cn->rate.n; j++)
			rc = tv_json_first(
			    rc, tv_pf_put(
			            out, json_pack("{s:s,s:i,s:o,s:o,s:{s:o}}", "ph", "C", "pid",
			                           m->actors[cn->actor].file + 1, "ts",
			                           tv_us(cn->rate.t[j]), "name",
			                           tv_counter_name(m, "throughput MB/s", cn->actor),
			                           "args", "value",
			                           tv_json_num(round(cn->rate.v[j] / 1e4) / 100))));
	}
	for (size_t i = 0; i < nf && rc == 0; i++) {
		const struct tv_actor *a = &m->actors[fl[i].actor];
		char name[128];
		snprintf(name, sizeof(name), "%s chunks in flight", a->label);
		json_t *ev = tv_pf_event("b", a->file + 1, fl[i].actor + 1, fl[i].start, name);
		ev = tv_pf_set(ev, "cat", json_string("chunk"));
		rc = tv_json_first(rc, tv_pf_put(out, tv_pf_set(ev, "id", tv_json_int(i + 1))));
		ev = tv_pf_event("e", a->file + 1, fl[i].actor + 1, fl[i].end, name);
		ev = tv_pf_set(ev, "cat", json_string("chunk"));
		ev = tv_pf_set(ev, "id", tv_json_int(i + 1));
		rc = tv_json_first(
		    rc, tv_pf_put(out,
		                  tv_pf_set(ev, "args", json_pack("{s:b}", "acked", fl[i].acked))));
	}
	/* A last metadata event: no trailing comma to worry about above. */
	rc = tv_json_first(rc,
	                   tv_json_put(out, json_pack("{s:s,s:i,s:i,s:s,s:{}}", "ph", "M", "pid", 1,
	                                              "tid", 0, "name", "trace_end", "args")));
	fprintf(out, "\n],\"displayTimeUnit\":\"ms\"}\n");
out:
	free(keys);
	free(fl);
	free(in);
	return rc == 0 && ferror(out) ? -EIO : rc;
}
