/*
 * tern-trace summary: the terminal report.  Every figure is derived from
 * records in the trace; where the trace cannot tell (a killed process, a
 * counter an older tern did not write) the report says so instead of
 * guessing.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "tools/trace_viewer.h"

static const char *
tv_dur(char *buf, size_t cap, int64_t ns)
{
	double a = (double)(ns < 0 ? -ns : ns);
	if (a < 1e3)
		snprintf(buf, cap, "%" PRId64 " ns", ns);
	else if (a < 1e6)
		snprintf(buf, cap, "%.1f us", (double)ns / 1e3);
	else if (a < 1e9)
		snprintf(buf, cap, "%.2f ms", (double)ns / 1e6);
	else
		snprintf(buf, cap, "%.3f s", (double)ns / 1e9);
	return buf;
}

static const char *
tv_bytes(char *buf, size_t cap, double b)
{
	if (b < 1024)
		snprintf(buf, cap, "%.0f B", b);
	else if (b < 1024.0 * 1024)
		snprintf(buf, cap, "%.1f KiB", b / 1024);
	else if (b < 1024.0 * 1024 * 1024)
		snprintf(buf, cap, "%.1f MiB", b / (1024.0 * 1024));
	else
		snprintf(buf, cap, "%.2f GiB", b / (1024.0 * 1024 * 1024));
	return buf;
}

static const char *
tv_rate(char *buf, size_t cap, double bytes, int64_t ns)
{
	if (ns <= 0) {
		snprintf(buf, cap, "-");
		return buf;
	}
	char b[32];
	snprintf(buf, cap, "%s/s", tv_bytes(b, sizeof(b), bytes * 1e9 / (double)ns));
	return buf;
}

static double
tv_ms(int64_t ns)
{
	return (double)ns / 1e6;
}

static const char *
tv_label(const struct tv_model *m, uint32_t actor, char *buf, size_t cap)
{
	const struct tv_actor *a = &m->actors[actor];
	if (m->nfiles > 1)
		snprintf(buf, cap, "%s %s", tv_side_name(m, a->file), a->label);
	else
		snprintf(buf, cap, "%s", a->label);
	return buf;
}

static void
tv_sum_files(const struct tv_model *m, FILE *out)
{
	char d[32];
	for (int f = 0; f < m->nfiles; f++) {
		const struct tv_file *tf = &m->files[f];
		fprintf(out, "  %-28s %-11s pid %-7" PRId64 " %8" PRIu64 " records", tf->path,
		        tf->hdr.side, tf->hdr.pid, tf->nrecs);
		if (f == m->dst && m->src >= 0)
			fprintf(out, "  clock offset %s (%s)", tv_dur(d, sizeof(d), tf->offset_ns),
			        tf->offset_from);
		fputc('\n', out);
	}
	fprintf(out, "  span %s; times are ms since the first record%s\n\n",
	        tv_dur(d, sizeof(d), m->span), m->nfiles > 1 ? ", on the source's clock" : "");
}

static void
tv_sum_phases(const struct tv_model *m, FILE *out, int64_t actor)
{
	char d[32], l[128];
	if (actor < 0)
		return;
	fprintf(out, "Phases (%s)\n", tv_label(m, (uint32_t)actor, l, sizeof(l)));
	int any = 0;
	for (size_t i = 0; i < m->nphases; i++) {
		const struct tv_phase *p = &m->phases[i];
		if (p->actor != (uint32_t)actor)
			continue;
		any = 1;
		fprintf(out, "  %-12s at %10.3f  %12s%s\n", tv_str(m, p->name), tv_ms(p->start),
		        tv_dur(d, sizeof(d), p->end - p->start),
		        p->open ? "  (the trace ends in this phase)" : "");
	}
	if (!any)
		fprintf(out, "  no state changes recorded\n");
	fputc('\n', out);
}

/* The first record after t by actor of kind/type (type 0: any), -1 if none. */
static int64_t
tv_next(const struct tv_model *m, int64_t actor, int64_t t, uint32_t kind, uint32_t type)
{
	for (size_t i = 0; i < m->nrecs; i++) {
		const struct tv_rec *r = &m->recs[i];
		if (r->t >= t && r->actor == (uint32_t)actor && r->kind == kind &&
		    (type == 0 || r->type == type))
			return r->t;
	}
	return -1;
}

static void
tv_step(FILE *out, const char *name, int64_t from, int64_t to, const char *note)
{
	char d[32];
	if (from < 0 || to < 0)
		fprintf(out, "  %-22s %12s  %s\n", name, "-", note);
	else
		fprintf(out, "  %-22s %12s  %s\n", name, tv_dur(d, sizeof(d), to - from), note);
}

