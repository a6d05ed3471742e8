/*
 * A guest the VMM supplies through the public provider API
 * (include/tern/guest.h), seen by the migration like any other tern_guest:
 * this backend forwards every slot to the VMM's ops and owns nothing of the
 * guest itself (destroy frees only this wrapper).
 *
 * The VMM's regions become the migration's memory space (kvm/guest.h): the
 * dirty slots, which speak (region, page), are translated here and nowhere
 * else.
 */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
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

/* The table of the first release: a VMM built against it has every slot
 * up to state_load; later slots are read only when its size covers them. */
#define PV_OPS_V1_SIZE (offsetof(struct tern_guest_ops, state_load) + sizeof(void *))
#define PV_HAS(o, slot)                                                                            \
	((o)->size >= offsetof(struct tern_guest_ops, slot) + sizeof((o)->slot) &&                 \
	 (o)->slot != NULL)

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

/* Clears the gap bits after region r in its last bitmap word: the VMM may
 * set bits past the region's end in that word, and the gap has no pages. */
static void
pv_clear_gap(const struct tern_guest_region *r, struct tern_bitmap *bm)
{
	uint64_t end = (r->base + r->size) / TERN_PAGE_SIZE;
	if (end % 64 != 0 && end / 64 < (bm->nbits + 63) / 64)
		bm->words[end / 64] &= (1ull << (end % 64)) - 1;
}

/* Pages [first, first + count) of the space, region by region.  first is a
 * multiple of 64 (slices are) and so is every region's base, so the VMM's
 * bit (p - lfirst) of the words from (base + lfirst) / 64 is our bit. */
static int
pv_harvest_range(struct tern_guest *g, struct tern_bitmap *bm, uint64_t first, uint64_t count,
                 uint64_t *pages)
{
	if (first % 64 != 0 || first + count > g->npages || bm->nbits < g->npages)
		return TERN_EINVAL;
	for (uint32_t i = 0; i < g->nregions; i++) {
		const struct tern_guest_region *r = &g->regions[i];
		uint64_t rfirst = r->base / TERN_PAGE_SIZE, rpages = r->size / TERN_PAGE_SIZE;
		uint64_t lo = first > rfirst ? first : rfirst;
		uint64_t hi = first + count < rfirst + rpages ? first + count : rfirst + rpages;
		if (lo >= hi)
			continue;
		uint64_t n = 0;
		int rc = pv_ops(g)->dirty_harvest(pv_guest(g), i, lo - rfirst, hi - lo,
		                                  bm->words + lo / 64, &n);
		if (rc != 0)
			return pv_failed(g, "dirty_harvest", rc);
		if (n > hi - lo)
			return pv_failed(g, "dirty_harvest (reported more pages than asked)",
			                 TERN_EPROTO);
		if (hi == rfirst + rpages)
			pv_clear_gap(r, bm);
		*pages += n;
	}
	return 0;
}

static int
pv_bitmap_harvest(struct tern_guest *g, struct tern_bitmap *bm, uint64_t *pages)
{
	/* The whole space in slices of 2^20 pages (4 GiB): bounded calls. */
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
			const struct tern_dirty_entry *e = &s->ring[i];
			if (e->region >= g->nregions ||
			    e->page >= g->regions[e->region].size / TERN_PAGE_SIZE)
				return pv_failed(g, "dirty_ring_pop (entry outside the regions)",
				                 TERN_ERANGE);
			uint64_t p = g->regions[e->region].base / TERN_PAGE_SIZE + e->page;
			if (!tern_bitmap_test(bm, p)) {
				tern_bitmap_set(bm, p);
				(*pages)++;
			}
		}
	} while (n == PV_RING_BATCH);
	/* The dirty-log actor reports it as its ring_full_stalls counter. */
	if (PV_HAS(pv_ops(g), dirty_ring_full))
		__atomic_store_n(&g->stats.ring_full_stalls,
		                 pv_ops(g)->dirty_ring_full(pv_guest(g)), __ATOMIC_RELAXED);
	return 0;
}

static int
pv_dirty_stop(struct tern_guest *g)
{
	g->dirty_tracking = false;
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

/* dirty_tracking as for a built-in guest: harvests are cut into slices
 * only while it is set (tern_guest_dirty_harvest_slice). */
static int
pv_dirty_start(struct tern_guest *g)
{
	int rc = g->dirty_mode->start(g);
	g->dirty_tracking = rc == 0;
	return rc;
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

static uint64_t
pv_state_size(struct tern_guest *g)
{
	return PV_HAS(pv_ops(g), state_size) ? pv_ops(g)->state_size(pv_guest(g)) : 0;
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
	.state_size = pv_state_size, .dirty_modes = pv_modes

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
	if (o->size < PV_OPS_V1_SIZE)
		missing = "(size: not set to sizeof(struct tern_guest_ops))";
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

/* pv_layout asks the VMM for its regions (again with room if there are
 * more than first thought) and sets them as g's layout. */
static int
pv_layout(struct tern_guest *g, const struct tern_guest_provider *p, const char *name, char *err,
          size_t errlen)
{
	struct tern_mem_region vmm[TERN_GUEST_MAX_REGIONS];
	struct tern_guest_region r[TERN_GUEST_MAX_REGIONS];
	uint32_t count = 0;
	char why[192];
	int rc;

	memset(vmm, 0, sizeof(vmm));
	if ((rc = p->ops->regions(p->guest, vmm, TERN_GUEST_MAX_REGIONS, &count)) != 0) {
		snprintf(err, errlen, "%s: regions failed: %s", name, tern_strerror(rc));
		return rc < 0 ? rc : TERN_EINVAL;
	}
	if (count > TERN_GUEST_MAX_REGIONS) {
		snprintf(err, errlen,
		         "%s: the guest has %u memory regions; libtern migrates up to %u", name,
		         count, TERN_GUEST_MAX_REGIONS);
		return TERN_ENOTSUP;
	}
	for (uint32_t i = 0; i < count; i++)
		r[i] = (struct tern_guest_region){.gpa = vmm[i].gpa,
		                                  .size = vmm[i].size,
		                                  .host = vmm[i].host,
		                                  .fd = vmm[i].fd,
		                                  .fd_offset = vmm[i].fd_offset};
	if ((rc = tern_guest_set_layout(g, r, count, why, sizeof(why))) != 0)
		snprintf(err, errlen, "%s: %s", name, why);
	return rc;
}

int
tern_guest_from_provider(struct tern_guest **gp, const struct tern_guest_provider *p, int role,
                         char *err, size_t errlen)
{
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
	if ((g = calloc(1, sizeof(*g))) == NULL)
		return TERN_ENOMEM;
	if ((rc = pv_layout(g, p, name, err, errlen)) != 0) {
		free(g);
		return rc;
	}
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
	g->cfg.mem_size = tern_guest_mem_bytes(g);
	g->cfg.vcpus = 1;
	g->cfg.backing = g->regions[0].fd >= 0 ? TERN_BACKING_MEMFD : TERN_BACKING_ANON_THP;
	g->dirty_ring_size = TERN_DIRTY_RING_DEFAULT;
	g->dirty_mode = (p->ops->dirty_modes & TERN_DIRTY_BITMAP) ? &pv_bitmap_mode : &pv_ring_mode;
	*gp = g;
	return 0;
}
