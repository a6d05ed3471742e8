/*
 * simvm's vCPUs: one thread each, running the workload while a gate lets
 * them (pause, resume, internal holds), and the memtouch workload, which
 * keeps all of its progress in guest memory so that a destination continues
 * it after migration and tern_guest_check can verify it (layout: simvm.c).
 */
#include <errno.h>
#include <inttypes.h>
#include <linux/futex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "kvm/simvm_priv.h"
#include "messages/msg.h"
#include "tern/error.h"

#define SIMVM_SLOT_NS 1000000ull

/* Source, after the fill: each ledger starts equal to its pages' words. */
int
simvm_ctl_init(struct tern_guest *g, struct simvm *s)
{
	const struct tern_guest_config *cfg = &g->cfg;
	uint64_t *sums = calloc(cfg->vcpus, sizeof(uint64_t));

	if (sums == NULL)
		return TERN_ENOMEM;
	/* Only pages the fill wrote are read: the others are zero, and reading
	 * a memfd hole would allocate it. */
	if (cfg->fill != TERN_FILL_ZERO) {
		for (uint64_t i = 0; i < s->ws_pages; i++) {
			uint64_t page = s->ws_first + i;

			if (simvm_page_random(cfg, page))
				sums[i % cfg->vcpus] +=
				    *(const uint64_t *)(g->regions[0].host + page * TERN_PAGE_SIZE);
		}
	}
	for (uint32_t v = 0; v < cfg->vcpus; v++) {
		struct simvm_ctl *c = simvm_ctl(g, v);

		c->magic = SIMVM_CTL_MAGIC;
		c->vcpu = v;
		c->steps = 0;
		c->sum = sums[v];
		c->rng = simvm_mix(cfg->seed * 0x2545f4914f6cdd1dull + v);
		c->cursor = 0;
	}
	free(sums);
	return 0;
}

/* One memtouch step of vCPU c: rewrite one own page, keep the ledger.
 * Returns false, having written nothing, when the vCPU must stop while it
 * waits for room in its dirty ring. */
static inline bool
simvm_step(struct simvm *s, struct simvm_vcpu *c, struct simvm_ctl *ctl)
{
	struct tern_guest *g = s->g;
	const bool ring = s->ring_on;
	uint64_t k, page, old, val;
	uint64_t *w;

	if (ring) {
		/* A step writes two pages (its control page and one of the
		 * working set): room for both first, so that a full ring stops
		 * the vCPU here, before any write (KVM_EXIT_DIRTY_RING_FULL),
		 * and never inside the write section the harvester waits on. */
		if (!tern_dirty_ring_wait_room(&s->rings, c->index, 2, &s->stop))
			return false;
		tern_dirty_ring_enter(&s->rings, c->index);
		/* Entries before writes: the harvester sees a page's entry no
		 * later than its new contents. */
		tern_dirty_ring_mark(&s->rings, c->index, c->index);
	}
	if (g->cfg.pattern == TERN_PATTERN_SEQ) {
		k = ctl->cursor % c->own;
		ctl->cursor = k + 1 == c->own ? 0 : k + 1;
	} else {
		k = simvm_rand(&ctl->rng) % c->own;
	}
	page = s->ws_first + c->index + k * g->cfg.vcpus;
	if (ring)
		tern_dirty_ring_mark(&s->rings, c->index, page);
	w = (uint64_t *)(g->regions[0].host + page * TERN_PAGE_SIZE);
	old = w[0];
	val = simvm_rand(&ctl->rng);
	/* Relaxed atomics: observers (tests, dirty-log checks) may read word 0
	 * while the guest runs, as a VMM reads a running guest's memory. */
	__atomic_store_n(&w[0], val, __ATOMIC_RELAXED);
	__atomic_store_n(&w[2048 / 8], val, __ATOMIC_RELAXED);
	ctl->sum += val - old;
	ctl->steps++;
	if (ring)
		tern_dirty_ring_leave(&s->rings, c->index);
	return true;
}

