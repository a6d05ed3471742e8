/*
 * ZeroScanActor: a pipeline stage between the coordinator and the
 * ConnectionActors (seed 003).  It takes a chunk from the scan queue, reads
 * each dirty page of it once (word at a time, stopping at the first non-zero
 * word), records in the zero map which pages are all zero, and passes the
 * chunk on to the send queue flagged TERN_CHUNK_ZSCANNED.  Several scanners
 * may share the scan queue; each takes one chunk at a time, so none hoards.
 */
#ifndef TERN_ACTORS_ZERO_SCAN_H
#define TERN_ACTORS_ZERO_SCAN_H

#include "actors/actor.h"
#include "actors/set_table.h"
#include "kvm/guest.h"

struct tern_zero_scan_args {
	struct tern_guest *guest;
	struct tern_queue *in;             /* chunks to scan */
	struct tern_queue *out;            /* scanned chunks, to the connections */
	const struct tern_set_table *sets; /* resolves CHUNK.set */
	/* One bit per guest page, 1 = all zero: the set table's zmap, written
	 * here (atomic bit updates), read by the connections. */
	struct tern_bitmap *zmap;
	uint32_t coordinator; /* receives SCAN_STATS, the final counters, from stop */
};

extern const struct tern_actor_desc tern_zero_scan_actor;

/* tern_page_is_zero reports whether the 4 KiB page at p is all zero; it
 * reads each byte at most once and stops at the first non-zero word. */
bool tern_page_is_zero(const void *p);

/* tern_zero_split cuts the byte range [gpa, gpa+len) of memory mapped at
 * base (base is gpa 0) into maximal runs that are all zero or not, calling
 * fn(gpa, len, zero, arg) for each in order; the runs cover the range
 * exactly.  Whole pages are tested with tern_page_is_zero; a partial page at
 * either end (a range not starting or ending on a page boundary) is tested
 * byte-exactly over its part only.  A non-zero fn return stops and is
 * returned. */
typedef int (*tern_zero_run_fn)(uint64_t gpa, uint64_t len, bool zero, void *arg);
int tern_zero_split(const uint8_t *base, uint64_t gpa, uint64_t len, tern_zero_run_fn fn,
                    void *arg);

#endif /* TERN_ACTORS_ZERO_SCAN_H */
