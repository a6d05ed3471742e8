/*
 * simvm's private state, shared by the files of the backend (private to
 * kvm/simvm*.c):
 *
 *   simvm.c        create, destroy, the ops table
 *   simvm_mem.c    guest memory: mapping and fill
 *   simvm_vcpu.c   vCPU threads, the run gate (pause/resume/hold), memtouch
 *                  and its ledger check
 *   simvm_state.c  the state blob (save/load)
 *   simvm_dirty.c  the dirty-log modes: bitmap (kvm/dirty_wp.h), ring
 *                  (kvm/dirty_ring.h)
 */
#ifndef TERN_KVM_SIMVM_PRIV_H
#define TERN_KVM_SIMVM_PRIV_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "kvm/dirty_ring.h"
#include "kvm/dirty_wp.h"
#include "kvm/guest.h"
#include "messages/msg.h"

#define SIMVM_CTL_MAGIC 0x314c54434e524554ull /* "TERNCTL1" */
#define SIMVM_CTL_PAGES_MIN TERN_GUEST_CTL_PAGES_MIN

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
	uv_thread_t thread;
	uint32_t index;
	uint64_t own; /* working-set pages this vCPU owns */
	/* halted: the vCPU found no valid ledger and does nothing.  Written by
	 * the vCPU or by state_load (guest paused), read under the pause. */
	atomic_bool halted;
	uint64_t loaded_steps; /* from state_load: memory must not go back */
};

struct simvm {
	struct tern_guest *g;
	uv_mutex_t lock;
	uv_cond_t run_cv;   /* parked vCPUs wait here */
	uv_cond_t state_cv; /* pause/resume wait here for nrunning */
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
	struct dirty_wp wp;
	/* Ring mode.  ring_on and rings change only under the lock with every
	 * vCPU held out of guest code (simvm_hold), so the vCPUs read them
	 * without atomics. */
	bool ring_on;
	struct tern_dirty_rings rings;
};

/* splitmix64 (one step from x): a good 64-bit mixer for per-page seeds. */
static inline uint64_t
simvm_mix(uint64_t x)
{
	return tern_mix64(x + 0x9e3779b97f4a7c15ull);
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

static inline struct simvm_ctl *
simvm_ctl(struct tern_guest *g, uint32_t v)
{
	return (struct simvm_ctl *)(g->regions[0].host + (uint64_t)v * TERN_PAGE_SIZE);
}

/* simvm_why writes the one-line reason for the failure being returned into
 * g->why, where tern_guest_create and the provider pick it up. */
#define simvm_why(g, ...) terni_errf((g)->why, sizeof((g)->why), __VA_ARGS__)

/* simvm_mem.c */

/* simvm_map maps cfg.mem_size bytes of guest memory into g->regions[0] (memfd,
 * or anonymous memory aligned for huge pages); simvm_unmap releases them
 * and is safe after a failed or partial map. */
int simvm_map(struct tern_guest *g);
void simvm_unmap(struct tern_guest *g);

/* simvm_fill writes the source's initial contents as cfg.fill says. */
int simvm_fill(struct tern_guest *g);

/* simvm_vcpu.c */

/* simvm_ctl_init writes the source's ledgers (after the fill). */
int simvm_ctl_init(struct tern_guest *g, struct simvm *s);

/* simvm_gate_init makes the lock and condition variables of the gate.
 * simvm_vcpus_start starts the vCPU threads (parked while s->paused).
 * simvm_vcpus_fini makes them quit, joins the ones started and undoes
 * simvm_gate_init; safe after either failed. */
int simvm_gate_init(struct simvm *s);
int simvm_vcpus_start(struct tern_guest *g, struct simvm *s);
void simvm_vcpus_fini(struct simvm *s);

/* simvm_pause and simvm_resume are the ops' pause and resume slots: pause
 * returns once every vCPU is parked, resume releases them without waiting
 * for them to be scheduled. */
int simvm_pause(struct tern_guest *g);
int simvm_resume(struct tern_guest *g);

/* hold/release: an internal pause that never undoes the caller's pause;
 * simvm_hold returns once no vCPU runs guest code. */
void simvm_hold(struct simvm *s);
void simvm_release(struct simvm *s);

/* simvm_check is the ops' check slot: every memtouch ledger against its
 * pages, with the vCPUs held. */
int simvm_check(struct tern_guest *g, uint64_t *progress, char *why, size_t whylen);

/* simvm_state.c */

/* The ops' state slots: the blob carries each vCPU's step count and halted
 * flag; load checks it against this guest's shape (guest paused). */
int simvm_state_save(struct tern_guest *g, void *buf, size_t cap, size_t *len);
uint64_t simvm_state_size(struct tern_guest *g);
int simvm_state_load(struct tern_guest *g, const void *buf, size_t len);

/* simvm_dirty.c */

/* The ops' dirty slots, which dispatch to the mode selected in
 * g->dirty_mode, and simvm's modes (NULL-terminated, bitmap first). */
int simvm_dirty_start(struct tern_guest *g);
int simvm_dirty_harvest(struct tern_guest *g, struct tern_bitmap *bm, uint64_t *pages);
int simvm_dirty_stop(struct tern_guest *g);

extern const struct tern_dirty_mode *const simvm_dirty_modes[];

#endif /* TERN_KVM_SIMVM_PRIV_H */
