/*
 * ZeroScanActor (see zero_scan.h).  Scanning is off the connections' critical
 * path and scales with the number of scanners.  A page the guest writes after
 * the scan is caught by the dirty log (the write came after the harvest that
 * put it in this set), so announcing it as zero now is still correct.
 */
#include <poll.h>
#include <string.h>

#include "actors/zero_scan.h"
#include "tern/error.h"

bool
tern_page_is_zero(const void *p)
{
	/* 64 bytes per step, OR-reduced so the compiler vectorises it; the
	 * early exit costs one branch per cache line. */
	const uint64_t *w = p;
	for (size_t i = 0; i < TERN_PAGE_SIZE / 8; i += 8) {
		if ((w[i] | w[i + 1] | w[i + 2] | w[i + 3] | w[i + 4] | w[i + 5] | w[i + 6] |
		     w[i + 7]) != 0)
			return false;
	}
	return true;
}

static bool
zs_bytes_zero(const uint8_t *p, uint64_t n)
{
	for (uint64_t i = 0; i < n; i++)
		if (p[i] != 0)
			return false;
	return true;
}

int
tern_zero_split(const uint8_t *base, uint64_t gpa, uint64_t len, tern_zero_run_fn fn, void *arg)
{
	uint64_t run_start = gpa, end = gpa + len;
	int run_zero = -1, rc;
	for (uint64_t at = gpa; at < end;) {
		/* The piece up to the next page boundary, or the range's end. */
		uint64_t next = (at & ~(TERN_PAGE_SIZE - 1)) + TERN_PAGE_SIZE;
		if (next > end)
			next = end;
		bool z = next - at == TERN_PAGE_SIZE ? tern_page_is_zero(base + at)
		                                     : zs_bytes_zero(base + at, next - at);
		if (run_zero >= 0 && (bool)run_zero != z) {
			if ((rc = fn(run_start, at - run_start, run_zero, arg)) != 0)
				return rc;
			run_start = at;
		}
		run_zero = z;
		at = next;
	}
	if (len > 0)
		return fn(run_start, end - run_start, run_zero == 1, arg);
	return 0;
}

/* Guest pages are being written by vCPUs while we read them: by design (the
 * dirty log covers it), so the read is not instrumented by TSan. */
__attribute__((no_sanitize("thread"))) static int
zs_split(const uint8_t *base, uint64_t gpa, uint64_t len, tern_zero_run_fn fn, void *arg)
{
	return tern_zero_split(base, gpa, len, fn, arg);
}

struct zs_state {
	struct tern_zero_scan_args *a;
	int in_fd;
	uint64_t pages, zero, scan_ns; /* reported by SCAN_STATS */
};

static int
zs_init(struct tern_actor *self, void *state, void *arg)
{
	struct zs_state *s = state;
	s->a = arg;
	s->in_fd = tern_queue_fd(s->a->in);
	if (s->in_fd < 0)
		return s->in_fd;
	return tern_actor_watch_fd(self, s->in_fd, POLLIN);
}

static void
zs_mark(struct tern_bitmap *zmap, uint64_t page, bool zero)
{
	/* Scanners of neighbouring chunks share words: atomic bit updates. */
	uint64_t bit = 1ull << (page & 63);
	if (zero)
		__atomic_fetch_or(&zmap->words[page >> 6], bit, __ATOMIC_RELAXED);
	else
		__atomic_fetch_and(&zmap->words[page >> 6], ~bit, __ATOMIC_RELAXED);
}

struct zs_run {
	struct tern_bitmap *zmap;
	uint64_t zero_pages;
	uint64_t base; /* of the region scanned: its offsets are relative */
};

/* Dirty runs are whole pages, so every run marks whole pages. */
static int
zs_mark_run(uint64_t gpa, uint64_t len, bool zero, void *arg)
{
	struct zs_run *r = arg;
	gpa += r->base;
	for (uint64_t p = gpa >> TERN_PAGE_SHIFT; p < (gpa + len) >> TERN_PAGE_SHIFT; p++)
		zs_mark(r->zmap, p, zero);
	if (zero)
		r->zero_pages += len >> TERN_PAGE_SHIFT;
	return 0;
}

