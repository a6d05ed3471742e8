/*
 * Per-vCPU dirty rings (see dirty_ring.h for the protocol).
 *
 * Why the vCPU pushes before it writes and the harvester waits for writes in
 * flight: the "in ring" bit stands for "an entry for this page will be
 * harvested".  A vCPU that finds the bit set does not push; if the
 * harvester collects that entry and clears the bit between the vCPU's test
 * and its write, the write would be in no harvest.  KVM closes the same
 * window with the TLB flush of KVM_RESET_DIRTY_RINGS; here the harvester,
 * after clearing, waits until every vCPU that was inside a write has left
 * it, so such a write has landed before the harvest that reports its page
 * returns, and whoever copies the page afterwards reads it.
 */
#include <limits.h>
#include <linux/futex.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "kvm/dirty_ring.h"
#include "tern/error.h"

int
tern_dirty_rings_init(struct tern_dirty_rings *r, uint32_t nrings, uint32_t size, uint64_t npages,
                      uint64_t *stalls)
{
	memset(r, 0, sizeof(*r));
	if (nrings == 0 || size < 2 || (size & (size - 1)) != 0)
		return TERN_EINVAL;
	r->size = size;
	r->npages = npages;
	r->stalls = stalls;
	/* One bit per page, once per dirty_start: the only allocation that
	 * follows the guest's size, never repeated per harvest. */
	r->in_ring = calloc((npages + 63) / 64, sizeof(*r->in_ring));
	r->rings = aligned_alloc(64, sizeof(*r->rings) * nrings);
	if (r->in_ring == NULL || r->rings == NULL) {
		tern_dirty_rings_fini(r);
		return TERN_ENOMEM;
	}
	memset(r->rings, 0, sizeof(*r->rings) * nrings);
	r->nrings = nrings;
	for (uint32_t v = 0; v < nrings; v++) {
		r->rings[v].mask = size - 1;
		if ((r->rings[v].gfns = malloc(sizeof(uint64_t) * size)) == NULL) {
			tern_dirty_rings_fini(r);
			return TERN_ENOMEM;
		}
	}
	return 0;
}

void
tern_dirty_rings_fini(struct tern_dirty_rings *r)
{
	if (r->rings != NULL)
		for (uint32_t v = 0; v < r->nrings; v++)
			free(r->rings[v].gfns);
	free(r->rings);
	free(r->in_ring);
	memset(r, 0, sizeof(*r));
}

