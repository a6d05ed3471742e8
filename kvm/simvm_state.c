/*
 * simvm's state blob: the vCPU state that does not live in guest memory
 * (memtouch keeps everything else there), checked against the guest it is
 * loaded into.
 */
#include <inttypes.h>
#include <stdatomic.h>
#include <stddef.h>

#include "kvm/simvm_priv.h"
#include "tern/error.h"

#define SIMVM_STATE_MAGIC 0x54534e54u /* "TNST" */
#define SIMVM_STATE_VERSION 1u
#define SIMVM_STATE_HDR 24u
#define SIMVM_STATE_VCPU 16u
#define SIMVM_STATE_HALTED 1u

/* The state blob is little-endian: n bytes of v from p. */
static void
simvm_put_le(uint8_t *p, uint64_t v, int n)
{
	for (int i = 0; i < n; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t
simvm_get_le(const uint8_t *p, int n)
{
	uint64_t v = 0;

	for (int i = n - 1; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static void
simvm_put32(uint8_t *p, uint32_t v)
{
	simvm_put_le(p, v, 4);
}

static void
simvm_put64(uint8_t *p, uint64_t v)
{
	simvm_put_le(p, v, 8);
}

static uint32_t
simvm_get32(const uint8_t *p)
{
	return (uint32_t)simvm_get_le(p, 4);
}

static uint64_t
simvm_get64(const uint8_t *p)
{
	return simvm_get_le(p, 8);
}

/* State blob, little-endian:
 *   u32 magic, u32 version, u32 vcpus, u32 workload, u64 mem_size,
 *   then per vCPU: u64 steps, u32 flags (SIMVM_STATE_HALTED), u32 0.
 * Everything else the workload needs is in guest memory. */
uint64_t
simvm_state_size(struct tern_guest *g)
{
	return SIMVM_STATE_HDR + (uint64_t)g->cfg.vcpus * SIMVM_STATE_VCPU;
}

int
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

int
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
	uv_mutex_lock(&s->lock);
	paused = s->paused && s->nrunning == 0;
	uv_mutex_unlock(&s->lock);
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
