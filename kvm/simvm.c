/*
 * simvm: a simulated guest with real memory and real kernel dirty tracking.
 *
 * Memory is a memfd (MAP_SHARED) or anonymous memory with transparent huge
 * pages.  vCPUs are threads running a workload; memtouch keeps all of its
 * progress in guest memory, so a destination continues it after migration
 * and tern_guest_check can verify it:
 *
 *   page v (v < vcpus)     vCPU v's control page (struct simvm_ctl)
 *   pages [ws_first, ...)  the working set; vCPU v owns index % vcpus == v
 *
 * ws_first is 64 pages (or vcpus pages when there are more than 64 vCPUs).
 * The ledger invariant: ctl.sum == sum over the vCPU's own pages of word 0.
 *
 * Dirty tracking, two modes (struct tern_dirty_mode):
 *  - bitmap: userfaultfd asynchronous write-protect (the kernel resolves the
 *    write fault itself and only clears the page's write-protect bit) and
 *    PAGEMAP_SCAN, which reports the pages without the bit and re-protects
 *    them in one pass.  Catches every writer.
 *  - ring: the vCPUs push the pages they write into per-vCPU dirty rings
 *    (kvm/dirty_ring.h) in simvm_step, and stop on a full ring until a
 *    harvest frees it.  Catches vCPU writes only, as KVM's ring does.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/futex.h>
#include <linux/userfaultfd.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "kvm/dirty_ring.h"
#include "kvm/guest.h"
#include "tern/error.h"

/* The installed headers are Linux 6.1; these are the 6.7 uapi values
 * (include/uapi/linux/userfaultfd.h and include/uapi/linux/fs.h). */
#ifndef UFFD_USER_MODE_ONLY
#define UFFD_USER_MODE_ONLY 1
#endif
#ifndef UFFD_FEATURE_WP_UNPOPULATED
#define UFFD_FEATURE_WP_UNPOPULATED (1 << 13)
#endif
#ifndef UFFD_FEATURE_WP_ASYNC
#define UFFD_FEATURE_WP_ASYNC (1 << 15)
#endif
#include "kvm/pagemap_scan.h"
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

#define SIMVM_CTL_MAGIC 0x314c54434e524554ull /* "TERNCTL1" */
#define SIMVM_CTL_PAGES_MIN 64u
#define SIMVM_STATE_MAGIC 0x54534e54u /* "TNST" */
#define SIMVM_STATE_VERSION 1u
#define SIMVM_STATE_HDR 24u
#define SIMVM_STATE_VCPU 16u
#define SIMVM_STATE_HALTED 1u
#define SIMVM_SCAN_VEC 4096u
#define SIMVM_FILL_CHUNK_PAGES 4096u /* 16 MiB: populate, then write */
#define SIMVM_FILL_THREADED_PAGES 16384u
#define SIMVM_HUGE (2ull << 20)
#define SIMVM_SLOT_NS 1000000ull

/* The head of vCPU v's control page, in guest memory. */
struct simvm_ctl {
	uint64_t magic;
	uint64_t vcpu;
	uint64_t steps;
	uint64_t sum;    /* wrapping sum of word 0 over the vCPU's own pages */
	uint64_t rng;    /* wyrand state */
	uint64_t cursor; /* next own page with pattern=seq */
};

struct simvm;

struct simvm_vcpu {
	struct simvm *vm;
	pthread_t thread;
	uint32_t index;
	uint64_t own; /* working-set pages this vCPU owns */
	/* halted: the vCPU found no valid ledger and does nothing.  Written by
	 * the vCPU or by state_load (guest paused), read under the pause. */
	atomic_bool halted;
	uint64_t loaded_steps; /* from state_load: memory must not go back */
};

struct simvm {
	struct tern_guest *g;
	pthread_mutex_t lock;
	pthread_cond_t run_cv;   /* parked vCPUs wait here */
	pthread_cond_t state_cv; /* pause/resume wait here for nrunning */
	bool sync_ok;
	/* Gate, under lock: vCPUs run only when !quit && !paused && !holds. */
	bool paused;
	bool quit;
	uint32_t holds; /* internal pauses (check, state_save) */
	uint32_t nrunning;
	/* ledger_live: the control pages hold ledgers (source, or a resumed
	 * destination); before that, reading them would allocate memfd holes. */
	bool ledger_live;
	/* stop mirrors "must not run" for the step loop, and is the futex a
	 * paced vCPU sleeps on so that a pause need not wait out its slot.
	 * Relaxed is enough: it only asks a vCPU to park; the guest-memory
	 * writes are ordered for the pauser by the mutex the vCPU takes to
	 * report itself parked. */
	atomic_uint stop;
	uint32_t nthreads; /* vCPU threads started (joined by destroy) */
	struct simvm_vcpu *vcpus;
	uint64_t ws_first, ws_pages;
	/* Dirty tracking, bitmap mode. */
	int uffd;
	int pagemap;
	struct page_region *vec;
	uint64_t scan_anyof;
	/* Ring mode.  ring_on and rings change only under the lock with every
	 * vCPU held out of guest code (simvm_hold), so the vCPUs read them
	 * without atomics. */
	bool ring_on;
	struct tern_dirty_rings rings;
};

struct simvm_fill_job {
	struct tern_guest *g;
	uint64_t first, end; /* pages */
	int rv;
};

static void
simvm_why(struct tern_guest *g, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(g->why, sizeof(g->why), fmt, ap);
	va_end(ap);
}

