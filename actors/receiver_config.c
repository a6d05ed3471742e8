/*
 * The ReceiverCoordinator's W_CONFIG (see receiver_int.h): the guest the
 * source announces, checked against this destination's own guest (layout)
 * or caps, or built from it, and made ready (written-page map, populator)
 * before it is published to the connections.
 */
#include <stdio.h>
#include <string.h>

#include "actors/receiver_int.h"
#include "kvm/guest_ready.h"
#include "tern/error.h"

/* The source's announced layout must be the destination guest's, exactly:
 * the reason names both. */
static int
rc_layout_check(const struct tern_guest *own, const struct tern_msg_w_config *c, char *why,
                size_t whylen)
{
	struct tern_guest_region src[TERN_GUEST_MAX_REGIONS];
	uint32_t n = c->layout.count;
	uint64_t sum = 0;
	bool same = n == own->nregions && c->page_size == TERN_PAGE_SIZE;

	if (n == 0 || n > TERN_GUEST_MAX_REGIONS) {
		snprintf(why, whylen, "the source announces %u memory regions (1 to %u make sense)",
		         n, TERN_GUEST_MAX_REGIONS);
		return TERN_EINVAL;
	}
	for (uint32_t i = 0; i < n; i++) {
		tern_ranges_get(&c->layout, i, &src[i].gpa, &src[i].size);
		sum += src[i].size;
		same = same && src[i].gpa == own->regions[i].gpa &&
		       src[i].size == own->regions[i].size;
	}
	if (sum != c->mem_size) {
		snprintf(why, whylen, "the source's regions add up to %llu bytes, not its %llu",
		         (unsigned long long)sum, (unsigned long long)c->mem_size);
		return TERN_EINVAL;
	}
	if (same)
		return 0;
	char a[160], b[160];
	snprintf(why, whylen,
	         "the source's guest has %s (pages of %u bytes); this guest has %s (pages of %llu "
	         "bytes)",
	         tern_guest_layout_text(src, n, a, sizeof(a)), c->page_size,
	         tern_guest_layout_text(own->regions, own->nregions, b, sizeof(b)),
	         (unsigned long long)TERN_PAGE_SIZE);
	return TERN_EINVAL;
}

/* A guest built from the source's announcement stays within this
 * destination's caps (tern_recv_opts.max_mem, max_vcpus), checked before
 * anything is allocated, so a peer cannot make this host reserve more than
 * it chose to give.  Memory has no default cap: sparse guests larger than
 * the host's memory are legitimate (only their data is ever allocated). */
static int
rc_caps_check(const struct tern_recv_opts *o, const struct tern_guest_config *cfg, char *why,
              size_t whylen)
{
	uint32_t max_vcpus = o->max_vcpus ? o->max_vcpus : 256;
	if (o->max_mem != 0 && cfg->mem_size > o->max_mem) {
		snprintf(
		    why, whylen,
		    "the source's guest has %llu bytes of memory, this destination allows at most "
		    "%llu (--max-mem)",
		    (unsigned long long)cfg->mem_size, (unsigned long long)o->max_mem);
		return TERN_ERANGE;
	}
	if (cfg->vcpus > max_vcpus) {
		snprintf(why, whylen,
		         "the source's guest has %u vCPUs, this destination allows at most %u (%s)",
		         cfg->vcpus, max_vcpus, o->max_vcpus ? "--max-vcpus" : "the default");
		return TERN_ERANGE;
	}
	return 0;
}

int
rc_config(struct tern_actor *self, struct rc_state *s, const struct tern_msg_w_config *c)
{
	char why[TERN_STR_MAX];
	struct tern_guest_config cfg;
	struct tern_guest *g = NULL;
	if (s->phase != RC_LISTENING) {
		(void)rc_answer(self, s, TERN_MSG_W_CONFIG, TERN_ESTATE, 0, "already configured");
		return rc_fail(self, s, TERN_EPROTO, "second configuration from the source");
	}
	int rc;
	if (s->a->own != NULL) {
		rc = rc_layout_check(s->a->own, c, why, sizeof(why));
		g = s->a->own;
	} else if (strncmp(c->guest, "provider:", 9) == 0) {
		rc = TERN_EINVAL;
		snprintf(
		    why, sizeof(why),
		    "the source migrates a VMM's guest; this destination has no guest of its own "
		    "to take it (the VMM supplies one: tern_recv_opts.provider)");
	} else {
		rc = tern_guest_spec_parse(c->guest, &cfg, why, sizeof(why));
		if (rc == 0 && (cfg.mem_size != c->mem_size || c->page_size != TERN_PAGE_SIZE)) {
			rc = TERN_EINVAL;
			snprintf(why, sizeof(why), "guest size/page size disagree with the spec");
		}
		if (rc == 0)
			rc = rc_caps_check(s->a->opts, &cfg, why, sizeof(why));
		if (rc == 0 && !s->a->opts->same_backing)
			cfg.backing = tern_guest_fastest_backing(cfg.backing);
		if (rc == 0)
			rc = tern_guest_create_provided(&g, &cfg, TERN_GUEST_DESTINATION, why,
			                                sizeof(why));
		/* The spec's guest must have the announced layout too. */
		if (rc == 0 && (rc = rc_layout_check(g, c, why, sizeof(why))) != 0) {
			tern_guest_destroy(g);
			g = NULL;
		}
	}
	if (rc == 0 && ((rc = tern_bitmap_init(&s->a->written, g->npages)) != 0 ||
	                (rc = tern_populate_ahead_init(
	                     &s->a->ahead, g, g == s->a->own && s->a->opts->prealloc)) != 0)) {
		snprintf(why, sizeof(why), "out of memory");
		if (g != s->a->own)
			tern_guest_destroy(g);
		g = NULL;
	}
	if (rc != 0) {
		(void)rc_answer(self, s, TERN_MSG_W_CONFIG, rc, 0, why);
		return rc_fail(self, s, rc, "%s: %s",
		               s->a->own != NULL ? "layout refused" : "cannot build the guest",
		               why);
	}
	s->verify = c->verify;
	/* Populating runs alongside the data from here; without a thread the
	 * connections populate alone. */
	if (!s->a->opts->no_populate && !(g == s->a->own && s->a->opts->prealloc))
		(void)tern_populate_ahead_start(&s->a->ahead);
	atomic_store_explicit(&s->a->guest, g, memory_order_release);
	s->a->stats->guest_build_ms = g->stats.build_ns / 1000000;
	rc_set_phase(self, s, RC_CONFIGURED);
	return rc_answer(self, s, TERN_MSG_W_CONFIG, 0, 0, NULL);
}
