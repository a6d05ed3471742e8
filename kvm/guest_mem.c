/*
 * Guest memory, whatever the backend: range checks, populate ahead of
 * data, zeroing, the walk over populated extents and the digest built on it.
 */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>
#include <xxhash.h>

#include "kvm/guest.h"
#include "kvm/pagemap_scan.h"
#include "messages/msg.h"
#include "tern/error.h"

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

const struct tern_guest_region *
tern_guest_region_at(const struct tern_guest *g, uint64_t off)
{
	/* Binary search for the last region starting at or before off. */
	uint32_t lo = 0, hi = g->nregions;
	while (hi - lo > 1) {
		uint32_t mid = lo + (hi - lo) / 2;
		if (g->regions[mid].base <= off)
			lo = mid;
		else
			hi = mid;
	}
	const struct tern_guest_region *r = &g->regions[lo];
	return g->nregions != 0 && off >= r->base && off - r->base < r->size ? r : NULL;
}

bool
tern_guest_range_ok(const struct tern_guest *g, uint64_t gpa, uint64_t len)
{
	if (len == 0)
		return tern_guest_space_ok(g, gpa, 0);
	const struct tern_guest_region *r = tern_guest_region_at(g, gpa);
	return r != NULL && len <= r->size && gpa - r->base <= r->size - len;
}

bool
tern_guest_space_ok(const struct tern_guest *g, uint64_t off, uint64_t len)
{
	uint64_t size = g->npages * TERN_PAGE_SIZE;
	return len <= size && off <= size - len;
}

uint8_t *
tern_guest_hva(const struct tern_guest *g, uint64_t gpa)
{
	const struct tern_guest_region *r =
	    g->nregions == 1 ? &g->regions[0] : tern_guest_region_at(g, gpa);
	return r->host + (gpa - r->base);
}

void
tern_guest_mark_all(const struct tern_guest *g, struct tern_bitmap *bm)
{
	for (uint32_t i = 0; i < g->nregions; i++)
		tern_bitmap_set_range(bm, g->regions[i].base / TERN_PAGE_SIZE,
		                      g->regions[i].size / TERN_PAGE_SIZE);
}

uint64_t
tern_guest_mem_bytes(const struct tern_guest *g)
{
	uint64_t n = 0;
	for (uint32_t i = 0; i < g->nregions; i++)
		n += g->regions[i].size;
	return n;
}

/* The gap after a region: at least a page, up to the next multiple of 64
 * pages, so that no bitmap word or run spans two regions. */
#define GUEST_BASE_ALIGN (64 * TERN_PAGE_SIZE)

int
tern_guest_set_layout(struct tern_guest *g, const struct tern_guest_region *r, uint32_t n,
                      char *why, size_t whylen)
{
	uint64_t base = 0;

	if (n == 0 || n > TERN_GUEST_MAX_REGIONS) {
		terni_errf(why, whylen, "the guest has %u memory regions; libtern migrates 1 to %u",
		           n, TERN_GUEST_MAX_REGIONS);
		return n == 0 ? TERN_EINVAL : TERN_ENOTSUP;
	}
	for (uint32_t i = 0; i < n; i++) {
		const struct tern_guest_region *x = &r[i];
		if (x->size == 0 || x->size % TERN_PAGE_SIZE != 0 || x->gpa % TERN_PAGE_SIZE != 0 ||
		    x->host == NULL || (uintptr_t)x->host % TERN_PAGE_SIZE != 0 ||
		    x->gpa + x->size < x->gpa ||
		    (x->fd >= 0 && x->fd_offset % TERN_PAGE_SIZE != 0)) {
			terni_errf(
			    why, whylen,
			    "region %u (%llu bytes at gpa 0x%llx, mapped at %p) is empty, not "
			    "page-aligned, wraps, or is not mapped",
			    i, (unsigned long long)x->size, (unsigned long long)x->gpa,
			    (void *)x->host);
			return TERN_EINVAL;
		}
		if (i > 0 && x->gpa < r[i - 1].gpa + r[i - 1].size) {
			terni_errf(
			    why, whylen,
			    "region %u (gpa 0x%llx) overlaps region %u or is not in gpa order", i,
			    (unsigned long long)x->gpa, i - 1);
			return TERN_EINVAL;
		}
		if (i > 0)
			base = (base + TERN_PAGE_SIZE + GUEST_BASE_ALIGN - 1) &
			       ~(GUEST_BASE_ALIGN - 1);
		g->regions[i] = *x;
		g->regions[i].base = base;
		base += x->size;
	}
	g->nregions = n;
	g->npages = base / TERN_PAGE_SIZE;
	return 0;
}

