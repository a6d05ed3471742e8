/*
 * tern-trace export --perfetto and html: the two JSON writers.
 *
 * Perfetto: the Chrome trace-event format (the "JSON Array/Object Format"
 * document), which ui.perfetto.dev and chrome://tracing both load.  A RECV
 * record is stamped when the handler returned and carries the handling time,
 * so its slice starts at t - value.  Flow arrows pair a SEND with the RECV of
 * the same seq (sequence numbers are unique per process).
 *
 * HTML: the page in tools/trace_report.html (embedded at build time) with
 * the model's data spliced in as one JSON object.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tools/trace_viewer.h"

/* Generated from tools/trace_report.html by tools/trace_embed.cmake. */
extern const char tv_report_html[];

void
tv_json_str(FILE *out, const char *s)
{
	fputc('"', out);
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\')
			fprintf(out, "\\%c", c);
		else if (c < 0x20 || c == '<' || c == '>' || c == '&')
			fprintf(out, "\\u%04x", c); /* also safe inside <script> */
		else
			fputc(c, out);
	}
	fputc('"', out);
}

void
tv_json_num(FILE *out, double v)
{
	if (!isfinite(v))
		v = 0;
	if (v == floor(v) && fabs(v) < 9e15)
		fprintf(out, "%.0f", v);
	else
		fprintf(out, "%.6g", v);
}