/* simvm_sleep_until sleeps until CLOCK_MONOTONIC time t or a stop. */
static void
simvm_sleep_until(struct simvm *s, uint64_t t)
{
	struct timespec ts = {.tv_sec = (time_t)(t / 1000000000ull),
	                      .tv_nsec = (long)(t % 1000000000ull)};

	/* FUTEX_WAIT_BITSET takes an absolute CLOCK_MONOTONIC deadline. */
	while (atomic_load_explicit(&s->stop, memory_order_relaxed) == 0 && tern_now_ns() < t) {
		if (syscall(SYS_futex, &s->stop, FUTEX_WAIT_BITSET_PRIVATE, 0, &ts, NULL,
		            FUTEX_BITSET_MATCH_ANY) != 0 &&
		    errno == ETIMEDOUT)
			break;
	}
}

static void
simvm_memtouch_run(struct simvm_vcpu *c)
{
	struct simvm *s = c->vm;
	struct tern_guest *g = s->g;
	struct simvm_ctl *ctl = simvm_ctl(g, c->index);
	/* Credit in units of bytes/s * ms: a 1 ms slot earns `rate`, one step
	 * of one vCPU costs 4096 * 1000 * vcpus, so the vCPUs together write
	 * `rate` bytes per second. */
	const uint64_t rate = g->cfg.rate;
	const unsigned __int128 cost = (unsigned __int128)TERN_PAGE_SIZE * 1000 * g->cfg.vcpus;
	unsigned __int128 credit = 0;
	uint64_t next, now;

	if (atomic_load_explicit(&c->halted, memory_order_relaxed) ||
	    ctl->magic != SIMVM_CTL_MAGIC || ctl->vcpu != c->index) {
		/* No ledger (e.g. a destination resumed without its memory):
		 * the vCPU halts rather than scribble over memory. */
		atomic_store_explicit(&c->halted, true, memory_order_relaxed);
		while (!atomic_load_explicit(&s->stop, memory_order_relaxed))
			simvm_sleep_until(s, tern_now_ns() + SIMVM_SLOT_NS);
		return;
	}
	if (rate == 0) {
		while (!atomic_load_explicit(&s->stop, memory_order_relaxed))
			(void)simvm_step(s, c, ctl); /* false: stop is set */
		return;
	}
	next = tern_now_ns();
	while (!atomic_load_explicit(&s->stop, memory_order_relaxed)) {
		credit += rate;
		while (credit >= cost && !atomic_load_explicit(&s->stop, memory_order_relaxed)) {
			if (!simvm_step(s, c, ctl))
				break;
			credit -= cost;
		}
		next += SIMVM_SLOT_NS;
		/* Catch up at most 10 slots after oversleeping, never burst. */
		now = tern_now_ns();
		if (now > next + 10 * SIMVM_SLOT_NS)
			next = now;
		simvm_sleep_until(s, next);
	}
}

static void
simvm_vcpu_main(void *arg)
{
	struct simvm_vcpu *c = arg;
	struct simvm *s = c->vm;
	bool memtouch = s->g->cfg.workload == TERN_WORKLOAD_MEMTOUCH;
	char name[16];

	/* Named from inside (libuv 1.44 cannot name a thread): "tern-vcpuN"
	 * in top and perf. */
	snprintf(name, sizeof(name), "tern-vcpu%u", (unsigned)(c - s->vcpus) % 1000u);
	(void)prctl(PR_SET_NAME, name, 0, 0, 0);

	uv_mutex_lock(&s->lock);
	for (;;) {
		/* Idle vCPUs never run guest code: they wait here until quit. */
		while (!s->quit && (!memtouch || s->paused || s->holds > 0))
			uv_cond_wait(&s->run_cv, &s->lock);
		if (s->quit)
			break;
		s->nrunning++;
		uv_cond_broadcast(&s->state_cv);
		uv_mutex_unlock(&s->lock);
		simvm_memtouch_run(c);
		uv_mutex_lock(&s->lock);
		s->nrunning--;
		uv_cond_broadcast(&s->state_cv);
	}
	uv_mutex_unlock(&s->lock);
}

