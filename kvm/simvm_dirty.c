/*
 * simvm's dirty-log modes (struct tern_dirty_mode) and the guest's dirty
 * slots that dispatch to the selected one:
 *  - bitmap: userfaultfd asynchronous write-protect + PAGEMAP_SCAN over
 *    guest memory (kvm/dirty_wp.h).  Catches every writer.
 *  - ring: the vCPUs push the pages they write into per-vCPU dirty rings
 *    (kvm/dirty_ring.h) in their memtouch step, and stop on a full ring
 *    until a harvest frees it.  Catches vCPU writes only, as KVM's ring does.
 */
#include <inttypes.h>
#include <uv.h>

#include "kvm/simvm_priv.h"
#include "tern/error.h"

static bool
simvm_bitmap_supported(struct tern_guest *g, char *why, size_t whylen)
{
	(void)g;
	return dirty_wp_probe(why, whylen) == 0;
}

static int
simvm_bitmap_start(struct tern_guest *g)
{
	struct simvm *s = g->priv;

	g->why[0] = '\0';
	return dirty_wp_start(&s->wp, &g->regions[0], g->why, sizeof(g->why));
}

static int
simvm_bitmap_harvest_range(struct tern_guest *g, struct tern_bitmap *bm, uint64_t first,
                           uint64_t count, uint64_t *pages)
{
	struct simvm *s = g->priv;

	if (!dirty_wp_tracking(&s->wp)) {
		simvm_why(g, "dirty_harvest: dirty tracking is not started");
		return TERN_ESTATE;
	}
	if (first + count > g->npages)
		return TERN_EINVAL;
	return dirty_wp_scan(&s->wp, &g->regions[0], bm, first * TERN_PAGE_SIZE,
	                     (first + count) * TERN_PAGE_SIZE, pages, g->why, sizeof(g->why));
}

static int
simvm_bitmap_harvest(struct tern_guest *g, struct tern_bitmap *bm, uint64_t *pages)
{
	int rv = simvm_bitmap_harvest_range(g, bm, 0, g->npages, pages);

	if (rv == 0)
		g->stats.harvests++;
	return rv;
}

static int
simvm_bitmap_stop(struct tern_guest *g)
{
	struct simvm *s = g->priv;

	return dirty_wp_stop(&s->wp, &g->regions[0]);
}

static const struct tern_dirty_mode simvm_dirty_bitmap = {
    .name = "bitmap",
    .supported = simvm_bitmap_supported,
    .start = simvm_bitmap_start,
    .harvest = simvm_bitmap_harvest,
    .harvest_range = simvm_bitmap_harvest_range,
    .stop = simvm_bitmap_stop,
};

/* Ring mode: the vCPUs are this process's threads, so every simvm guest
 * can run it. */
static bool
simvm_ring_supported(struct tern_guest *g, char *why, size_t whylen)
{
	(void)g;
	(void)why;
	(void)whylen;
	return true;
}

static int
simvm_ring_start(struct tern_guest *g)
{
	struct simvm *s = g->priv;
	int rv;

	/* With every vCPU out of guest code, so that no step straddles the
	 * switch: writes before it are not dirty (the first pass copies all
	 * memory), every write after it is in a ring. */
	simvm_hold(s);
	uv_mutex_lock(&s->lock);
	rv = tern_dirty_rings_init(&s->rings, g->cfg.vcpus, g->dirty_ring_size, g->npages,
	                           &g->stats.ring_full_stalls);
	s->ring_on = rv == 0;
	uv_mutex_unlock(&s->lock);
	simvm_release(s);
	if (rv != 0)
		simvm_why(g, "dirty ring: cannot allocate %u rings of %u entries: %s", g->cfg.vcpus,
		          g->dirty_ring_size, tern_strerror(rv));
	return rv;
}

static int
simvm_ring_harvest(struct tern_guest *g, struct tern_bitmap *bm, uint64_t *pages)
{
	struct simvm *s = g->priv;
	uint64_t n = tern_dirty_rings_collect(&s->rings, bm);

	if (pages != NULL)
		*pages += n;
	g->stats.harvests++;
	return 0;
}

static int
simvm_ring_stop(struct tern_guest *g)
{
	struct simvm *s = g->priv;

	/* Held: no vCPU is inside a step or stopped on a full ring, so the
	 * rings can go. */
	simvm_hold(s);
	uv_mutex_lock(&s->lock);
	s->ring_on = false;
	tern_dirty_rings_fini(&s->rings);
	uv_mutex_unlock(&s->lock);
	simvm_release(s);
	return 0;
}

static const struct tern_dirty_mode simvm_dirty_ring = {
    .name = "ring",
    .supported = simvm_ring_supported,
    .start = simvm_ring_start,
    .harvest = simvm_ring_harvest,
    .stop = simvm_ring_stop,
};

const struct tern_dirty_mode *const simvm_dirty_modes[] = {
    &simvm_dirty_bitmap,
    &simvm_dirty_ring,
    NULL,
};

/* The guest's dirty slots dispatch to the selected mode. */
int
simvm_dirty_start(struct tern_guest *g)
{
	int rv;

	g->why[0] = '\0';
	if (g->dirty_tracking) {
		simvm_why(g, "dirty tracking is already started");
		return TERN_ESTATE;
	}
	if ((rv = g->dirty_mode->start(g)) == 0)
		g->dirty_tracking = true;
	return rv;
}

int
simvm_dirty_harvest(struct tern_guest *g, struct tern_bitmap *bm, uint64_t *pages)
{
	if (!g->dirty_tracking) {
		simvm_why(g, "dirty_harvest: dirty tracking is not started");
		return TERN_ESTATE;
	}
	if (bm == NULL || bm->nbits < g->npages) {
		simvm_why(g, "dirty_harvest: bitmap smaller than the guest's %" PRIu64 " pages",
		          g->npages);
		return TERN_EINVAL;
	}
	return g->dirty_mode->harvest(g, bm, pages);
}

int
simvm_dirty_stop(struct tern_guest *g)
{
	if (!g->dirty_tracking)
		return 0;
	g->dirty_tracking = false;
	return g->dirty_mode->stop(g);
}
