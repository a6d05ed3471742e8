/*
 * tern-trace: loading one or two traces onto one time line, and the analysis
 * every output shares.
 *
 * Time: every record is put on the source's CLOCK_MONOTONIC (a destination
 * trace is shifted by the offset the source measured in the handshake,
 * peer_clock_offset_ns, else by the two headers' wall clocks), then made
 * relative to the earliest record.  Records are sorted by that time: their
 * stamps are taken before the writers' mutex, so files are only nearly
 * ordered.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tern/error.h"
#include "tools/trace_viewer.h"

/* Samples of a derived throughput series are at least this far apart (and
 * at least 1/80 of the trace): a few chunks per window, not one. */
#define TV_RATE_WINDOW_NS 20000000ll

const char *
tv_str(const struct tv_model *m, uint32_t idx)
{
	return idx > 0 && idx < m->nstrs ? m->strs[idx] : "";
}

const char *
tv_side_name(const struct tv_model *m, int f)
{
	return f == m->dst ? "dst" : "src";
}

static uint32_t
tv_hash(const char *s)
{
	uint32_t h = 2166136261u;
	for (; *s; s++)
		h = (h ^ (uint8_t)*s) * 16777619u;
	return h;
}

/* tv_intern returns the index of s in the string table, adding it. */
static int
tv_intern(struct tv_model *m, const char *s, uint32_t *idx)
{
	if (s[0] == '\0') {
		*idx = 0;
		return 0;
	}
	if (m->nstrs * 2 >= m->capstrhash) {
		uint32_t cap = m->capstrhash ? m->capstrhash * 2 : 256;
		uint32_t *h = calloc(cap, sizeof(*h));
		if (h == NULL)
			return TERN_ENOMEM;
		for (uint32_t i = 1; i < m->nstrs; i++) {
			uint32_t j = tv_hash(m->strs[i]) & (cap - 1);
			while (h[j] != 0)
				j = (j + 1) & (cap - 1);
			h[j] = i;
		}
		free(m->strhash);
		m->strhash = h;
		m->capstrhash = cap;
	}
	uint32_t j = tv_hash(s) & (m->capstrhash - 1);
	for (; m->strhash[j] != 0; j = (j + 1) & (m->capstrhash - 1))
		if (strcmp(m->strs[m->strhash[j]], s) == 0) {
			*idx = m->strhash[j];
			return 0;
		}
	if (m->nstrs == m->capstrs) {
		uint32_t cap = m->capstrs ? m->capstrs * 2 : 64;
		char **n = realloc(m->strs, cap * sizeof(*n));
		if (n == NULL)
			return TERN_ENOMEM;
		m->strs = n;
		m->capstrs = cap;
	}
	if (m->nstrs == 0)
		m->strs[m->nstrs++] = NULL; /* index 0 is "" */
	if ((m->strs[m->nstrs] = strdup(s)) == NULL)
		return TERN_ENOMEM;
	m->strhash[j] = m->nstrs;
	*idx = m->nstrs++;
	return 0;
}

static int
tv_actor_find(struct tv_model *m, int file, const struct tern_trace_record *r, uint32_t *idx)
{
	/* Few actors and runs of records by the same one: a scan from the
	 * last hit is enough. */
	static uint32_t last;
	for (uint32_t k = 0; k < m->nactors; k++) {
		uint32_t i = (last + k) % m->nactors;
		if (m->actors[i].file == file && m->actors[i].id == r->actor) {
			last = i;
			*idx = i;
			if (m->actors[i].name[0] == '\0' && r->actor_name[0] != '\0')
				snprintf(m->actors[i].name, sizeof(m->actors[i].name), "%s",
				         r->actor_name);
			return 0;
		}
	}
	if (m->nactors == m->capactors) {
		uint32_t cap = m->capactors ? m->capactors * 2 : 32;
		struct tv_actor *n = realloc(m->actors, cap * sizeof(*n));
		if (n == NULL)
			return TERN_ENOMEM;
		m->actors = n;
		m->capactors = cap;
	}
	struct tv_actor *a = &m->actors[m->nactors];
	memset(a, 0, sizeof(*a));
	a->file = (uint8_t)file;
	a->id = r->actor;
	a->conn = -1;
	snprintf(a->name, sizeof(a->name), "%s", r->actor_name);
	*idx = last = m->nactors++;
	return 0;
}

