/*
 * tern-trace: loading one or two traces onto one time line (the string
 * table, the actors, each file's clock offset and its causal correction).
 * What is derived from the loaded records is in trace_analysis.c.
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
	if ((rc = tv_analyse(m)) != 0) {
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
