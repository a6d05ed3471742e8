/*
 * userfaultfd-WP + PAGEMAP_SCAN dirty tracking (see dirty_wp.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/userfaultfd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "kvm/dirty_wp.h"
#include "kvm/guest.h"
#include "kvm/pagemap_scan.h"
#include "tern/error.h"

/* The installed headers are Linux 6.1; these are the 6.7 uapi values
 * (include/uapi/linux/userfaultfd.h). */
#ifndef UFFD_USER_MODE_ONLY
#define UFFD_USER_MODE_ONLY 1
#endif
#ifndef UFFD_FEATURE_WP_UNPOPULATED
#define UFFD_FEATURE_WP_UNPOPULATED (1 << 13)
#endif
#ifndef UFFD_FEATURE_WP_ASYNC
#define UFFD_FEATURE_WP_ASYNC (1 << 15)
#endif

#define DIRTY_WP_FEATURES (UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED)
#define DIRTY_WP_SCAN_VEC 4096u

void
dirty_wp_init(struct dirty_wp *w)
{
	w->uffd = -1;
	w->pagemap = -1;
	w->vec = NULL;
	w->scan_anyof = 0;
}

/* dirty_wp_swap_enabled: with swap, a written shmem page can be swapped out
 * and lose its page-table entry between two scans; then only the
 * conservative scan (holes count as written) stays exact. */
static bool
dirty_wp_swap_enabled(void)
{
	char line[256];
	int lines = 0;
	FILE *f = fopen("/proc/swaps", "re");

	if (f == NULL)
		return true;
	while (fgets(line, sizeof(line), f) != NULL)
		lines++;
	fclose(f);
	return lines > 1;
}

int
dirty_wp_scan(struct dirty_wp *w, const struct tern_guest_region *r, struct tern_bitmap *bm,
              uint64_t from, uint64_t to, uint64_t *pages, char *why, size_t whylen)
{
	uint64_t base = (uintptr_t)r->host, pos = base + from, end = base + to, n = 0;
	struct pm_scan_arg a;
	long got;
	int e;

	while (pos < end) {
		memset(&a, 0, sizeof(a));
		a.size = sizeof(a);
		a.flags = PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC;
		a.start = pos;
		a.end = end;
		a.vec = (uintptr_t)w->vec;
		a.vec_len = DIRTY_WP_SCAN_VEC;
		a.category_mask = PAGE_IS_WRITTEN;
		a.category_anyof_mask = w->scan_anyof;
		a.return_mask = PAGE_IS_WRITTEN;
		got = ioctl(w->pagemap, PAGEMAP_SCAN, &a);
		if (got < 0) {
			e = errno;
			if (e == EINTR)
				continue;
			if (e == ENOTTY || (e == EINVAL && pos == base + from))
				snprintf(why, whylen,
				         "PAGEMAP_SCAN ioctl not supported by this kernel "
				         "(needs Linux >= 6.7)");
			else
				snprintf(why, whylen, "PAGEMAP_SCAN of guest memory failed: %s",
				         strerror(e));
			return e == ENOTTY ? TERN_ENOTSUP : -e;
		}
		for (long i = 0; i < got; i++) {
			uint64_t first = (w->vec[i].start - base) / TERN_PAGE_SIZE;
			uint64_t count = (w->vec[i].end - w->vec[i].start) / TERN_PAGE_SIZE;

			if (bm != NULL)
				tern_bitmap_set_range(bm, first, count);
			n += count;
		}
		if (a.walk_end <= pos) {
			snprintf(why, whylen, "PAGEMAP_SCAN made no progress at %#" PRIx64,
			         pos - base);
			return TERN_EINVAL;
		}
		pos = a.walk_end;
	}
	if (pages != NULL)
		*pages += n;
	return 0;
}

int
dirty_wp_stop(struct dirty_wp *w, const struct tern_guest_region *r)
{
	struct uffdio_range range = {(uintptr_t)r->host, r->size};
	int rv = 0;

	if (w->uffd >= 0) {
		if (ioctl(w->uffd, UFFDIO_UNREGISTER, &range) != 0)
			rv = -errno;
		close(w->uffd);
	}
	if (w->pagemap >= 0)
		close(w->pagemap);
	free(w->vec);
	dirty_wp_init(w);
	return rv;
}

static const char *
dirty_wp_feature_name(uint64_t f)
{
	return f == UFFD_FEATURE_WP_ASYNC ? "UFFD_FEATURE_WP_ASYNC (Linux >= 6.7)"
	                                  : "UFFD_FEATURE_WP_UNPOPULATED (Linux >= 6.4)";
}

/* The probe asks the kernel (features = 0 returns what it offers), so that
 * a refusal names the missing feature. */