/* simvm_gate_update publishes the gate to the vCPUs; lock held. */
static void
simvm_gate_update(struct simvm *s)
{
	bool stop = s->quit || s->paused || s->holds > 0;

	if (atomic_exchange_explicit(&s->stop, stop, memory_order_relaxed) != stop && stop) {
		syscall(SYS_futex, &s->stop, FUTEX_WAKE_PRIVATE, INT32_MAX, NULL, NULL, 0);
		/* A vCPU stopped on a full dirty ring must see the stop too. */
		if (s->ring_on)
			tern_dirty_rings_kick(&s->rings);
	}
	if (!stop || s->quit)
		uv_cond_broadcast(&s->run_cv);
}

int
simvm_gate_init(struct simvm *s)
{
	if (uv_mutex_init(&s->lock) != 0)
		return TERN_ENOMEM;
	if (uv_cond_init(&s->run_cv) != 0) {
		uv_mutex_destroy(&s->lock);
		return TERN_ENOMEM;
	}
	if (uv_cond_init(&s->state_cv) != 0) {
		uv_cond_destroy(&s->run_cv);
		uv_mutex_destroy(&s->lock);
		return TERN_ENOMEM;
	}
	s->sync_ok = true;
	return 0;
}

int
simvm_vcpus_start(struct tern_guest *g, struct simvm *s)
{
	/* Small stacks: a guest may have hundreds of vCPUs. */
	uv_thread_options_t opts = {.flags = UV_THREAD_HAS_STACK_SIZE, .stack_size = 256 * 1024};
	int rv;

	atomic_store_explicit(&s->stop, s->paused, memory_order_relaxed);
	for (uint32_t v = 0; v < g->cfg.vcpus; v++) {
		if ((rv = uv_thread_create_ex(&s->vcpus[v].thread, &opts, simvm_vcpu_main,
		                              &s->vcpus[v])) != 0) {
			simvm_why(g, "cannot start vCPU thread %u: %s", v, strerror(-rv));
			return rv; /* -errno, as libuv's codes on Unix */
		}
		s->nthreads++;
	}
	return 0;
}

void
simvm_vcpus_fini(struct simvm *s)
{
	if (!s->sync_ok)
		return;
	uv_mutex_lock(&s->lock);
	s->quit = true;
	simvm_gate_update(s);
	uv_mutex_unlock(&s->lock);
	for (uint32_t i = 0; i < s->nthreads; i++)
		uv_thread_join(&s->vcpus[i].thread);
	uv_cond_destroy(&s->state_cv);
	uv_cond_destroy(&s->run_cv);
	uv_mutex_destroy(&s->lock);
	s->sync_ok = false;
}

static void
simvm_count_steps(struct tern_guest *g, struct simvm *s)
{
	uint64_t n = 0;

	/* Lock held and nrunning == 0: the ledgers are stable. */
	if (g->cfg.workload != TERN_WORKLOAD_MEMTOUCH || !s->ledger_live)
		return;
	for (uint32_t v = 0; v < g->cfg.vcpus; v++)
		if (simvm_ctl(g, v)->magic == SIMVM_CTL_MAGIC)
			n += simvm_ctl(g, v)->steps;
	g->stats.workload_steps = n;
}

int
simvm_pause(struct tern_guest *g)
{
	struct simvm *s = g->priv;
	uint64_t t0 = tern_now_ns();
	bool was;

	uv_mutex_lock(&s->lock);
	was = s->paused;
	s->paused = true;
	simvm_gate_update(s);
	while (s->nrunning > 0)
		uv_cond_wait(&s->state_cv, &s->lock);
	simvm_count_steps(g, s);
	uv_mutex_unlock(&s->lock);
	if (!was)
		g->stats.last_pause_ns = tern_now_ns() - t0;
	return 0;
}

int
simvm_resume(struct tern_guest *g)
{
	struct simvm *s = g->priv;
	uint64_t t0 = tern_now_ns();
	bool was;

	uv_mutex_lock(&s->lock);
	was = s->paused;
	s->paused = false;
	s->ledger_live = true;
	/* Release only, as a KVM resume kicks vCPUs without waiting for them
	 * to be scheduled: on 2 busy cores that wait is a scheduler timeslice
	 * (~5 ms measured), which a throttle must not pay at every slice. */
	simvm_gate_update(s);
	uv_mutex_unlock(&s->lock);
	if (was)
		g->stats.last_resume_ns = tern_now_ns() - t0;
	return 0;
}

