/*
 * Guest memory, whatever the backend: range checks, populate ahead of
 * data, zeroing, the walk over populated extents and the digest built on it.
 */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>
#include <xxhash.h>

#include "kvm/guest.h"
#include "kvm/pagemap_scan.h"
#include "tern/error.h"

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

bool
tern_guest_range_ok(const struct tern_guest *g, uint64_t gpa, uint64_t len)
{
	const struct tern_guest_region *r = &g->region;

	return gpa >= r->gpa && len <= r->size && gpa - r->gpa <= r->size - len;
}

uint8_t *
tern_guest_hva(const struct tern_guest *g, uint64_t gpa)
{
	return g->region.host + (gpa - g->region.gpa);
}

int
tern_guest_populate(struct tern_guest *g, uint64_t gpa, uint64_t len)
{
	const struct tern_guest_region *r = &g->region;
	uint64_t off, end;

	if (!tern_guest_range_ok(g, gpa, len))
		return TERN_ERANGE;
	if (len == 0)
		return 0;
	/* Whole pages; the region size is page-aligned so end stays inside. */
	off = (gpa - r->gpa) & ~(TERN_PAGE_SIZE - 1);
	end = (gpa - r->gpa + len + TERN_PAGE_SIZE - 1) & ~(TERN_PAGE_SIZE - 1);
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
tern_guest_zero(struct tern_guest *g, uint64_t gpa, uint64_t len)
{
	const struct tern_guest_region *r = &g->region;
	if (!tern_guest_range_ok(g, gpa, len))
		return TERN_ERANGE;
	uint64_t off = gpa - r->gpa, end = off + len;
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

/* Anonymous memory: PAGEMAP_SCAN lists the pages that exist (present or
 * swapped); everything else reads as zero and is never touched. */
static int
guest_extents_anon(struct tern_guest *g, tern_extent_fn fn, void *arg)
{
	const struct tern_guest_region *r = &g->region;
	struct page_region vec[256];
	struct pm_scan_arg a;
	uint64_t base = (uintptr_t)r->host, pos = base, end = base + r->size;
	int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC), rv = 0;

	if (fd < 0)
		return fn(0, r->size, arg); /* no pagemap: everything may hold data */
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
			return fn(0, r->size, arg);
		}
		if (n < 0 || a.walk_end <= pos) {
			rv = n < 0 ? -errno : TERN_EINVAL;
			break;
		}
		for (long i = 0; i < n && rv == 0; i++)
			rv = fn(vec[i].start - base, vec[i].end - base, arg);
		pos = a.walk_end;
	}
	close(fd);
	return rv;
}

static int
guest_extents_memfd(struct tern_guest *g, tern_extent_fn fn, void *arg)
{
	const struct tern_guest_region *r = &g->region;
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
		rv = fn(data, hole, arg);
		off = hole;
	}
	return rv;
}

int
tern_guest_extents(struct tern_guest *g, tern_extent_fn fn, void *arg)
{
	return g->region.fd >= 0 ? guest_extents_memfd(g, fn, arg) : guest_extents_anon(g, fn, arg);
}

/*
 * The digest: XXH3-64 over the sequence of the XXH3-64 hashes of each 2 MiB
 * block of guest memory (the last block may be shorter).  A block without
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
	uint64_t size = d->g->region.size;
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
		if (bend > d->g->region.size)
			bend = d->g->region.size;
		uint64_t stop = end < bend ? end : bend;
		XXH3_64bits_update(d->block, d->g->region.host + d->pos, stop - d->pos);
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
		guest_digest_zeros_to(&d, g->region.size);
		*digest = XXH3_64bits_digest(d.outer);
	}
out:
	XXH3_freeState(d.outer);
	XXH3_freeState(d.block);
	return rv;
}
