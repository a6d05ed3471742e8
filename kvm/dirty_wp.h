/*
 * Dirty tracking of a memory region with userfaultfd asynchronous
 * write-protect and PAGEMAP_SCAN, for backends whose guest memory is mapped
 * in this process (simvm's "bitmap" mode).
 *
 * With UFFD_FEATURE_WP_ASYNC the kernel resolves a write fault on a
 * protected page itself and only clears the page's write-protect bit;
 * PAGEMAP_SCAN then reports the pages without the bit and re-protects them
 * in one pass.  Every writer is caught (vCPUs, the VMM, a test), and a scan
 * costs the populated memory, not the region's size.
 *
 * Calls on one struct dirty_wp are never concurrent (one harvester).
 */
#ifndef TERN_KVM_DIRTY_WP_H
#define TERN_KVM_DIRTY_WP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kvm/bitmap.h"

struct tern_guest_region;
struct page_region;

struct dirty_wp {
	int uffd;                /* -1 while not tracking */
	int pagemap;             /* /proc/self/pagemap, -1 while not tracking */
	struct page_region *vec; /* PAGEMAP_SCAN's output */
	uint64_t scan_anyof;     /* PAGEMAP_SCAN category_anyof_mask */
};

/* dirty_wp_init leaves w not tracking (dirty_wp_stop may be called). */
void dirty_wp_init(struct dirty_wp *w);

/* dirty_wp_probe returns 0 if this kernel offers what dirty_wp_start needs;
 * otherwise a negative code with a one-line reason in why naming the
 * missing feature (userfaultfd, WP_ASYNC, WP_UNPOPULATED). */
int dirty_wp_probe(char *why, size_t whylen);

/* dirty_wp_start write-protects all of r: pages written before are not
 * dirty.  TERN_ESTATE if w already tracks; TERN_ENOTSUP for a kernel
 * feature missing.  On failure w is left not tracking, with a one-line
 * reason in why. */
int dirty_wp_start(struct dirty_wp *w, const struct tern_guest_region *r, char *why, size_t whylen);

static inline bool
dirty_wp_tracking(const struct dirty_wp *w)
{
	return w->uffd >= 0;
}

/* dirty_wp_scan sets in bm (if not NULL) every page of [from, to) (byte
 * offsets into r, page-aligned) written since the previous scan,
 * re-protects them and adds their number to *pages (if not NULL).  On
 * failure a one-line reason in why. */
int dirty_wp_scan(struct dirty_wp *w, const struct tern_guest_region *r, struct tern_bitmap *bm,
                  uint64_t from, uint64_t to, uint64_t *pages, char *why, size_t whylen);

/* dirty_wp_stop ends tracking and releases w's fds and memory; idempotent. */
int dirty_wp_stop(struct dirty_wp *w, const struct tern_guest_region *r);

#endif /* TERN_KVM_DIRTY_WP_H */