static uint64_t
simvm_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* splitmix64's finaliser: a good 64-bit mixer for per-page seeds. */
static inline uint64_t
simvm_mix(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

/* wyrand: one multiply per 64-bit word, any state is valid. */
static inline uint64_t
simvm_rand(uint64_t *s)
{
	unsigned __int128 t;

	*s += 0xa0761d6478bd642full;
	t = (unsigned __int128)*s * (*s ^ 0xe7037ed1a0b428dbull);
	return (uint64_t)(t >> 64) ^ (uint64_t)t;
}

/* Whether the fill makes page random: a function of (seed, page) only, so
 * that two guests with the same seed match whatever the thread split. */
static inline bool
simvm_page_random(const struct tern_guest_config *cfg, uint64_t page)
{
	if (cfg->fill == TERN_FILL_RANDOM)
		return cfg->fill_size == 0 || page < cfg->fill_size / TERN_PAGE_SIZE;
	if (cfg->fill != TERN_FILL_PERCENT)
		return false;
	return simvm_mix(cfg->seed ^ simvm_mix(page ^ 0x5851f42d4c957f2dull)) % 100 < cfg->fill_pct;
}

static void
simvm_fill_page(uint64_t *w, uint64_t seed, uint64_t page)
{
	uint64_t s = simvm_mix(simvm_mix(seed) ^ page);

	for (unsigned i = 0; i < TERN_PAGE_SIZE / 8; i++)
		w[i] = simvm_rand(&s);
}

static int
simvm_fill_run(struct tern_guest *g, uint64_t first, uint64_t end)
{
	int rv;

	/* Populating the run first costs ~1.35 us/page on shmem against
	 * ~10 us/page for first-touch faults (MACHINE.md). */
	if ((rv = tern_guest_populate(g, first * TERN_PAGE_SIZE, (end - first) * TERN_PAGE_SIZE)) !=
	    0)
		return rv;
	for (uint64_t p = first; p < end; p++)
		simvm_fill_page((uint64_t *)(g->region.host + p * TERN_PAGE_SIZE), g->cfg.seed, p);
	return 0;
}

static int
simvm_fill_range(struct tern_guest *g, uint64_t first, uint64_t end)
{
	const struct tern_guest_config *cfg = &g->cfg;
	int rv;

	for (uint64_t c = first; c < end; c += SIMVM_FILL_CHUNK_PAGES) {
		uint64_t ce = end - c < SIMVM_FILL_CHUNK_PAGES ? end : c + SIMVM_FILL_CHUNK_PAGES;

		if (cfg->fill == TERN_FILL_RANDOM) {
			if ((rv = simvm_fill_run(g, c, ce)) != 0)
				return rv;
			continue;
		}
		/* fill=P: only the chosen pages are touched, in runs. */
		for (uint64_t p = c; p < ce;) {
			uint64_t q = p;

			while (q < ce && simvm_page_random(cfg, q))
				q++;
			if (q > p && (rv = simvm_fill_run(g, p, q)) != 0)
				return rv;
			p = q + 1;
		}
	}
	return 0;
}

static void *
simvm_fill_main(void *arg)
{
	struct simvm_fill_job *job = arg;

	job->rv = simvm_fill_range(job->g, job->first, job->end);
	return NULL;
}

static int
simvm_fill(struct tern_guest *g)
{
	struct simvm_fill_job a = {g, 0, g->npages, 0}, b;
	pthread_t t;
	bool threaded = false;

	if (g->cfg.fill == TERN_FILL_ZERO ||
	    (g->cfg.fill == TERN_FILL_PERCENT && g->cfg.fill_pct == 0))
		return 0;
	/* fill=random:SIZE touches only the first SIZE bytes. */
	if (g->cfg.fill == TERN_FILL_RANDOM && g->cfg.fill_size != 0 &&
	    g->cfg.fill_size / TERN_PAGE_SIZE < a.end)
		a.end = g->cfg.fill_size / TERN_PAGE_SIZE;
	/* Big guests: the second half on a helper thread (2 cores here). */
	if (a.end >= SIMVM_FILL_THREADED_PAGES) {
		uint64_t end = a.end;
		b = a;
		b.first = a.end = end / 2;
		threaded = pthread_create(&t, NULL, simvm_fill_main, &b) == 0;
		if (!threaded)
			a.end = end;
	}
	simvm_fill_main(&a);
	if (threaded) {
		pthread_join(t, NULL);
		if (a.rv == 0)
			a.rv = b.rv;
	}
	if (a.rv != 0)
		simvm_why(g, "fill: populating guest memory failed: %s", tern_strerror(a.rv));
	return a.rv;
}

static int
simvm_map(struct tern_guest *g)
{
	struct tern_guest_region *r = &g->region;
	uint64_t size = g->cfg.mem_size;
	uint8_t *p;
	int e;

	r->gpa = 0;
	r->size = size;
	r->fd_offset = 0;
	if (g->cfg.backing == TERN_BACKING_MEMFD) {
		if ((r->fd = memfd_create("tern-guest", MFD_CLOEXEC)) < 0) {
			e = errno;
			simvm_why(g, "memfd_create failed: %s", strerror(e));
			return -e;
		}
		if (ftruncate(r->fd, (off_t)size) != 0) {
			e = errno;
			simvm_why(g, "ftruncate of the guest memfd to %" PRIu64 " bytes failed: %s",
			          size, strerror(e));
			return -e;
		}
		p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, r->fd, 0);
		if (p == MAP_FAILED) {
			e = errno;
			simvm_why(g, "mmap of %" PRIu64 " bytes of guest memfd failed: %s", size,
			          strerror(e));
			return -e;
		}
		r->host = p;
		return 0;
	}
	/* Anonymous: over-map by 2 MiB and trim so that the region starts on
	 * a huge-page boundary and every 2 MiB of it can be a huge page. */
	r->fd = -1;
	p = mmap(NULL, size + SIMVM_HUGE, PROT_READ | PROT_WRITE,
	         MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED) {
		e = errno;
		simvm_why(g, "mmap of %" PRIu64 " bytes of anonymous memory failed: %s", size,
		          strerror(e));
		return -e;
	}
	{
		uint8_t *a =
		    (uint8_t *)(((uintptr_t)p + SIMVM_HUGE - 1) & ~(uintptr_t)(SIMVM_HUGE - 1));

		if (a > p)
			munmap(p, (size_t)(a - p));
		if (p + size + SIMVM_HUGE > a + size)
			munmap(a + size, (size_t)(p + size + SIMVM_HUGE - (a + size)));
		r->host = a;
	}
	if (madvise(r->host, size, MADV_HUGEPAGE) != 0) {
		e = errno;
		simvm_why(g,
		          "madvise(MADV_HUGEPAGE) failed: %s (transparent huge pages not built in)",
		          strerror(e));
		return -e;
	}
	return 0;
}