static int
zs_scan(struct zs_state *s, struct tern_msg_chunk *c)
{
	const struct tern_bitmap *set = tern_set_get(s->a->sets, c->set);
	struct tern_guest *g = s->a->guest;
	uint64_t pos = c->gpa >> TERN_PAGE_SHIFT, end = (c->gpa + c->len) >> TERN_PAGE_SHIFT;
	uint64_t first, count, pages = 0, zero = 0, t0 = tern_now_ns();
	if (set == NULL || !tern_guest_space_ok(g, c->gpa, c->len) || end > set->nbits ||
	    end > s->a->zmap->nbits)
		return TERN_ERANGE;
	struct zs_run r = {s->a->zmap, 0, 0};
	while (pos < end && tern_bitmap_next_run(set, &pos, end - pos, &first, &count)) {
		if (first + count > end)
			count = end - first;
		/* A run lies inside one region (gaps are never dirty): one
		 * mapping, scanned in the region's own offsets. */
		uint64_t off = first << TERN_PAGE_SHIFT, len = count << TERN_PAGE_SHIFT;
		if (!tern_guest_range_ok(g, off, len))
			return TERN_ERANGE;
		const struct tern_guest_region *rg = tern_guest_region_at(g, off);
		r.base = rg->base;
		(void)zs_split(rg->host, off - rg->base, len, zs_mark_run, &r);
		pages += count;
	}
	zero = r.zero_pages;
	c->flags |= TERN_CHUNK_ZSCANNED;
	s->pages += pages;
	s->zero += zero;
	s->scan_ns += tern_now_ns() - t0;
	return 0;
}

static int
zs_on_fd(struct tern_actor *self, void *state, int fd, short revents)
{
	struct zs_state *s = state;
	struct tern_msg m;
	int rc = tern_queue_take(s->a->in, tern_actor_id(self), &m, 0);
	if (rc == TERN_ETIMEDOUT)
		return 0;
	if (rc == TERN_ECLOSED)
		return TERN_ACTOR_DONE;
	if (rc != 0 || m.type != TERN_MSG_CHUNK)
		return tern_actor_fail(self, rc ? rc : TERN_EPROTO, "scan queue failed");
	if ((rc = zs_scan(s, &m.u.chunk)) != 0)
		return tern_actor_fail(self, rc, "bad chunk to scan");
	/* The send queue applies backpressure.  On shutdown the coordinator
	 * closes the queues first, which ends this wait at once. */
	rc = tern_queue_put(s->a->out, tern_actor_id(self), &m, 10000);
	if (rc == TERN_ECLOSED)
		return TERN_ACTOR_DONE;
	return rc == 0 ? 0 : tern_actor_fail(self, rc, "send queue failed");
}

static int
zs_handle(struct tern_actor *self, void *state, const struct tern_msg *m)
{
	return tern_actor_fail(self, TERN_EPROTO, "unexpected message %s", tern_msg_name(m->type));
}

/* The final counters, before the runtime's SYS_EXIT (in order). */
static void
zs_stop(struct tern_actor *self, void *state)
{
	struct zs_state *s = state;
	if (s->a == NULL || s->a->coordinator == 0)
		return;
	struct tern_msg m;
	tern_msg_init(&m, TERN_MSG_SCAN_STATS);
	m.u.scan_stats.pages = s->pages;
	m.u.scan_stats.zero = s->zero;
	m.u.scan_stats.scan_ns = s->scan_ns;
	(void)tern_actor_send(self, s->a->coordinator, &m);
}

const struct tern_actor_desc tern_zero_scan_actor = {
    .name = "zero-scan",
    .state_size = sizeof(struct zs_state),
    .init = zs_init,
    .handle = zs_handle,
    .on_fd = zs_on_fd,
    .stop = zs_stop,
};
