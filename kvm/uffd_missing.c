/*
 * userfaultfd missing mode for postcopy (see uffd_missing.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "kvm/uffd_missing.h"
#include "tern/error.h"

#ifndef UFFD_USER_MODE_ONLY
#define UFFD_USER_MODE_ONLY 1
#endif

struct tern_uffd_missing {
	struct tern_guest *g;
	int uffd;
	uint32_t registered; /* regions registered, from 0 */
	uint64_t placed;     /* atomic */
	uint64_t hashed;     /* atomic: XOR of the placed pages' hashes */
	bool hashing;        /* set before any placement (--verify only) */
};

/* A page of zeros to copy from: shmem has no UFFDIO_ZEROPAGE. */
static const uint8_t um_zeros[TERN_PAGE_SIZE] __attribute__((aligned(4096)));

/* Faults from the kernel's own accesses (a KVM vCPU reads guest memory
 * through the kernel) need a full userfaultfd; without the privilege for
 * one, user-mode faults (threads touching the mapping) still work. */
static int
um_open_fd(char *why, size_t whylen)
{
	int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	if (fd < 0 && errno == EPERM)
		fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);
	if (fd < 0) {
		int e = errno;
		snprintf(why, whylen, "userfaultfd not available: %s", strerror(e));
		return -e;
	}
	return fd;
}

static int
um_register(struct tern_uffd_missing *m, char *why, size_t whylen)
{
	bool shmem = false;
	for (uint32_t i = 0; i < m->g->nregions; i++)
		shmem |= m->g->regions[i].fd >= 0;
	struct uffdio_api api = {.api = UFFD_API,
	                         .features = shmem ? UFFD_FEATURE_MISSING_SHMEM : 0};
	if (ioctl(m->uffd, UFFDIO_API, &api) != 0) {
		snprintf(why, whylen, "userfaultfd refused missing faults on %s memory: %s",
		         shmem ? "shmem" : "anonymous", strerror(errno));
		return TERN_ENOTSUP;
	}
	for (; m->registered < m->g->nregions; m->registered++) {
		const struct tern_guest_region *r = &m->g->regions[m->registered];
		struct uffdio_register reg = {.range = {(uintptr_t)r->host, r->size},
		                              .mode = UFFDIO_REGISTER_MODE_MISSING};
		if (ioctl(m->uffd, UFFDIO_REGISTER, &reg) != 0) {
			int e = errno;
			snprintf(why, whylen,
			         "userfaultfd missing-mode registration of region %u: %s",
			         m->registered, strerror(e));
			return e == EINVAL ? TERN_ENOTSUP : -e;
		}
		if (!(reg.ioctls & (1ull << _UFFDIO_COPY))) {
			m->registered++;
			snprintf(why, whylen, "userfaultfd cannot UFFDIO_COPY into region %u",
			         m->registered - 1);
			return TERN_ENOTSUP;
		}
	}
	return 0;
}

int
tern_uffd_missing_open(struct tern_uffd_missing **out, struct tern_guest *g, char *why,
                       size_t whylen)
{
	struct tern_uffd_missing *m = calloc(1, sizeof(*m));
	int rc;

	*out = NULL;
	if (m == NULL) {
		snprintf(why, whylen, "out of memory");
		return TERN_ENOMEM;
	}
	m->g = g;
	if ((m->uffd = um_open_fd(why, whylen)) < 0) {
		rc = m->uffd;
		free(m);
		return rc;
	}
	if ((rc = um_register(m, why, whylen)) != 0) {
		tern_uffd_missing_close(m);
		return rc;
	}
	*out = m;
	return 0;
}

int
tern_uffd_missing_fd(const struct tern_uffd_missing *m)
{
	return m->uffd;
}

int
tern_uffd_missing_next_fault(struct tern_uffd_missing *m, uint64_t *off)
{
	struct uffd_msg msg;
	for (;;) {
		ssize_t n = read(m->uffd, &msg, sizeof(msg));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return errno == EAGAIN ? TERN_ETIMEDOUT : -errno;
		if (n != sizeof(msg))
			return TERN_EINVAL;
		if (msg.event == UFFD_EVENT_PAGEFAULT)
			break;
		/* No other event was asked for (UFFDIO_API features). */
	}
	uint64_t addr = msg.arg.pagefault.address & ~(TERN_PAGE_SIZE - 1);
	for (uint32_t i = 0; i < m->g->nregions; i++) {
		const struct tern_guest_region *r = &m->g->regions[i];
		if (addr >= (uintptr_t)r->host && addr - (uintptr_t)r->host < r->size) {
			*off = r->base + (addr - (uintptr_t)r->host);
			return 0;
		}
	}
	return TERN_ERANGE;
}

