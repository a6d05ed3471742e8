/*
 * A guest the VMM supplies through the public provider API
 * (include/tern/guest.h), seen by the migration like any other tern_guest:
 * this backend forwards every slot to the VMM's ops and owns nothing of the
 * guest itself (destroy frees only this wrapper).
 *
 * This version migrates one memory region at gpa 0: the migration's page
 * numbers are offsets into it.  Several regions with holes between them need
 * page numbers per region throughout the wire and the coordinator.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kvm/guest.h"
#include "messages/msg.h"
#include "tern/error.h"
#include "tern/guest.h"

/* Ring entries moved per dirty_ring_pop call. */
#define PV_RING_BATCH 4096u

struct pv_state {
	struct tern_guest_provider p;
	struct tern_dirty_entry *ring; /* PV_RING_BATCH entries, for RING */
	/* A built-in guest behind the ops (tern_guest_provider_adopt): its
	 * workload check answers for the wrapper, release frees it. */
	struct tern_guest *inner;
	void (*release)(void *arg);
	void *release_arg;
};

static const struct tern_guest_ops *
pv_ops(struct tern_guest *g)
{
	return ((struct pv_state *)g->priv)->p.ops;
}

static void *
pv_guest(struct tern_guest *g)
{
	return ((struct pv_state *)g->priv)->p.guest;
}

/* The reason a slot gave with tern_guest_error, per thread: slots run on
 * libtern's threads, and each failure is read right after its call. */
static _Thread_local char pv_reason[160];

void
tern_guest_error(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	terni_verrf(pv_reason, sizeof(pv_reason), fmt, ap);
	va_end(ap);
}

/* The VMM's slot failed: say which and why, for the migration's error. */
static int
pv_failed(struct tern_guest *g, const char *slot, int rc)
{
	/* Bounded pieces: the whole line fits g->why (192). */
	snprintf(g->why, sizeof(g->why), "%.24s: %.40s failed: %.110s", pv_ops(g)->name, slot,
	         pv_reason[0] ? pv_reason : tern_strerror(rc));
	pv_reason[0] = '\0';
	return rc < 0 ? rc : TERN_EINVAL;
}

static bool
pv_offers(struct tern_guest *g, uint32_t mode, char *why, size_t whylen)
{
	if (pv_ops(g)->dirty_modes & mode)
		return true;
	snprintf(why, whylen, "the guest (%s) does not offer it", pv_ops(g)->name);
	return false;
}

static bool
pv_bitmap_supported(struct tern_guest *g, char *why, size_t whylen)
{
	return pv_offers(g, TERN_DIRTY_BITMAP, why, whylen) && pv_ops(g)->dirty_harvest != NULL;
}

static bool
pv_ring_supported(struct tern_guest *g, char *why, size_t whylen)
{
	return pv_offers(g, TERN_DIRTY_RING, why, whylen) && pv_ops(g)->dirty_ring_pop != NULL;
}

static int
pv_start(struct tern_guest *g, uint32_t mode, uint32_t ring_entries)
{
	int rc = pv_ops(g)->dirty_start(pv_guest(g), mode, ring_entries);
	return rc == 0 ? 0 : pv_failed(g, "dirty_start", rc);
}

static int
pv_bitmap_start(struct tern_guest *g)
{
	return pv_start(g, TERN_DIRTY_BITMAP, 0);
}

static int
pv_ring_start(struct tern_guest *g)
{
	return pv_start(g, TERN_DIRTY_RING, g->dirty_ring_size);
}

/* The VMM ORs into the words of our bitmap that hold first..first+count:
 * first is a multiple of 64 (slices are), so bit (p - first) of the words
 * from first / 64 is bit p of ours. */
static int
pv_harvest_range(struct tern_guest *g, struct tern_bitmap *bm, uint64_t first, uint64_t count,
                 uint64_t *pages)
{
	if (first % 64 != 0 || first + count > g->npages || bm->nbits < g->npages)
		return TERN_EINVAL;
	uint64_t n = 0;
	int rc = pv_ops(g)->dirty_harvest(pv_guest(g), 0, first, count, bm->words + first / 64, &n);
	if (rc != 0)
		return pv_failed(g, "dirty_harvest", rc);
	if (n > count)
		return pv_failed(g, "dirty_harvest (reported more pages than asked)", TERN_EPROTO);
	*pages += n;
	return 0;
}

static int
pv_bitmap_harvest(struct tern_guest *g, struct tern_bitmap *bm, uint64_t *pages)
{
	/* Whole region in slices of 2^20 pages (4 GiB): bounded calls. */
	for (uint64_t first = 0; first < g->npages; first += 1u << 20) {
		uint64_t count = g->npages - first < (1u << 20) ? g->npages - first : 1u << 20;
		int rc = pv_harvest_range(g, bm, first, count, pages);
		if (rc != 0)
			return rc;
	}
	return 0;
}

