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
 * Files: simvm_mem.c (memory and fill), simvm_vcpu.c (vCPU threads, the
 * gate, memtouch and its check), simvm_state.c (the state blob),
 * simvm_dirty.c (the dirty-log modes, over kvm/dirty_wp.h and
 * kvm/dirty_ring.h); simvm_priv.h holds what they share.
 */
#include <stdlib.h>

#include "kvm/simvm_priv.h"
#include "messages/msg.h"
#include "tern/error.h"

static void
simvm_destroy(struct tern_guest *g)
{
	struct simvm *s = g->priv;

	if (s != NULL) {
		simvm_dirty_stop(g);
		simvm_vcpus_fini(s);
		free(s->vcpus);
		free(s);
		g->priv = NULL;
	}
	simvm_unmap(g);
}

static int
simvm_create(struct tern_guest *g, const struct tern_guest_config *cfg, int role)
{
	uint64_t t0 = tern_now_ns();
	struct simvm *s;
	int rv;

	if ((s = calloc(1, sizeof(*s))) == NULL)
		return TERN_ENOMEM;
	g->priv = s;
	s->g = g;
	dirty_wp_init(&s->wp);
	if ((s->vcpus = calloc(cfg->vcpus, sizeof(*s->vcpus))) == NULL)
		return TERN_ENOMEM;
	if ((rv = simvm_gate_init(s)) != 0)
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
	if ((rv = simvm_vcpus_start(g, s)) != 0)
		return rv;
	g->stats.build_ns = tern_now_ns() - t0;
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
    .state_size = simvm_state_size,
    .check = simvm_check,
    .dirty_modes = simvm_dirty_modes,
};