/* Copies page by page where the kernel stops: a partial copy says how far
 * it got (EAGAIN), a present page refuses (EEXIST) and is skipped. */
static int
um_copy(struct tern_uffd_missing *m, uint64_t off, const uint8_t *src, uint64_t len, bool zero,
        bool hash, uint64_t *placed)
{
	uint64_t done = 0, n = 0;
	if (placed != NULL)
		*placed = 0;
	if (len % TERN_PAGE_SIZE != 0 || off % TERN_PAGE_SIZE != 0 ||
	    !tern_guest_range_ok(m->g, off, len))
		return TERN_ERANGE;
	uint8_t *host = tern_guest_hva(m->g, off);
	while (done < len) {
		struct uffdio_copy c = {
		    .dst = (uintptr_t)(host + done),
		    .src = (uintptr_t)(zero ? um_zeros : src + done),
		    .len = zero ? TERN_PAGE_SIZE : len - done,
		};
		int rc = ioctl(m->uffd, UFFDIO_COPY, &c);
		int e = rc != 0 ? errno : 0;
		if (c.copy > 0) { /* pages installed, whether or not all */
			uint64_t h = 0, first = (off + done) / TERN_PAGE_SIZE;
			for (uint64_t i = 0;
			     hash && m->hashing && i < (uint64_t)c.copy / TERN_PAGE_SIZE; i++)
				h ^= tern_page_hash(first + i,
				                    zero ? NULL : src + done + i * TERN_PAGE_SIZE);
			__atomic_fetch_xor(&m->hashed, h, __ATOMIC_RELAXED);
			n += (uint64_t)c.copy / TERN_PAGE_SIZE;
			done += (uint64_t)c.copy;
			continue;
		}
		if (rc == 0)
			e = EIO; /* success without a byte: never loop on it */
		if (e == EEXIST) {
			done += TERN_PAGE_SIZE; /* present: never overwritten */
			continue;
		}
		if (e != EAGAIN && e != EINTR) {
			__atomic_fetch_add(&m->placed, n, __ATOMIC_RELAXED);
			if (placed != NULL)
				*placed = n;
			return -e;
		}
	}
	__atomic_fetch_add(&m->placed, n, __ATOMIC_RELAXED);
	if (placed != NULL)
		*placed = n;
	return 0;
}

int
tern_uffd_missing_place(struct tern_uffd_missing *m, uint64_t off, const void *src, uint64_t len,
                        uint64_t *placed)
{
	return um_copy(m, off, src, len, false, true, placed);
}

int
tern_uffd_missing_fill_zero(struct tern_uffd_missing *m, uint64_t off, uint64_t len,
                            uint64_t *placed)
{
	return um_copy(m, off, NULL, len, true, false, placed);
}

int
tern_uffd_missing_place_zero(struct tern_uffd_missing *m, uint64_t off, uint64_t len,
                             uint64_t *placed)
{
	return um_copy(m, off, NULL, len, true, true, placed);
}

void
tern_uffd_missing_hash(struct tern_uffd_missing *m)
{
	m->hashing = true;
}

uint64_t
tern_uffd_missing_hashed(const struct tern_uffd_missing *m)
{
	return __atomic_load_n(&m->hashed, __ATOMIC_RELAXED);
}

uint64_t
tern_uffd_missing_placed(const struct tern_uffd_missing *m)
{
	return __atomic_load_n(&m->placed, __ATOMIC_RELAXED);
}

void
tern_uffd_missing_close(struct tern_uffd_missing *m)
{
	if (m == NULL)
		return;
	for (uint32_t i = 0; i < m->registered; i++) {
		const struct tern_guest_region *r = &m->g->regions[i];
		struct uffdio_range range = {(uintptr_t)r->host, r->size};
		(void)ioctl(m->uffd, UFFDIO_UNREGISTER, &range);
	}
	if (m->uffd >= 0)
		close(m->uffd);
	free(m);
}
