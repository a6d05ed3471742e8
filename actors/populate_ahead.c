/*
 * The destination's populate-ahead stage (see populate_ahead.h).
 */
#include <sched.h>
#include <stdlib.h>
#include <unistd.h>

#include "actors/populate_ahead.h"
#include "kvm/guest_ready.h"
#include "tern/error.h"

enum { AHEAD_FREE = 0, AHEAD_PREPARING = 1, AHEAD_READY = 2, AHEAD_TAKEN = 3 };

/* How long the populator sleeps when it is TERN_AHEAD_LEAD ahead of the
 * data: a fraction of the time the connections take to fill that lead. */
#define AHEAD_WAIT_US 500

int
tern_populate_ahead_init(struct tern_populate_ahead *a, struct tern_guest *g, bool ready)
{
	*a = (struct tern_populate_ahead){.g = g};
	a->nblocks = (g->npages * TERN_PAGE_SIZE + TERN_AHEAD_BLOCK - 1) / TERN_AHEAD_BLOCK;
	a->state = calloc(a->nblocks ? a->nblocks : 1, sizeof(*a->state));
	if (a->state == NULL)
		return TERN_ENOMEM;
	for (uint64_t b = 0; ready && b < a->nblocks; b++)
		atomic_init(&a->state[b], AHEAD_READY);
	return 0;
}

static void
ahead_main(void *arg)
{
	struct tern_populate_ahead *a = arg;
	uint64_t size = a->g->npages * TERN_PAGE_SIZE; /* the space; gaps skipped */
	uint64_t lead = TERN_AHEAD_LEAD / TERN_AHEAD_BLOCK;
	uint64_t b = 0;
	while (b < a->nblocks && !atomic_load_explicit(&a->stop, memory_order_relaxed)) {
		uint64_t front = atomic_load_explicit(&a->front, memory_order_relaxed);
		if (b < front)
			b = front; /* behind the data: the connections did these */
		if (b >= a->nblocks)
			break;
		if (b >= front + lead) {
			usleep(AHEAD_WAIT_US);
			continue;
		}
		uint8_t want = AHEAD_FREE;
		/* acq_rel: a connection that sees READY must see the pages
		 * prepared (release), and we must see a TAKEN before ours. */
		if (atomic_compare_exchange_strong_explicit(&a->state[b], &want, AHEAD_PREPARING,
		                                            memory_order_acq_rel,
		                                            memory_order_acquire)) {
			uint64_t off = b * TERN_AHEAD_BLOCK;
			uint64_t len =
			    size - off < TERN_AHEAD_BLOCK ? size - off : TERN_AHEAD_BLOCK;
			int rc = tern_guest_prepare(a->g, off, len);
			/* READY even on failure: the connection's own populate
			 * is an optimisation too; the data lands either way. */
			atomic_store_explicit(&a->state[b], rc == 0 ? AHEAD_READY : AHEAD_TAKEN,
			                      memory_order_release);
			if (rc != 0) {
				a->rc = rc;
				break;
			}
			a->blocks_prepared++;
		}
		b++;
	}
}

int
tern_populate_ahead_start(struct tern_populate_ahead *a)
{
	if (a->running || a->state == NULL)
		return 0;
	int rc = uv_thread_create(&a->th, ahead_main, a);
	if (rc == 0)
		a->running = true;
	return rc;
}

void
tern_populate_ahead_stop(struct tern_populate_ahead *a)
{
	if (!a->running)
		return;
	atomic_store_explicit(&a->stop, true, memory_order_relaxed);
	uv_thread_join(&a->th);
	a->running = false;
}

void
tern_populate_ahead_cancel(struct tern_populate_ahead *a)
{
	atomic_store_explicit(&a->stop, true, memory_order_relaxed);
}

void
tern_populate_ahead_fini(struct tern_populate_ahead *a)
{
	tern_populate_ahead_stop(a);
	free(a->state);
	a->state = NULL;
}

bool
tern_populate_ahead_take(struct tern_populate_ahead *a, const struct tern_msg_w_pages *p)
{
	bool self = false;
	uint64_t top = 0;
	for (uint32_t i = 0; i < p->ranges.count; i++) {
		uint64_t gpa, len;
		tern_ranges_get(&p->ranges, i, &gpa, &len);
		uint64_t first = gpa / TERN_AHEAD_BLOCK;
		uint64_t last = (gpa + len - 1) / TERN_AHEAD_BLOCK;
		for (uint64_t b = first; b <= last; b++) {
			for (;;) {
				uint8_t st =
				    atomic_load_explicit(&a->state[b], memory_order_acquire);
				if (st == AHEAD_PREPARING) {
					sched_yield(); /* one block: a few ms at most */
					continue;
				}
				if (st == AHEAD_FREE &&
				    !atomic_compare_exchange_strong_explicit(
				        &a->state[b], &st, AHEAD_TAKEN, memory_order_acq_rel,
				        memory_order_acquire))
					continue; /* the populator came first: look again */
				self |= st != AHEAD_READY;
				break;
			}
		}
		if (last + 1 > top)
			top = last + 1;
	}
	uint64_t f = atomic_load_explicit(&a->front, memory_order_relaxed);
	while (top > f && !atomic_compare_exchange_weak_explicit(
	                      &a->front, &f, top, memory_order_relaxed, memory_order_relaxed))
		;
	return self;
}