const char *
tern_guest_layout_text(const struct tern_guest_region *r, uint32_t n, char *buf, size_t len)
{
	size_t at = 0;
	char size[32];

	at += (size_t)snprintf(buf, len, "%u region%s:", n, n == 1 ? "" : "s");
	for (uint32_t i = 0; i < n && at < len; i++)
		at += (size_t)snprintf(buf + at, len - at, "%s %s at 0x%llx", i ? "," : "",
		                       terni_format_size(r[i].size, size, sizeof(size)),
		                       (unsigned long long)r[i].gpa);
	return buf;
}

int
tern_guest_populate(struct tern_guest *g, uint64_t gpa, uint64_t len)
{
	if (!tern_guest_range_ok(g, gpa, len))
		return TERN_ERANGE;
	if (len == 0)
		return 0;
	const struct tern_guest_region *r = tern_guest_region_at(g, gpa);
	uint64_t off, end;
	/* Whole pages; the region size is page-aligned so end stays inside. */
	off = (gpa - r->base) & ~(TERN_PAGE_SIZE - 1);
	end = (gpa - r->base + len + TERN_PAGE_SIZE - 1) & ~(TERN_PAGE_SIZE - 1);
	/* For shmem, allocating the page cache first is cheaper per page than
	 * letting the populate fault allocate it (MACHINE.md). */
	if (r->fd >= 0 && fallocate(r->fd, 0, (off_t)(r->fd_offset + off), (off_t)(end - off)) != 0)
		return -errno;
	while (madvise(r->host + off, end - off, MADV_POPULATE_WRITE) != 0) {
		if (errno != EINTR)
			return -errno;
	}
	return 0;
}

int
tern_guest_populate_all(struct tern_guest *g)
{
	for (uint32_t i = 0; i < g->nregions; i++) {
		int rc = tern_guest_populate(g, g->regions[i].base, g->regions[i].size);
		if (rc != 0)
			return rc;
	}
	return 0;
}

int
tern_guest_zero(struct tern_guest *g, uint64_t gpa, uint64_t len)
{
	if (!tern_guest_range_ok(g, gpa, len))
		return TERN_ERANGE;
	const struct tern_guest_region *r = tern_guest_region_at(g, gpa);
	uint64_t off = gpa - r->base, end = off + len;
	uint64_t a = (off + TERN_PAGE_SIZE - 1) & ~(TERN_PAGE_SIZE - 1);
	uint64_t b = end & ~(TERN_PAGE_SIZE - 1);
	if (a >= b) { /* inside one page */
		memset(r->host + off, 0, len);
		return 0;
	}
	memset(r->host + off, 0, a - off);
	memset(r->host + b, 0, end - b);
	if (r->fd >= 0) {
		if (fallocate(r->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
		              (off_t)(r->fd_offset + a), (off_t)(b - a)) != 0)
			return -errno;
	} else {
		/* Anonymous memory may sit in huge pages: dropping part of one
		 * would split it, clearing keeps it whole. */
		memset(r->host + a, 0, b - a);
	}
	return 0;
}

int
tern_guest_discard(struct tern_guest *g, uint64_t gpa, uint64_t len)
{
	if (len % TERN_PAGE_SIZE != 0 || gpa % TERN_PAGE_SIZE != 0 ||
	    !tern_guest_range_ok(g, gpa, len))
		return TERN_ERANGE;
	if (len == 0)
		return 0;
	const struct tern_guest_region *r = tern_guest_region_at(g, gpa);
	uint64_t in = gpa - r->base;
	if (r->fd >= 0) {
		if (fallocate(r->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
		              (off_t)(r->fd_offset + in), (off_t)len) != 0)
			return -errno;
	} else if (madvise(r->host + in, len, MADV_DONTNEED) != 0) {
		return -errno;
	}
	return 0;
}

/* Anonymous memory: PAGEMAP_SCAN lists the pages that exist (present or
 * swapped); everything else reads as zero and is never touched. */
