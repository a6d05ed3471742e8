/*
 * tern-trace html: the page in tools/trace_report.html (embedded at build
 * time) with the model's data spliced in as one JSON object.  Its small
 * members (files, actors, plots) are built whole with jansson; the long
 * arrays (slices, events, ...) element by element, as a model may hold
 * millions of records: only the punctuation between elements and the
 * literal member names are written here (tv_sep, tv_open).
 */
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tools/json_text.h"
#include "tools/trace_viewer.h"

/* Generated from tools/trace_report.html by tools/trace_embed.cmake. */
extern const char tv_report_html[];

/* tv_sep writes the comma before every element of an array but the first. */
static void
tv_sep(FILE *out, int *first)
{
	if (!*first)
		fputc(',', out);
	*first = 0;
}

/* tv_open starts the member `key` (a literal name, nothing to escape) of the
 * object being written, with its opening bracket. */
static void
tv_open(FILE *out, const char *lead, const char *key, char bracket)
{
	fprintf(out, "%s\"%s\":%c", lead, key, bracket);
}

/* ---- HTML ---- */

/* tv_member writes `"key":` and v, a value small enough to build whole. */
static int
tv_member(FILE *out, const char *lead, const char *key, json_t *v)
{
	fprintf(out, "%s\"%s\":", lead, key);
	return tv_json_put(out, v);
}

static json_t *
tv_html_series(const char *label, const int64_t *t, const double *v, size_t n, double scale)
{
	json_t *pts = json_array();
	for (size_t j = 0; pts != NULL && j < n; j++)
		if (json_array_append_new(pts, json_pack("[I,o]", (json_int_t)t[j],
		                                         tv_json_num(v[j] * scale))) != 0) {
			json_decref(pts);
			pts = NULL;
		}
	return json_pack("{s:o,s:o}", "name", tools_json_text(label), "points", pts);
}

/* One plot: every series of counter `name`, in any actor. */
static json_t *
tv_html_plot(const struct tv_model *m, const char *title, const char *unit, const char *name,
             double scale)
{
	json_t *series = json_array();
	for (size_t i = 0; series != NULL && i < m->nseries; i++) {
		const struct tv_series *s = &m->series[i];
		if (strcmp(tv_str(m, s->name), name) != 0)
			continue;
		char label[160];
		snprintf(label, sizeof(label), "%s%s%s",
		         m->nfiles > 1 ? tv_side_name(m, m->actors[s->actor].file) : "",
		         m->nfiles > 1 ? " " : "", m->actors[s->actor].label);
		if (json_array_append_new(series, tv_html_series(label, s->t, s->v, s->n, scale)) !=
		    0) {
			json_decref(series);
			series = NULL;
		}
	}
	return json_pack("{s:s,s:s,s:s,s:o}", "title", title, "unit", unit, "counter", name,
	                 "series", series);
}

static json_t *
tv_html_rates(const struct tv_model *m)
{
	json_t *series = json_array();
	for (size_t c = 0; series != NULL && c < m->nconns; c++) {
		const struct tv_conn *cn = &m->conns[c];
		if (cn->rate.n == 0)
			continue;
		if (json_array_append_new(series,
		                          tv_html_series(m->actors[cn->actor].label, cn->rate.t,
		                                         cn->rate.v, cn->rate.n, 1e-6)) != 0) {
			json_decref(series);
			series = NULL;
		}
	}
	return json_pack("{s:s,s:s,s:s,s:o}", "title", "Throughput per connection", "unit", "MB/s",
	                 "counter", "conn_payload_bytes", "series", series);
}

static json_t *
tv_html_plots(const struct tv_model *m)
{
	return json_pack(
	    "[o,o,o,o]", tv_html_plot(m, "Dirty rate", "pages/s", "dirty_rate_pps", 1),
	    tv_html_plot(m, "Remaining bytes", "MiB", "remaining_bytes", 1.0 / 1048576),
	    tv_html_rates(m), tv_html_plot(m, "Throttle", "%", "throttle_pct", 1));
}

static json_t *
tv_html_files(const struct tv_model *m)
{
	json_t *files = json_array();
	for (int f = 0; files != NULL && f < m->nfiles; f++) {
		const struct tv_file *tf = &m->files[f];
		if (json_array_append_new(
		        files,
		        json_pack("{s:o,s:o,s:I,s:o,s:I,s:o}", "path", tools_json_text(tf->path),
		                  "side", tools_json_text(tf->hdr.side), "pid",
		                  (json_int_t)tf->hdr.pid, "records", tv_json_int(tf->nrecs),
		                  "offset_ns", (json_int_t)tf->offset_ns, "offset_from",
		                  tools_json_text(tf->offset_from))) != 0) {
			json_decref(files);
			files = NULL;
		}
	}
	return files;
}