static inline struct simvm_ctl *
simvm_ctl(struct tern_guest *g, uint32_t v)
{
	return (struct simvm_ctl *)(g->region.host + (uint64_t)v * TERN_PAGE_SIZE);
}

/* Source, after the fill: each ledger starts equal to its pages' words. */
static int
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
				    *(const uint64_t *)(g->region.host + page * TERN_PAGE_SIZE);
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
	w = (uint64_t *)(g->region.host + page * TERN_PAGE_SIZE);
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
	while (atomic_load_explicit(&s->stop, memory_order_relaxed) == 0 && simvm_now() < t) {
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
			simvm_sleep_until(s, simvm_now() + SIMVM_SLOT_NS);
		return;
	}
	if (rate == 0) {
		while (!atomic_load_explicit(&s->stop, memory_order_relaxed))
			(void)simvm_step(s, c, ctl); /* false: stop is set */
		return;
	}
	next = simvm_now();
	while (!atomic_load_explicit(&s->stop, memory_order_relaxed)) {
		credit += rate;
		while (credit >= cost && !atomic_load_explicit(&s->stop, memory_order_relaxed)) {
			if (!simvm_step(s, c, ctl))
				break;
			credit -= cost;
		}
		next += SIMVM_SLOT_NS;
		/* Catch up at most 10 slots after oversleeping, never burst. */
		now = simvm_now();
		if (now > next + 10 * SIMVM_SLOT_NS)
			next = now;
		simvm_sleep_until(s, next);
	}
}

static void *
simvm_vcpu_main(void *arg)
{
	struct simvm_vcpu *c = arg;
	struct simvm *s = c->vm;
	bool memtouch = s->g->cfg.workload == TERN_WORKLOAD_MEMTOUCH;

	pthread_mutex_lock(&s->lock);
	for (;;) {
		/* Idle vCPUs never run guest code: they wait here until quit. */
		while (!s->quit && (!memtouch || s->paused || s->holds > 0))
			pthread_cond_wait(&s->run_cv, &s->lock);
		if (s->quit)
			break;
		s->nrunning++;
		pthread_cond_broadcast(&s->state_cv);
		pthread_mutex_unlock(&s->lock);
		simvm_memtouch_run(c);
		pthread_mutex_lock(&s->lock);
		s->nrunning--;
		pthread_cond_broadcast(&s->state_cv);
	}
	pthread_mutex_unlock(&s->lock);
	return NULL;
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
		pthread_cond_broadcast(&s->run_cv);
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

static int
simvm_pause(struct tern_guest *g)
{
	struct simvm *s = g->priv;
	uint64_t t0 = simvm_now();
	bool was;

	pthread_mutex_lock(&s->lock);
	was = s->paused;
	s->paused = true;
	simvm_gate_update(s);
	while (s->nrunning > 0)
		pthread_cond_wait(&s->state_cv, &s->lock);
	simvm_count_steps(g, s);
	pthread_mutex_unlock(&s->lock);
	if (!was)
		g->stats.last_pause_ns = simvm_now() - t0;
	return 0;
}

static int
simvm_resume(struct tern_guest *g)
{
	struct simvm *s = g->priv;
	uint64_t t0 = simvm_now();
	bool was;

	pthread_mutex_lock(&s->lock);
	was = s->paused;
	s->paused = false;
	s->ledger_live = true;
	/* Release only, as a KVM resume kicks vCPUs without waiting for them
	 * to be scheduled: on 2 busy cores that wait is a scheduler timeslice
	 * (~5 ms measured), which a throttle must not pay at every slice. */
	simvm_gate_update(s);
	pthread_mutex_unlock(&s->lock);
	if (was)
		g->stats.last_resume_ns = simvm_now() - t0;
	return 0;
}

/* hold/release: an internal pause that never undoes the caller's pause. */
static void
simvm_hold(struct simvm *s)
{
	pthread_mutex_lock(&s->lock);
	s->holds++;
	simvm_gate_update(s);
	while (s->nrunning > 0)
		pthread_cond_wait(&s->state_cv, &s->lock);
	pthread_mutex_unlock(&s->lock);
}

static void
simvm_release(struct simvm *s)
{
	pthread_mutex_lock(&s->lock);
	s->holds--;
	simvm_gate_update(s);
	pthread_mutex_unlock(&s->lock);
}

static int
simvm_pagemap(struct tern_guest *g, struct simvm *s)
{
	int e;

	if (s->pagemap >= 0)
		return 0;
	if ((s->pagemap = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC)) < 0) {
		e = errno;
		simvm_why(g, "cannot open /proc/self/pagemap: %s", strerror(e));
		return -e;
	}
	return 0;
}

