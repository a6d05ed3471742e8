/*
 * What tern-trace's two JSON writers (Perfetto export, HTML report) share:
 * jansson's encoder with the escaping the report needs, the conversions of
 * trace values to JSON values, and the chunks in flight both draw.
 */
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tools/trace_viewer.h"

/* Timestamps are microseconds with nanoseconds as decimals: 15 significant
 * digits print them exactly for any trace shorter than ~30 years, and print
 * a counter already rounded to 6 digits (tv_json_num) as those 6 digits. */
#define TV_JSON_FLAGS (JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(15))

/* '<', '>' and '&' occur in jansson's output only inside strings; written
 * as \u escapes the JSON means the same and is safe inside the report's
 * <script> element (no "</script>" or "<!--" can form from a label). */
static int
tv_dump_cb(const char *buf, size_t size, void *data)
{
	FILE *out = data;
	for (size_t i = 0; i < size; i++) {
		char c = buf[i];
		if (c == '<' || c == '>' || c == '&')
			fprintf(out, "\\u%04x", (unsigned)c);
		else
			fputc(c, out);
	}
	return ferror(out) ? -1 : 0;
}

/* tv_json_put writes v (NULL: building it ran out of memory) and releases it. */
int
tv_json_put(FILE *out, json_t *v)
{
	if (v == NULL)
		return -ENOMEM;
	int rc = json_dump_callback(v, tv_dump_cb, out, TV_JSON_FLAGS);
	json_decref(v);
	return rc == 0 ? 0 : -EIO;
}

/* tv_json_first keeps the first error of a sequence of writes. */
int
tv_json_first(int rc, int next)
{
	return rc != 0 ? rc : next;
}

/* tv_json_num is a measured value: integers stay integers, other values keep 6
 * significant digits (a counter is not more precise than that), and a
 * value JSON can not hold (NaN, infinity) becomes 0. */
json_t *
tv_json_num(double v)
{
	if (!isfinite(v))
		return json_integer(0);
	if (v == floor(v) && fabs(v) < 9e15)
		return json_integer((json_int_t)v);
	char buf[32];
	snprintf(buf, sizeof(buf), "%.6g", v);
	return json_real(strtod(buf, NULL));
}

/* tv_json_int: a record's unsigned counter (jansson's integers are signed; no
 * sequence number or byte count in a trace comes near 2^63). */
json_t *
tv_json_int(uint64_t v)
{
	return json_integer(v > INT64_MAX ? INT64_MAX : (json_int_t)v);
}

/* ---- chunks in flight per connection: a chunk taken from the queue until
 * its CHUNK_DONE; one TCP stream acknowledges in order, so FIFO pairs them. */

struct tv_flight *
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
