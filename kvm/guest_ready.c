/*
 * Destination memory made ready for data (see guest_ready.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "kvm/guest_ready.h"
#include "tern/error.h"

/* Bytes per pread: big enough that the call costs nothing, small enough to
 * stay in one page-cache batch. */
#define READY_STEP (2ull << 20)

/* One region's part: [gpa, gpa+len) inside region r. */
static int
ready_region(struct tern_guest *g, const struct tern_guest_region *r, uint64_t gpa, uint64_t len)
{
	int rc = tern_guest_populate(g, gpa, len);
	if (rc != 0 || r->fd < 0)
		return rc;
	/* The kernel's first write through the mapping is the dear part: do it
	 * now, copying the memfd's own bytes onto themselves. */
	uint64_t off = (gpa - r->base) & ~(TERN_PAGE_SIZE - 1);
	uint64_t end = (gpa - r->base + len + TERN_PAGE_SIZE - 1) & ~(TERN_PAGE_SIZE - 1);
	while (off < end) {
		uint64_t n = end - off < READY_STEP ? end - off : READY_STEP;
		ssize_t got = pread(r->fd, r->host + off, n, (off_t)(r->fd_offset + off));
		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0)
			return got < 0 ? -errno : -EIO;
		off += (uint64_t)got;
	}
	return 0;
}

int
tern_guest_prepare(struct tern_guest *g, uint64_t gpa, uint64_t len)
{
	/* Offsets in the migration's space: the parts inside regions, the
	 * gaps between them skipped. */
	for (uint32_t i = 0; i < g->nregions; i++) {
		const struct tern_guest_region *r = &g->regions[i];
		uint64_t a = gpa > r->base ? gpa : r->base;
		uint64_t b = gpa + len < r->base + r->size ? gpa + len : r->base + r->size;
		if (a >= b)
			continue;
		int rc = ready_region(g, r, a, b - a);
		if (rc != 0)
			return rc;
	}
	return 0;
}

struct ready_job {
	struct tern_guest *g;
	uint64_t off, end;
	int rc;
};

static void
ready_main(void *arg)
{
	struct ready_job *j = arg;
	j->rc = j->end > j->off ? tern_guest_prepare(j->g, j->off, j->end - j->off) : 0;
}

int
tern_guest_prepare_all(struct tern_guest *g, int nthreads)
{
	struct ready_job job[8];
	uv_thread_t th[8];
	bool started[8] = {false};
	uint64_t pages = g->npages; /* the space: shares split evenly, gaps skipped */
	if (nthreads < 1)
		nthreads = 1;
	if (nthreads > 8)
		nthreads = 8;
	for (int i = 0; i < nthreads; i++) {
		job[i] = (struct ready_job){
		    g, pages * (uint64_t)i / (uint64_t)nthreads * TERN_PAGE_SIZE,
		    pages * (uint64_t)(i + 1) / (uint64_t)nthreads * TERN_PAGE_SIZE, 0};
		if (i == 0)
			continue; /* this thread's share */
		started[i] = uv_thread_create(&th[i], ready_main, &job[i]) == 0;
		if (!started[i])
			ready_main(&job[i]); /* no thread: do it here */
	}
	ready_main(&job[0]);
	int rc = job[0].rc;
	for (int i = 1; i < nthreads; i++) {
		if (started[i])
			uv_thread_join(&th[i]);
		if (rc == 0)
			rc = job[i].rc;
	}
	return rc;
}

int
tern_guest_fastest_backing(int requested)
{
	char line[128] = "";
	FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");
	if (f == NULL)
		return requested;
	if (fgets(line, sizeof(line), f) == NULL)
		line[0] = '\0';
	fclose(f);
	/* "always [madvise] never": simvm asks with MADV_HUGEPAGE. */
	if (strstr(line, "[always]") != NULL || strstr(line, "[madvise]") != NULL)
		return TERN_BACKING_ANON_THP;
	return requested;
}
