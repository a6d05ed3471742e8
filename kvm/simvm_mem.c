/*
 * simvm's guest memory: a memfd (MAP_SHARED) or anonymous memory with
 * transparent huge pages, and the source's initial fill.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <uv.h>

#include "kvm/simvm_priv.h"
#include "tern/error.h"

#define SIMVM_FILL_CHUNK_PAGES 4096u /* 16 MiB: populate, then write */
#define SIMVM_FILL_THREADED_PAGES 16384u
#define SIMVM_HUGE (2ull << 20)

struct simvm_fill_job {
	struct tern_guest *g;
	uint64_t first, end; /* pages */
	int rv;
};

static void
simvm_fill_page(uint64_t *w, uint64_t seed, uint64_t page)
{
	uint64_t s = simvm_mix(simvm_mix(seed) ^ page);

	for (unsigned i = 0; i < TERN_PAGE_SIZE / 8; i++)
		w[i] = simvm_rand(&s);
}

static int
simvm_fill_run(struct tern_guest *g, uint64_t first, uint64_t end)
{
	int rv;

	/* Populating the run first costs ~1.35 us/page on shmem against
	 * ~10 us/page for first-touch faults (MACHINE.md). */
	if ((rv = tern_guest_populate(g, first * TERN_PAGE_SIZE, (end - first) * TERN_PAGE_SIZE)) !=
	    0)
		return rv;
	for (uint64_t p = first; p < end; p++)
		simvm_fill_page((uint64_t *)(g->regions[0].host + p * TERN_PAGE_SIZE), g->cfg.seed,
		                p);
	return 0;
}

static int
simvm_fill_range(struct tern_guest *g, uint64_t first, uint64_t end)
{
	const struct tern_guest_config *cfg = &g->cfg;
	int rv;

	for (uint64_t c = first; c < end; c += SIMVM_FILL_CHUNK_PAGES) {
		uint64_t ce = end - c < SIMVM_FILL_CHUNK_PAGES ? end : c + SIMVM_FILL_CHUNK_PAGES;

		if (cfg->fill == TERN_FILL_RANDOM) {
			if ((rv = simvm_fill_run(g, c, ce)) != 0)
				return rv;
			continue;
		}
		/* fill=P: only the chosen pages are touched, in runs. */
		for (uint64_t p = c; p < ce;) {
			uint64_t q = p;

			while (q < ce && simvm_page_random(cfg, q))
				q++;
			if (q > p && (rv = simvm_fill_run(g, p, q)) != 0)
				return rv;
			p = q + 1;
		}
	}
	return 0;
}

static void
simvm_fill_main(void *arg)
{
	struct simvm_fill_job *job = arg;

	job->rv = simvm_fill_range(job->g, job->first, job->end);
}

int
simvm_fill(struct tern_guest *g)
{
	struct simvm_fill_job a = {g, 0, g->npages, 0}, b;
	uv_thread_t t;
	bool threaded = false;

	if (g->cfg.fill == TERN_FILL_ZERO ||
	    (g->cfg.fill == TERN_FILL_PERCENT && g->cfg.fill_pct == 0))
		return 0;
	/* fill=random:SIZE touches only the first SIZE bytes. */
	if (g->cfg.fill == TERN_FILL_RANDOM && g->cfg.fill_size != 0 &&
	    g->cfg.fill_size / TERN_PAGE_SIZE < a.end)
		a.end = g->cfg.fill_size / TERN_PAGE_SIZE;
	/* Big guests: the second half on a helper thread (2 cores here). */
	if (a.end >= SIMVM_FILL_THREADED_PAGES) {
		uint64_t end = a.end;
		b = a;
		b.first = a.end = end / 2;
		threaded = uv_thread_create(&t, simvm_fill_main, &b) == 0;
		if (!threaded)
			a.end = end;
	}
	simvm_fill_main(&a);
	if (threaded) {
		uv_thread_join(&t);
		if (a.rv == 0)
			a.rv = b.rv;
	}
	if (a.rv != 0)
		simvm_why(g, "fill: populating guest memory failed: %s", tern_strerror(a.rv));
	return a.rv;
}

int
simvm_map(struct tern_guest *g)
{
	struct tern_guest_region *r = &g->regions[0];
	uint64_t size = g->cfg.mem_size;
	uint8_t *p;
	int e;

	r->gpa = 0;
	r->size = size;
	r->fd_offset = 0;
	if (g->cfg.backing == TERN_BACKING_MEMFD) {
		if ((r->fd = memfd_create("tern-guest", MFD_CLOEXEC)) < 0) {
			e = errno;
			simvm_why(g, "memfd_create failed: %s", strerror(e));
			return -e;
		}
		if (ftruncate(r->fd, (off_t)size) != 0) {
			e = errno;
			simvm_why(g, "ftruncate of the guest memfd to %" PRIu64 " bytes failed: %s",
			          size, strerror(e));
			return -e;
		}
		p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, r->fd, 0);
		if (p == MAP_FAILED) {
			e = errno;
			simvm_why(g, "mmap of %" PRIu64 " bytes of guest memfd failed: %s", size,
			          strerror(e));
			return -e;
		}
		r->host = p;
		return 0;
	}
	/* Anonymous: over-map by 2 MiB and trim so that the region starts on
	 * a huge-page boundary and every 2 MiB of it can be a huge page. */
	r->fd = -1;
	p = mmap(NULL, size + SIMVM_HUGE, PROT_READ | PROT_WRITE,
	         MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED) {
		e = errno;
		simvm_why(g, "mmap of %" PRIu64 " bytes of anonymous memory failed: %s", size,
		          strerror(e));
		return -e;
	}
	{
		uint8_t *a =
		    (uint8_t *)(((uintptr_t)p + SIMVM_HUGE - 1) & ~(uintptr_t)(SIMVM_HUGE - 1));

		if (a > p)
			munmap(p, (size_t)(a - p));
		if (p + size + SIMVM_HUGE > a + size)
			munmap(a + size, (size_t)(p + size + SIMVM_HUGE - (a + size)));
		r->host = a;
	}
	if (madvise(r->host, size, MADV_HUGEPAGE) != 0) {
		e = errno;
		simvm_why(g,
		          "madvise(MADV_HUGEPAGE) failed: %s (transparent huge pages not built in)",
		          strerror(e));
		return -e;
	}
	return 0;
}

void
simvm_unmap(struct tern_guest *g)
{
	if (g->regions[0].host != NULL)
		munmap(g->regions[0].host, g->regions[0].size);
	g->regions[0].host = NULL;
	if (g->regions[0].fd >= 0)
		close(g->regions[0].fd);
	g->regions[0].fd = -1;
}