static void
tv_sum_switchover(const struct tv_model *m, FILE *out)
{
	int64_t co = m->coordinator;
	int64_t sw = tv_state_time(m, co, "switchover");
	char d[32], b[32];
	if (co < 0)
		return;
	if (sw < 0) {
		fprintf(out, "Switchover: not reached (the guest was never paused)\n\n");
		return;
	}
	fprintf(out, "Switchover (guest paused at %.3f ms)\n", tv_ms(sw));
	int64_t take = tv_next(m, co, sw, TERN_TRACE_SEND, TERN_MSG_DIRTY_TAKE);
	int64_t set = take < 0 ? -1 : tv_next(m, co, take, TERN_TRACE_RECV, TERN_MSG_DIRTY_SET);
	const struct tv_iter *fin = NULL;
	for (size_t k = 0; k < m->niters; k++)
		if (m->iters[k].final)
			fin = &m->iters[k];
	int64_t sent = fin != NULL && fin->complete ? fin->end : -1;
	int64_t st = tv_state_time(m, co, "state"), ve = tv_state_time(m, co, "verify");
	int64_t ho = tv_state_time(m, co, "handoff"), done = tv_state_time(m, co, "completed");
	tv_step(out, "pause vCPUs", sw, take, "switchover -> final DIRTY_TAKE sent");
	tv_step(out, "final harvest", take, set, "DIRTY_TAKE -> DIRTY_SET");
	char note[128] = "last dirty set sent and acknowledged";
	if (fin != NULL && fin->have_bytes)
		snprintf(note, sizeof(note), "%s, %" PRIu64 " chunks, acknowledged",
		         tv_bytes(b, sizeof(b), (double)fin->bytes), fin->chunks);
	tv_step(out, "final send", set, sent, note);
	tv_step(out, "state", sent, ve >= 0 ? ve : ho,
	        st < 0 ? "not reached" : "state saved, sent, loaded by the destination");
	if (ve >= 0)
		tv_step(out, "verify", ve, ho, "digests compared");
	else
		fprintf(out, "  %-22s %12s  %s\n", "verify", "-", "not requested");
	tv_step(out, "destination resume", ho, done, "W_COMPLETE -> confirmed");
	if (done >= 0)
		fprintf(out, "  %-22s %12s  switchover -> completed%s\n", "total (source view)",
		        tv_dur(d, sizeof(d), done - sw), ve >= 0 ? ", verify included" : "");
	else
		fprintf(out, "  %-22s %12s  the trace ends before the handoff completed\n",
		        "total (source view)", "-");
	int64_t res = tv_state_time(m, m->receiver, "resumed");
	if (m->receiver >= 0 && m->actors[m->receiver].file == m->dst && m->src >= 0) {
		if (res >= 0)
			fprintf(out, "  destination resumed %s after the pause (merged clocks)\n",
			        tv_dur(d, sizeof(d), res - sw));
		else
			fprintf(out, "  destination never resumed\n");
	}
	fputc('\n', out);
}

static void
tv_sum_iters(const struct tv_model *m, FILE *out)
{
	char d[32], b[32], r[32];
	if (m->coordinator < 0)
		return;
	if (m->niters == 0) {
		fprintf(out, "Iterations: none started\n\n");
		return;
	}
	fprintf(out, "Iterations\n");
	fprintf(out, "  %4s %10s %11s %11s %10s %11s %7s %13s\n", "iter", "start ms", "duration",
	        "dirty taken", "sent pages", "bytes", "chunks", "bandwidth");
	for (size_t k = 0; k < m->niters; k++) {
		const struct tv_iter *x = &m->iters[k];
		char taken[24] = "-", pages[24] = "-";
		if (x->n == 0 && !x->final)
			snprintf(taken, sizeof(taken), "(bulk)");
		else if (x->have_taken)
			snprintf(taken, sizeof(taken), "%" PRIu64, x->dirty_taken);
		if (x->have_bytes)
			snprintf(pages, sizeof(pages), "%" PRIu64, x->bytes / 4096);
		fprintf(out, "  %4u %10.3f %11s %11s %10s %11s %7" PRIu64 " %13s%s\n", x->n,
		        tv_ms(x->start), tv_dur(d, sizeof(d), x->end - x->start), taken, pages,
		        x->have_bytes ? tv_bytes(b, sizeof(b), (double)x->bytes) : "-", x->chunks,
		        x->have_bytes ? tv_rate(r, sizeof(r), (double)x->bytes, x->end - x->start)
		                      : "-",
		        x->final ? (x->complete ? "  final, guest paused" : "  final, incomplete")
		                 : (x->complete ? "" : "  incomplete: the trace ends"));
	}
	fprintf(out, "  (duration: iteration start -> its last acknowledgement handled; dirty "
	             "taken: pages in the dirty set(s) taken for it)\n\n");
}

