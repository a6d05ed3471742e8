/*
 * tern-trace: the analysis every output shares, derived from a loaded model
 * (trace_model.c): counter series, the coordinator's and receiver's phases,
 * the iterations, and the connections with their throughput.  Apart from
 * loading because it only reads records already on one time line, and the
 * outputs read its results, never the records' raw clocks.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tern/error.h"
#include "tools/trace_viewer.h"

/* Samples of a derived throughput series are at least this far apart (and
 * at least 1/80 of the trace): a few chunks per window, not one. */
#define TV_RATE_WINDOW_NS 20000000ll

static int
tv_series_add(struct tv_series *s, int64_t t, double v)
{
	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 64;
		int64_t *nt = realloc(s->t, cap * sizeof(*nt));
		if (nt == NULL)
			return TERN_ENOMEM;
		s->t = nt;
		double *nv = realloc(s->v, cap * sizeof(*nv));
		if (nv == NULL)
			return TERN_ENOMEM;
		s->v = nv;
		s->cap = cap;
	}
	s->t[s->n] = t;
	s->v[s->n] = v;
	s->n++;
	return 0;
}

const struct tv_series *
tv_find_series(const struct tv_model *m, uint32_t actor, const char *name)
{
	for (size_t i = 0; i < m->nseries; i++)
		if ((actor == UINT32_MAX || m->series[i].actor == actor) &&
		    strcmp(tv_str(m, m->series[i].name), name) == 0)
			return &m->series[i];
	return NULL;
}

static int
tv_build_series(struct tv_model *m)
{
	size_t cap = 0;
	for (size_t i = 0; i < m->nrecs; i++) {
		const struct tv_rec *r = &m->recs[i];
		if (r->kind != TERN_TRACE_COUNTER)
			continue;
		struct tv_series *s = NULL;
		for (size_t j = 0; j < m->nseries && s == NULL; j++)
			if (m->series[j].actor == r->actor && m->series[j].name == r->text)
				s = &m->series[j];
		if (s == NULL) {
			if (m->nseries == cap) {
				cap = cap ? cap * 2 : 16;
				struct tv_series *n = realloc(m->series, cap * sizeof(*n));
				if (n == NULL)
					return TERN_ENOMEM;
				m->series = n;
			}
			s = &m->series[m->nseries++];
			memset(s, 0, sizeof(*s));
			s->actor = r->actor;
			s->name = r->text;
		}
		double v = tv_bits_double(r->value);
		if (tv_series_add(s, r->t, isfinite(v) ? v : 0) != 0)
			return TERN_ENOMEM;
	}
	return 0;
}

static int64_t
tv_find_actor(const struct tv_model *m, int file, const char *name)
{
	for (uint32_t i = 0; i < m->nactors; i++)
		if ((file < 0 || m->actors[i].file == file) && strcmp(m->actors[i].name, name) == 0)
			return i;
	return -1;
}

static int
tv_build_phases(struct tv_model *m, int64_t actor)
{
	if (actor < 0)
		return 0;
	const struct tv_actor *a = &m->actors[actor];
	int64_t end = a->exited ? a->exit_t : 0;
	if (!a->exited) /* the file's last record */
		for (size_t i = 0; i < m->nrecs; i++)
			if (m->recs[i].file == a->file)
				end = m->recs[i].t;
	for (size_t i = 0; i < m->nrecs; i++) {
		const struct tv_rec *r = &m->recs[i];
		if (r->kind != TERN_TRACE_STATE || r->actor != (uint32_t)actor)
			continue;
		struct tv_phase *n = realloc(m->phases, (m->nphases + 1) * sizeof(*n));
		if (n == NULL)
			return TERN_ENOMEM;
		m->phases = n;
		struct tv_phase *p = &m->phases[m->nphases];
		if (m->nphases > 0 && p[-1].actor == (uint32_t)actor && p[-1].open) {
			p[-1].end = r->t;
			p[-1].open = 0;
		}
		*p = (struct tv_phase){(uint32_t)actor, r->text, r->t, end > r->t ? end : r->t, 1};
		m->nphases++;
	}
	/* The last phase ends at the exit if there was one; a terminal state
	 * (completed, resumed, aborted) is not "open" either way. */
	if (m->nphases > 0 && m->phases[m->nphases - 1].actor == (uint32_t)actor && a->exited)
		m->phases[m->nphases - 1].open = 0;
	return 0;
}