static int
pv_ring_harvest(struct tern_guest *g, struct tern_bitmap *bm, uint64_t *pages)
{
	struct pv_state *s = g->priv;
	uint32_t n;
	do {
		n = 0;
		int rc = pv_ops(g)->dirty_ring_pop(pv_guest(g), s->ring, PV_RING_BATCH, &n);
		if (rc != 0)
			return pv_failed(g, "dirty_ring_pop", rc);
		if (n > PV_RING_BATCH)
			return pv_failed(g, "dirty_ring_pop (more entries than room)", TERN_EPROTO);
		for (uint32_t i = 0; i < n; i++) {
			/* Nothing from the VMM is used unchecked either. */
			if (s->ring[i].region != 0 || s->ring[i].page >= g->npages)
				return pv_failed(g, "dirty_ring_pop (entry outside the region)",
				                 TERN_ERANGE);
			if (!tern_bitmap_test(bm, s->ring[i].page)) {
				tern_bitmap_set(bm, s->ring[i].page);
				(*pages)++;
			}
		}
	} while (n == PV_RING_BATCH);
	return 0;
}

static int
pv_dirty_stop(struct tern_guest *g)
{
	int rc = pv_ops(g)->dirty_stop(pv_guest(g));
	return rc == 0 ? 0 : pv_failed(g, "dirty_stop", rc);
}

static const struct tern_dirty_mode pv_bitmap_mode = {
    .name = "bitmap",
    .supported = pv_bitmap_supported,
    .start = pv_bitmap_start,
    .harvest = pv_bitmap_harvest,
    .harvest_range = pv_harvest_range,
    .stop = pv_dirty_stop,
};

static const struct tern_dirty_mode pv_ring_mode = {
    .name = "ring",
    .supported = pv_ring_supported,
    .start = pv_ring_start,
    .harvest = pv_ring_harvest,
    .stop = pv_dirty_stop,
};

static const struct tern_dirty_mode *const pv_modes[] = {&pv_bitmap_mode, &pv_ring_mode, NULL};

static int
pv_dirty_start(struct tern_guest *g)
{
	return g->dirty_mode->start(g);
}

static int
pv_dirty_harvest(struct tern_guest *g, struct tern_bitmap *bm, uint64_t *pages)
{
	return g->dirty_mode->harvest(g, bm, pages);
}

/* Pause latency is measured here: the downtime estimate needs it. */
static int
pv_pause(struct tern_guest *g)
{
	uint64_t t0 = tern_now_ns();
	int rc = pv_ops(g)->pause(pv_guest(g));
	g->stats.last_pause_ns = tern_now_ns() - t0;
	return rc == 0 ? 0 : pv_failed(g, "pause", rc);
}

static int
pv_resume(struct tern_guest *g)
{
	uint64_t t0 = tern_now_ns();
	int rc = pv_ops(g)->resume(pv_guest(g));
	g->stats.last_resume_ns = tern_now_ns() - t0;
	return rc == 0 ? 0 : pv_failed(g, "resume", rc);
}

static int
pv_state_save(struct tern_guest *g, void *buf, size_t cap, size_t *len)
{
	uint64_t n = 0;
	int rc = pv_ops(g)->state_save(pv_guest(g), buf, cap, &n);
	if (rc != 0)
		return pv_failed(g, "state_save", rc);
	if (n > cap)
		return pv_failed(g, "state_save (longer than its buffer)", TERN_EPROTO);
	*len = (size_t)n;
	return 0;
}

static int
pv_state_load(struct tern_guest *g, const void *buf, size_t len)
{
	int rc = pv_ops(g)->state_load(pv_guest(g), buf, len);
	return rc == 0 ? 0 : pv_failed(g, "state_load", rc);
}

static void
pv_destroy(struct tern_guest *g)
{
	struct pv_state *s = g->priv;
	if (s != NULL) {
		if (s->release != NULL)
			s->release(s->release_arg);
		free(s->ring);
	}
	free(s);
	g->priv = NULL;
}

static int
pv_check(struct tern_guest *g, uint64_t *progress, char *why, size_t whylen)
{
	struct pv_state *s = g->priv;
	return tern_guest_check(s->inner, progress, why, whylen);
}

/* Every slot forwards to the VMM's ops; the two tables differ only in
 * the workload check, which only an adopted built-in guest has. */
#define PV_BACKEND_SLOTS                                                                           \
	.name = "provider", .destroy = pv_destroy, .pause = pv_pause, .resume = pv_resume,         \
	.dirty_start = pv_dirty_start, .dirty_harvest = pv_dirty_harvest,                          \
	.dirty_stop = pv_dirty_stop, .state_save = pv_state_save, .state_load = pv_state_load,     \
	.dirty_modes = pv_modes

static const struct terni_backend_ops pv_backend = {PV_BACKEND_SLOTS};
static const struct terni_backend_ops pv_backend_checked = {PV_BACKEND_SLOTS, .check = pv_check};

