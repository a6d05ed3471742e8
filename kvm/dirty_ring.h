/*
 * Per-vCPU dirty rings with KVM dirty-ring semantics, for backends whose
 * vCPUs are threads of this process (simvm).
 *
 * Each vCPU owns one ring of page numbers (single producer: the vCPU; single
 * consumer: the harvester).  A page is pushed at most once until it is
 * harvested (a shared "in ring" bit per page), so a hot page does not fill a
 * ring.  A vCPU whose ring cannot take its next entries stops until the
 * harvester frees them, as on KVM_EXIT_DIRTY_RING_FULL; nothing is dropped.
 *
 * The vCPU brackets every write with tern_dirty_ring_enter/leave and pushes
 * (tern_dirty_ring_mark) before it writes, so an entry is visible no later
 * than the write it stands for.  tern_dirty_rings_collect resets the rings
 * and then waits for writes in flight: a write that found its page already
 * in a ring being collected has landed before the harvest returns, and a
 * write after the reset pushes again.
 */
#ifndef TERN_KVM_DIRTY_RING_H
#define TERN_KVM_DIRTY_RING_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "kvm/bitmap.h"

struct tern_dirty_ring {
	uint64_t *gfns;
	uint32_t mask; /* size - 1, size a power of two */
	/* head: next free slot, written by the vCPU (release: publishes the
	 * entry).  tail: first unharvested slot, written by the harvester
	 * (release: the harvester's reads of the slots are done). */
	_Alignas(64) atomic_uint head;
	_Alignas(64) atomic_uint tail;
	/* wake: the futex a stalled vCPU sleeps on, bumped after every tail
	 * move and by tern_dirty_rings_kick. */
	atomic_uint wake;
	atomic_uint sleeping; /* the vCPU is (about to be) asleep on wake */
	/* seq: odd while the vCPU is inside a write. */
	atomic_uint seq;
};

struct tern_dirty_rings {
	struct tern_dirty_ring *rings;
	uint32_t nrings;
	uint32_t size;
	uint64_t npages;
	_Atomic uint64_t *in_ring; /* one bit per page */
	uint64_t *stalls;          /* counter to bump on a full ring (atomic add) */
};

/* tern_dirty_rings_init allocates nrings empty rings of size entries (a
 * power of two >= 2) for a guest of npages pages.  stalls (may be NULL)
 * is incremented every time a vCPU stops on a full ring.  0 or TERN_ENOMEM;
 * fini is safe after a failed init. */
int tern_dirty_rings_init(struct tern_dirty_rings *r, uint32_t nrings, uint32_t size,
                          uint64_t npages, uint64_t *stalls);
void tern_dirty_rings_fini(struct tern_dirty_rings *r);

/* tern_dirty_ring_wait_room blocks vCPU v until its ring has room for need
 * entries (need <= size), counting a stall if it had to wait.  Returns
 * false, without waiting further, once *stop is non-zero (the vCPU is being
 * paused); the vCPU must then not write. */
bool tern_dirty_ring_wait_room(struct tern_dirty_rings *r, uint32_t v, uint32_t need,
                               const atomic_uint *stop);

/* tern_dirty_ring_enter / leave bracket a vCPU's writes; between them it
 * marks every page before writing it.  Room for the marks must have been
 * ensured by tern_dirty_ring_wait_room before enter. */
void tern_dirty_ring_enter(struct tern_dirty_rings *r, uint32_t v);
void tern_dirty_ring_leave(struct tern_dirty_rings *r, uint32_t v);
void tern_dirty_ring_mark(struct tern_dirty_rings *r, uint32_t v, uint64_t gfn);

/* tern_dirty_rings_collect sets in bm the page of every entry of every
 * ring, resets the rings (waking stalled vCPUs), waits for writes in flight
 * and returns the number of entries collected.  Cost follows the entries,
 * not npages.  One harvester at a time. */
uint64_t tern_dirty_rings_collect(struct tern_dirty_rings *r, struct tern_bitmap *bm);

/* tern_dirty_rings_kick wakes every vCPU stalled on a full ring so that it
 * rechecks its stop flag (call after setting it). */
void tern_dirty_rings_kick(struct tern_dirty_rings *r);

#endif /* TERN_KVM_DIRTY_RING_H */