int64_t
tv_state_time(const struct tv_model *m, int64_t actor, const char *name)
{
	for (size_t i = 0; actor >= 0 && i < m->nphases; i++)
		if (m->phases[i].actor == (uint32_t)actor &&
		    strcmp(tv_str(m, m->phases[i].name), name) == 0)
			return m->phases[i].start;
	return -1;
}

static int
tv_build_iters(struct tv_model *m)
{
	if (m->coordinator < 0)
		return 0;
	uint32_t co = (uint32_t)m->coordinator;
	const struct tv_series *it = tv_find_series(m, co, "iteration");
	if (it == NULL || it->n == 0)
		return 0;
	if ((m->iters = calloc(it->n, sizeof(*m->iters))) == NULL)
		return TERN_ENOMEM;
	m->niters = it->n;
	int64_t sw = tv_state_time(m, m->coordinator, "switchover");
	int64_t after = -1; /* the final iteration completed when the state was sent */
	const char *later[] = {"state", "verify", "handoff", "completed"};
	for (int k = 0; k < 4 && after < 0; k++)
		after = tv_state_time(m, m->coordinator, later[k]);
	for (size_t k = 0; k < it->n; k++) {
		struct tv_iter *x = &m->iters[k];
		x->n = (uint32_t)llround(it->v[k]);
		x->start = x->end = it->t[k];
		x->final = sw >= 0 && it->t[k] >= sw;
		x->complete = k + 1 < it->n || (x->final && after >= 0);
	}
	/* Acks: a CHUNK_DONE belongs to the iteration in which its handling
	 * began (the last one's handler starts the next iteration). */
	const struct tv_series *dp = NULL;
	for (size_t i = 0; i < m->nrecs; i++) {
		const struct tv_rec *r = &m->recs[i];
		if (r->kind != TERN_TRACE_RECV || r->actor != co || r->type != TERN_MSG_CHUNK_DONE)
			continue;
		int64_t start = r->t - (int64_t)r->value;
		for (size_t k = m->niters; k-- > 0;)
			if (m->iters[k].start <= start) {
				m->iters[k].chunks++;
				if (start > m->iters[k].end)
					m->iters[k].end = start;
				break;
			}
	}
	for (size_t s = 0; s < m->nseries; s++) {
		const struct tv_series *cs = &m->series[s];
		const struct tv_actor *a = &m->actors[cs->actor];
		if (a->file != m->actors[co].file)
			continue;
		if (strcmp(tv_str(m, cs->name), "dirty_pages") == 0 &&
		    strcmp(a->name, "dirty-log") == 0)
			dp = cs;
		if (strcmp(tv_str(m, cs->name), "conn_payload_bytes") != 0)
			continue;
		double prev = 0;
		for (size_t j = 0; j < cs->n; j++) {
			double d = cs->v[j] - prev;
			prev = cs->v[j];
			for (size_t k = m->niters; k-- > 0;)
				if (m->iters[k].start <= cs->t[j]) {
					m->iters[k].bytes += d > 0 ? (uint64_t)d : 0;
					m->iters[k].have_bytes = 1;
					break;
				}
		}
	}
	/* Dirty pages taken for iteration k: the takes since iteration k-1
	 * began (the switchover adds the final harvest to the last set). */
	for (size_t k = 1; dp != NULL && k < m->niters; k++)
		for (size_t j = 0; j < dp->n; j++)
			if (dp->t[j] > m->iters[k - 1].start && dp->t[j] <= m->iters[k].start) {
				m->iters[k].dirty_taken += (uint64_t)dp->v[j];
				m->iters[k].have_taken = 1;
			}
	return 0;
}