static int
tv_load_file(struct tv_model *m, int f, char *err, size_t errlen)
{
	struct tv_file *tf = &m->files[f];
	struct tern_trace_reader *rd;
	struct tern_trace_record r;
	int rc = tern_trace_reader_open(&rd, tf->path, &tf->hdr);
	if (rc == TERN_EMSG) {
		snprintf(err, errlen, "%s: not a tern trace file", tf->path);
		return rc;
	}
	if (rc == TERN_EVERSION) {
		snprintf(err, errlen, "%s: a tern trace of an unsupported version", tf->path);
		return rc;
	}
	if (rc != 0) {
		snprintf(err, errlen, "%s: %s", tf->path, tern_strerror(rc));
		return rc;
	}
	while ((rc = tern_trace_reader_next(rd, &r)) == 1) {
		if (m->nrecs == m->caprecs) {
			size_t cap = m->caprecs ? m->caprecs * 2 : 4096;
			struct tv_rec *n = realloc(m->recs, cap * sizeof(*n));
			if (n == NULL) {
				rc = TERN_ENOMEM;
				break;
			}
			m->recs = n;
			m->caprecs = cap;
		}
		struct tv_rec *x = &m->recs[m->nrecs];
		memset(x, 0, sizeof(*x));
		if ((rc = tv_actor_find(m, f, &r, &x->actor)) != 0 ||
		    (rc = tv_intern(m, r.text, &x->text)) != 0)
			break;
		x->t = (int64_t)r.mono_ns; /* the file's own clock until tv_timeline */
		x->value = r.value;
		x->seq = r.seq;
		x->re = r.re;
		x->kind = r.kind;
		x->peer = r.peer;
		x->type = r.type;
		x->file = (uint8_t)f;
		m->nrecs++;
		tf->nrecs++;
	}
	tern_trace_reader_close(rd);
	if (rc == TERN_EMSG) {
		/* Keep what precedes the damage: that is what a person needs. */
		fprintf(stderr,
		        "tern-trace: %s: corrupt record after %llu records; showing those\n",
		        tf->path, (unsigned long long)tf->nrecs);
		rc = 0;
	}
	if (rc != 0)
		snprintf(err, errlen, "%s: %s", tf->path, tern_strerror(rc));
	return rc;
}

static double
tv_bits_double(uint64_t bits)
{
	double d;
	memcpy(&d, &bits, sizeof(d));
	return d;
}

