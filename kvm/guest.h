/*
 * The guest as the migration sees it: memory regions, dirty tracking, vCPU
 * pause/resume, state save/load, behind an ops table so that backends
 * (simvm, later kvm) are interchangeable.  kvm/ knows nothing of actors.
 *
 * Pages are 4 KiB (TERN_PAGE_SIZE).
 *
 * The migration's memory space.  A guest has one or more regions of
 * guest-physical memory, with holes between them.  The migration numbers
 * pages in one dense space instead: the regions in gpa order, each starting
 * (at `base`) on a multiple of 64 pages with at least one page of gap after
 * the previous one.  So a bitmap word never holds bits of two regions, a run
 * of set bits never crosses from one region into the next, and the space
 * stays as small as the memory (not as the gpa range: a hole of a terabyte
 * costs nothing).  Offsets on the wire and in every dirty set are offsets in
 * this space; both sides derive it from the same layout (announced in
 * W_CONFIG and checked), so they agree on it.  Gap pages belong to no region:
 * tern_guest_range_ok refuses them and no harvest ever marks them.
 *
 * simvm has one region at gpa 0: its space is its memory.
 */
#ifndef TERN_KVM_GUEST_H
#define TERN_KVM_GUEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kvm/bitmap.h"
#include "kvm/spec.h"
#include "tern/guest.h"

#define TERN_PAGE_SIZE 4096ull
#define TERN_PAGE_SHIFT 12

enum tern_guest_role { TERN_GUEST_SOURCE = 0, TERN_GUEST_DESTINATION = 1 };

struct tern_guest_region {
	uint64_t gpa;
	uint64_t size;
	uint8_t *host; /* mapping of the whole region */
	int fd;        /* memfd, or -1 for anonymous memory */
	uint64_t fd_offset;
	uint64_t base; /* where it starts in the migration's memory space */
};

/* TERN_GUEST_MAX_REGIONS (tern/guest.h): KVM VMMs use a handful of memslots
 * for RAM; a VMM with more gets a clear error naming the limit. */

struct tern_guest;

/* Per-guest statistics the backend keeps. */
struct tern_guest_stats {
	uint64_t build_ns;       /* create + fill */
	uint64_t last_pause_ns;  /* latency of the last pause */
	uint64_t last_resume_ns; /* latency of the last resume */
	uint64_t harvests;       /* dirty harvests done */
	uint64_t workload_steps; /* memtouch writes done by all vCPUs */
	/* ring mode: times a vCPU found its dirty ring full and stopped until
	 * a harvest freed it (KVM_EXIT_DIRTY_RING_FULL).  Written by vCPU
	 * threads: read it with __atomic_load_n. */
	uint64_t ring_full_stalls;
};

/*
 * A dirty-log mode: one way a backend finds the pages written since the
 * previous harvest, a strategy as in KVM's dirty_log_test.  A backend lists
 * its modes in tern_guest_ops.dirty_modes; the guest's dirty_start,
 * dirty_harvest and dirty_stop slots dispatch to the one selected with
 * tern_guest_set_dirty_mode (the backend's first mode by default), so that
 * callers of the slots do not know which mode runs.  Calls into a mode are
 * never concurrent with each other (one harvester).
 *
 * simvm has two:
 *  - "bitmap": userfaultfd asynchronous write-protect + PAGEMAP_SCAN.  Sees
 *    every write to guest memory, by vCPUs or anyone else; a harvest scans
 *    the populated memory (cost follows populated guest size).
 *  - "ring": KVM dirty-ring semantics.  Each vCPU pushes the page numbers it
 *    writes into its own ring of dirty_ring_size entries, a page at most once
 *    until it is harvested; a harvest collects every ring and resets it
 *    (KVM_RESET_DIRTY_RINGS), so its cost follows the number of dirty pages,
 *    not the guest's size.  A vCPU whose ring is full stops until a harvest
 *    frees it; no entry is ever dropped.  Only vCPU writes are caught, as
 *    with KVM's ring: writes through the mapping by the VMM (or a test) are
 *    not.
 */