/* hold/release: see simvm_priv.h. */
void
simvm_hold(struct simvm *s)
{
	uv_mutex_lock(&s->lock);
	s->holds++;
	simvm_gate_update(s);
	while (s->nrunning > 0)
		uv_cond_wait(&s->state_cv, &s->lock);
	uv_mutex_unlock(&s->lock);
}

void
simvm_release(struct simvm *s)
{
	uv_mutex_lock(&s->lock);
	s->holds--;
	simvm_gate_update(s);
	uv_mutex_unlock(&s->lock);
}

/* The ledger check sums word 0 of each vCPU's pages over the extents that
 * may hold data only: holes read as zero, and reading a memfd hole would
 * allocate it. */
struct simvm_sum {
	struct simvm *s;
	uint64_t *sums;
};

static void
simvm_sum_pages(struct simvm_sum *a, uint64_t first, uint64_t end)
{
	struct simvm *s = a->s;
	const uint8_t *host = s->g->regions[0].host;

	if (first < s->ws_first)
		first = s->ws_first;
	if (end > s->ws_first + s->ws_pages)
		end = s->ws_first + s->ws_pages;
	for (uint64_t p = first; p < end; p++)
		a->sums[(p - s->ws_first) % s->g->cfg.vcpus] += __atomic_load_n(
		    (const uint64_t *)(host + p * TERN_PAGE_SIZE), __ATOMIC_RELAXED);
}

static int
simvm_sum_extent(uint64_t start, uint64_t end, void *arg)
{
	simvm_sum_pages(arg, start / TERN_PAGE_SIZE, (end + TERN_PAGE_SIZE - 1) / TERN_PAGE_SIZE);
	return 0;
}

int
simvm_check(struct tern_guest *g, uint64_t *progress, char *why, size_t whylen)
{
	struct simvm *s = g->priv;
	const struct tern_guest_config *cfg = &g->cfg;
	struct simvm_sum sum = {.s = s};
	uint64_t *sums, n = 0;
	int rv = 0;

	*progress = 0;
	if (cfg->workload != TERN_WORKLOAD_MEMTOUCH)
		return 0;
	if ((sums = calloc(cfg->vcpus, sizeof(uint64_t))) == NULL)
		return TERN_ENOMEM;
	sum.sums = sums;
	simvm_hold(s);
	if (tern_guest_extents(g, simvm_sum_extent, &sum) != 0) {
		/* The extents are unknown: read every page. */
		memset(sums, 0, cfg->vcpus * sizeof(uint64_t));
		simvm_sum_pages(&sum, 0, g->npages);
	}
	for (uint32_t v = 0; v < cfg->vcpus && rv == 0; v++) {
		const struct simvm_ctl *c = simvm_ctl(g, v);

		if (c->magic != SIMVM_CTL_MAGIC || c->vcpu != v) {
			snprintf(why, whylen,
			         "vCPU %u: control page at gpa %#" PRIx64
			         " holds no ledger (magic %#" PRIx64 ")",
			         v, (uint64_t)(v * TERN_PAGE_SIZE), c->magic);
			rv = TERN_EVERIFY;
		} else if (c->sum != sums[v]) {
			snprintf(why, whylen,
			         "vCPU %u: ledger sum %#" PRIx64 " != %#" PRIx64
			         " summed over its %" PRIu64 " working-set pages after %" PRIu64
			         " steps",
			         v, c->sum, sums[v], s->vcpus[v].own, c->steps);
			rv = TERN_EVERIFY;
		} else if (c->steps < s->vcpus[v].loaded_steps) {
			snprintf(why, whylen,
			         "vCPU %u: %" PRIu64 " steps in memory, behind the %" PRIu64
			         " of the loaded state",
			         v, c->steps, s->vcpus[v].loaded_steps);
			rv = TERN_EVERIFY;
		}
		n += c->steps;
	}
	simvm_release(s);
	free(sums);
	*progress = n;
	return rv;
}