static int
guest_extents_anon(const struct tern_guest_region *r, tern_extent_fn fn, void *arg)
{
	struct page_region vec[256];
	struct pm_scan_arg a;
	uint64_t base = (uintptr_t)r->host, pos = base, end = base + r->size;
	uint64_t to = r->base - base; /* host address + to = offset in the space */
	int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC), rv = 0;

	if (fd < 0) /* no pagemap: everything may hold data */
		return fn(r->base, r->base + r->size, arg);
	while (pos < end && rv == 0) {
		memset(&a, 0, sizeof(a));
		a.size = sizeof(a);
		a.start = pos;
		a.end = end;
		a.vec = (uintptr_t)vec;
		a.vec_len = sizeof(vec) / sizeof(vec[0]);
		a.category_anyof_mask = PAGE_IS_PRESENT | PAGE_IS_SWAPPED;
		a.return_mask = PAGE_IS_PRESENT | PAGE_IS_SWAPPED;
		long n = ioctl(fd, PAGEMAP_SCAN, &a);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && pos == base) { /* kernel without PAGEMAP_SCAN */
			close(fd);
			return fn(r->base, r->base + r->size, arg);
		}
		if (n < 0 || a.walk_end <= pos) {
			rv = n < 0 ? -errno : TERN_EINVAL;
			break;
		}
		for (long i = 0; i < n && rv == 0; i++)
			rv = fn(vec[i].start + to, vec[i].end + to, arg);
		pos = a.walk_end;
	}
	close(fd);
	return rv;
}

static int
guest_extents_memfd(const struct tern_guest_region *r, tern_extent_fn fn, void *arg)
{
	uint64_t off = 0;
	int rv = 0;

	while (off < r->size && rv == 0) {
		off_t x = lseek(r->fd, (off_t)(r->fd_offset + off), SEEK_DATA);
		if (x < 0)
			return errno == ENXIO ? 0 : -errno;
		uint64_t data = (uint64_t)x - r->fd_offset;
		if (data >= r->size)
			break;
		x = lseek(r->fd, (off_t)(r->fd_offset + data), SEEK_HOLE);
		if (x < 0)
			return -errno;
		uint64_t hole = (uint64_t)x - r->fd_offset;
		if (hole > r->size)
			hole = r->size;
		rv = fn(r->base + data, r->base + hole, arg);
		off = hole;
	}
	return rv;
}

int
tern_guest_extents(struct tern_guest *g, tern_extent_fn fn, void *arg)
{
	int rv = 0;
	for (uint32_t i = 0; i < g->nregions && rv == 0; i++) {
		const struct tern_guest_region *r = &g->regions[i];
		rv = r->fd >= 0 ? guest_extents_memfd(r, fn, arg) : guest_extents_anon(r, fn, arg);
	}
	return rv;
}

/*
 * The digest: XXH3-64 over the sequence of the XXH3-64 hashes of each 2 MiB
 * block of the migration's memory space (the last block may be shorter; gaps
 * between regions hash as zeros).  A block without
 * populated pages is all zero: its hash is computed once, never by reading
 * the block, so a 1 TiB guest that used 1 GiB hashes like a 1 GiB guest.
 * Inside a block, holes are hashed as zeros from a static buffer: reading a
 * hole of a shared memfd through the mapping would allocate it.
 */
#define GUEST_DIGEST_BLOCK (2ull << 20)

struct guest_digest {
	struct tern_guest *g;
	XXH3_state_t *outer;  /* over the block hashes */
	XXH3_state_t *block;  /* the block being hashed */
	uint64_t block_start; /* offset of the block in progress */
	uint64_t pos;         /* hashed up to here inside it */
	uint64_t zero_hash;   /* of a full all-zero block */
};

static void
guest_hash_zeros(XXH3_state_t *st, uint64_t len)
{
	static const uint8_t zeros[64 * 1024];

	while (len >= sizeof(zeros)) {
		XXH3_64bits_update(st, zeros, sizeof(zeros));
		len -= sizeof(zeros);
	}
	if (len != 0)
		XXH3_64bits_update(st, zeros, len);
}

static void
guest_digest_emit(struct guest_digest *d, uint64_t h)
{
	uint64_t le = htole64(h);
	XXH3_64bits_update(d->outer, &le, sizeof(le));
}

/* Hashes zeros from d->pos up to off, finishing blocks on the way. */
static void
guest_digest_zeros_to(struct guest_digest *d, uint64_t off)
{
	uint64_t size = d->g->npages * TERN_PAGE_SIZE;
	while (d->pos < off) {
		uint64_t bend = d->block_start + GUEST_DIGEST_BLOCK;
		if (bend > size)
			bend = size;
		if (d->pos == d->block_start && bend <= off &&
		    bend - d->block_start == GUEST_DIGEST_BLOCK) {
			guest_digest_emit(d, d->zero_hash); /* a whole zero block */
		} else {
			uint64_t stop = off < bend ? off : bend;
			guest_hash_zeros(d->block, stop - d->pos);
			d->pos = stop;
			if (stop < bend)
				return;
			guest_digest_emit(d, XXH3_64bits_digest(d->block));
		}
		d->block_start = d->pos = bend;
		XXH3_64bits_reset(d->block);
	}
}