struct tern_dirty_mode {
	const char *name;
	/* supported returns true if g can run this mode; otherwise false with
	 * a one-line reason (naming the missing kernel feature) in why. */
	bool (*supported)(struct tern_guest *g, char *why, size_t whylen);
	/* start begins tracking: pages written so far are not dirty. */
	int (*start)(struct tern_guest *g);
	/* harvest: as tern_guest_ops.dirty_harvest. */
	int (*harvest)(struct tern_guest *g, struct tern_bitmap *bm, uint64_t *pages);
	/* harvest_range (optional): harvest only pages [first, first+count).
	 * Modes whose cost follows the address space walked (bitmap) offer
	 * it, so that a harvest can be cut into bounded slices. */
	int (*harvest_range)(struct tern_guest *g, struct tern_bitmap *bm, uint64_t first,
	                     uint64_t count, uint64_t *pages);
	/* stop ends tracking; idempotent. */
	int (*stop)(struct tern_guest *g);
};

#define TERN_DIRTY_RING_DEFAULT 4096u /* entries per vCPU */
#define TERN_DIRTY_RING_MIN 16u
#define TERN_DIRTY_RING_MAX (1u << 20)

struct terni_backend_ops {
	const char *name;
	/* create builds the guest.  SOURCE: memory filled, vCPUs running the
	 * workload.  DESTINATION: memory empty (reads as zero), vCPUs created
	 * but paused until resume (after state_load). */
	int (*create)(struct tern_guest *g, const struct tern_guest_config *cfg, int role);
	/* destroy stops and joins every vCPU thread, releases memory and fds.
	 * Safe on a partially created guest. */
	void (*destroy)(struct tern_guest *g);
	/* pause returns once no vCPU runs guest code; idempotent. */
	int (*pause)(struct tern_guest *g);
	/* resume lets the vCPUs run again; idempotent. */
	int (*resume)(struct tern_guest *g);
	/* dirty_start begins tracking in the selected dirty mode (bitmap:
	 * write-protects all memory); pages written before are not dirty. */
	int (*dirty_start)(struct tern_guest *g);
	/* dirty_harvest ORs into bm (one bit per page of the guest) every page
	 * written since the previous harvest (or dirty_start), re-arms tracking
	 * for them, and adds their number to *pages. */
	int (*dirty_harvest)(struct tern_guest *g, struct tern_bitmap *bm, uint64_t *pages);
	int (*dirty_stop)(struct tern_guest *g);
	/* state_save writes the vCPU/device state into buf. */
	int (*state_save)(struct tern_guest *g, void *buf, size_t cap, size_t *len);
	/* state_load validates and applies a state blob (guest paused). */
	int (*state_load)(struct tern_guest *g, const void *buf, size_t len);
	/* state_size (optional): about what state_save would write now. */
	uint64_t (*state_size)(struct tern_guest *g);
	/* check verifies the workload's invariant in guest memory for
	 * tern_guest_check (pausing around it if the guest runs, never
	 * resuming a guest the caller paused).  NULL: nothing to check. */
	int (*check)(struct tern_guest *g, uint64_t *progress, char *why, size_t whylen);
	/* dirty_modes lists the backend's dirty-log modes, NULL-terminated;
	 * the first is the default. */
	const struct tern_dirty_mode *const *dirty_modes;
};

struct tern_guest {
	const struct terni_backend_ops *ops;
	struct tern_guest_config cfg;
	int role;
	/* The layout, in gpa order (see the top of this file).  A built-in
	 * backend maps its memory into regions[0]. */
	struct tern_guest_region regions[TERN_GUEST_MAX_REGIONS];
	uint32_t nregions;
	uint64_t npages; /* pages of the migration's memory space */
	struct tern_guest_stats stats;
	void *priv; /* backend state */
	/* The dirty-log mode dirty_start uses and the ring size for "ring"
	 * (entries per vCPU); set with tern_guest_set_dirty_mode. */
	const struct tern_dirty_mode *dirty_mode;
	uint32_t dirty_ring_size;
	bool dirty_tracking; /* between a successful dirty_start and dirty_stop */
	/* why is the backend's one-line reason for its last failure (create,
	 * dirty_start, state_load, ...), naming a missing kernel feature where
	 * that is the cause; "" when there is none. */
	char why[192];
};

/* tern_guest_create builds a guest for cfg->backend.  On failure returns a
 * negative code, writes a one-line reason into err (naming a missing kernel
 * feature, e.g. "userfaultfd WP_ASYNC not supported"), and frees everything. */
int tern_guest_create(struct tern_guest **g, const struct tern_guest_config *cfg, int role,
                      char *err, size_t errlen);
void tern_guest_destroy(struct tern_guest *g);

struct tern_guest_provider;

