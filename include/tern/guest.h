/*
 * The guest as a VMM hands it to libtern.
 *
 * libtern migrates a guest it does not own: the VMM creates it (memory,
 * vCPUs, devices) before the migration, on both sides, and describes it with
 * a provider: an ops table the VMM fills with designated initialisers and an
 * opaque pointer passed back to every slot.  libtern never creates, destroys
 * or frees the guest.
 *
 *   static const struct tern_guest_ops my_ops = {
 *       .size = sizeof(struct tern_guest_ops),
 *       .name = "my-vmm",
 *       .regions = my_regions,
 *       .dirty_modes = TERN_DIRTY_BITMAP,
 *       .dirty_start = my_dirty_start, ...
 *   };
 *   struct tern_guest_provider p = { .ops = &my_ops, .guest = my_vm };
 *
 * Threads.  libtern calls the slots from its own threads: regions from the
 * thread that starts the migration, dirty_* from its dirty-log threads (the
 * dirty-log actor and the harvest thread it owns; never two dirty_* calls at
 * once, and each call ends before the next begins), pause and resume from the coordinator and, with
 * auto-converge, from the throttle thread (so pause and resume MUST be safe
 * from any thread, and idempotent), state_* from the coordinator (source) or
 * the receiver (destination).  Slots may block for as long as their work
 * takes; none is called after the migration call returned.
 *
 * Errors.  Every slot returns 0 or a negative code, -errno where one fits
 * (-EIO, -ENOMEM, -EINVAL ...).  A failing slot fails the migration with a
 * message naming the slot, and the source guest runs again (a failed resume
 * is retried and, if it keeps failing, reported as such: see tern.h).
 */
#ifndef TERN_GUEST_H
#define TERN_GUEST_H

#include <stddef.h>
#include <stdint.h>

#include "tern/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Dirty tracking granularity.  Region addresses and sizes are multiples. */
#define TERN_GUEST_PAGE_SIZE 4096u

/* Most memory regions a guest may have. */
#define TERN_GUEST_MAX_REGIONS 64u

/* One region of guest-physical memory as the VMM has it mapped. */
struct tern_mem_region {
	uint64_t gpa;       /* guest-physical address, page-aligned */
	uint64_t size;      /* bytes, page-aligned, > 0; regions never overlap */
	void *host;         /* the VMM's mapping of the whole region, readable and
	                       writable by libtern for the migration's duration */
	int fd;             /* the memfd/shmem file behind it, or -1 (anonymous) */
	uint64_t fd_offset; /* where gpa lives in fd */
	uint32_t flags;     /* TERN_MEM_* */
};

/* Anonymous memory backed by transparent huge pages. */
#define TERN_MEM_ANON_THP (1u << 0)

/* Dirty-log modes (dirty_modes is a mask of those the provider offers). */
#define TERN_DIRTY_BITMAP (1u << 0) /* per-region collect-and-clear harvest */
#define TERN_DIRTY_RING (1u << 1)   /* pop (region, page) entries, as KVM's ring */

/* One dirty-ring entry. */
struct tern_dirty_entry {
	uint32_t region; /* index into the regions slot's array */
	uint32_t reserved;
	uint64_t page; /* page index within that region */
};

struct tern_guest_ops {
	/* sizeof(struct tern_guest_ops) as the VMM was compiled: slots added
	 * by later versions of this header read as absent for older VMMs. */
	size_t size;
	/* For messages and traces ("my-vmm"). */
	const char *name;

	/* ---- memory (both sides, required) ---- */

	/* regions fills out[0..cap) with the guest's memory regions, sorted by
	 * gpa and not overlapping (holes between them are fine), and sets
	 * *count to their number (even when it exceeds cap: more than
	 * TERN_GUEST_MAX_REGIONS is refused).  Both sides must report the same
	 * layout (gpa and size of each region).  The layout must not change
	 * until the migration call returns.  No side effects. */
	int (*regions)(void *guest, struct tern_mem_region *out, uint32_t cap, uint32_t *count);

	/* ---- dirty tracking (source, required) ---- */

	/* The TERN_DIRTY_* modes this guest offers (at least one). */
	uint32_t dirty_modes;

	/* dirty_start begins tracking in mode (ring_entries: entries per vCPU
	 * ring, for TERN_DIRTY_RING).  From its return, every page written (by
	 * vCPUs or by the VMM itself) is reported by a later harvest or pop.
	 * On failure nothing is tracked and dirty_stop is not called.  May
	 * block (write-protecting memory takes time). */
	int (*dirty_start)(void *guest, uint32_t mode, uint32_t ring_entries);