static int
guest_digest_extent(uint64_t start, uint64_t end, void *arg)
{
	struct guest_digest *d = arg;
	guest_digest_zeros_to(d, start);
	while (d->pos < end) {
		uint64_t bend = d->block_start + GUEST_DIGEST_BLOCK;
		if (bend > d->g->npages * TERN_PAGE_SIZE)
			bend = d->g->npages * TERN_PAGE_SIZE;
		uint64_t stop = end < bend ? end : bend;
		/* An extent lies inside one region: one mapping. */
		XXH3_64bits_update(d->block, tern_guest_hva(d->g, d->pos), stop - d->pos);
		d->pos = stop;
		if (stop == bend) {
			guest_digest_emit(d, XXH3_64bits_digest(d->block));
			XXH3_64bits_reset(d->block);
			d->block_start = bend;
		}
	}
	return 0;
}

int
tern_guest_digest(struct tern_guest *g, uint64_t *digest)
{
	struct guest_digest d = {.g = g};
	int rv = TERN_ENOMEM;

	d.outer = XXH3_createState();
	d.block = XXH3_createState();
	if (d.outer == NULL || d.block == NULL)
		goto out;
	XXH3_64bits_reset(d.outer);
	XXH3_64bits_reset(d.block);
	guest_hash_zeros(d.block, GUEST_DIGEST_BLOCK);
	d.zero_hash = XXH3_64bits_digest(d.block);
	XXH3_64bits_reset(d.block);
	rv = tern_guest_extents(g, guest_digest_extent, &d);
	if (rv == 0) {
		guest_digest_zeros_to(&d, g->npages * TERN_PAGE_SIZE);
		*digest = XXH3_64bits_digest(d.outer);
	}
out:
	XXH3_freeState(d.outer);
	XXH3_freeState(d.block);
	return rv;
}

uint64_t
tern_page_hash(uint64_t page, const void *data)
{
	static const uint8_t zeros[TERN_PAGE_SIZE];
	static uint64_t zero_hash; /* racing first calls compute the same value */
	uint64_t h;
	if (data != NULL) {
		h = XXH3_64bits(data, TERN_PAGE_SIZE);
	} else {
		h = __atomic_load_n(&zero_hash, __ATOMIC_RELAXED);
		if (h == 0) {
			h = XXH3_64bits(zeros, TERN_PAGE_SIZE);
			__atomic_store_n(&zero_hash, h, __ATOMIC_RELAXED);
		}
	}
	return tern_mix64(h ^ (page * 0x9e3779b97f4a7c15ull));
}

struct page_digest {
	struct tern_guest *g;
	const struct tern_bitmap *skip;
	uint64_t acc;
};

static bool
page_skipped(const struct tern_bitmap *skip, uint64_t p)
{
	return skip != NULL && tern_bitmap_test(skip, p);
}

/* A populated extent: its pages were counted as zeros; count their data. */
static int
page_digest_extent(uint64_t start, uint64_t end, void *arg)
{
	struct page_digest *d = arg;
	for (uint64_t p = start / TERN_PAGE_SIZE; p < (end + TERN_PAGE_SIZE - 1) / TERN_PAGE_SIZE;
	     p++)
		if (!page_skipped(d->skip, p))
			d->acc ^= tern_page_hash(p, NULL) ^
			          tern_page_hash(p, tern_guest_hva(d->g, p * TERN_PAGE_SIZE));
	return 0;
}

int
tern_guest_page_digest(struct tern_guest *g, const struct tern_bitmap *skip, uint64_t *digest)
{
	struct page_digest d = {g, skip, 0};
	for (uint32_t i = 0; i < g->nregions; i++) {
		uint64_t first = g->regions[i].base / TERN_PAGE_SIZE;
		for (uint64_t p = first; p < first + g->regions[i].size / TERN_PAGE_SIZE; p++)
			if (!page_skipped(skip, p))
				d.acc ^= tern_page_hash(p, NULL);
	}
	int rc = tern_guest_extents(g, page_digest_extent, &d);
	if (rc == 0)
		*digest = d.acc;
	return rc;
}