static int
tv_cmp_rec(const void *a, const void *b)
{
	const struct tv_rec *x = a, *y = b;
	if (x->t != y->t)
		return x->t < y->t ? -1 : 1;
	/* Same nanosecond: keep file order (seq grows with writes). */
	if (x->file != y->file)
		return x->file < y->file ? -1 : 1;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* tv_timeline finds each file's offset to the source clock, shifts and
 * sorts the records, and makes times relative to the first one. */
static void
tv_timeline(struct tv_model *m)
{
	m->src = m->dst = -1;
	for (int f = 0; f < m->nfiles; f++) {
		if (strcmp(m->files[f].hdr.side, "destination") == 0 && m->dst < 0)
			m->dst = f;
		else if (m->src < 0)
			m->src = f;
		m->files[f].offset_from = "own clock";
	}
	if (m->src >= 0 && m->dst >= 0) {
		const struct tern_trace_header *s = &m->files[m->src].hdr,
		                               *d = &m->files[m->dst].hdr;
		struct tv_file *df = &m->files[m->dst];
		/* The same instant on both wall clocks: dst mono - src mono. */
		df->offset_ns = ((int64_t)s->wall_ns - (int64_t)s->mono_ns) -
		                ((int64_t)d->wall_ns - (int64_t)d->mono_ns);
		df->offset_from = "wall clocks of the two headers";
		uint32_t name = 0;
		for (uint32_t i = 1; i < m->nstrs; i++)
			if (strcmp(m->strs[i], "peer_clock_offset_ns") == 0)
				name = i;
		for (size_t i = 0; name != 0 && i < m->nrecs; i++) {
			const struct tv_rec *r = &m->recs[i];
			if (r->kind == TERN_TRACE_COUNTER && r->file == m->src && r->text == name) {
				df->offset_ns = (int64_t)llround(tv_bits_double(r->value));
				df->offset_from = "handshake (peer_clock_offset_ns)";
				break;
			}
		}
	}
	int64_t t0 = INT64_MAX;
	for (size_t i = 0; i < m->nrecs; i++) {
		m->recs[i].t -= m->files[m->recs[i].file].offset_ns;
		if (m->recs[i].t < t0)
			t0 = m->recs[i].t;
	}
	if (m->nrecs == 0) /* a header only: start at the trace's opening */
		t0 = m->nfiles > 0 ? (int64_t)m->files[0].hdr.mono_ns : 0;
	m->t0_mono = t0;
	for (size_t i = 0; i < m->nrecs; i++)
		m->recs[i].t -= t0;
	qsort(m->recs, m->nrecs, sizeof(*m->recs), tv_cmp_rec);
	m->span = m->nrecs ? m->recs[m->nrecs - 1].t : 0;
}

static int
tv_cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

/* tv_actors fills the per-actor facts and labels: connection actors are
 * numbered in id order, which is their spawn (and connection) order. */
static void
tv_actors(struct tv_model *m)
{
	for (uint32_t i = 0; i < m->nactors; i++) { /* may run again after tv_causal */
		struct tv_actor *a = &m->actors[i];
		a->first_t = INT64_MAX;
		a->last_t = 0;
		a->nsend = a->nrecv = 0;
		a->spawned = a->exited = 0;
	}
	for (size_t i = 0; i < m->nrecs; i++) {
		const struct tv_rec *r = &m->recs[i];
		struct tv_actor *a = &m->actors[r->actor];
		if (r->t < a->first_t)
			a->first_t = r->t;
		if (r->t > a->last_t)
			a->last_t = r->t;
		switch (r->kind) {
		case TERN_TRACE_SPAWN:
			a->spawned = 1;
			a->spawn_t = r->t;
			break;
		case TERN_TRACE_EXIT:
			a->exited = 1;
			a->exit_t = r->t;
			a->exit_reason = r->value;
			a->exit_why = r->text;
			break;
		case TERN_TRACE_SEND:
			a->nsend++;
			break;
		case TERN_TRACE_RECV:
			a->nrecv++;
			break;
		}
	}
	for (uint32_t i = 0; i < m->nactors; i++) {
		struct tv_actor *a = &m->actors[i];
		if (strcmp(a->name, "conn-send") == 0 || strcmp(a->name, "conn-recv") == 0) {
			uint32_t ids[256], n = 0;
			for (uint32_t j = 0; j < m->nactors && n < 256; j++)
				if (m->actors[j].file == a->file &&
				    strcmp(m->actors[j].name, a->name) == 0)
					ids[n++] = m->actors[j].id;
			qsort(ids, n, sizeof(ids[0]), tv_cmp_u32);
			for (uint32_t k = 0; k < n; k++)
				if (ids[k] == a->id)
					a->conn = (int)k;
			snprintf(a->label, sizeof(a->label), "%s %d", a->name, a->conn);
			continue;
		}
		int dup = 0;
		for (uint32_t j = 0; j < m->nactors; j++)
			if (j != i && m->actors[j].file == a->file &&
			    strcmp(m->actors[j].name, a->name) == 0)
				dup = 1;
		if (a->name[0] == '\0' && a->id == 0) /* sent from outside any actor */
			snprintf(a->label, sizeof(a->label), "(no actor)");
		else if (a->name[0] == '\0')
			snprintf(a->label, sizeof(a->label), "actor #%u", a->id);
		else if (dup)
			snprintf(a->label, sizeof(a->label), "%s #%u", a->name, a->id);
		else
			snprintf(a->label, sizeof(a->label), "%s", a->name);
	}
}

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

/* tv_times collects, in time order, the times of actor's records of kind
 * and type: the start of the handling for RECV (a frame goes out during it),
 * the record's time otherwise. */
static size_t
tv_times(const struct tv_model *m, int64_t actor, uint32_t kind, uint32_t type, int64_t *t,
         size_t cap)
{
	size_t n = 0;
	for (size_t i = 0; actor >= 0 && i < m->nrecs && n < cap; i++) {
		const struct tv_rec *r = &m->recs[i];
		if (r->actor == (uint32_t)actor && r->kind == kind && r->type == type)
			t[n++] = kind == TERN_TRACE_RECV ? r->t - (int64_t)r->value : r->t;
	}
	return n;
}

static int64_t
tv_find_conn(const struct tv_model *m, int file, const char *name, int conn)
{
	for (uint32_t i = 0; i < m->nactors; i++)
		if (m->actors[i].file == file && m->actors[i].conn == conn &&
		    strcmp(m->actors[i].name, name) == 0)
			return i;
	return -1;
}

/* tv_causal corrects the destination's offset so that no control frame on
 * connection 0 arrives before it was sent.  The handshake estimate assumes
 * the destination stamped its hello ack half-way through the round trip; a
 * destination slow to accept breaks that by up to half the round trip
 * (milliseconds).  Frames are paired in order: the k-th control frame one
 * side's connection 0 sends is the k-th the other side's receives. */
static void
tv_causal(struct tv_model *m)
{
	enum { N = 64 };
	int64_t a[N], b[N], lo = INT64_MIN, hi = INT64_MAX;
	if (m->src < 0 || m->dst < 0)
		return;
	int64_t cs = tv_find_conn(m, m->src, "conn-send", 0);
	int64_t cr = tv_find_conn(m, m->dst, "conn-recv", 0);
	/* source -> destination: sent during conn-send's CTL_OUT handling,
	 * received before conn-recv's CTL_IN send. */
	size_t na = tv_times(m, cs, TERN_TRACE_RECV, TERN_MSG_CTL_OUT, a, N);
	size_t nb = tv_times(m, cr, TERN_TRACE_SEND, TERN_MSG_CTL_IN, b, N);
	for (size_t k = 0; k < na && k < nb; k++)
		if (b[k] - a[k] < hi)
			hi = b[k] - a[k];
	/* destination -> source, the answers. */
	na = tv_times(m, cr, TERN_TRACE_RECV, TERN_MSG_CTL_OUT, a, N);
	nb = tv_times(m, cs, TERN_TRACE_SEND, TERN_MSG_CTL_IN, b, N);
	for (size_t k = 0; k < na && k < nb; k++)
		if (a[k] - b[k] > lo)
			lo = a[k] - b[k];
	int64_t d = 0;
	if (lo > hi)
		return; /* the pairing does not hold (lost frames): leave it */
	if (lo > 0)
		d = lo;
	else if (hi < 0)
		d = hi;
	if (d == 0)
		return;
	struct tv_file *df = &m->files[m->dst];
	df->offset_ns += d;
	snprintf(df->offset_note, sizeof(df->offset_note),
	         "%s, corrected by %.3f ms so that no frame arrives before it is sent",
	         df->offset_from, (double)d / 1e6);
	df->offset_from = df->offset_note;
	int64_t t0 = INT64_MAX;
	for (size_t i = 0; i < m->nrecs; i++) {
		if (m->recs[i].file == m->dst)
			m->recs[i].t -= d;
		if (m->recs[i].t < t0)
			t0 = m->recs[i].t;
	}
	for (size_t i = 0; i < m->nrecs; i++)
		m->recs[i].t -= t0;
	m->t0_mono += t0;
	qsort(m->recs, m->nrecs, sizeof(*m->recs), tv_cmp_rec);
	m->span = m->nrecs ? m->recs[m->nrecs - 1].t : 0;
	tv_actors(m);
}

int
tv_load(struct tv_model *m, const char *const *paths, int n, char *err, size_t errlen)
{
	int rc;
	memset(m, 0, sizeof(*m));
	m->coordinator = m->receiver = -1;
	m->src = m->dst = -1;
	if (n < 1 || n > TV_MAX_FILES) {
		snprintf(err, errlen, "give one or two trace files");
		return TERN_EINVAL;
	}
	m->nfiles = n;
	for (int f = 0; f < n; f++) {
		m->files[f].path = paths[f];
		if ((rc = tv_load_file(m, f, err, errlen)) != 0)
			return rc;
	}
	if (n == 2 && strcmp(m->files[0].hdr.side, m->files[1].hdr.side) == 0) {
		snprintf(err, errlen, "%s and %s are both %s traces: give one of each side",
		         paths[0], paths[1], m->files[0].hdr.side);
		return TERN_EINVAL;
	}
	tv_timeline(m);
	tv_actors(m);
	tv_causal(m);
	m->coordinator = tv_find_actor(m, m->src, "coordinator");
	m->receiver = tv_find_actor(m, m->dst >= 0 ? m->dst : m->src, "receiver");
	if ((rc = tv_build_series(m)) != 0 || (rc = tv_build_phases(m, m->coordinator)) != 0 ||
	    (rc = tv_build_phases(m, m->receiver)) != 0 || (rc = tv_build_iters(m)) != 0 ||
	    (rc = tv_build_conns(m)) != 0) {
		snprintf(err, errlen, "%s", tern_strerror(rc));
		return rc;
	}
	return 0;
}

void
tv_free(struct tv_model *m)
{
	for (uint32_t i = 1; i < m->nstrs; i++)
		free(m->strs[i]);
	free(m->strs);
	free(m->strhash);
	free(m->recs);
	free(m->actors);
	for (size_t i = 0; i < m->nseries; i++) {
		free(m->series[i].t);
		free(m->series[i].v);
	}
	free(m->series);
	free(m->phases);
	free(m->iters);
	for (size_t i = 0; i < m->nconns; i++) {
		free(m->conns[i].rate.t);
		free(m->conns[i].rate.v);
	}
	free(m->conns);
	memset(m, 0, sizeof(*m));
}