	/* dirty_harvest (TERN_DIRTY_BITMAP): for pages [first, first + count)
	 * of region, sets bit (p - first) of bitmap (64-bit words, least
	 * significant bit first) for every page p written since it was last
	 * harvested (or since dirty_start), re-arms tracking for exactly those
	 * pages, and adds how many pages it found dirty to *pages (whether or
	 * not their bit was set already) -- the semantics of KVM_GET_DIRTY_LOG
	 * with KVM_CLEAR_DIRTY_LOG (manual protect).  bitmap holds
	 * (count + 63) / 64 words; bits already set stay set.  first is a
	 * multiple of 64; count is too, except for a slice that ends at the
	 * region's end.  A failure fails the migration (a partial harvest is
	 * never relied on).  A page must be marked dirty after the store that
	 * dirtied it is visible, never before: a mark cleared by a harvest
	 * that ran between mark and store would lose the store. */
	int (*dirty_harvest)(void *guest, uint32_t region, uint64_t first, uint64_t count,
	                     uint64_t *bitmap, uint64_t *pages);

	/* dirty_ring_pop (TERN_DIRTY_RING): moves up to cap entries out of the
	 * vCPUs' rings into out and frees their slots (as
	 * KVM_RESET_DIRTY_RINGS); *n = how many.  Fewer than cap means the
	 * rings are empty.  A vCPU whose ring is full waits for a pop: no entry
	 * is ever dropped.  Only vCPU writes need to appear (as with KVM). */
	int (*dirty_ring_pop)(void *guest, struct tern_dirty_entry *out, uint32_t cap, uint32_t *n);

	/* dirty_stop ends tracking.  Idempotent; called on every path after
	 * a successful dirty_start. */
	int (*dirty_stop)(void *guest);

	/* ---- vCPUs (both sides, required) ---- */

	/* pause returns once no vCPU runs guest code (memory and state are
	 * then stable); resume lets them run.  Idempotent, safe from any
	 * thread; a pause and a resume may overlap (the coordinator and the
	 * throttle), and then the one called last decides.  A resume that fails
	 * MUST leave the vCPUs paused: on the destination, libtern then tells
	 * the source that the handoff failed and the source guest runs again.
	 * On the destination the guest is paused until libtern resumes it
	 * after loading the state. */
	int (*pause)(void *guest);
	int (*resume)(void *guest);

	/* ---- device and vCPU state: an opaque blob (both sides) ---- */

	/* state_save writes the blob (guest paused) into buf, at most cap
	 * bytes, and sets *len.  -ENOSPC if it does not fit: libtern calls
	 * again with twice the room (from 1 MiB up to 256 MiB), so the slot
	 * must write nothing else on that path.  Any size travels: a blob
	 * larger than one control frame goes in parts. */
	int (*state_save)(void *guest, void *buf, uint64_t cap, uint64_t *len);

	/* state_load checks and applies a blob on the destination (guest
	 * paused).  Every page of memory has arrived by then (the state goes
	 * after the final pages are acknowledged), so device state that
	 * refers to memory (virtio rings) can be checked here.  On failure
	 * the destination's guest is not resumed: the migration fails and the
	 * source runs again. */
	int (*state_load)(void *guest, const void *buf, uint64_t len);

	/* ---- optional: NULL (or absent in an older VMM) when unknown ---- */

	/* dirty_ring_full (TERN_DIRTY_RING): how many times since dirty_start
	 * a vCPU found its dirty ring full and waited for a pop (KVM's
	 * KVM_EXIT_DIRTY_RING_FULL exits).  Called from a dirty-log thread
	 * after pops; must not block.  Reported as the ring_full_stalls
	 * counter: a ring too small for the guest's dirty rate. */
	uint64_t (*dirty_ring_full)(void *guest);

	/* state_size: about how many bytes state_save would write now (guest
	 * running).  Called from the coordinator before each switchover
	 * decision; must not block.  The downtime estimate then counts the
	 * blob's transfer, so that a large device state does not push the
	 * pause over the limit unannounced. */
	uint64_t (*state_size)(void *guest);
};

/* tern_guest_error gives the reason of the slot that is about to fail, in
 * one line (printf format): call it from the slot, on the thread libtern
 * called it on, just before returning the error.  libtern puts it in the
 * migration's error ("my-vmm: state_load failed: <reason>"). */
TERN_EXTERN void tern_guest_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* A guest for one migration: its ops and the VMM's pointer to it. */
struct tern_guest_provider {
	const struct tern_guest_ops *ops;
	void *guest;
};

#ifdef __cplusplus
}
#endif
#endif /* TERN_GUEST_H */
