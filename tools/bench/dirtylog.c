/*
 * `dirtylog`: the dirty log in process (libtern, no migration).  Per guest
 * size, sparse (only the working set populated) and populated (every page):
 * DIRTY_TAKE request-to-reply latency through the DirtyLogActor against
 * synchronous harvests at the same interval and at the actor's period; then
 * bitmap (sparse, populated) against ring harvests of a fixed dirty set.
 * Populated memory is the case a TAKE must not wait on: the bitmap mode's
 * background harvest then walks every page of the guest.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "actors/actor.h"
#include "actors/dirty_log.h"
#include "kvm/guest.h"
#include "tern/tern.h"
#include "tools/bench/bench.h"

static void
bench_sleep_ms(double ms)
{
	struct timespec ts = {.tv_sec = (time_t)(ms / 1e3), .tv_nsec = (long)(fmod(ms, 1e3) * 1e6)};
	nanosleep(&ts, NULL);
}

static int
bench_guest(const char *spec, struct tern_guest **g, char *why, size_t len)
{
	struct tern_guest_config cfg;
	int rc = tern_guest_spec_parse(spec, &cfg, why, len);
	return rc != 0 ? rc : tern_guest_create(g, &cfg, TERN_GUEST_SOURCE, why, len);
}

/* One series of TAKEs through a DirtyLogActor (seconds, per TAKE). */
struct dl_takes {
	double *lat;     /* request sent -> reply received */
	double *actor;   /* request sent -> reply sent (the actor's part) */
	double *harvest; /* DIRTY_SET's harvest_ns: the harvest inside the TAKE */
	double *pages;
	int n;
};

struct dl_size {
	char why[256];
	struct dl_takes t, floor; /* with the actor harvesting; with no harvest */
	const char *spec;
	int populated;         /* every page of the guest populated before */
	double populate_ms;    /* how long populating took (in no other figure) */
	double *sync, *period; /* seconds */
	double take_pages, sync_pages, period_pages; /* medians */
	int nsync, nperiod;
};

static int
bench_dl_takes_alloc(struct dl_takes *t, int n)
{
	t->lat = calloc((size_t)n, sizeof(double));
	t->actor = calloc((size_t)n, sizeof(double));
	t->harvest = calloc((size_t)n, sizeof(double));
	t->pages = calloc((size_t)n, sizeof(double));
	return t->lat && t->actor && t->harvest && t->pages ? 0 : -ENOMEM;
}

static void
bench_dl_takes_free(struct dl_takes *t)
{
	free(t->lat);
	free(t->actor);
	free(t->harvest);
	free(t->pages);
}

/* --takes DIRTY_TAKEs through a DirtyLogActor harvesting every period_ms,
 * spawned for them, holding at most two sets as the coordinator does. */
static int
bench_dl_takes(const struct bench_cfg *x, struct tern_runtime *rt, struct tern_mailbox *mb,
               struct tern_dirty_log_args *a, uint32_t period_ms, struct dl_takes *t, char *why,
               size_t whylen)
{
	struct tern_actor *act = NULL;
	struct tern_exit ex;
	uint32_t held[2] = {0, 0}; /* set ids held, as the coordinator holds them */
	int rc;

	a->period_ms = period_ms;
	if ((rc = tern_spawn(rt, &tern_dirty_log_actor, a, tern_mailbox_id(mb), &act, &ex)) != 0) {
		snprintf(why, whylen, "spawn dirty-log: %.200s", ex.why);
		return rc;
	}
	uint32_t id = tern_actor_id(act);
	for (int i = 0; i < x->takes; i++) {
		struct tern_msg m, r;
		/* Realistic intervals: not in step with the actor's period. */
		bench_sleep_ms(x->interval_ms * (0.5 + (double)(i % 7) / 6));
		if (held[1] != 0) {
			tern_msg_init(&m, TERN_MSG_DIRTY_GIVE);
			m.u.dirty_give.set = held[1];
			if ((rc = tern_send(rt, tern_mailbox_id(mb), id, &m)) != 0)
				break;
		}
		held[1] = held[0];
		tern_msg_init(&m, TERN_MSG_DIRTY_TAKE);
		double t0 = bench_now();
		rc = tern_mailbox_request(mb, id, &m, &r, 5000);
		t->lat[i] = bench_now() - t0;
		if (rc == 0 && r.type != TERN_MSG_DIRTY_SET)
			rc = -EPROTO;
		if (rc != 0) {
			snprintf(why, whylen, "DIRTY_TAKE: %s", tern_strerror(rc));
			break;
		}
		held[0] = r.u.dirty_set.set;
		/* Both stamps are CLOCK_MONOTONIC at send, in one process: the
		 * actor's part, without the requester's own wake-up. */
		t->actor[i] = (double)(r.time_ns - m.time_ns) / 1e9;
		t->harvest[i] = (double)r.u.dirty_set.harvest_ns / 1e9;
		t->pages[i] = (double)r.u.dirty_set.pages;
		t->n++;
	}
	struct tern_msg m;
	tern_msg_init(&m, TERN_MSG_DIRTY_STOP);
	(void)tern_send(rt, tern_mailbox_id(mb), id, &m); /* a failed send: killed below */
	if (tern_actor_join(act, 5000, &ex) != 0) {
		tern_actor_kill(act);
		(void)tern_actor_join(act, -1, NULL);
	}
	return rc;
}

