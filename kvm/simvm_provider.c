/*
 * simvm as a provider: the simulated guest handed to the migration through
 * the public ops (include/tern/guest.h), exactly as a VMM hands its own, so
 * that every migration -- the CLI's, the tests' -- runs the public contract.
 *
 * The adapter turns simvm's harvests (into a bitmap of the whole guest) into
 * the public slots' shapes: a bitmap harvest of a page range collects into a
 * scratch bitmap and moves that range's words out; a ring pop drains the
 * scratch bitmap into entries and harvests simvm's rings again when it is
 * empty.  Nothing is dropped: a page stays in scratch until a caller took it.
 *
 * With regions=N the one mapping is shown as N regions (pages cut as evenly
 * as whole pages allow, so region starts are not multiples of 64 pages) with
 * a 1 GiB gpa hole after each: libtern's multi-region paths run against it
 * as against a VMM with several memslots.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kvm/guest.h"
#include "tern/error.h"
#include "tern/guest.h"

struct sp_state {
	struct tern_guest *g;       /* the simvm guest (owned by the wrapper) */
	struct tern_bitmap scratch; /* harvested, not yet handed out */
	uint64_t pop_pos;           /* ring pop: where the drain resumes */
	uint32_t nregions;
	uint64_t start[TERN_GUEST_MAX_REGIONS + 1]; /* region i: simvm pages
	                                               [start[i], start[i+1]) */
};

#define SP_HOLE (1ull << 30) /* gpa hole after each region */

static void
sp_cut_regions(struct sp_state *s, uint32_t n)
{
	s->nregions = n == 0 ? 1 : n;
	for (uint32_t i = 0; i <= s->nregions; i++)
		s->start[i] = s->g->npages * i / s->nregions;
}

/* The region of simvm page p (p < npages). */
static uint32_t
sp_region_of(const struct sp_state *s, uint64_t p)
{
	uint32_t i = 0;
	while (p >= s->start[i + 1])
		i++;
	return i;
}

/* Moves count bits of src from bit pos (any alignment) into dst from bit 0
 * (OR), clears them in src, and returns how many were set. */
static uint64_t
sp_take_bits(struct tern_bitmap *src, uint64_t pos, uint64_t count, uint64_t *dst)
{
	uint64_t n = 0;
	for (uint64_t i = 0; i < count; i += 64) {
		uint64_t p = pos + i, w = p >> 6, sh = p & 63, m = count - i < 64 ? count - i : 64;
		uint64_t v = src->words[w] >> sh;
		if (sh != 0 && w + 1 < src->nwords)
			v |= src->words[w + 1] << (64 - sh);
		if (m < 64)
			v &= (1ull << m) - 1;
		if (v == 0)
			continue;
		src->words[w] &= ~(v << sh);
		if (sh != 0 && w + 1 < src->nwords)
			src->words[w + 1] &= ~(v >> (64 - sh));
		dst[i / 64] |= v;
		n += (uint64_t)__builtin_popcountll(v);
	}
	return n;
}

/* simvm's one-line reason for a failure goes out as the slot's reason. */
static int
sp_ret(struct sp_state *s, int rc)
{
	if (rc != 0 && s->g->why[0] != '\0')
		tern_guest_error("%s", s->g->why);
	return rc;
}

static int
sp_regions(void *guest, struct tern_mem_region *out, uint32_t cap, uint32_t *count)
{
	struct sp_state *s = guest;
	const struct tern_guest_region *m = &s->g->regions[0];
	*count = s->nregions;
	for (uint32_t i = 0; i < s->nregions && i < cap; i++) {
		uint64_t off = s->start[i] * TERN_PAGE_SIZE;
		out[i] = (struct tern_mem_region){
		    .gpa = m->gpa + off + i * SP_HOLE,
		    .size = (s->start[i + 1] - s->start[i]) * TERN_PAGE_SIZE,
		    .host = m->host + off,
		    .fd = m->fd,
		    .fd_offset = m->fd_offset + off,
		    .flags = m->fd < 0 ? TERN_MEM_ANON_THP : 0,
		};
	}
	return 0;
}

static int
sp_dirty_start(void *guest, uint32_t mode, uint32_t ring_entries)
{
	struct sp_state *s = guest;
	char why[192];
	int rc = tern_guest_set_dirty_mode(s->g, mode == TERN_DIRTY_RING ? "ring" : "bitmap",
	                                   ring_entries, why, sizeof(why));
	if (rc != 0) {
		tern_guest_error("%s", why);
		return rc;
	}
	tern_bitmap_clear_all(&s->scratch);
	s->pop_pos = 0;
	return sp_ret(s, s->g->ops->dirty_start(s->g));
}

static int
sp_dirty_harvest(void *guest, uint32_t region, uint64_t first, uint64_t count, uint64_t *bitmap,
                 uint64_t *pages)
{
	struct sp_state *s = guest;
	if (region >= s->nregions || first % 64 != 0 ||
	    first + count > s->start[region + 1] - s->start[region])
		return -EINVAL;
	/* simvm harvests 64-page-aligned ranges of its own pages: widen the
	 * range to them (what is harvested beyond it waits in scratch). */
	uint64_t p0 = s->start[region] + first, p1 = p0 + count;
	uint64_t a0 = p0 & ~63ull, a1 = (p1 + 63) & ~63ull, n = 0;
	if (a1 > s->g->npages)
		a1 = s->g->npages;
	const struct tern_dirty_mode *m = s->g->dirty_mode;
	int rc = m != NULL && m->harvest_range != NULL
	             ? m->harvest_range(s->g, &s->scratch, a0, a1 - a0, &n)
	             : s->g->ops->dirty_harvest(s->g, &s->scratch, &n);
	if (rc != 0)
		return sp_ret(s, rc);
	/* Hand out this range's bits (and only them: the rest stays in
	 * scratch for the later ranges). */
	*pages += sp_take_bits(&s->scratch, p0, count, bitmap);
	return 0;
}