static json_t *
tv_html_actors(const struct tv_model *m)
{
	json_t *actors = json_array();
	for (uint32_t a = 0; actors != NULL && a < m->nactors; a++) {
		const struct tv_actor *x = &m->actors[a];
		if (json_array_append_new(actors, json_pack("{s:o,s:s,s:i,s:i,s:i}", "label",
		                                            tools_json_text(x->label), "side",
		                                            tv_side_name(m, x->file), "conn",
		                                            x->conn, "spawned", x->spawned,
		                                            "exited", x->exited)) != 0) {
			json_decref(actors);
			actors = NULL;
		}
	}
	return actors;
}

/* Slices: [actor, start, duration, type name index], then the type names. */
static int
tv_html_slices(const struct tv_model *m, FILE *out)
{
	const char *types[64];
	uint32_t ntypes = 0, tids[64];
	int rc = 0, first = 1;
	tv_open(out, ",\n", "slices", '[');
	for (size_t i = 0; i < m->nrecs && rc == 0; i++) {
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
		tv_sep(out, &first);
		rc = tv_json_put(out, json_pack("[I,I,o,I]", (json_int_t)r->actor,
		                                (json_int_t)(r->t - (int64_t)r->value),
		                                tv_json_int(r->value), (json_int_t)ti));
	}
	fputc(']', out);
	json_t *names = json_array();
	for (uint32_t i = 0; names != NULL && i < ntypes; i++)
		if (json_array_append_new(names, json_string(types[i])) != 0) {
			json_decref(names);
			names = NULL;
		}
	return tv_json_first(rc, tv_member(out, ",\n", "types", names));
}

static int
tv_html_records(const struct tv_model *m, FILE *out, const struct tv_flight *fl, size_t nf)
{
	int rc = 0, first = 1;
	tv_open(out, ",\n", "events", '[');
	for (size_t i = 0; i < m->nrecs && rc == 0; i++) {
		const struct tv_rec *r = &m->recs[i];
		if (r->kind != TERN_TRACE_STATE && r->kind != TERN_TRACE_EXIT &&
		    r->kind != TERN_TRACE_FAULT)
			continue;
		const char *kind = r->kind == TERN_TRACE_STATE   ? "state"
		                   : r->kind == TERN_TRACE_FAULT ? "fault"
		                   : r->value == 0               ? "exit"
		                   : r->value == 1               ? "error"
		                                                 : "killed";
		tv_sep(out, &first);
		rc = tv_json_put(out, json_pack("[I,I,s,o]", (json_int_t)r->actor, (json_int_t)r->t,
		                                kind, tools_json_text(tv_str(m, r->text))));
	}
	tv_open(out, "],\n", "flights", '[');
	for (size_t i = 0; i < nf && rc == 0; i++) {
		fputs(i ? "," : "", out);
		rc = tv_json_put(out, json_pack("[I,I,I,i]", (json_int_t)fl[i].actor,
		                                (json_int_t)fl[i].start, (json_int_t)fl[i].end,
		                                fl[i].acked));
	}
	tv_open(out, "],\n", "phases", '[');
	for (size_t i = 0; i < m->nphases && rc == 0; i++) {
		const struct tv_phase *p = &m->phases[i];
		fputs(i ? "," : "", out);
		rc = tv_json_put(out, json_pack("[I,I,I,o,i]", (json_int_t)p->actor,
		                                (json_int_t)p->start, (json_int_t)p->end,
		                                tools_json_text(tv_str(m, p->name)), p->open));
	}
	tv_open(out, "],\n", "iterations", '[');
	for (size_t k = 0; k < m->niters && rc == 0; k++) {
		const struct tv_iter *x = &m->iters[k];
		fputs(k ? "," : "", out);
		rc = tv_json_put(out, json_pack("[I,I,I,o,i,o,i]", (json_int_t)x->n,
		                                (json_int_t)x->start, (json_int_t)x->end,
		                                tv_json_int(x->have_bytes ? x->bytes : 0), x->final,
		                                tv_json_int(x->chunks), x->complete));
	}
	fputc(']', out);
	return rc;
}

static int
tv_html_data(const struct tv_model *m, FILE *out, const struct tv_flight *fl, size_t nf)
{
	fputc('{', out);
	int rc = tv_member(out, "", "files", tv_html_files(m));
	rc = tv_json_first(rc, tv_member(out, ",\n", "span", json_integer(m->span)));
	rc = tv_json_first(rc, tv_member(out, ",\n", "actors", tv_html_actors(m)));
	rc = tv_json_first(rc, tv_html_slices(m, out));
	rc = tv_json_first(rc, tv_html_records(m, out, fl, nf));
	rc = tv_json_first(rc, tv_member(out, ",\n", "plots", tv_html_plots(m)));
	fputc('}', out);
	return rc;
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
	int rc = tv_html_data(m, out, fl, nf);
	fputs(cut + sizeof(mark) - 1, out);
	free(fl);
	return rc == 0 && ferror(out) ? -EIO : rc;
}
