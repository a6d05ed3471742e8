/*
 * fuzz_pages: W_PAGES frames written into a small guest, the destination's
 * receive path without its actor: each frame's header read as a connection
 * actor reads it (tern_wire_recv_header_until), checked against the guest
 * (tern_page_frame_check), its zero ranges cleared, its payload received
 * straight into guest memory (tern_wire_recv_iov_until into the vectors
 * tern_page_frame_iov makes, marking the pages written).
 *
 * Input: one byte choosing the guest (bits 0-2) and whether pages are
 * populated ahead (bit 3), then the byte stream a source would send.
 *
 * Every guest lies between two PROT_NONE guard pages, so a write a byte
 * outside it crashes (ASan does not watch mmap'd memory); the written map is
 * on the heap, where ASan does.  Beyond that, for every frame: the vectors
 * point exactly where the data ranges say; the zero ranges read as zero;
 * every page a data range touches is marked written, also when the input
 * ends inside its payload (an unmarked page must read as zero: announced
 * zero ranges skip it).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "actors/page_frame.h"
#include "net/wire.h"
#include "tern/error.h"
#include "tests/fuzz/harness.h"

#define FP_DEADLINE_NS (60ull * 1000000000u) /* never reached: the input is all there */

struct fp_guest {
	uint64_t pages;
	bool memfd;
	struct tern_guest g;
	struct tern_bitmap written;
};

/* Sizes around the written map's 64-page words; anonymous and memfd. */
static struct fp_guest fp_guests[] = {
    {.pages = 1},
    {.pages = 3},
    {.pages = 130},
    {.pages = 2, .memfd = true},
    {.pages = 65, .memfd = true},
    {.pages = 130, .memfd = true},
};
#define FP_NGUESTS (sizeof(fp_guests) / sizeof(fp_guests[0]))

static struct tern_wire_rx fp_rx;
static struct iovec fp_iov[TERN_FRAME_MAX_RANGES];
static const uint8_t fp_zero[TERN_PAGE_SIZE];

