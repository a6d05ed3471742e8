/*
 * Dirty bitmaps: one bit per guest page, allocated once and reused.
 * Scans skip clean words (count-trailing-zeros), never build per-page vectors.
 */
#ifndef TERN_KVM_BITMAP_H
#define TERN_KVM_BITMAP_H

#include <stdbool.h>
#include <stdint.h>

struct tern_bitmap {
	uint64_t *words;
	uint64_t nbits;
	uint64_t nwords;
};

/* tern_bitmap_init allocates a zeroed bitmap of nbits.  0 or TERN_ENOMEM. */
int tern_bitmap_init(struct tern_bitmap *b, uint64_t nbits);
void tern_bitmap_fini(struct tern_bitmap *b);
void tern_bitmap_clear_all(struct tern_bitmap *b);
void tern_bitmap_set_all(struct tern_bitmap *b);
void tern_bitmap_set_range(struct tern_bitmap *b, uint64_t first, uint64_t count);
static inline void
tern_bitmap_set(struct tern_bitmap *b, uint64_t bit)
{
	b->words[bit >> 6] |= 1ull << (bit & 63);
}
static inline bool
tern_bitmap_test(const struct tern_bitmap *b, uint64_t bit)
{
	return (b->words[bit >> 6] >> (bit & 63)) & 1;
}
/* tern_bitmap_count returns the number of set bits (popcount per word). */
uint64_t tern_bitmap_count(const struct tern_bitmap *b);
/* tern_bitmap_or ORs src into dst (same size). */
void tern_bitmap_or(struct tern_bitmap *dst, const struct tern_bitmap *src);
/* tern_bitmap_next_run finds the first run of set bits at or after *pos:
 * returns true with *first and *count set and *pos moved past the run (runs
 * are capped at max_count bits so callers can cut chunks), false when no bit
 * is set at or after *pos. */
bool tern_bitmap_next_run(const struct tern_bitmap *b, uint64_t *pos, uint64_t max_count,
                          uint64_t *first, uint64_t *count);

#endif /* TERN_KVM_BITMAP_H */