/* TAKE latency through the DirtyLogActor, then a synchronous harvest of the
 * same guest at the same interval, then at the actor's period. */
static int
bench_dl_size(const struct bench_cfg *x, const char *spec, struct dl_size *d)
{
	struct tern_guest *g = NULL;
	struct tern_dirty_log_args a = {.period_ms = (uint32_t)x->period_ms};
	struct tern_runtime *rt = NULL;
	struct tern_mailbox *mb = NULL;
	struct tern_bitmap bm = {0};
	double pg[64];
	int rc, n = x->takes;

	d->sync = calloc((size_t)n, sizeof(double));
	d->period = calloc((size_t)n, sizeof(double));
	if (d->sync == NULL || d->period == NULL || bench_dl_takes_alloc(&d->t, n) != 0 ||
	    bench_dl_takes_alloc(&d->floor, n) != 0)
		return -ENOMEM;
	if ((rc = bench_guest(spec, &g, d->why, sizeof(d->why))) != 0)
		return rc;
	a.guest = g;
	for (int k = 0; k < TERN_DIRTY_MAPS; k++)
		if ((rc = tern_bitmap_init(&a.maps[k], g->npages)) != 0)
			goto out;
	if ((rc = tern_bitmap_init(&bm, g->npages)) != 0)
		goto out;
	/* The working set populated first (it sits at the start of memory,
	 * after the vCPUs' control pages): first touches of fresh pages cost
	 * ~10 us each here and are the guest's cost, not the dirty log's.
	 * Populated: every page, as a guest that has used all its memory. */
	uint64_t ws = g->cfg.ws_size + (4u << 20);
	if (d->populated || ws > g->regions[0].size)
		ws = g->regions[0].size;
	double tp = bench_now();
	if ((rc = tern_guest_populate(g, 0, ws)) != 0) {
		snprintf(d->why, sizeof(d->why), "populate: %s", tern_strerror(rc));
		goto out;
	}
	d->populate_ms = (bench_now() - tp) * 1e3;
	bench_sleep_ms(500);
	if ((rc = tern_runtime_create(&rt, NULL)) != 0 ||
	    (rc = tern_mailbox_open(rt, "bench", &mb)) != 0)
		goto out;
	if ((rc = bench_dl_takes(x, rt, mb, &a, (uint32_t)x->period_ms, &d->t, d->why,
	                         sizeof(d->why))) != 0)
		goto out;
	d->take_pages = bench_median(d->t.pages, d->t.n < 64 ? d->t.n : 64);
	/* The control: the same TAKEs while no harvest runs (the first one
	 * would come after an hour), so what is left is the mailbox round
	 * trip and the scheduler on this machine, not the dirty log. */
	for (int k = 0; k < TERN_DIRTY_MAPS; k++)
		tern_bitmap_clear_all(&a.maps[k]);
	if ((rc = bench_dl_takes(x, rt, mb, &a, 3600u * 1000u, &d->floor, d->why,
	                         sizeof(d->why))) != 0)
		goto out;
	/* The synchronous alternative: the caller harvests the whole log itself. */
	if ((rc = g->ops->dirty_start(g)) != 0) {
		snprintf(d->why, sizeof(d->why), "dirty_start: %s", g->why);
		goto out;
	}
	for (int pass = 0; pass < 2 && rc == 0; pass++) {
		double *s = pass == 0 ? d->sync : d->period;
		int *ns = pass == 0 ? &d->nsync : &d->nperiod;
		for (int i = 0; i < n; i++) {
			uint64_t pages = 0;
			bench_sleep_ms(pass == 0 ? x->interval_ms * (0.5 + (double)(i % 7) / 6)
			                         : (double)x->period_ms);
			double t0 = bench_now();
			rc = g->ops->dirty_harvest(g, &bm, &pages);
			s[i] = bench_now() - t0;
			if (rc != 0) {
				snprintf(d->why, sizeof(d->why), "dirty_harvest: %s", g->why);
				break;
			}
			tern_bitmap_clear_all(&bm);
			pg[i % 64] = (double)pages;
			(*ns)++;
		}
		*(pass == 0 ? &d->sync_pages : &d->period_pages) =
		    bench_median(pg, *ns < 64 ? *ns : 64);
	}
	g->ops->dirty_stop(g);
out:
	if (mb != NULL)
		tern_mailbox_close(mb);
	if (rt != NULL)
		tern_runtime_destroy(rt);
	for (int k = 0; k < TERN_DIRTY_MAPS; k++)
		tern_bitmap_fini(&a.maps[k]);
	tern_bitmap_fini(&bm);
	tern_guest_destroy(g);
	return rc;
}

