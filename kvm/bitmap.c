/*
 * Dirty bitmaps: one bit per guest page.  Every scan works a 64-bit word at a
 * time and skips clean words whole, so the cost of a scan follows the number
 * of dirty words, not of guest pages.
 */
#include <stdlib.h>
#include <string.h>

#include "kvm/bitmap.h"
#include "tern/error.h"

int
tern_bitmap_init(struct tern_bitmap *b, uint64_t nbits)
{
	b->nbits = nbits;
	b->nwords = (nbits + 63) / 64;
	b->words = NULL;
	if (b->nwords == 0)
		return 0;
	b->words = calloc(b->nwords, sizeof(uint64_t));
	if (b->words == NULL) {
		b->nbits = b->nwords = 0;
		return TERN_ENOMEM;
	}
	return 0;
}

void
tern_bitmap_fini(struct tern_bitmap *b)
{
	free(b->words);
	b->words = NULL;
	b->nbits = b->nwords = 0;
}

void
tern_bitmap_clear_all(struct tern_bitmap *b)
{
	if (b->nwords != 0)
		memset(b->words, 0, b->nwords * sizeof(uint64_t));
}

void
tern_bitmap_set_all(struct tern_bitmap *b)
{
	if (b->nwords == 0)
		return;
	memset(b->words, 0xff, b->nwords * sizeof(uint64_t));
	/* Bits past nbits stay clear so that counts and scans never see them. */
	if (b->nbits & 63)
		b->words[b->nwords - 1] = (1ull << (b->nbits & 63)) - 1;
}

void
tern_bitmap_set_range(struct tern_bitmap *b, uint64_t first, uint64_t count)
{
	uint64_t end, w, last;

	if (count == 0)
		return;
	end = first + count; /* exclusive */
	w = first >> 6;
	last = (end - 1) >> 6;
	if (w == last) {
		uint64_t n = end - first;
		uint64_t mask = (n == 64 ? ~0ull : ((1ull << n) - 1)) << (first & 63);
		b->words[w] |= mask;
		return;
	}
	b->words[w] |= ~0ull << (first & 63);
	for (w++; w < last; w++)
		b->words[w] = ~0ull;
	b->words[last] |= (end & 63) ? (1ull << (end & 63)) - 1 : ~0ull;
}

uint64_t
tern_bitmap_count(const struct tern_bitmap *b)
{
	uint64_t n = 0;

	for (uint64_t i = 0; i < b->nwords; i++)
		n += (uint64_t)__builtin_popcountll(b->words[i]);
	return n;
}

void
tern_bitmap_or(struct tern_bitmap *dst, const struct tern_bitmap *src)
{
	uint64_t n = dst->nwords < src->nwords ? dst->nwords : src->nwords;

	for (uint64_t i = 0; i < n; i++)
		dst->words[i] |= src->words[i];
}

bool
tern_bitmap_next_run(const struct tern_bitmap *b, uint64_t *pos, uint64_t max_count,
                     uint64_t *first, uint64_t *count)
{
	uint64_t p = *pos, w, word, start, limit, end;

	if (p >= b->nbits)
		return false;
	/* Find the first set bit: skip whole zero words. */
	w = p >> 6;
	word = b->words[w] & (~0ull << (p & 63));
	while (word == 0) {
		if (++w >= b->nwords) {
			*pos = b->nbits;
			return false;
		}
		word = b->words[w];
	}
	start = (w << 6) + (uint64_t)__builtin_ctzll(word);
	if (start >= b->nbits) {
		*pos = b->nbits;
		return false;
	}
	limit = b->nbits;
	if (max_count != 0 && max_count < limit - start)
		limit = start + max_count;

	/* Find the first clear bit after start: skip whole all-ones words. */
	word = ~b->words[w] & (~0ull << (start & 63));
	while (word == 0) {
		if (++w >= b->nwords || (w << 6) >= limit)
			break;
		word = ~b->words[w];
	}
	end = word != 0 ? (w << 6) + (uint64_t)__builtin_ctzll(word) : (w << 6);
	if (end > limit)
		end = limit;
	*first = start;
	*count = end - start;
	*pos = end;
	return true;
}