/* tern_guest_from_provider wraps a guest the VMM supplies (tern/guest.h):
 * every slot forwards to the VMM's ops, and tern_guest_destroy frees only the
 * wrapper.  Checks the ops and the layout (this version: one region at gpa
 * 0); on failure a one-line reason in err. */
int tern_guest_from_provider(struct tern_guest **g, const struct tern_guest_provider *p, int role,
                             char *err, size_t errlen);

/* tern_guest_provider_adopt makes the wrapper g own inner, the built-in
 * guest behind its provider: g takes inner's configuration and workload
 * check, and destroying g calls release(arg), which frees inner. */
void tern_guest_provider_adopt(struct tern_guest *g, struct tern_guest *inner,
                               void (*release)(void *arg), void *arg);

/* tern_guest_create_provided builds a built-in guest (simvm) as
 * tern_guest_create does and hands it out through the public provider ops
 * (kvm/simvm_provider.c): the migration then sees it only as a VMM's guest
 * (tern/guest.h).  Destroying the result destroys the simvm guest. */
int tern_guest_create_provided(struct tern_guest **g, const struct tern_guest_config *cfg, int role,
                               char *err, size_t errlen);

/* tern_simvm_provider_create builds a simvm guest as tern_guest_create does
 * and gives its public provider (tern/guest.h) to the caller, who owns it:
 * a process hosting a guest across migrations (`tern vm`) hands it to one
 * migration after another as a VMM would.  tern_simvm_provider_guest gives
 * the simvm guest behind it (for its workload check); destroy frees both. */
int tern_simvm_provider_create(struct tern_guest_provider *p, const struct tern_guest_config *cfg,
                               int role, char *err, size_t errlen);
struct tern_guest *tern_simvm_provider_guest(const struct tern_guest_provider *p);
void tern_simvm_provider_destroy(struct tern_guest_provider *p);

/* tern_guest_set_dirty_mode selects the dirty-log mode ("bitmap", "ring";
 * NULL or "" for the backend's default) and, for "ring", the ring size in
 * entries per vCPU (a power of two in TERN_DIRTY_RING_MIN..MAX; 0 for
 * TERN_DIRTY_RING_DEFAULT), for the next dirty_start.  Returns 0;
 * TERN_EINVAL for an unknown mode or a bad size, TERN_ENOTSUP for a mode
 * this guest cannot run, TERN_ESTATE while tracking runs -- each with a
 * one-line reason naming the mode in why. */
int tern_guest_set_dirty_mode(struct tern_guest *g, const char *mode, uint32_t ring_size, char *why,
                              size_t whylen);

/* tern_guest_dirty_harvest_slice harvests at most max_pages pages of guest
 * address space starting at *cursor (into bm, counting into *pages), moves
 * *cursor on, and sets *done when the sweep reached the end (then *cursor is
 * 0 again).  A mode without harvest_range harvests everything at once.  Every
 * page written before a sweep started is reported by the time it is done. */
int tern_guest_dirty_harvest_slice(struct tern_guest *g, struct tern_bitmap *bm, uint64_t *cursor,
                                   uint64_t max_pages, uint64_t *pages, bool *done);

/* tern_guest_set_layout sets g's regions (n of them, sorted by gpa, not
 * overlapping, page-aligned; host, fd and fd_offset as the VMM has them),
 * assigns each its base in the migration's space and sets g->npages.
 * TERN_EINVAL / TERN_ENOTSUP with a one-line reason naming the region. */
int tern_guest_set_layout(struct tern_guest *g, const struct tern_guest_region *r, uint32_t n,
                          char *why, size_t whylen);

/* tern_guest_layout_text writes "2 regions: 64M at 0x0, 16M at 0x100000000"
 * (n regions of (gpa, size) pairs) into buf, which it returns. */
const char *tern_guest_layout_text(const struct tern_guest_region *r, uint32_t n, char *buf,
                                   size_t len);

/* tern_guest_region_at returns the region holding offset off of the
 * migration's space, or NULL for a gap or beyond the end. */
const struct tern_guest_region *tern_guest_region_at(const struct tern_guest *g, uint64_t off);

/* tern_guest_mark_all sets the bits of every page of every region in bm
 * (which covers the space), never a gap's. */
void tern_guest_mark_all(const struct tern_guest *g, struct tern_bitmap *bm);