static int
sp_dirty_ring_pop(void *guest, struct tern_dirty_entry *out, uint32_t cap, uint32_t *n)
{
	struct sp_state *s = guest;
	*n = 0;
	for (int pass = 0; pass < 2 && *n < cap; pass++) {
		if (pass == 1) {
			/* Scratch drained: collect simvm's rings again. */
			uint64_t got = 0;
			int rc = s->g->ops->dirty_harvest(s->g, &s->scratch, &got);
			if (rc != 0)
				return sp_ret(s, rc);
			s->pop_pos = 0;
		}
		uint64_t first, cnt;
		while (*n < cap &&
		       tern_bitmap_next_run(&s->scratch, &s->pop_pos, cap - *n, &first, &cnt)) {
			for (uint64_t p = first; p < first + cnt; p++) {
				uint32_t r = sp_region_of(s, p);
				s->scratch.words[p >> 6] &= ~(1ull << (p & 63));
				out[(*n)++] =
				    (struct tern_dirty_entry){.region = r, .page = p - s->start[r]};
			}
		}
		if (*n == cap)
			break;
		s->pop_pos = 0;
	}
	return 0;
}

static int
sp_dirty_stop(void *guest)
{
	struct sp_state *s = guest;
	return sp_ret(s, s->g->ops->dirty_stop(s->g));
}

static int
sp_pause(void *guest)
{
	struct sp_state *s = guest;
	return sp_ret(s, s->g->ops->pause(s->g));
}

static int
sp_resume(void *guest)
{
	struct sp_state *s = guest;
	return sp_ret(s, s->g->ops->resume(s->g));
}

static int
sp_state_save(void *guest, void *buf, uint64_t cap, uint64_t *len)
{
	struct sp_state *s = guest;
	size_t n = 0;
	int rc = s->g->ops->state_save(s->g, buf, (size_t)cap, &n);
	*len = n;
	return sp_ret(s, rc);
}

static int
sp_state_load(void *guest, const void *buf, uint64_t len)
{
	struct sp_state *s = guest;
	return sp_ret(s, s->g->ops->state_load(s->g, buf, (size_t)len));
}

static uint64_t
sp_dirty_ring_full(void *guest)
{
	struct sp_state *s = guest;
	return __atomic_load_n(&s->g->stats.ring_full_stalls, __ATOMIC_RELAXED);
}

static uint64_t
sp_state_size(void *guest)
{
	struct sp_state *s = guest;
	return tern_guest_state_size(s->g);
}

static const struct tern_guest_ops sp_ops = {
    .size = sizeof(struct tern_guest_ops),
    .name = "simvm",
    .regions = sp_regions,
    .dirty_modes = TERN_DIRTY_BITMAP | TERN_DIRTY_RING,
    .dirty_start = sp_dirty_start,
    .dirty_harvest = sp_dirty_harvest,
    .dirty_ring_pop = sp_dirty_ring_pop,
    .dirty_stop = sp_dirty_stop,
    .pause = sp_pause,
    .resume = sp_resume,
    .state_save = sp_state_save,
    .state_load = sp_state_load,
    .dirty_ring_full = sp_dirty_ring_full,
    .state_size = sp_state_size,
};

static void
sp_release(void *guest)
{
	struct sp_state *s = guest;
	tern_guest_destroy(s->g);
	tern_bitmap_fini(&s->scratch);
	free(s);
}

int
tern_guest_create_provided(struct tern_guest **gp, const struct tern_guest_config *cfg, int role,
                           char *err, size_t errlen)
{
	struct tern_guest_provider p;
	int rc;

	*gp = NULL;
	if ((rc = tern_simvm_provider_create(&p, cfg, role, err, errlen)) != 0)
		return rc;
	struct sp_state *s = p.guest;
	struct tern_guest *inner = s->g;
	if ((rc = tern_guest_from_provider(gp, &p, role, err, errlen)) != 0) {
		sp_release(s);
		return rc;
	}
	/* The wrapper owns the simvm guest from here on, answers for its
	 * workload check, and keeps its configuration (what the destination
	 * builds from when it has no guest of its own). */
	tern_guest_provider_adopt(*gp, inner, sp_release, s);
	return 0;
}

int
tern_simvm_provider_create(struct tern_guest_provider *p, const struct tern_guest_config *cfg,
                           int role, char *err, size_t errlen)
{
	struct tern_guest *inner = NULL;
	struct sp_state *s = NULL;
	int rc;

	*p = (struct tern_guest_provider){0};
	if ((rc = tern_guest_create(&inner, cfg, role, err, errlen)) != 0)
		return rc;
	if ((s = calloc(1, sizeof(*s))) == NULL ||
	    (rc = tern_bitmap_init(&s->scratch, inner->npages)) != 0) {
		free(s);
		tern_guest_destroy(inner);
		snprintf(err, errlen, "out of memory");
		return TERN_ENOMEM;
	}
	s->g = inner;
	sp_cut_regions(s, cfg->nregions);
	*p = (struct tern_guest_provider){.ops = &sp_ops, .guest = s};
	return 0;
}

struct tern_guest *
tern_simvm_provider_guest(const struct tern_guest_provider *p)
{
	return p->guest != NULL ? ((struct sp_state *)p->guest)->g : NULL;
}

void
tern_simvm_provider_destroy(struct tern_guest_provider *p)
{
	if (p->guest != NULL)
		sp_release(p->guest);
	*p = (struct tern_guest_provider){0};
}