/* simvm_next_data finds the first extent at or after off that may hold
 * data: [*ds, *de) in bytes, *ds == size when none.  Holes read as zero. */
static void
simvm_next_data(struct tern_guest *g, struct simvm *s, uint64_t off, uint64_t *ds, uint64_t *de)
{
	const struct tern_guest_region *r = &g->region;
	struct page_region pr;
	struct pm_scan_arg a;
	long got;
	off_t x;

	*ds = off;
	*de = r->size;
	if (r->fd >= 0) {
		x = lseek(r->fd, (off_t)off, SEEK_DATA);
		if (x < 0) {
			*ds = errno == ENXIO ? r->size : off;
			return;
		}
		*ds = (uint64_t)x < r->size ? (uint64_t)x : r->size;
		x = lseek(r->fd, (off_t)*ds, SEEK_HOLE);
		*de = x < 0 || (uint64_t)x > r->size ? r->size : (uint64_t)x;
		return;
	}
	if (simvm_pagemap(g, s) != 0)
		return;
	memset(&a, 0, sizeof(a));
	a.size = sizeof(a);
	a.start = (uintptr_t)r->host + off;
	a.end = (uintptr_t)r->host + r->size;
	a.vec = (uintptr_t)&pr;
	a.vec_len = 1;
	a.category_anyof_mask = PAGE_IS_PRESENT | PAGE_IS_SWAPPED;
	a.return_mask = PAGE_IS_PRESENT | PAGE_IS_SWAPPED;
	got = ioctl(s->pagemap, PAGEMAP_SCAN, &a);
	if (got < 0 || a.walk_end <= a.start)
		return; /* no PAGEMAP_SCAN: read everything */
	if (got > 0) {
		*ds = pr.start - (uintptr_t)r->host;
		*de = pr.end - (uintptr_t)r->host;
	} else {
		/* Nothing exists up to walk_end. */
		*ds = *de = a.walk_end - (uintptr_t)r->host;
	}
}

