/*
 * A W_PAGES frame on the destination (see page_frame.h).  Nothing in the
 * header is trusted: counts and ranges are checked before any is used, and
 * every later step relies on that check only.
 */
#include "actors/page_frame.h"
#include "tern/error.h"

int
tern_page_frame_check(const struct tern_guest *g, const struct tern_msg_w_pages *p, uint64_t plen,
                      const char **why)
{
	const struct tern_ranges *r = &p->ranges, *z = &p->zeros;
	uint64_t total = 0;

	if (r->count + z->count == 0 || r->count > TERN_FRAME_MAX_RANGES ||
	    z->count > TERN_FRAME_MAX_RANGES) {
		*why = "bad range count in page frame";
		return TERN_EPROTO;
	}
	for (uint32_t i = 0; i < r->count + z->count; i++) {
		uint64_t gpa, len;

		tern_ranges_get(i < r->count ? r : z, i < r->count ? i : i - r->count, &gpa, &len);
		if (len == 0 || !tern_guest_range_ok(g, gpa, len)) {
			*why = "page range outside guest memory";
			return TERN_ERANGE;
		}
		/* Saturating: the sum of many ranges of a huge guest must not
		 * wrap around to plen. */
		if (i < r->count)
			total = len > UINT64_MAX - total ? UINT64_MAX : total + len;
	}
	if (total != plen) {
		*why = "page frame length mismatch";
		return TERN_EPROTO;
	}
	return 0;
}

/* The first page in [p, last) whose written bit is on (or off), else last:
 * a word at a time, so a TiB guest's zero range costs its bitmap words, not
 * its pages.  Connections share the map: atomic loads. */
static uint64_t
pf_next(const struct tern_bitmap *w, uint64_t p, uint64_t last, int on)
{
	while (p < last) {
		uint64_t word = __atomic_load_n(&w->words[p >> 6], __ATOMIC_RELAXED);
		if (!on)
			word = ~word;
		word &= ~0ull << (p & 63);
		if (word != 0) {
			uint64_t q = (p & ~63ull) + (uint64_t)__builtin_ctzll(word);
			return q < last ? q : last;
		}
		p = (p | 63) + 1;
	}
	return last;
}

/* One announced zero range: clears the runs of written pages in it. */
static int
pf_zero(struct tern_guest *g, const struct tern_bitmap *w, uint64_t gpa, uint64_t len)
{
	uint64_t last = (gpa + len + TERN_PAGE_SIZE - 1) >> TERN_PAGE_SHIFT;
	for (uint64_t p = gpa >> TERN_PAGE_SHIFT; (p = pf_next(w, p, last, 1)) < last;) {
		uint64_t q = pf_next(w, p, last, 0);
		uint64_t a = p << TERN_PAGE_SHIFT, b = q << TERN_PAGE_SHIFT;
		if (a < gpa)
			a = gpa;
		if (b > gpa + len)
			b = gpa + len;
		int rc = tern_guest_zero(g, a, b - a);
		if (rc != 0)
			return rc;
		p = q;
	}
	return 0;
}

int
tern_page_frame_zero(struct tern_guest *g, const struct tern_bitmap *written,
                     const struct tern_msg_w_pages *p, uint64_t *zero_pages)
{
	for (uint32_t i = 0; i < p->zeros.count; i++) {
		uint64_t gpa, len;
		tern_ranges_get(&p->zeros, i, &gpa, &len);
		int rc = pf_zero(g, written, gpa, len);
		if (rc != 0)
			return rc;
		*zero_pages += len / TERN_PAGE_SIZE;
	}
	return 0;
}

/* Marks [gpa, gpa + len) written, a word at a time. */
static void
pf_mark(struct tern_bitmap *w, uint64_t gpa, uint64_t len)
{
	uint64_t p = gpa >> TERN_PAGE_SHIFT;
	uint64_t last = (gpa + len + TERN_PAGE_SIZE - 1) >> TERN_PAGE_SHIFT;
	while (p < last) {
		uint64_t n = 64 - (p & 63);
		if (n > last - p)
			n = last - p;
		uint64_t mask = (n == 64 ? ~0ull : ((1ull << n) - 1)) << (p & 63);
		__atomic_fetch_or(&w->words[p >> 6], mask, __ATOMIC_RELAXED);
		p += n;
	}
}

void
tern_page_frame_iov(struct tern_guest *g, struct tern_bitmap *written,
                    const struct tern_msg_w_pages *p, bool populate, struct iovec *iov)
{
	/* A memfd pays ~10 us per first-touch fault here, a fraction of that
	 * when populated in bulk; anonymous huge pages are cheap to fault. */
	for (uint32_t i = 0; i < p->ranges.count; i++) {
		uint64_t gpa, len;
		tern_ranges_get(&p->ranges, i, &gpa, &len);
		pf_mark(written, gpa, len);
		if (populate && tern_guest_region_at(g, gpa)->fd >= 0)
			(void)tern_guest_populate(g, gpa, len);
		iov[i] = (struct iovec){tern_guest_hva(g, gpa), len};
	}
}
