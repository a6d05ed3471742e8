/*
 * The DirtyLogActor's harvester: a thread, owned by the actor, that harvests
 * the guest's dirty log in the background into the actor's accumulating
 * set, so that a DIRTY_TAKE never waits for a harvest (issue 17 item 5).
 *
 * Why a thread: on populated memory a harvest slice sits in the kernel
 * (PAGEMAP_SCAN) for milliseconds -- ~10 ms per 64 MiB slice here with a
 * writer running -- and an actor that harvests on its own thread answers a
 * TAKE only after the slice.  Here the harvest runs beside the actor, and a
 * TAKE swaps the accumulating set under a lock held for microseconds.
 *
 * Owner and lifecycle: the DirtyLogActor, on its own thread --
 *   init -> start -> { swap | final | rate_pps | error }* -> stop -> fini.
 * init MUST leave a state that stop and fini can be called on, whatever it
 * returns.  stop is idempotent and returns once the thread is joined: it
 * waits for the slice in progress, never for a whole sweep.  The actor's
 * stop callback (which runs on every exit path, a kill included) calls stop
 * before it ends dirty tracking, then fini.
 *
 * One harvester (kvm/guest.h: calls into a dirty mode are never
 * concurrent): from start to stop, every call into the guest's dirty mode is
 * made under guest_mu, by the thread or by final; the owner makes none
 * itself.  dirty_start (before start) and dirty_stop (after stop) are the
 * owner's, with no thread running.
 *
 * No page is lost.  The thread harvests a slice into its own scratch
 * bitmap, never into a set the owner might lend, and then ORs the slice's
 * words into whichever set accumulates at that moment, under set_mu.  A
 * swap before that merge leaves the slice's pages to the next set; a swap
 * after it takes them.  Pages the kernel still holds marked are in a later
 * harvest.  scratch is all zero whenever guest_mu is free, so final, holding
 * guest_mu, harvests everything left straight into the accumulating set.
 */
#ifndef TERN_ACTORS_DIRTY_HARVEST_H
#define TERN_ACTORS_DIRTY_HARVEST_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "kvm/bitmap.h"
#include "kvm/guest.h"
#include "messages/msg.h"

struct tern_trace;

#define TERN_HARVEST_SAMPLES 256 /* (time, pages) per harvest, for the rate */

struct tern_harvest_sample {
	uint64_t t_ns;
	uint64_t pages;
	uint64_t gap_ns; /* the pause before its sweep: when its pages were written */
};

struct tern_harvester {
	/* Set by init, read-only afterwards. */
	struct tern_guest *guest;
	struct tern_trace *trace; /* for guest fault records; may be NULL */
	uint64_t period_ns, window_ns, slice_pages;
	unsigned have; /* which of init's resources exist (fini's guide) */
	int efd;       /* eventfd: readable once the thread has failed */

	/* The thread's own: written by nobody else, never read by the owner. */
	struct tern_bitmap scratch; /* a slice's harvest before its merge */
	uint64_t cursor;            /* next page of the sweep in progress */
	uv_thread_t thread;
	bool started; /* the owner's: a thread to join */

	/* One harvester: held around every call into the dirty mode and the
	 * merge that follows it.  Priority-inheriting, as set_mu. */
	pthread_mutex_t guest_mu;

	/* The accumulating set (the pointer and its bits) and the rate
	 * samples.  The thread holds it only to merge a few thousand words
	 * or to add a sample: microseconds.  Priority-inheriting, because the
	 * owner runs at real-time priority and the thread does not. */
	pthread_mutex_t set_mu;
	struct tern_bitmap *acc;
	struct tern_harvest_sample samples[TERN_HARVEST_SAMPLES];
	uint32_t head, count;

	/* The thread's sleep between sweeps, and what ends or holds it. */
	uv_mutex_t wait_mu;
	uv_cond_t wake;
	bool stop;          /* the owner asked the thread to end */
	bool final_waiting; /* final wants guest_mu: start no slice */
	int error;          /* the thread's failure, 0 while none */
	char why[TERN_STR_MAX];
};

/* tern_harvester_init prepares h to harvest g into acc (npages bits): a
 * scratch bitmap as large, the locks and the eventfd.  period_ms: between
 * the end of one sweep and the start of the next; window_ms: the dirty
 * rate's window; slice_pages: guest pages per slice (a mode without
 * slices harvests whole); trace (may be NULL) gets guest fault records.
 * After a sweep that found no page the pause doubles, up to 4 periods, in
 * modes whose sweeps walk the address space (a ring mode keeps the period:
 * an unharvested ring stops its vCPU).  Returns 0 or a negative code
 * (TERN_ENOMEM, -errno). */
int tern_harvester_init(struct tern_harvester *h, struct tern_guest *g, struct tern_trace *trace,
                        struct tern_bitmap *acc, uint32_t period_ms, uint32_t window_ms,
                        uint64_t slice_pages);

/* tern_harvester_start starts the thread; the guest must be tracking.  Its
 * first sweep begins after one period.  0 or a negative code (no thread). */
int tern_harvester_start(struct tern_harvester *h);

/* tern_harvester_fd is readable once the thread has failed (then
 * tern_harvester_error says why).  Poll it from the owner's loop. */
int tern_harvester_fd(const struct tern_harvester *h);

/* tern_harvester_error returns the thread's failure (0: none) with its
 * one-line reason in why. */
int tern_harvester_error(struct tern_harvester *h, char *why, size_t whylen);

/* tern_harvester_swap makes fresh (cleared, npages bits) the accumulating
 * set and returns the one it replaces, which nobody writes afterwards.
 * Never waits for a harvest: only for a merge of a few thousand words. */
struct tern_bitmap *tern_harvester_swap(struct tern_harvester *h, struct tern_bitmap *fresh);

/* tern_harvester_final, with the guest paused: waits for the slice in
 * progress (one, or two if the thread started its next slice just before),
 * harvests everything left into the accumulating set, and swaps it for
 * fresh as tern_harvester_swap.  *harvest_ns: the harvest's duration.  On
 * failure nothing is swapped (*taken untouched) and why has the reason. */
int tern_harvester_final(struct tern_harvester *h, struct tern_bitmap *fresh,
                         struct tern_bitmap **taken, uint64_t *harvest_ns, char *why,
                         size_t whylen);

/* tern_harvester_rate_pps: pages per second reported by the harvests that
 * ended inside the window before now. */
uint64_t tern_harvester_rate_pps(struct tern_harvester *h, uint64_t now);

/* tern_harvester_stop ends the thread and joins it (after the slice in
 * progress).  Idempotent; a no-op when no thread was started. */
void tern_harvester_stop(struct tern_harvester *h);

/* tern_harvester_fini stops the thread if it runs and frees everything
 * init made.  Idempotent. */
void tern_harvester_fini(struct tern_harvester *h);

#endif /* TERN_ACTORS_DIRTY_HARVEST_H */