/* tern_guest_mem_bytes: the guest's memory (the regions' sizes summed). */
uint64_t tern_guest_mem_bytes(const struct tern_guest *g);

/* tern_guest_populate installs page-table entries for [gpa, gpa+len) ahead
 * of data (MADV_POPULATE_WRITE; fallocate first for a memfd) so that writes
 * do not fault page by page.  (Here and below, gpa is an offset in the
 * migration's space, inside one region.) */
int tern_guest_populate(struct tern_guest *g, uint64_t gpa, uint64_t len);

/* tern_guest_populate_all populates every region (--prealloc). */
int tern_guest_populate_all(struct tern_guest *g);

/* tern_guest_zero makes [gpa, gpa+len) read as zero, cheaply: whole pages are
 * dropped from a memfd (a hole punched), cleared in anonymous memory (where
 * dropping part of a huge page would split it); partial pages are cleared. */
int tern_guest_zero(struct tern_guest *g, uint64_t gpa, uint64_t len);

/* tern_guest_discard drops [gpa, gpa+len) (inside one region, whole pages)
 * so that it is missing, not zero: a hole punched in a memfd, MADV_DONTNEED
 * on anonymous memory (postcopy: pages whose copy here is stale). */
int tern_guest_discard(struct tern_guest *g, uint64_t gpa, uint64_t len);

/* tern_guest_range_ok reports whether [gpa, gpa+len) lies inside one
 * region of guest memory (overflow-safe). */
bool tern_guest_range_ok(const struct tern_guest *g, uint64_t gpa, uint64_t len);

/* tern_guest_space_ok reports whether [off, off+len) lies inside the
 * migration's space (a chunk's window may span regions and gaps). */
bool tern_guest_space_ok(const struct tern_guest *g, uint64_t off, uint64_t len);

/* tern_guest_hva returns the host address of gpa (range already checked). */
uint8_t *tern_guest_hva(const struct tern_guest *g, uint64_t gpa);

/* tern_extent_fn receives one populated extent [start, end) (offsets in the
 * migration's space, inside one region); a non-zero return stops the walk
 * and is returned. */
typedef int (*tern_extent_fn)(uint64_t start, uint64_t end, void *arg);

/* tern_guest_extents calls fn for every extent of guest memory that may hold
 * data, in order, without touching the rest: data extents of a memfd
 * (SEEK_DATA/SEEK_HOLE), present or swapped pages of anonymous memory
 * (PAGEMAP_SCAN).  Everything else is known to read as zero. */
int tern_guest_extents(struct tern_guest *g, tern_extent_fn fn, void *arg);

/* tern_guest_digest hashes all guest memory (XXH3-64 over per-2 MiB block
 * hashes).  Never-populated memory is hashed as zeros without being read
 * (reading would allocate it); all-hole blocks cost nothing. */
int tern_guest_digest(struct tern_guest *g, uint64_t *digest);

/* tern_guest_state_size: the backend's estimate of its state blob's size
 * (0 when it has none). */
uint64_t tern_guest_state_size(struct tern_guest *g);

/* tern_mix64 is splitmix64's finaliser: every input bit moves every output
 * bit, for one multiply pair (page hashes, simvm's per-page seeds). */
static inline uint64_t
tern_mix64(uint64_t x)
{
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

/* tern_page_hash hashes one page's content with its page number (data
 * NULL: a page of zeros, not read).  tern_guest_page_digest XORs it over
 * every page of every region not set in skip (may be NULL), reading only
 * populated extents: an order-free digest, so that pages placed one by one
 * in any order (postcopy) add up to the same value. */
uint64_t tern_page_hash(uint64_t page, const void *data);
int tern_guest_page_digest(struct tern_guest *g, const struct tern_bitmap *skip, uint64_t *digest);

/* tern_guest_check verifies the workload's invariant in guest memory (each
 * memtouch vCPU's ledger matches its pages) with the guest paused or not
 * (it pauses and resumes around the check).  Returns 0, or TERN_EVERIFY with
 * a reason in why.  *progress (may be NULL) gets the sum of the vCPUs'
 * step counters stored in guest memory. */
int tern_guest_check(struct tern_guest *g, uint64_t *progress, char *why, size_t whylen);

extern const struct terni_backend_ops tern_simvm_ops;

/* terni_guest_backend_find returns the backend named name, or NULL. */
const struct terni_backend_ops *terni_guest_backend_find(const char *name);

#endif /* TERN_KVM_GUEST_H */
