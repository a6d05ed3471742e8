/*
 * The destination's side of postcopy (docs/postcopy.md): what it knows of
 * the pages still missing, shared by the receiver (which starts and ends
 * it), the connections (which place arriving pages) and the
 * PostcopyFaultActor (which reads the guest's faults and asks the source).
 *
 *   stale      the pages the source said are out of date here (W_POSTCOPY);
 *              fixed once postcopy runs
 *   arrived    stale pages placed since (atomic bits: any connection)
 *   requested  stale pages asked for (the fault actor's own)
 *
 * A fault on a page that is not stale is a page that reads as zero (never
 * written, or announced zero): placed as zero at once, without asking.
 */
#ifndef TERN_ACTORS_POSTCOPY_H
#define TERN_ACTORS_POSTCOPY_H

#include <stdatomic.h>
#include <stdint.h>

#include "actors/actor.h"
#include "kvm/uffd_missing.h"
#include "tern/tern.h"

/* Request-to-placement latencies kept for the statistics (the first ones:
 * enough for a median and a p99). */
#define TERN_PC_SAMPLES 65536u

struct tern_pc_dst {
	struct tern_guest *g;
	struct tern_uffd_missing *uffd; /* NULL until started */
	/* Set (release) once started: before it, a page frame placed here
	 * would be the peer's lie. */
	atomic_bool running;
	struct tern_bitmap stale, arrived, requested;
	uint64_t stale_pages;
	/* --verify: the page digest of every page that is not stale, taken at
	 * the switch (those pages are final then); the placed pages' hashes
	 * complete it (kvm/uffd_missing.h). */
	bool verify;
	uint64_t nonstale_digest;
	_Atomic uint64_t faults, zero_pages, requests, urgent_pages;
	_Atomic uint32_t nsamples;
	uint32_t samples_us[TERN_PC_SAMPLES];
};

/* tern_pc_dst_init allocates the sets for g.  0 or TERN_ENOMEM; fini may be
 * called either way. */
int tern_pc_dst_init(struct tern_pc_dst *pc, struct tern_guest *g);

/* tern_pc_dst_stale adds a W_POSTCOPY slice (bitmap words for pages
 * [first, first+count)) and discards the pages it names that were not
 * stale yet (tern_guest_discard): they read as missing from then on.
 * TERN_EPROTO with why when it does not fit. */
int tern_pc_dst_stale(struct tern_pc_dst *pc, uint64_t first, uint64_t count, const void *words,
                      uint64_t len, char *why, size_t whylen);

/* tern_pc_dst_start registers guest memory for missing faults (guest
 * paused, every stale page discarded, no page being written). */
int tern_pc_dst_start(struct tern_pc_dst *pc, char *why, size_t whylen);

/* tern_pc_dst_place places [off, off+len) from src (NULL: zeros), marks
 * the stale pages among them arrived, and counts newly placed pages into
 * *placed (may be NULL). */
int tern_pc_dst_place(struct tern_pc_dst *pc, uint64_t off, const void *src, uint64_t len,
                      uint64_t *placed);

/* tern_pc_dst_zero_fill places a page that is not stale (it reads as zero)
 * on a fault. */
int tern_pc_dst_zero_fill(struct tern_pc_dst *pc, uint64_t off, uint64_t *placed);

/* tern_pc_dst_latency records one request's latency (t_ns: when its fault
 * was read, on this host's clock). */
void tern_pc_dst_latency(struct tern_pc_dst *pc, uint64_t t_ns);

/* tern_pc_dst_missing: stale pages not arrived yet. */
uint64_t tern_pc_dst_missing(const struct tern_pc_dst *pc);

/* tern_pc_dst_stats copies the counters and latency percentiles. */
void tern_pc_dst_stats(struct tern_pc_dst *pc, struct tern_stats *st);

/* tern_pc_dst_fini unregisters guest memory (a thread still waiting on a
 * missing page then sees zeros: only after a failure, when the guest is
 * discarded) and frees the sets. */
void tern_pc_dst_fini(struct tern_pc_dst *pc);

/* The PostcopyFaultActor ("pc-faults"): reads faults from pc's
 * userfaultfd, places zero pages, asks the source for stale ones through
 * connection 0 (W_PAGE_REQ).  Its event "fault" fires per fault read. */
struct tern_pc_faults_args {
	struct tern_pc_dst *pc;
	/* Connection 0's actor: its CTL_OUT sends to the source.  0 while the
	 * link is lost (postcopy recovery): requests then wait, and PC_RELINK
	 * brings the new one. */
	_Atomic uint32_t conn0;
};
extern const struct tern_actor_desc tern_pc_faults_actor;

#endif /* TERN_ACTORS_POSTCOPY_H */
