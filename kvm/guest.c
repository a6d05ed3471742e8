/*
 * The backend-independent half of the guest: the backend table, dispatch to
 * a backend's ops, the dirty-mode choice and sliced harvests.  The spec is
 * parsed in spec.c, guest memory is handled in guest_mem.c.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kvm/guest.h"
#include "messages/msg.h"
#include "tern/error.h"

static const struct terni_backend_ops *const guest_backends[] = {
    &tern_simvm_ops,
};

const struct terni_backend_ops *
terni_guest_backend_find(const char *name)
{
	for (size_t i = 0; i < sizeof(guest_backends) / sizeof(guest_backends[0]); i++)
		if (strcmp(name, guest_backends[i]->name) == 0)
			return guest_backends[i];
	return NULL;
}

int
tern_guest_create(struct tern_guest **gp, const struct tern_guest_config *cfg, int role, char *err,
                  size_t errlen)
{
	const struct terni_backend_ops *ops = NULL;
	struct tern_guest *g;
	int rv;

	*gp = NULL;
	terni_errf(err, errlen, "%s", "");
	if ((rv = terni_guest_config_check(cfg, err, errlen)) != 0)
		return rv;
	if (role != TERN_GUEST_SOURCE && role != TERN_GUEST_DESTINATION) {
		terni_errf(err, errlen, "role: %d is neither source nor destination", role);
		return TERN_EINVAL;
	}
	ops = terni_guest_backend_find(cfg->backend);
	if ((g = calloc(1, sizeof(*g))) == NULL) {
		terni_errf(err, errlen, "out of memory");
		return TERN_ENOMEM;
	}
	g->ops = ops;
	g->cfg = *cfg;
	g->role = role;
	g->regions[0].fd = -1;
	g->nregions = 1;
	g->npages = cfg->mem_size / TERN_PAGE_SIZE;
	g->dirty_mode = ops->dirty_modes != NULL ? ops->dirty_modes[0] : NULL;
	g->dirty_ring_size = TERN_DIRTY_RING_DEFAULT;
	if ((rv = ops->create(g, cfg, role)) != 0) {
		if (g->why[0] != '\0')
			terni_errf(err, errlen, "%s", g->why);
		else
			terni_errf(err, errlen, "%s backend: %s", ops->name, tern_strerror(rv));
		ops->destroy(g);
		free(g);
		return rv;
	}
	*gp = g;
	return 0;
}

void
tern_guest_destroy(struct tern_guest *g)
{
	if (g == NULL)
		return;
	g->ops->destroy(g);
	free(g);
}

int
tern_guest_set_dirty_mode(struct tern_guest *g, const char *mode, uint32_t ring_size, char *why,
                          size_t whylen)
{
	const struct tern_dirty_mode *const *m = g->ops->dirty_modes, *found = NULL;
	char names[128] = "", r[160];
	size_t len = 0;

	terni_errf(why, whylen, "%s", "");
	if (m == NULL || m[0] == NULL) {
		terni_errf(why, whylen, "dirty-log mode '%s': backend %s has no dirty tracking",
		           mode ? mode : "", g->ops->name);
		return TERN_ENOTSUP;
	}
	if (mode == NULL || mode[0] == '\0')
		mode = m[0]->name;
	for (; *m != NULL; m++) {
		if (strcmp((*m)->name, mode) == 0)
			found = *m;
		if (len < sizeof(names))
			len += (size_t)snprintf(names + len, sizeof(names) - len, "%s%s",
			                        len ? ", " : "", (*m)->name);
	}
	if (found == NULL) {
		terni_errf(why, whylen, "dirty-log mode '%s' is unknown (backend %s has: %s)", mode,
		           g->ops->name, names);
		return TERN_EINVAL;
	}
	if (g->dirty_tracking) {
		terni_errf(why, whylen,
		           "dirty-log mode '%s': cannot change mode while '%s' tracking runs", mode,
		           g->dirty_mode->name);
		return TERN_ESTATE;
	}
	if (ring_size == 0)
		ring_size = TERN_DIRTY_RING_DEFAULT;
	if (ring_size < TERN_DIRTY_RING_MIN || ring_size > TERN_DIRTY_RING_MAX ||
	    (ring_size & (ring_size - 1)) != 0) {
		terni_errf(why, whylen,
		           "dirty-log mode '%s': ring size %u is not a power of two in %u..%u",
		           mode, ring_size, TERN_DIRTY_RING_MIN, TERN_DIRTY_RING_MAX);
		return TERN_EINVAL;
	}
	if (found->supported != NULL && !found->supported(g, r, sizeof(r))) {
		terni_errf(why, whylen, "dirty-log mode '%s' is not supported: %s", mode, r);
		return TERN_ENOTSUP;
	}
	g->dirty_mode = found;
	g->dirty_ring_size = ring_size;
	return 0;
}

int
tern_guest_dirty_harvest_slice(struct tern_guest *g, struct tern_bitmap *bm, uint64_t *cursor,
                               uint64_t max_pages, uint64_t *pages, bool *done)
{
	const struct tern_dirty_mode *m = g->dirty_mode;
	*done = true;
	if (m == NULL || m->harvest_range == NULL || max_pages == 0 || !g->dirty_tracking ||
	    bm == NULL || bm->nbits < g->npages) {
		*cursor = 0;
		return g->ops->dirty_harvest(g, bm, pages);
	}
	/* Slices start on bitmap words (harvest_range needs it). */
	max_pages = (max_pages + 63) & ~63ull;
	uint64_t first = *cursor < g->npages ? *cursor : 0;
	uint64_t count = g->npages - first < max_pages ? g->npages - first : max_pages;
	int rc = m->harvest_range(g, bm, first, count, pages);
	if (rc != 0)
		return rc;
	*cursor = first + count;
	*done = *cursor >= g->npages;
	if (*done)
		*cursor = 0;
	return 0;
}

int
tern_guest_check(struct tern_guest *g, uint64_t *progress, char *why, size_t whylen)
{
	uint64_t p = 0;
	int rv = 0;

	terni_errf(why, whylen, "%s", "");
	if (g->ops->check != NULL)
		rv = g->ops->check(g, &p, why, whylen);
	if (progress != NULL)
		*progress = p;
	return rv;
}

uint64_t
tern_guest_state_size(struct tern_guest *g)
{
	return g->ops->state_size != NULL ? g->ops->state_size(g) : 0;
}