/* Median harvest time of a fixed dirty set: one vCPU rewrites the same 1000
 * pages between harvests (memtouch ws=1000 pages, seq), guest paused while
 * harvesting; populate: every page of the guest mapped first (the dense case
 * for the bitmap mode, whose cost follows populated memory). */
static double
bench_dl_fixed(const char *mem, const char *mode, int populate, double *pages_out, char *why,
               size_t len)
{
	char spec[160];
	struct tern_guest *g = NULL;
	struct tern_bitmap bm = {0};
	double t[5], res = NAN;
	int rc;

	snprintf(spec, sizeof(spec),
	         "simvm:mem=%.31s,vcpus=1,fill=zero,workload=memtouch:ws=4000K,rate=0,pattern=seq",
	         mem);
	if (bench_guest(spec, &g, why, len) != 0)
		return NAN;
	if ((rc = g->ops->pause(g)) != 0 ||
	    (populate && (rc = tern_guest_populate(g, 0, g->regions[0].size)) != 0) ||
	    (rc = tern_guest_set_dirty_mode(g, mode, 0, why, len)) != 0 ||
	    (rc = tern_bitmap_init(&bm, g->npages)) != 0 || (rc = g->ops->dirty_start(g)) != 0) {
		if (!why[0])
			snprintf(why, len, "%s: %s", tern_strerror(rc), g->why);
		goto out;
	}
	for (int r = 0; r < 5; r++) {
		uint64_t target = g->stats.workload_steps + 1000, pages = 0;
		while (g->stats.workload_steps < target) {
			if ((rc = g->ops->resume(g)) != 0)
				goto out;
			bench_sleep_ms(2);
			if ((rc = g->ops->pause(g)) != 0)
				goto out;
		}
		double t0 = bench_now();
		if ((rc = g->ops->dirty_harvest(g, &bm, &pages)) != 0) {
			snprintf(why, len, "harvest: %s", g->why);
			goto out;
		}
		t[r] = bench_now() - t0;
		tern_bitmap_clear_all(&bm);
		*pages_out = (double)pages;
	}
	res = bench_median(t, 5) * 1e3;
	g->ops->dirty_stop(g);
out:
	tern_bitmap_fini(&bm);
	tern_guest_destroy(g);
	return res;
}