static int
fp_guest_init(struct fp_guest *fg)
{
	uint64_t size = fg->pages * TERN_PAGE_SIZE;
	uint8_t *map = mmap(NULL, size + 2 * TERN_PAGE_SIZE, PROT_NONE,
	                    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	uint8_t *host = map + TERN_PAGE_SIZE;
	int fd = -1;

	if (map == MAP_FAILED)
		return -errno;
	if (fg->memfd) {
		fd = memfd_create("fuzz-guest", MFD_CLOEXEC);
		if (fd < 0 || ftruncate(fd, (off_t)size) != 0 ||
		    mmap(host, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, 0) != host)
			return -errno;
	} else if (mprotect(host, size, PROT_READ | PROT_WRITE) != 0) {
		return -errno;
	}
	fg->g.regions[0] = (struct tern_guest_region){
	    .gpa = 0, .size = size, .host = host, .fd = fd, .fd_offset = 0};
	fg->g.nregions = 1;
	fg->g.npages = fg->pages;
	return tern_bitmap_init(&fg->written, fg->pages);
}

/* Back to a fresh destination guest: nothing written, all zero. */
static void
fp_guest_reset(struct fp_guest *fg)
{
	const struct tern_guest_region *r = &fg->g.regions[0];

	tern_bitmap_clear_all(&fg->written);
	if (r->fd >= 0) {
		if (fallocate(r->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0,
		              (off_t)r->size) != 0)
			abort();
	} else if (madvise(r->host, r->size, MADV_DONTNEED) != 0) {
		abort();
	}
}

static bool
fp_is_zero(const uint8_t *p, uint64_t len)
{
	while (len > 0) {
		uint64_t n = len < sizeof(fp_zero) ? len : sizeof(fp_zero);

		if (memcmp(p, fp_zero, n) != 0)
			return false;
		p += n;
		len -= n;
	}
	return true;
}

/* The part of [gpa, gpa + len) in page p. */
static void
fp_page_part(uint64_t p, uint64_t gpa, uint64_t len, uint64_t *a, uint64_t *b)
{
	*a = p * TERN_PAGE_SIZE > gpa ? p * TERN_PAGE_SIZE : gpa;
	*b = (p + 1) * TERN_PAGE_SIZE < gpa + len ? (p + 1) * TERN_PAGE_SIZE : gpa + len;
}

/* After the zero ranges are applied: each is inside the guest and reads as
 * zero.  Only its marked pages are read: the others were never written
 * since the reset (fp_verify_marked), and reading a memfd's hole would
 * allocate it. */
static void
fp_verify_zeros(struct fp_guest *fg, const struct tern_msg_w_pages *f, uint64_t zero_pages)
{
	uint64_t announced = 0;

	for (uint32_t i = 0; i < f->zeros.count; i++) {
		uint64_t gpa, len, a, b;

		tern_ranges_get(&f->zeros, i, &gpa, &len);
		if (len == 0 || gpa + len < gpa || gpa + len > fg->g.regions[0].size)
			abort();
		for (uint64_t p = gpa / TERN_PAGE_SIZE; p * TERN_PAGE_SIZE < gpa + len; p++) {
			fp_page_part(p, gpa, len, &a, &b);
			if (tern_bitmap_test(&fg->written, p) &&
			    !fp_is_zero(fg->g.regions[0].host + a, b - a))
				abort();
		}
		announced += len / TERN_PAGE_SIZE;
	}
	if (announced != zero_pages)
		abort();
}

/* The vectors point at the data ranges, in guest memory. */
static void
fp_verify_iov(struct fp_guest *fg, const struct tern_msg_w_pages *f)
{
	for (uint32_t i = 0; i < f->ranges.count; i++) {
		uint64_t gpa, len;

		tern_ranges_get(&f->ranges, i, &gpa, &len);
		if (len == 0 || gpa + len < gpa || gpa + len > fg->g.regions[0].size)
			abort();
		if (fp_iov[i].iov_base != fg->g.regions[0].host + gpa || fp_iov[i].iov_len != len)
			abort();
	}
}

/* Every page a data range touches is marked written, whether its payload
 * came whole or was cut off: an unmarked page must read as zero, since an
 * announced zero range does not clear it. */
static void
fp_verify_marked(struct fp_guest *fg, const struct tern_msg_w_pages *f)
{
	for (uint32_t i = 0; i < f->ranges.count; i++) {
		uint64_t gpa, len;

		tern_ranges_get(&f->ranges, i, &gpa, &len);
		for (uint64_t p = gpa / TERN_PAGE_SIZE; p * TERN_PAGE_SIZE < gpa + len; p++)
			if (!tern_bitmap_test(&fg->written, p))
				abort();
	}
}

/* One frame.  Returns false where the connection actor would stop. */
static bool
fp_frame(struct fp_guest *fg, bool populate, int rd)
{
	struct tern_msg m;
	uint64_t plen = 0, zero_pages = 0;
	const char *reason = NULL;
	char why[TERN_STR_MAX];

	if (tern_wire_recv_header_until(TERN_PLAIN(rd), &fp_rx, &m, &plen,
	                                tern_now_ns() + FP_DEADLINE_NS, why, sizeof(why)) != 0)
		return false;
	if (m.type != TERN_MSG_W_PAGES) /* control frames go to the receiver */
		return tern_wire_discard(TERN_PLAIN(rd), plen) == 0;

	const struct tern_msg_w_pages *f = &m.u.w_pages;
	int rc = tern_page_frame_check(&fg->g, f, plen, &reason);

	if (rc != 0) {
		if ((rc != TERN_EPROTO && rc != TERN_ERANGE) || reason == NULL)
			abort();
		return false;
	}
	if (tern_page_frame_zero(&fg->g, &fg->written, f, &zero_pages) != 0)
		abort(); /* in range, so it cannot fail */
	fp_verify_zeros(fg, f, zero_pages);
	tern_page_frame_iov(&fg->g, &fg->written, f, populate, fp_iov);
	fp_verify_iov(fg, f);
	/* The input may end inside the payload, as a lost connection does. */
	rc = tern_wire_recv_iov_until(TERN_PLAIN(rd), fp_iov, (int)f->ranges.count,
	                              tern_now_ns() + FP_DEADLINE_NS);
	fp_verify_marked(fg, f);
	return rc == 0;
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	for (size_t i = 0; i < FP_NGUESTS; i++)
		if (fp_guest_init(&fp_guests[i]) != 0)
			abort();
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fp_guest *fg;
	bool populate;
	int rd, peer;

	if (size < 1)
		return 0;
	fg = &fp_guests[(data[0] & 7u) % FP_NGUESTS];
	populate = (data[0] & 8u) != 0;
	if (fuzz_feed(data + 1, size - 1, &rd, &peer) != 0)
		return -1;
	fp_guest_reset(fg);
	while (fp_frame(fg, populate, rd))
		;
	fuzz_close(rd, peer);
	return 0;
}