static int
simvm_check(struct tern_guest *g, uint64_t *progress, char *why, size_t whylen)
{
	struct simvm *s = g->priv;
	const struct tern_guest_config *cfg = &g->cfg;
	uint64_t *sums, ds = 0, de = 0, n = 0;
	int rv = 0;

	*progress = 0;
	if (cfg->workload != TERN_WORKLOAD_MEMTOUCH)
		return 0;
	if ((sums = calloc(cfg->vcpus, sizeof(uint64_t))) == NULL)
		return TERN_ENOMEM;
	simvm_hold(s);
	for (uint64_t i = 0; i < s->ws_pages;) {
		uint64_t off = (s->ws_first + i) * TERN_PAGE_SIZE;

		if (off >= de) {
			simvm_next_data(g, s, off, &ds, &de);
			if (de <= off) { /* no answer: read this page */
				ds = off;
				de = off + TERN_PAGE_SIZE;
			}
		}
		if (off < ds) {
			/* A hole reads as zero: skip to the data. */
			i = ds / TERN_PAGE_SIZE - s->ws_first;
			continue;
		}
		sums[i % cfg->vcpus] +=
		    __atomic_load_n((const uint64_t *)(g->region.host + off), __ATOMIC_RELAXED);
		i++;
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

static void
simvm_put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void
simvm_put64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t
simvm_get32(const uint8_t *p)
{
	uint32_t v = 0;

	for (int i = 3; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static uint64_t
simvm_get64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

/* State blob, little-endian:
 *   u32 magic, u32 version, u32 vcpus, u32 workload, u64 mem_size,
 *   then per vCPU: u64 steps, u32 flags (SIMVM_STATE_HALTED), u32 0.
 * Everything else the workload needs is in guest memory. */
static int
simvm_state_save(struct tern_guest *g, void *buf, size_t cap, size_t *len)
{
	struct simvm *s = g->priv;
	size_t need = SIMVM_STATE_HDR + (size_t)g->cfg.vcpus * SIMVM_STATE_VCPU;
	uint8_t *p = buf;

	*len = need;
	if (cap < need) {
		simvm_why(g, "state_save: buffer of %zu bytes, need %zu", cap, need);
		return TERN_EINVAL;
	}
	simvm_put32(p, SIMVM_STATE_MAGIC);
	simvm_put32(p + 4, SIMVM_STATE_VERSION);
	simvm_put32(p + 8, g->cfg.vcpus);
	simvm_put32(p + 12, g->cfg.workload);
	simvm_put64(p + 16, g->cfg.mem_size);
	p += SIMVM_STATE_HDR;
	simvm_hold(s);
	for (uint32_t v = 0; v < g->cfg.vcpus; v++, p += SIMVM_STATE_VCPU) {
		const struct simvm_ctl *c = simvm_ctl(g, v);
		bool memtouch = g->cfg.workload == TERN_WORKLOAD_MEMTOUCH && s->ledger_live;

		simvm_put64(p, memtouch && c->magic == SIMVM_CTL_MAGIC ? c->steps : 0);
		simvm_put32(p + 8, atomic_load_explicit(&s->vcpus[v].halted, memory_order_relaxed)
		                       ? SIMVM_STATE_HALTED
		                       : 0);
		simvm_put32(p + 12, 0);
	}
	simvm_release(s);
	return 0;
}

static int
simvm_state_load(struct tern_guest *g, const void *buf, size_t len)
{
	struct simvm *s = g->priv;
	const uint8_t *p = buf;
	size_t need = SIMVM_STATE_HDR + (size_t)g->cfg.vcpus * SIMVM_STATE_VCPU;
	bool paused;

	if (len < SIMVM_STATE_HDR || simvm_get32(p) != SIMVM_STATE_MAGIC) {
		simvm_why(g, "state_load: not a simvm state blob (%zu bytes)", len);
		return TERN_EMSG;
	}
	if (simvm_get32(p + 4) != SIMVM_STATE_VERSION) {
		simvm_why(g, "state_load: state version %u, this build reads %u",
		          simvm_get32(p + 4), SIMVM_STATE_VERSION);
		return TERN_EMSG;
	}
	if (simvm_get32(p + 8) != g->cfg.vcpus || simvm_get32(p + 12) != g->cfg.workload ||
	    simvm_get64(p + 16) != g->cfg.mem_size) {
		simvm_why(g,
		          "state_load: state of a guest with vcpus=%u workload=%u mem=%" PRIu64
		          ", this guest has vcpus=%u workload=%u mem=%" PRIu64,
		          simvm_get32(p + 8), simvm_get32(p + 12), simvm_get64(p + 16),
		          g->cfg.vcpus, g->cfg.workload, g->cfg.mem_size);
		return TERN_EMSG;
	}
	if (len != need) {
		simvm_why(g, "state_load: %zu bytes, expected %zu", len, need);
		return TERN_EMSG;
	}
	for (uint32_t v = 0; v < g->cfg.vcpus; v++) {
		const uint8_t *q = p + SIMVM_STATE_HDR + (size_t)v * SIMVM_STATE_VCPU;

		if ((simvm_get32(q + 8) & ~SIMVM_STATE_HALTED) != 0 || simvm_get32(q + 12) != 0) {
			simvm_why(g, "state_load: vCPU %u has unknown flags %#x", v,
			          simvm_get32(q + 8));
			return TERN_EMSG;
		}
	}
	pthread_mutex_lock(&s->lock);
	paused = s->paused && s->nrunning == 0;
	pthread_mutex_unlock(&s->lock);
	if (!paused) {
		simvm_why(g, "state_load: the guest must be paused");
		return TERN_ESTATE;
	}
	for (uint32_t v = 0; v < g->cfg.vcpus; v++) {
		const uint8_t *q = p + SIMVM_STATE_HDR + (size_t)v * SIMVM_STATE_VCPU;

		s->vcpus[v].loaded_steps = simvm_get64(q);
		atomic_store_explicit(&s->vcpus[v].halted,
		                      (simvm_get32(q + 8) & SIMVM_STATE_HALTED) != 0,
		                      memory_order_relaxed);
	}
	return 0;
}

/* simvm_swap_enabled: with swap, a written shmem page can be swapped out
 * and lose its page-table entry between two scans; then only the
 * conservative scan (holes count as written) stays exact. */
static bool
simvm_swap_enabled(void)
{
	char line[256];
	int lines = 0;
	FILE *f = fopen("/proc/swaps", "re");

	if (f == NULL)
		return true;
	while (fgets(line, sizeof(line), f) != NULL)
		lines++;
	fclose(f);
	return lines > 1;
}

/* simvm_scan reports (into bm, if not NULL) and re-protects every page
 * written since the last scan. */
static int
simvm_scan_range(struct tern_guest *g, struct simvm *s, struct tern_bitmap *bm, uint64_t from,
                 uint64_t to, uint64_t *pages)
{
	uint64_t base = (uintptr_t)g->region.host, pos = base + from, end = base + to, n = 0;
	struct pm_scan_arg a;
	long got;
	int e;

	while (pos < end) {
		memset(&a, 0, sizeof(a));
		a.size = sizeof(a);
		a.flags = PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC;
		a.start = pos;
		a.end = end;
		a.vec = (uintptr_t)s->vec;
		a.vec_len = SIMVM_SCAN_VEC;
		a.category_mask = PAGE_IS_WRITTEN;
		a.category_anyof_mask = s->scan_anyof;
		a.return_mask = PAGE_IS_WRITTEN;
		got = ioctl(s->pagemap, PAGEMAP_SCAN, &a);
		if (got < 0) {
			e = errno;
			if (e == EINTR)
				continue;
			if (e == ENOTTY || (e == EINVAL && pos == base + from))
				simvm_why(g, "PAGEMAP_SCAN ioctl not supported by this kernel "
				             "(needs Linux >= 6.7)");
			else
				simvm_why(g, "PAGEMAP_SCAN of guest memory failed: %s",
				          strerror(e));
			return e == ENOTTY ? TERN_ENOTSUP : -e;
		}
		for (long i = 0; i < got; i++) {
			uint64_t first = (s->vec[i].start - base) / TERN_PAGE_SIZE;
			uint64_t count = (s->vec[i].end - s->vec[i].start) / TERN_PAGE_SIZE;

			if (bm != NULL)
				tern_bitmap_set_range(bm, first, count);
			n += count;
		}
		if (a.walk_end <= pos) {
			simvm_why(g, "PAGEMAP_SCAN made no progress at %#" PRIx64, pos - base);
			return TERN_EINVAL;
		}
		pos = a.walk_end;
	}
	if (pages != NULL)
		*pages += n;
	return 0;
}

static int
simvm_scan(struct tern_guest *g, struct simvm *s, struct tern_bitmap *bm, uint64_t *pages)
{
	return simvm_scan_range(g, s, bm, 0, g->region.size, pages);
}

static int
simvm_bitmap_harvest_range(struct tern_guest *g, struct tern_bitmap *bm, uint64_t first,
                           uint64_t count, uint64_t *pages)
{
	struct simvm *s = g->priv;

	if (s->uffd < 0) {
		simvm_why(g, "dirty_harvest: dirty tracking is not started");
		return TERN_ESTATE;
	}
	if (first + count > g->npages)
		return TERN_EINVAL;
	return simvm_scan_range(g, s, bm, first * TERN_PAGE_SIZE, (first + count) * TERN_PAGE_SIZE,
	                        pages);
}

static int
simvm_bitmap_stop(struct tern_guest *g)
{
	struct simvm *s = g->priv;
	struct uffdio_range range = {(uintptr_t)g->region.host, g->region.size};
	int rv = 0;

	if (s->uffd < 0)
		return 0;
	if (ioctl(s->uffd, UFFDIO_UNREGISTER, &range) != 0)
		rv = -errno;
	close(s->uffd);
	s->uffd = -1;
	free(s->vec);
	s->vec = NULL;
	return rv;
}

static const char *
simvm_feature_name(uint64_t f)
{
	return f == UFFD_FEATURE_WP_ASYNC ? "UFFD_FEATURE_WP_ASYNC (Linux >= 6.7)"
	                                  : "UFFD_FEATURE_WP_UNPOPULATED (Linux >= 6.4)";
}

#define SIMVM_UFFD_WANT (UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED)

/* simvm_bitmap_probe asks the kernel (features = 0 returns what it offers)
 * whether the bitmap mode can run, so that a refusal names the missing
 * feature in why. */
static int
simvm_bitmap_probe(char *why, size_t whylen)
{
	struct uffdio_api api = {.api = UFFD_API, .features = 0};
	int fd, e;

	fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);
	if (fd < 0) {
		e = errno;
		snprintf(why, whylen,
		         "userfaultfd not available: %s (needs CONFIG_USERFAULTFD; unprivileged "
		         "use needs vm.unprivileged_userfaultfd=1)",
		         strerror(e));
		return e == ENOSYS ? TERN_ENOTSUP : -e;
	}
	if (ioctl(fd, UFFDIO_API, &api) != 0) {
		e = errno;
		close(fd);
		snprintf(why, whylen, "userfaultfd UFFDIO_API handshake failed: %s", strerror(e));
		return -e;
	}
	close(fd);
	for (uint64_t f = UFFD_FEATURE_WP_UNPOPULATED; f <= UFFD_FEATURE_WP_ASYNC; f <<= 1) {
		if ((SIMVM_UFFD_WANT & f) && !(api.features & f)) {
			snprintf(why, whylen, "userfaultfd %s not supported by this kernel",
			         simvm_feature_name(f));
			return TERN_ENOTSUP;
		}
	}
	return 0;
}

static bool
simvm_bitmap_supported(struct tern_guest *g, char *why, size_t whylen)
{
	(void)g;
	return simvm_bitmap_probe(why, whylen) == 0;
}

static int
simvm_bitmap_start(struct tern_guest *g)
{
	struct simvm *s = g->priv;
	const uint64_t want = SIMVM_UFFD_WANT;
	struct uffdio_api api = {0};
	struct uffdio_register reg;
	int e, rv;

	g->why[0] = '\0';
	if (s->uffd >= 0) {
		simvm_why(g, "dirty tracking is already started");
		return TERN_ESTATE;
	}
	if ((rv = simvm_bitmap_probe(g->why, sizeof(g->why))) != 0)
		return rv;
	s->uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);
	if (s->uffd < 0) {
		e = errno;
		simvm_why(g, "userfaultfd not available: %s", strerror(e));
		return -e;
	}
	api.api = UFFD_API;
	api.features = want;
	if (ioctl(s->uffd, UFFDIO_API, &api) != 0) {
		e = errno;
		close(s->uffd);
		s->uffd = -1;
		simvm_why(g, "userfaultfd refused UFFD_FEATURE_WP_ASYNC|WP_UNPOPULATED: %s",
		          strerror(e));
		return TERN_ENOTSUP;
	}
	memset(&reg, 0, sizeof(reg));
	reg.range.start = (uintptr_t)g->region.host;
	reg.range.len = g->region.size;
	reg.mode = UFFDIO_REGISTER_MODE_WP;
	if (ioctl(s->uffd, UFFDIO_REGISTER, &reg) != 0) {
		e = errno;
		close(s->uffd);
		s->uffd = -1;
		simvm_why(
		    g, "userfaultfd write-protect registration of %s guest memory failed: %s%s",
		    g->region.fd >= 0 ? "shmem" : "anonymous", strerror(e),
		    g->region.fd >= 0 ? " (shmem write-protect needs CONFIG_PTE_MARKER_UFFD_WP)"
		                      : "");
		return e == EINVAL ? TERN_ENOTSUP : -e;
	}
	if ((rv = simvm_pagemap(g, s)) != 0 ||
	    (s->vec = malloc(SIMVM_SCAN_VEC * sizeof(struct page_region))) == NULL) {
		if (rv == 0) {
			simvm_why(g, "out of memory");
			rv = TERN_ENOMEM;
		}
		simvm_bitmap_stop(g);
		return rv;
	}
	/* Only pages that exist can have been written, so unless swap can take
	 * a written page's entry away, holes are left alone: write-protecting
	 * them would install a marker per hole page and make every scan cost
	 * the guest's size, not its populated memory (1 TiB: 3.7 s vs 3.8 ms,
	 * MACHINE.md).  A first write into a hole then shows up as a present,
	 * unprotected page, which the next scan reports (tests prove it). */
	s->scan_anyof = simvm_swap_enabled() ? 0 : PAGE_IS_PRESENT | PAGE_IS_SWAPPED;
	/* Arm: protect everything written so far; those pages are not "dirty"
	 * to the migration, which copies all memory in its first pass. */
	if ((rv = simvm_scan(g, s, NULL, NULL)) != 0) {
		char why[sizeof(g->why)];

		memcpy(why, g->why, sizeof(why));
		simvm_bitmap_stop(g);
		memcpy(g->why, why, sizeof(why));
		return rv;
	}
	return 0;
}

static int
simvm_bitmap_harvest(struct tern_guest *g, struct tern_bitmap *bm, uint64_t *pages)
{
	struct simvm *s = g->priv;
	int rv;

	if (s->uffd < 0) {
		simvm_why(g, "dirty_harvest: dirty tracking is not started");
		return TERN_ESTATE;
	}
	if ((rv = simvm_scan(g, s, bm, pages)) == 0)
		g->stats.harvests++;
	return rv;
}

static const struct tern_dirty_mode simvm_dirty_bitmap = {
    .name = "bitmap",
    .supported = simvm_bitmap_supported,
    .start = simvm_bitmap_start,
    .harvest = simvm_bitmap_harvest,
    .harvest_range = simvm_bitmap_harvest_range,
    .stop = simvm_bitmap_stop,
};

/* Ring mode: the vCPUs are this process's threads, so every simvm guest
 * can run it. */
static bool
simvm_ring_supported(struct tern_guest *g, char *why, size_t whylen)
{
	(void)g;
	(void)why;
	(void)whylen;
	return true;
}

static int
simvm_ring_start(struct tern_guest *g)
{
	struct simvm *s = g->priv;
	int rv;

	/* With every vCPU out of guest code, so that no step straddles the
	 * switch: writes before it are not dirty (the first pass copies all
	 * memory), every write after it is in a ring. */
	simvm_hold(s);
	pthread_mutex_lock(&s->lock);
	rv = tern_dirty_rings_init(&s->rings, g->cfg.vcpus, g->dirty_ring_size, g->npages,
	                           &g->stats.ring_full_stalls);
	s->ring_on = rv == 0;
	pthread_mutex_unlock(&s->lock);
	simvm_release(s);
	if (rv != 0)
		simvm_why(g, "dirty ring: cannot allocate %u rings of %u entries: %s",
		          g->cfg.vcpus, g->dirty_ring_size, tern_strerror(rv));
	return rv;
}

static int
simvm_ring_harvest(struct tern_guest *g, struct tern_bitmap *bm, uint64_t *pages)
{
	struct simvm *s = g->priv;
	uint64_t n = tern_dirty_rings_collect(&s->rings, bm);

	if (pages != NULL)
		*pages += n;
	g->stats.harvests++;
	return 0;
}

static int
simvm_ring_stop(struct tern_guest *g)
{
	struct simvm *s = g->priv;

	/* Held: no vCPU is inside a step or stopped on a full ring, so the
	 * rings can go. */
	simvm_hold(s);
	pthread_mutex_lock(&s->lock);
	s->ring_on = false;
	tern_dirty_rings_fini(&s->rings);
	pthread_mutex_unlock(&s->lock);
	simvm_release(s);
	return 0;
}

static const struct tern_dirty_mode simvm_dirty_ring = {
    .name = "ring",
    .supported = simvm_ring_supported,
    .start = simvm_ring_start,
    .harvest = simvm_ring_harvest,
    .stop = simvm_ring_stop,
};

static const struct tern_dirty_mode *const simvm_dirty_modes[] = {
    &simvm_dirty_bitmap,
    &simvm_dirty_ring,
    NULL,
};

/* The guest's dirty slots dispatch to the selected mode. */
static int
simvm_dirty_start(struct tern_guest *g)
{
	int rv;

	g->why[0] = '\0';
	if (g->dirty_tracking) {
		simvm_why(g, "dirty tracking is already started");
		return TERN_ESTATE;
	}
	if ((rv = g->dirty_mode->start(g)) == 0)
		g->dirty_tracking = true;
	return rv;
}

static int
simvm_dirty_harvest(struct tern_guest *g, struct tern_bitmap *bm, uint64_t *pages)
{
	if (!g->dirty_tracking) {
		simvm_why(g, "dirty_harvest: dirty tracking is not started");
		return TERN_ESTATE;
	}
	if (bm == NULL || bm->nbits < g->npages) {
		simvm_why(g, "dirty_harvest: bitmap smaller than the guest's %" PRIu64 " pages",
		          g->npages);
		return TERN_EINVAL;
	}
	return g->dirty_mode->harvest(g, bm, pages);
}

static int
simvm_dirty_stop(struct tern_guest *g)
{
	if (!g->dirty_tracking)
		return 0;
	g->dirty_tracking = false;
	return g->dirty_mode->stop(g);
}

static void
simvm_destroy(struct tern_guest *g)
{
	struct simvm *s = g->priv;

	if (s != NULL) {
		simvm_dirty_stop(g);
		if (s->sync_ok) {
			pthread_mutex_lock(&s->lock);
			s->quit = true;
			simvm_gate_update(s);
			pthread_mutex_unlock(&s->lock);
			for (uint32_t i = 0; i < s->nthreads; i++)
				pthread_join(s->vcpus[i].thread, NULL);
			pthread_cond_destroy(&s->state_cv);
			pthread_cond_destroy(&s->run_cv);
			pthread_mutex_destroy(&s->lock);
		}
		if (s->pagemap >= 0)
			close(s->pagemap);
		free(s->vcpus);
		free(s);
		g->priv = NULL;
	}
	if (g->region.host != NULL)
		munmap(g->region.host, g->region.size);
	g->region.host = NULL;
	if (g->region.fd >= 0)
		close(g->region.fd);
	g->region.fd = -1;
}

static int
simvm_sync_init(struct simvm *s)
{
	if (pthread_mutex_init(&s->lock, NULL) != 0)
		return TERN_ENOMEM;
	if (pthread_cond_init(&s->run_cv, NULL) != 0) {
		pthread_mutex_destroy(&s->lock);
		return TERN_ENOMEM;
	}
	if (pthread_cond_init(&s->state_cv, NULL) != 0) {
		pthread_cond_destroy(&s->run_cv);
		pthread_mutex_destroy(&s->lock);
		return TERN_ENOMEM;
	}
	s->sync_ok = true;
	return 0;
}

static int
simvm_create(struct tern_guest *g, const struct tern_guest_config *cfg, int role)
{
	uint64_t t0 = simvm_now();
	pthread_attr_t attr;
	struct simvm *s;
	int rv;

	if ((s = calloc(1, sizeof(*s))) == NULL)
		return TERN_ENOMEM;
	g->priv = s;
	s->g = g;
	s->uffd = -1;
	s->pagemap = -1;
	if ((s->vcpus = calloc(cfg->vcpus, sizeof(*s->vcpus))) == NULL)
		return TERN_ENOMEM;
	if ((rv = simvm_sync_init(s)) != 0)
		return rv;
	if ((rv = simvm_map(g)) != 0)
		return rv;
	if (cfg->workload == TERN_WORKLOAD_MEMTOUCH) {
		uint64_t ctl = cfg->vcpus > SIMVM_CTL_PAGES_MIN ? cfg->vcpus : SIMVM_CTL_PAGES_MIN;

		/* guest_config_check guaranteed room for a page per vCPU. */
		s->ws_first = ctl;
		s->ws_pages = cfg->ws_size / TERN_PAGE_SIZE;
		if (s->ws_pages > g->npages - ctl)
			s->ws_pages = g->npages - ctl;
	}
	for (uint32_t v = 0; v < cfg->vcpus; v++) {
		s->vcpus[v].vm = s;
		s->vcpus[v].index = v;
		s->vcpus[v].own =
		    s->ws_pages > v ? (s->ws_pages - v + cfg->vcpus - 1) / cfg->vcpus : 0;
	}
	if (role == TERN_GUEST_SOURCE) {
		if ((rv = simvm_fill(g)) != 0)
			return rv;
		if (cfg->workload == TERN_WORKLOAD_MEMTOUCH && (rv = simvm_ctl_init(g, s)) != 0)
			return rv;
	}
	/* A destination's vCPUs exist but stay parked until resume. */
	s->paused = role == TERN_GUEST_DESTINATION;
	s->ledger_live = role == TERN_GUEST_SOURCE;
	atomic_store_explicit(&s->stop, s->paused, memory_order_relaxed);
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, 256 * 1024);
	for (uint32_t v = 0; v < cfg->vcpus; v++) {
		char name[16];

		if ((rv = pthread_create(&s->vcpus[v].thread, &attr, simvm_vcpu_main,
		                         &s->vcpus[v])) != 0) {
			pthread_attr_destroy(&attr);
			simvm_why(g, "cannot start vCPU thread %u: %s", v, strerror(rv));
			return -rv;
		}
		s->nthreads++;
		snprintf(name, sizeof(name), "tern-vcpu%u", v % 1000u);
		pthread_setname_np(s->vcpus[v].thread, name);
	}
	pthread_attr_destroy(&attr);
	g->stats.build_ns = simvm_now() - t0;
	return 0;
}

const struct terni_backend_ops tern_simvm_ops = {
    .name = "simvm",
    .create = simvm_create,
    .destroy = simvm_destroy,
    .pause = simvm_pause,
    .resume = simvm_resume,
    .dirty_start = simvm_dirty_start,
    .dirty_harvest = simvm_dirty_harvest,
    .dirty_stop = simvm_dirty_stop,
    .state_save = simvm_state_save,
    .state_load = simvm_state_load,
    .check = simvm_check,
    .dirty_modes = simvm_dirty_modes,
};