static void
ring_futex_wake(atomic_uint *w)
{
	syscall(SYS_futex, w, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
}

bool
tern_dirty_ring_wait_room(struct tern_dirty_rings *r, uint32_t v, uint32_t need,
                          const atomic_uint *stop)
{
	struct tern_dirty_ring *q = &r->rings[v];
	/* head is only written by this vCPU. */
	uint32_t head = atomic_load_explicit(&q->head, memory_order_relaxed), w;
	bool counted = false;

	for (;;) {
		/* wake before tail: a harvest that moves tail after this load
		 * also bumps wake, so the futex wait below cannot sleep
		 * through it.  seq_cst pairs with the harvester's tail store,
		 * wake bump and sleeping load (a Dekker handshake). */
		w = atomic_load_explicit(&q->wake, memory_order_seq_cst);
		if (head - atomic_load_explicit(&q->tail, memory_order_seq_cst) + need <= r->size)
			return true;
		/* Relaxed: a kick bumps wake (release) after setting stop, and
		 * the acquire of wake above then makes stop visible. */
		if (atomic_load_explicit(stop, memory_order_relaxed) != 0)
			return false;
		if (!counted && r->stalls != NULL)
			__atomic_fetch_add(r->stalls, 1, __ATOMIC_RELAXED);
		counted = true;
		atomic_store_explicit(&q->sleeping, 1, memory_order_seq_cst);
		syscall(SYS_futex, &q->wake, FUTEX_WAIT_PRIVATE, w, NULL, NULL, 0);
		atomic_store_explicit(&q->sleeping, 0, memory_order_relaxed);
	}
}

void
tern_dirty_ring_enter(struct tern_dirty_rings *r, uint32_t v)
{
	struct tern_dirty_ring *q = &r->rings[v];
	uint32_t s = atomic_load_explicit(&q->seq, memory_order_relaxed);

	/* seq_cst: ordered before the in-ring test in mark, so a harvester
	 * that clears a bit this vCPU found set then sees seq odd. */
	atomic_store_explicit(&q->seq, s + 1, memory_order_seq_cst);
}

void
tern_dirty_ring_leave(struct tern_dirty_rings *r, uint32_t v)
{
	struct tern_dirty_ring *q = &r->rings[v];
	uint32_t s = atomic_load_explicit(&q->seq, memory_order_relaxed);

	/* Release: the writes of this section happen before a harvester
	 * that sees seq move on. */
	atomic_store_explicit(&q->seq, s + 1, memory_order_release);
}

void
tern_dirty_ring_mark(struct tern_dirty_rings *r, uint32_t v, uint64_t gfn)
{
	struct tern_dirty_ring *q = &r->rings[v];
	uint64_t bit = 1ull << (gfn & 63);
	uint32_t head;

	/* seq_cst RMW, never a plain load first: the test must be ordered
	 * against the harvester's clear (see the file comment). */
	if (atomic_fetch_or_explicit(&r->in_ring[gfn >> 6], bit, memory_order_seq_cst) & bit)
		return;
	head = atomic_load_explicit(&q->head, memory_order_relaxed);
	q->gfns[head & q->mask] = gfn;
	/* Release: publishes the entry to the harvester. */
	atomic_store_explicit(&q->head, head + 1, memory_order_release);
}

uint64_t
tern_dirty_rings_collect(struct tern_dirty_rings *r, struct tern_bitmap *bm)
{
	uint64_t n = 0;

	for (uint32_t v = 0; v < r->nrings; v++) {
		struct tern_dirty_ring *q = &r->rings[v];
		/* tail is only written here; acquire on head sees the entries. */
		uint32_t t = atomic_load_explicit(&q->tail, memory_order_relaxed);
		uint32_t h = atomic_load_explicit(&q->head, memory_order_acquire);

		if (t == h)
			continue;
		for (uint32_t i = t; i != h; i++) {
			uint64_t gfn = q->gfns[i & q->mask];

			/* Reset (KVM_RESET_DIRTY_RINGS): a later write of the
			 * page pushes it again. */
			atomic_fetch_and_explicit(&r->in_ring[gfn >> 6], ~(1ull << (gfn & 63)),
			                          memory_order_seq_cst);
			tern_bitmap_set(bm, gfn);
		}
		n += h - t;
		/* seq_cst: the Dekker handshake with a vCPU going to sleep on a
		 * full ring (tail, wake, then its sleeping flag). */
		atomic_store_explicit(&q->tail, h, memory_order_seq_cst);
		atomic_fetch_add_explicit(&q->wake, 1, memory_order_seq_cst);
		if (atomic_load_explicit(&q->sleeping, memory_order_seq_cst))
			ring_futex_wake(&q->wake);
	}
	/* Writes in flight: a vCPU inside a write section never blocks (its
	 * room was reserved before enter), so this wait is short. */
	for (uint32_t v = 0; v < r->nrings; v++) {
		struct tern_dirty_ring *q = &r->rings[v];
		uint32_t s = atomic_load_explicit(&q->seq, memory_order_seq_cst);

		for (unsigned spin = 0;
		     (s & 1) && atomic_load_explicit(&q->seq, memory_order_acquire) == s; spin++)
			if (spin > 64)
				sched_yield();
	}
	return n;
}

void
tern_dirty_rings_kick(struct tern_dirty_rings *r)
{
	for (uint32_t v = 0; v < r->nrings; v++) {
		/* Release: orders the caller's stop store before the bump. */
		atomic_fetch_add_explicit(&r->rings[v].wake, 1, memory_order_release);
		ring_futex_wake(&r->rings[v].wake);
	}
}