/* Microseconds with nanosecond precision, as the trace-event format wants. */
static void
tv_us(FILE *out, int64_t ns)
{
	fprintf(out, "%s%" PRId64 ".%03" PRId64, ns < 0 ? "-" : "", (ns < 0 ? -ns : ns) / 1000,
	        (ns < 0 ? -ns : ns) % 1000);
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

/* ---- chunks in flight per connection: a chunk taken from the queue until
 * its CHUNK_DONE; one TCP stream acknowledges in order, so FIFO pairs them. */

struct tv_flight {
	uint32_t actor;
	int64_t start, end;
	int acked;
};

static struct tv_flight *
tv_flights(const struct tv_model *m, size_t *n)
{
	size_t cap = 0;
	for (size_t i = 0; i < m->nrecs; i++)
		cap += m->recs[i].kind == TERN_TRACE_RECV && m->recs[i].type == TERN_MSG_CHUNK &&
		       m->actors[m->recs[i].actor].conn >= 0;
	struct tv_flight *f = malloc((cap ? cap : 1) * sizeof(*f));
	*n = 0;
	if (f == NULL)
		return NULL;
	for (size_t c = 0; c < m->nconns; c++) {
		uint32_t a = m->conns[c].actor;
		size_t head = *n;
		for (size_t i = 0; i < m->nrecs; i++) {
			const struct tv_rec *r = &m->recs[i];
			if (r->actor != a)
				continue;
			if (r->kind == TERN_TRACE_RECV && r->type == TERN_MSG_CHUNK && *n < cap)
				f[(*n)++] = (struct tv_flight){a, r->t, m->actors[a].last_t, 0};
			else if (r->kind == TERN_TRACE_SEND && r->type == TERN_MSG_CHUNK_DONE &&
			         head < *n) {
				f[head].end = r->t;
				f[head++].acked = 1;
			}
		}
	}
	return f;
}

/* ---- Perfetto ---- */

static void
tv_counter_name(const struct tv_model *m, FILE *out, const char *name, uint32_t actor)
{
	char buf[256];
	snprintf(buf, sizeof(buf), "%s (%s)", name, m->actors[actor].label);
	tv_json_str(out, buf);
}

static void
tv_pf_meta(const struct tv_model *m, FILE *out)
{
	for (int f = 0; f < m->nfiles; f++) {
		char name[96];
		snprintf(name, sizeof(name), "%s (pid %" PRId64 ")", m->files[f].hdr.side,
		         m->files[f].hdr.pid);
		fprintf(out,
		        "{\"ph\":\"M\",\"pid\":%d,\"tid\":0,\"name\":\"process_name\",\"args\":"
		        "{\"name\":",
		        f + 1);
		tv_json_str(out, name);
		fprintf(out,
		        "}},\n{\"ph\":\"M\",\"pid\":%d,\"tid\":0,\"name\":\"process_sort_"
		        "index\",\"args\":{\"sort_index\":%d}},\n",
		        f + 1, f == m->dst ? 2 : 1);
	}
	for (uint32_t a = 0; a < m->nactors; a++) {
		fprintf(out,
		        "{\"ph\":\"M\",\"pid\":%d,\"tid\":%u,\"name\":\"thread_name\",\"args\":"
		        "{\"name\":",
		        m->actors[a].file + 1, a + 1);
		tv_json_str(out, m->actors[a].label);
		fprintf(out,
		        "}},\n{\"ph\":\"M\",\"pid\":%d,\"tid\":%u,\"name\":\"thread_sort_"
		        "index\",\"args\":{\"sort_index\":%u}},\n",
		        m->actors[a].file + 1, a + 1, a);
	}
}

static void
tv_pf_event(FILE *out, const char *ph, int pid, uint32_t tid, int64_t ts, const char *name)
{
	fprintf(out, "{\"ph\":\"%s\",\"pid\":%d,\"tid\":%u,\"ts\":", ph, pid, tid);
	tv_us(out, ts);
	fprintf(out, ",\"name\":");
	tv_json_str(out, name);
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

int
tv_perfetto(const struct tv_model *m, FILE *out)
{
	size_t nk, nf;
	struct tv_key *keys = tv_recv_index(m, &nk);
	struct tv_flight *fl = tv_flights(m, &nf);
	uint8_t *in = tv_in_slice(m);
	if (keys == NULL || fl == NULL || in == NULL) {
		free(keys);
		free(fl);
		free(in);
		return -ENOMEM;
	}
	fprintf(out, "{\"traceEvents\":[\n");
	tv_pf_meta(m, out);
	uint64_t flow = 0;
	for (size_t i = 0; i < m->nrecs; i++) {
		const struct tv_rec *r = &m->recs[i];
		const struct tv_actor *a = &m->actors[r->actor];
		int pid = r->file + 1;
		uint32_t tid = r->actor + 1;
		char name[320];
		switch (r->kind) {
		case TERN_TRACE_RECV:
			/* Replies and queue takes are not dispatched (value 0):
			 * a 1 ns slice keeps them visible and flow targets. */
			tv_pf_event(out, "X", pid, tid, r->t - (int64_t)r->value,
			            tern_msg_name(r->type));
			fprintf(out, ",\"cat\":\"msg\",\"dur\":");
			tv_us(out, r->value ? (int64_t)r->value : 1);
			fprintf(out,
			        ",\"args\":{\"seq\":%" PRIu64 ",\"from\":%u,\"re\":%" PRIu64
			        "}},\n",
			        r->seq, r->peer, r->re);
			break;
		case TERN_TRACE_SEND: {
			int64_t k = tv_recv_of(keys, nk, r);
			if (k < 0)
				break; /* never received: the receiver died, or the trace ends */
			const struct tv_rec *rv = &m->recs[k];
			if (!in[i]) { /* flows start inside a slice */
				snprintf(name, sizeof(name), "send %s", tern_msg_name(r->type));
				tv_pf_event(out, "X", pid, tid, r->t, name);
				fprintf(out, ",\"cat\":\"send\",\"dur\":0.001},\n");
			}
			flow++;
			tv_pf_event(out, "s", pid, tid, r->t, tern_msg_name(r->type));
			fprintf(out, ",\"cat\":\"flow\",\"id\":%" PRIu64 "},\n", flow);
			tv_pf_event(out, "f", rv->file + 1, rv->actor + 1,
			            rv->t - (int64_t)rv->value, tern_msg_name(r->type));
			fprintf(out, ",\"cat\":\"flow\",\"bp\":\"e\",\"id\":%" PRIu64 "},\n", flow);
			break;
		}
		case TERN_TRACE_STATE:
			snprintf(name, sizeof(name), "state: %s", tv_str(m, r->text));
			tv_pf_event(out, "i", pid, tid, r->t, name);
			fprintf(out, ",\"cat\":\"state\",\"s\":\"t\"},\n");
			break;
		case TERN_TRACE_FAULT:
			snprintf(name, sizeof(name), "fault: %s", tv_str(m, r->text));
			tv_pf_event(out, "i", pid, tid, r->t, name);
			fprintf(out, ",\"cat\":\"fault\",\"s\":\"p\"},\n");
			break;
		case TERN_TRACE_SPAWN:
			tv_pf_event(out, "i", pid, tid, r->t, "spawn");
			fprintf(out, ",\"cat\":\"life\",\"s\":\"t\"},\n");
			break;
		case TERN_TRACE_EXIT:
			snprintf(name, sizeof(name), "exit: %s%s%s",
			         r->value == 0   ? "normal"
			         : r->value == 1 ? "error"
			                         : "killed",
			         tv_str(m, r->text)[0] ? ": " : "", tv_str(m, r->text));
			tv_pf_event(out, "i", pid, tid, r->t, name);
			fprintf(out,
			        ",\"cat\":\"life\",\"s\":\"%s\",\"args\":{\"reason\":%" PRIu64
			        "}},\n",
			        r->value ? "p" : "t", r->value);
			break;
		case TERN_TRACE_COUNTER: {
			double v;
			memcpy(&v, &r->value, sizeof(v));
			fprintf(out, "{\"ph\":\"C\",\"pid\":%d,\"ts\":", pid);
			tv_us(out, r->t);
			fprintf(out, ",\"name\":");
			tv_counter_name(m, out, tv_str(m, r->text), r->actor);
			fprintf(out, ",\"args\":{\"value\":");
			tv_json_num(out, v);
			fprintf(out, "}},\n");
			break;
		}
		}
		(void)a;
	}
	for (size_t c = 0; c < m->nconns; c++) {
		const struct tv_conn *cn = &m->conns[c];
		for (size_t j = 0; j < cn->rate.n; j++) {
			fprintf(out,
			        "{\"ph\":\"C\",\"pid\":%d,\"ts\":", m->actors[cn->actor].file + 1);
			tv_us(out, cn->rate.t[j]);
			fprintf(out, ",\"name\":");
			tv_counter_name(m, out, "throughput MB/s", cn->actor);
			fprintf(out, ",\"args\":{\"value\":");
			tv_json_num(out, round(cn->rate.v[j] / 1e4) / 100);
			fprintf(out, "}},\n");
		}
	}
	for (size_t i = 0; i < nf; i++) {
		const struct tv_actor *a = &m->actors[fl[i].actor];
		char name[128];
		snprintf(name, sizeof(name), "%s chunks in flight", a->label);
		tv_pf_event(out, "b", a->file + 1, fl[i].actor + 1, fl[i].start, name);
		fprintf(out, ",\"cat\":\"chunk\",\"id\":%zu},\n", i + 1);
		tv_pf_event(out, "e", a->file + 1, fl[i].actor + 1, fl[i].end, name);
		fprintf(out, ",\"cat\":\"chunk\",\"id\":%zu,\"args\":{\"acked\":%s}},\n", i + 1,
		        fl[i].acked ? "true" : "false");
	}
	/* A last metadata event: no trailing comma to worry about above. */
	fprintf(out, "{\"ph\":\"M\",\"pid\":1,\"tid\":0,\"name\":\"trace_end\",\"args\":{}}\n"
	             "],\"displayTimeUnit\":\"ms\"}\n");
	free(keys);
	free(fl);
	free(in);
	return ferror(out) ? -EIO : 0;
}

/* ---- HTML ---- */

static void
tv_html_series(const struct tv_model *m, FILE *out, const char *label, const int64_t *t,
               const double *v, size_t n, double scale)
{
	fprintf(out, "{\"name\":");
	tv_json_str(out, label);
	fprintf(out, ",\"points\":[");
	for (size_t j = 0; j < n; j++) {
		fprintf(out, "%s[%" PRId64 ",", j ? "," : "", t[j]);
		tv_json_num(out, v[j] * scale);
		fputc(']', out);
	}
	fprintf(out, "]}");
	(void)m;
}

/* One plot: every series of counter `name`, in any actor. */
static void
tv_html_plot(const struct tv_model *m, FILE *out, const char *title, const char *unit,
             const char *name, double scale)
{
	int first = 1;
	fprintf(out, "{\"title\":");
	tv_json_str(out, title);
	fprintf(out, ",\"unit\":");
	tv_json_str(out, unit);
	fprintf(out, ",\"counter\":");
	tv_json_str(out, name);
	fprintf(out, ",\"series\":[");
	for (size_t i = 0; i < m->nseries; i++) {
		const struct tv_series *s = &m->series[i];
		if (strcmp(tv_str(m, s->name), name) != 0)
			continue;
		char label[160];
		snprintf(label, sizeof(label), "%s%s%s",
		         m->nfiles > 1 ? tv_side_name(m, m->actors[s->actor].file) : "",
		         m->nfiles > 1 ? " " : "", m->actors[s->actor].label);
		if (!first)
			fputc(',', out);
		first = 0;
		tv_html_series(m, out, label, s->t, s->v, s->n, scale);
	}
	fprintf(out, "]}");
}

static void
tv_html_data(const struct tv_model *m, FILE *out, const struct tv_flight *fl, size_t nf)
{
	fprintf(out, "{\"files\":[");
	for (int f = 0; f < m->nfiles; f++) {
		fprintf(out, "%s{\"path\":", f ? "," : "");
		tv_json_str(out, m->files[f].path);
		fprintf(out, ",\"side\":");
		tv_json_str(out, m->files[f].hdr.side);
		fprintf(out,
		        ",\"pid\":%" PRId64 ",\"records\":%" PRIu64 ",\"offset_ns\":%" PRId64
		        ",\"offset_from\":",
		        m->files[f].hdr.pid, m->files[f].nrecs, m->files[f].offset_ns);
		tv_json_str(out, m->files[f].offset_from);
		fputc('}', out);
	}
	fprintf(out, "],\n\"span\":%" PRId64 ",\n\"actors\":[", m->span);
	for (uint32_t a = 0; a < m->nactors; a++) {
		fprintf(out, "%s{\"label\":", a ? "," : "");
		tv_json_str(out, m->actors[a].label);
		fprintf(out, ",\"side\":\"%s\",\"conn\":%d,\"spawned\":%d,\"exited\":%d}",
		        tv_side_name(m, m->actors[a].file), m->actors[a].conn, m->actors[a].spawned,
		        m->actors[a].exited);
	}
	/* Slices: [actor, start, duration, type name index]. */
	const char *types[64];
	uint32_t ntypes = 0, tids[64];
	fprintf(out, "],\n\"slices\":[");
	int first = 1;
	for (size_t i = 0; i < m->nrecs; i++) {
		const struct tv_rec *r = &m->recs[i];
		if (r->kind != TERN_TRACE_RECV || r->value == 0)
			continue;
		uint32_t ti = 0;
		while (ti < ntypes && tids[ti] != r->type)
			ti++;
		if (ti == ntypes && ntypes < 64) {
			tids[ntypes] = r->type;
			types[ntypes++] = tern_msg_name(r->type);
		}
		fprintf(out, "%s[%u,%" PRId64 ",%" PRIu64 ",%u]", first ? "" : ",", r->actor,
		        r->t - (int64_t)r->value, r->value, ti);
		first = 0;
	}
	fprintf(out, "],\n\"types\":[");
	for (uint32_t i = 0; i < ntypes; i++) {
		fprintf(out, "%s", i ? "," : "");
		tv_json_str(out, types[i]);
	}
	fprintf(out, "],\n\"events\":[");
	first = 1;
	for (size_t i = 0; i < m->nrecs; i++) {
		const struct tv_rec *r = &m->recs[i];
		if (r->kind != TERN_TRACE_STATE && r->kind != TERN_TRACE_EXIT &&
		    r->kind != TERN_TRACE_FAULT)
			continue;
		fprintf(out, "%s[%u,%" PRId64 ",\"%s\",", first ? "" : ",", r->actor, r->t,
		        r->kind == TERN_TRACE_STATE ? "state"
		        : r->kind == TERN_TRACE_FAULT ? "fault"
		        : r->value == 0             ? "exit"
		        : r->value == 1             ? "error"
		                                    : "killed");
		tv_json_str(out, tv_str(m, r->text));
		fputc(']', out);
		first = 0;
	}
	fprintf(out, "],\n\"flights\":[");
	for (size_t i = 0; i < nf; i++)
		fprintf(out, "%s[%u,%" PRId64 ",%" PRId64 ",%d]", i ? "," : "", fl[i].actor,
		        fl[i].start, fl[i].end, fl[i].acked);
	fprintf(out, "],\n\"phases\":[");
	for (size_t i = 0; i < m->nphases; i++) {
		const struct tv_phase *p = &m->phases[i];
		fprintf(out, "%s[%u,%" PRId64 ",%" PRId64 ",", i ? "," : "", p->actor, p->start,
		        p->end);
		tv_json_str(out, tv_str(m, p->name));
		fprintf(out, ",%d]", p->open);
	}
	fprintf(out, "],\n\"iterations\":[");
	for (size_t k = 0; k < m->niters; k++) {
		const struct tv_iter *x = &m->iters[k];
		fprintf(out, "%s[%u,%" PRId64 ",%" PRId64 ",%" PRIu64 ",%d,%" PRIu64 ",%d]",
		        k ? "," : "", x->n, x->start, x->end, x->have_bytes ? x->bytes : 0,
		        x->final, x->chunks, x->complete);
	}
	fprintf(out, "],\n\"plots\":[");
	tv_html_plot(m, out, "Dirty rate", "pages/s", "dirty_rate_pps", 1);
	fprintf(out, ",\n");
	tv_html_plot(m, out, "Remaining bytes", "MiB", "remaining_bytes", 1.0 / 1048576);
	fprintf(out, ",\n{\"title\":\"Throughput per connection\",\"unit\":\"MB/s\",\"counter\":"
	             "\"conn_payload_bytes\",\"series\":[");
	first = 1;
	for (size_t c = 0; c < m->nconns; c++) {
		const struct tv_conn *cn = &m->conns[c];
		if (cn->rate.n == 0)
			continue;
		fprintf(out, "%s", first ? "" : ",");
		first = 0;
		tv_html_series(m, out, m->actors[cn->actor].label, cn->rate.t, cn->rate.v,
		               cn->rate.n, 1e-6);
	}
	fprintf(out, "]},\n");
	tv_html_plot(m, out, "Throttle", "%", "throttle_pct", 1);
	fprintf(out, "]}");
}

int
tv_html(const struct tv_model *m, FILE *out)
{
	static const char mark[] = "/*@TRACE_DATA@*/";
	const char *cut = strstr(tv_report_html, mark);
	if (cut == NULL)
		return -EINVAL; /* a broken build: the template lost its mark */
	size_t nf;
	struct tv_flight *fl = tv_flights(m, &nf);
	if (fl == NULL)
		return -ENOMEM;
	fwrite(tv_report_html, 1, (size_t)(cut - tv_report_html), out);
	tv_html_data(m, out, fl, nf);
	fputs(cut + sizeof(mark) - 1, out);
	free(fl);
	return ferror(out) ? -EIO : 0;
}