static int
tv_build_conns(struct tv_model *m)
{
	size_t n = 0;
	for (uint32_t i = 0; i < m->nactors; i++)
		n += m->actors[i].conn >= 0;
	if (n == 0)
		return 0;
	if ((m->conns = calloc(n, sizeof(*m->conns))) == NULL)
		return TERN_ENOMEM;
	/* In file and connection order. */
	for (int f = 0; f < m->nfiles; f++)
		for (int c = 0; c < 256; c++)
			for (uint32_t i = 0; i < m->nactors; i++)
				if (m->actors[i].file == f && m->actors[i].conn == c) {
					m->conns[m->nconns].actor = i;
					m->conns[m->nconns].first = -1;
					m->nconns++;
				}
	for (size_t i = 0; i < m->nrecs; i++) {
		const struct tv_rec *r = &m->recs[i];
		if (m->actors[r->actor].conn < 0)
			continue;
		struct tv_conn *c = NULL;
		for (size_t k = 0; k < m->nconns && c == NULL; k++)
			if (m->conns[k].actor == r->actor)
				c = &m->conns[k];
		if (c == NULL)
			continue;
		/* Source: a chunk taken from the queue .. its CHUNK_DONE.
		 * Destination: each PAGES_IN is one page frame written. */
		if ((r->kind == TERN_TRACE_RECV && r->type == TERN_MSG_CHUNK) ||
		    (r->kind == TERN_TRACE_SEND && r->type == TERN_MSG_PAGES_IN)) {
			if (c->first < 0)
				c->first = r->t;
		}
		if (r->kind == TERN_TRACE_SEND &&
		    (r->type == TERN_MSG_CHUNK_DONE || r->type == TERN_MSG_PAGES_IN)) {
			c->chunks++;
			c->last = r->t;
		}
	}
	for (size_t k = 0; k < m->nconns; k++) {
		struct tv_conn *c = &m->conns[k];
		const struct tv_series *b = tv_find_series(m, c->actor, "conn_payload_bytes");
		if (b == NULL || b->n == 0)
			continue;
		c->have_bytes = 1;
		c->bytes = (uint64_t)b->v[b->n - 1];
		int64_t win = m->span / 80 > TV_RATE_WINDOW_NS ? m->span / 80 : TV_RATE_WINDOW_NS;
		int64_t wt = c->first >= 0 && c->first < b->t[0] ? c->first : b->t[0];
		double wb = 0;
		if (tv_series_add(&c->rate, wt, 0) != 0)
			return TERN_ENOMEM;
		for (size_t j = 0; j < b->n; j++) {
			if (b->t[j] - wt < win && j + 1 < b->n)
				continue;
			if (b->t[j] <= wt)
				continue;
			double r = (b->v[j] - wb) * 1e9 / (double)(b->t[j] - wt);
			if (tv_series_add(&c->rate, b->t[j], r) != 0)
				return TERN_ENOMEM;
			wt = b->t[j];
			wb = b->v[j];
		}
		if (tv_series_add(&c->rate, wt + 1, 0) != 0)
			return TERN_ENOMEM;
	}
	return 0;
}

int
tv_analyse(struct tv_model *m)
{
	int rc;

	m->coordinator = tv_find_actor(m, m->src, "coordinator");
	m->receiver = tv_find_actor(m, m->dst >= 0 ? m->dst : m->src, "receiver");
	if ((rc = tv_build_series(m)) != 0 || (rc = tv_build_phases(m, m->coordinator)) != 0 ||
	    (rc = tv_build_phases(m, m->receiver)) != 0 || (rc = tv_build_iters(m)) != 0 ||
	    (rc = tv_build_conns(m)) != 0)
		return rc;
	return 0;
}