void
tern_guest_provider_adopt(struct tern_guest *g, struct tern_guest *inner,
                          void (*release)(void *arg), void *arg)
{
	struct pv_state *s = g->priv;
	s->inner = inner;
	s->release = release;
	s->release_arg = arg;
	g->ops = &pv_backend_checked;
	g->cfg = inner->cfg;
	g->stats.build_ns = inner->stats.build_ns;
}

/* pv_check_ops: every slot this version calls must be there. */
static int
pv_check_ops(const struct tern_guest_ops *o, char *err, size_t errlen)
{
	const char *missing = NULL;
	if (o->size < sizeof(*o))
		missing = "(size: the VMM was built against an older tern/guest.h)";
	else if (o->regions == NULL)
		missing = "regions";
	else if (o->pause == NULL)
		missing = "pause";
	else if (o->resume == NULL)
		missing = "resume";
	else if (o->state_save == NULL)
		missing = "state_save";
	else if (o->state_load == NULL)
		missing = "state_load";
	else if (o->dirty_start == NULL || o->dirty_stop == NULL)
		missing = "dirty_start/dirty_stop";
	else if ((o->dirty_modes & (TERN_DIRTY_BITMAP | TERN_DIRTY_RING)) == 0)
		missing = "dirty_modes (neither TERN_DIRTY_BITMAP nor TERN_DIRTY_RING)";
	if (missing == NULL)
		return 0;
	snprintf(err, errlen, "guest ops of %s: %s missing", o->name ? o->name : "the VMM",
	         missing);
	return TERN_EINVAL;
}

/* pv_check_region: what this version can migrate. */
static int
pv_check_region(const char *name, const struct tern_mem_region *r, uint32_t count, char *err,
                size_t errlen)
{
	if (count != 1 || r->gpa != 0) {
		snprintf(err, errlen,
		         "%s: the guest has %u memory region(s), the first at gpa 0x%llx; this "
		         "version of libtern migrates one region at gpa 0",
		         name, count, (unsigned long long)r->gpa);
		return TERN_ENOTSUP;
	}
	if (r->size == 0 || r->size % TERN_PAGE_SIZE != 0 || r->host == NULL ||
	    (uintptr_t)r->host % TERN_PAGE_SIZE != 0) {
		snprintf(err, errlen,
		         "%s: region at gpa 0 (%llu bytes at %p) is empty, not page-aligned or "
		         "not mapped",
		         name, (unsigned long long)r->size, r->host);
		return TERN_EINVAL;
	}
	return 0;
}

int
tern_guest_from_provider(struct tern_guest **gp, const struct tern_guest_provider *p, int role,
                         char *err, size_t errlen)
{
	struct tern_mem_region r;
	uint32_t count = 0;
	struct tern_guest *g;
	int rc;

	*gp = NULL;
	if (p == NULL || p->ops == NULL) {
		snprintf(err, errlen, "no guest ops");
		return TERN_EINVAL;
	}
	if ((rc = pv_check_ops(p->ops, err, errlen)) != 0)
		return rc;
	const char *name = p->ops->name ? p->ops->name : "the VMM";
	memset(&r, 0, sizeof(r));
	r.fd = -1;
	if ((rc = p->ops->regions(p->guest, &r, 1, &count)) != 0) {
		snprintf(err, errlen, "%s: regions failed: %s", name, tern_strerror(rc));
		return rc < 0 ? rc : TERN_EINVAL;
	}
	if ((rc = pv_check_region(name, &r, count, err, errlen)) != 0)
		return rc;
	if ((g = calloc(1, sizeof(*g))) == NULL)
		return TERN_ENOMEM;
	struct pv_state *s = calloc(1, sizeof(*s));
	if (s == NULL || (s->ring = calloc(PV_RING_BATCH, sizeof(*s->ring))) == NULL) {
		free(s);
		free(g);
		return TERN_ENOMEM;
	}
	s->p = *p;
	g->priv = s;
	g->ops = &pv_backend;
	g->role = role;
	snprintf(g->cfg.backend, sizeof(g->cfg.backend), "provider");
	g->cfg.mem_size = r.size;
	g->cfg.vcpus = 1;
	g->region.gpa = 0;
	g->region.size = r.size;
	g->region.host = r.host;
	g->region.fd = r.fd;
	g->region.fd_offset = r.fd_offset;
	g->cfg.backing = r.fd >= 0 ? TERN_BACKING_MEMFD : TERN_BACKING_ANON_THP;
	g->npages = r.size / TERN_PAGE_SIZE;
	g->dirty_ring_size = TERN_DIRTY_RING_DEFAULT;
	g->dirty_mode = (p->ops->dirty_modes & TERN_DIRTY_BITMAP) ? &pv_bitmap_mode : &pv_ring_mode;
	*gp = g;
	return 0;
}