static void
bench_dl_size_json(json_t *cp, struct dl_size *d)
{
	json_t *o = bench_push_obj(cp);
	bench_set_str(o, "guest", d->spec);
	bench_set_bool(o, "populated", d->populated);
	bench_set_num(o, "populate_ms", d->populate_ms, 1);
	if (d->why[0])
		bench_set_str(o, "error", d->why);
	bench_lat(o, "take", d->t.lat, d->t.n);
	bench_lat(o, "take_to_reply_sent", d->t.actor, d->t.n);
	bench_lat(o, "take_inner_harvest", d->t.harvest, d->t.n);
	bench_lat(o, "take_without_harvests", d->floor.lat, d->floor.n);
	bench_lat(o, "take_without_harvests_to_reply_sent", d->floor.actor, d->floor.n);
	bench_set_num(o, "take_pages_median", d->take_pages, 0);
	bench_lat(o, "sync_harvest_same_interval", d->sync, d->nsync);
	bench_set_num(o, "sync_pages_median", d->sync_pages, 0);
	bench_lat(o, "harvest_per_period", d->period, d->nperiod);
	bench_set_num(o, "period_pages_median", d->period_pages, 0);
}

/* The fixed dirty set of one guest size, each way of harvesting it. */
static int
bench_dl_fixed_json(json_t *sizes, const char *mem)
{
	static const char *const names[3] = {"bitmap_sparse_ms", "bitmap_populated_ms", "ring_ms"};
	int rc = 0;
	json_t *o = bench_push_obj(sizes);
	bench_set_str(o, "mem", mem);
	for (int j = 0; j < 3; j++) {
		char why[256] = "";
		double pages = NAN;
		fprintf(stderr, "dirtylog: fixed dirty set, %s, %s\n", mem, names[j]);
		double ms = bench_dl_fixed(mem, j == 2 ? "ring" : "bitmap", j == 1, &pages, why,
		                           sizeof(why));
		bench_set_num(o, names[j], ms, 3);
		if (j == 2)
			bench_set_num(o, "pages", pages, 0);
		if (why[0]) {
			char k2[48];
			snprintf(k2, sizeof(k2), "%s_error", names[j]);
			bench_set_str(o, k2, why);
			rc = -1;
		}
	}
	return rc;
}

int
bench_dirtylog(const struct bench_cfg *x, json_t *report)
{
	/* Per size, sparse then populated, one right after the other: a noisy
	 * minute hits both kinds of the same size alike. */
	struct dl_size d[16];
	char mem[8][32], spec[8][192];
	int rc = 0, nd = 0;

	memset(d, 0, sizeof(d));
	for (int k = 0; k < x->nsizes; k++) {
		terni_format_size(x->sizes[k], mem[k], sizeof(mem[k]));
		snprintf(spec[k], sizeof(spec[k]),
		         "simvm:mem=%s,vcpus=2,fill=zero,workload=memtouch:ws=256M,rate=200M,"
		         "pattern=random",
		         mem[k]);
		for (int p = 0; p < 2; p++) {
			if (!(p ? x->dl_populated : x->dl_sparse))
				continue;
			struct dl_size *e = &d[nd++];
			e->spec = spec[k];
			e->populated = p;
			fprintf(stderr, "dirtylog: %s (%s), %d TAKEs then %d x 2 harvests\n",
			        spec[k], p ? "populated" : "sparse", x->takes, x->takes);
			if (bench_dl_size(x, spec[k], e) != 0) {
				fprintf(stderr, "dirtylog: FAILED: %s\n", e->why);
				rc = -1;
			}
		}
	}
	bench_set_int(report, "period_ms", x->period_ms);
	bench_set_int(report, "take_interval_ms", x->interval_ms);
	json_t *cp = bench_set_arr(report, "critical_path");
	for (int i = 0; i < nd; i++) {
		bench_dl_size_json(cp, &d[i]);
		bench_dl_takes_free(&d[i].t);
		bench_dl_takes_free(&d[i].floor);
		free(d[i].sync);
		free(d[i].period);
	}
	bench_set_num(report, "target_take_p99_ms", 1, 0);

	json_t *fixed = bench_set_obj(report, "fixed_dirty_set");
	bench_set_str(fixed, "workload",
	              "1 vCPU rewrites the same 1000 pages between harvests, paused");
	json_t *sizes = bench_set_arr(fixed, "sizes");
	for (int k = 0; k < x->nsizes; k++)
		if (bench_dl_fixed_json(sizes, mem[k]) != 0)
			rc = -1;
	return rc;
}