static void
tv_sum_conns(const struct tv_model *m, FILE *out)
{
	char l[128], b[32], r[32], d[32];
	if (m->nconns == 0)
		return;
	fprintf(out, "Connections\n");
	fprintf(out, "  %-22s %8s %11s %11s %13s\n", "connection", "chunks", "bytes", "active",
	        "throughput");
	for (size_t k = 0; k < m->nconns; k++) {
		const struct tv_conn *c = &m->conns[k];
		int64_t act = c->first >= 0 && c->last > c->first ? c->last - c->first : 0;
		fprintf(out, "  %-22s %8" PRIu64 " %11s %11s %13s%s\n",
		        tv_label(m, c->actor, l, sizeof(l)), c->chunks,
		        c->have_bytes ? tv_bytes(b, sizeof(b), (double)c->bytes) : "-",
		        tv_dur(d, sizeof(d), act),
		        c->have_bytes ? tv_rate(r, sizeof(r), (double)c->bytes, act) : "-",
		        strcmp(m->actors[c->actor].name, "conn-recv") == 0
		            ? "  (page frames written)"
		            : "");
	}
	fprintf(out, "  (active: first chunk taken -> last acknowledged)\n\n");
}

static int
tv_cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static int
tv_sum_actors(const struct tv_model *m, FILE *out)
{
	char l[128], d1[32], d2[32], d3[32];
	uint64_t *v = malloc((m->nrecs ? m->nrecs : 1) * sizeof(*v));
	if (v == NULL)
		return -ENOMEM;
	fprintf(out, "Actors\n");
	fprintf(out, "  %-24s %7s %7s %8s %10s %10s %10s\n", "actor", "sent", "recv", "handled",
	        "median", "p99", "max");
	for (uint32_t a = 0; a < m->nactors; a++) {
		size_t n = 0;
		for (size_t i = 0; i < m->nrecs; i++)
			if (m->recs[i].actor == a && m->recs[i].kind == TERN_TRACE_RECV &&
			    m->recs[i].value > 0)
				v[n++] = m->recs[i].value;
		const struct tv_actor *x = &m->actors[a];
		fprintf(out, "  %-24s %7" PRIu64 " %7" PRIu64 " %8zu", tv_label(m, a, l, sizeof(l)),
		        x->nsend, x->nrecv, n);
		if (n > 0) {
			qsort(v, n, sizeof(*v), tv_cmp_u64);
			size_t p99 = (n * 99 + 99) / 100;
			fprintf(out, " %10s %10s %10s",
			        tv_dur(d1, sizeof(d1), (int64_t)v[(n - 1) / 2]),
			        tv_dur(d2, sizeof(d2), (int64_t)v[p99 - 1]),
			        tv_dur(d3, sizeof(d3), (int64_t)v[n - 1]));
		}
		fputc('\n', out);
	}
	fprintf(out, "  (handled: messages dispatched to the actor's handler, timed; replies and "
	             "queue takes are received, not handled)\n\n");
	free(v);
	return 0;
}

static void
tv_sum_exits(const struct tv_model *m, FILE *out)
{
	static const char *reasons[] = {"normal", "error", "killed"};
	char l[128];
	int any = 0;
	fprintf(out, "Abnormal exits\n");
	for (uint32_t a = 0; a < m->nactors; a++) {
		const struct tv_actor *x = &m->actors[a];
		if (x->exited && x->exit_reason != 0) {
			any = 1;
			fprintf(out, "  %-24s at %10.3f  %s: %s\n", tv_label(m, a, l, sizeof(l)),
			        tv_ms(x->exit_t),
			        x->exit_reason < 3 ? reasons[x->exit_reason] : "?",
			        tv_str(m, x->exit_why)[0] ? tv_str(m, x->exit_why)
			                                  : "(no reason given)");
		}
	}
	for (uint32_t a = 0; a < m->nactors; a++) {
		const struct tv_actor *x = &m->actors[a];
		if (x->spawned && !x->exited) {
			any = 1;
			fprintf(out,
			        "  %-24s no exit recorded (last record at %.3f ms): its process "
			        "died or the trace was cut\n",
			        tv_label(m, a, l, sizeof(l)), tv_ms(x->last_t));
		}
	}
	if (!any)
		fprintf(out, "  none: every actor stopped normally\n");
}

int
tv_summary(const struct tv_model *m, FILE *out)
{
	fprintf(out, "tern-trace summary\n");
	tv_sum_files(m, out);
	tv_sum_phases(m, out, m->coordinator);
	tv_sum_phases(m, out, m->receiver);
	tv_sum_switchover(m, out);
	tv_sum_iters(m, out);
	tv_sum_conns(m, out);
	int rc = tv_sum_actors(m, out);
	if (rc != 0)
		return rc;
	tv_sum_exits(m, out);
	return ferror(out) ? -EIO : 0;
}