int
dirty_wp_probe(char *why, size_t whylen)
{
	struct uffdio_api api = {.api = UFFD_API, .features = 0};
	int fd, e;

	fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);
	if (fd < 0) {
		e = errno;
		snprintf(why, whylen,
		         "userfaultfd not available: %s (needs CONFIG_USERFAULTFD; unprivileged "
		         "use needs vm.unprivileged_userfaultfd=1)",
		         strerror(e));
		return e == ENOSYS ? TERN_ENOTSUP : -e;
	}
	if (ioctl(fd, UFFDIO_API, &api) != 0) {
		e = errno;
		close(fd);
		snprintf(why, whylen, "userfaultfd UFFDIO_API handshake failed: %s", strerror(e));
		return -e;
	}
	close(fd);
	for (uint64_t f = UFFD_FEATURE_WP_UNPOPULATED; f <= UFFD_FEATURE_WP_ASYNC; f <<= 1) {
		if ((DIRTY_WP_FEATURES & f) && !(api.features & f)) {
			snprintf(why, whylen, "userfaultfd %s not supported by this kernel",
			         dirty_wp_feature_name(f));
			return TERN_ENOTSUP;
		}
	}
	return 0;
}

/* dirty_wp_register opens the userfaultfd with the features and registers
 * r for write-protect; on failure w->uffd stays -1, so that stop does not
 * unregister a range that never was. */
static int
dirty_wp_register(struct dirty_wp *w, const struct tern_guest_region *r, char *why, size_t whylen)
{
	struct uffdio_api api = {.api = UFFD_API, .features = DIRTY_WP_FEATURES};
	struct uffdio_register reg;
	int e;

	w->uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);
	if (w->uffd < 0) {
		e = errno;
		snprintf(why, whylen, "userfaultfd not available: %s", strerror(e));
		return -e;
	}
	if (ioctl(w->uffd, UFFDIO_API, &api) != 0) {
		e = errno;
		close(w->uffd);
		w->uffd = -1;
		snprintf(why, whylen,
		         "userfaultfd refused UFFD_FEATURE_WP_ASYNC|WP_UNPOPULATED: %s",
		         strerror(e));
		return TERN_ENOTSUP;
	}
	memset(&reg, 0, sizeof(reg));
	reg.range.start = (uintptr_t)r->host;
	reg.range.len = r->size;
	reg.mode = UFFDIO_REGISTER_MODE_WP;
	if (ioctl(w->uffd, UFFDIO_REGISTER, &reg) != 0) {
		e = errno;
		close(w->uffd);
		w->uffd = -1;
		snprintf(why, whylen,
		         "userfaultfd write-protect registration of %s guest memory failed: %s%s",
		         r->fd >= 0 ? "shmem" : "anonymous", strerror(e),
		         r->fd >= 0 ? " (shmem write-protect needs CONFIG_PTE_MARKER_UFFD_WP)"
		                    : "");
		return e == EINVAL ? TERN_ENOTSUP : -e;
	}
	return 0;
}

int
dirty_wp_start(struct dirty_wp *w, const struct tern_guest_region *r, char *why, size_t whylen)
{
	int e, rv;

	if (w->uffd >= 0) {
		snprintf(why, whylen, "dirty tracking is already started");
		return TERN_ESTATE;
	}
	if ((rv = dirty_wp_probe(why, whylen)) != 0)
		return rv;
	if ((rv = dirty_wp_register(w, r, why, whylen)) != 0)
		goto fail;
	if ((w->pagemap = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC)) < 0) {
		e = errno;
		snprintf(why, whylen, "cannot open /proc/self/pagemap: %s", strerror(e));
		rv = -e;
		goto fail;
	}
	if ((w->vec = malloc(DIRTY_WP_SCAN_VEC * sizeof(struct page_region))) == NULL) {
		snprintf(why, whylen, "out of memory");
		rv = TERN_ENOMEM;
		goto fail;
	}
	/* Only pages that exist can have been written, so unless swap can take
	 * a written page's entry away, holes are left alone: write-protecting
	 * them would install a marker per hole page and make every scan cost
	 * the guest's size, not its populated memory (1 TiB: 3.7 s vs 3.8 ms,
	 * MACHINE.md).  A first write into a hole then shows up as a present,
	 * unprotected page, which the next scan reports (tests prove it). */
	w->scan_anyof = dirty_wp_swap_enabled() ? 0 : PAGE_IS_PRESENT | PAGE_IS_SWAPPED;
	/* Arm: protect everything written so far; those pages are not "dirty"
	 * to the migration, which copies all memory in its first pass. */
	if ((rv = dirty_wp_scan(w, r, NULL, 0, r->size, NULL, why, whylen)) != 0)
		goto fail;
	return 0;
fail:
	dirty_wp_stop(w, r);
	return rv;
}
