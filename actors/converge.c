/*
 * Convergence policy (see converge.h).  Pure arithmetic, so that every rule
 * the coordinator follows can be unit-tested without a guest.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "actors/converge.h"
#include "tern/tern.h"

#define CV_MAX_PCT 99u

void
tern_converge_defaults_seed(struct tern_converge_config *c)
{
	*c = (struct tern_converge_config){
	    .initial_pct = 10,
	    .increment_pct = 10,
	    .max_pct = CV_MAX_PCT,
	    .start_after_iters = 2,
	    .step_every_iters = 2,
	};
}

void
tern_converge_defaults_qemu(struct tern_converge_config *c)
{
	*c = (struct tern_converge_config){
	    .initial_pct = 20,
	    .increment_pct = 10,
	    .max_pct = CV_MAX_PCT,
	    .trigger_ratio_pct = 50,
	    .trigger_syncs = 2,
	    .trigger_consecutive = true,
	};
}

static uint32_t
cv_cap(const struct tern_converge_config *c, uint64_t pct)
{
	uint32_t max = c->max_pct < CV_MAX_PCT ? c->max_pct : CV_MAX_PCT;

	return pct > max ? max : (uint32_t)pct;
}

uint32_t
tern_converge_step(const struct tern_converge_config *c, struct tern_converge_state *st,
                   uint64_t dirty_bytes, uint64_t sent_bytes)
{
	uint64_t want = st->pct;

	st->iters++;
	if (c->trigger_ratio_pct == 0) {
		uint32_t every = c->step_every_iters != 0 ? c->step_every_iters : 1;
		if (st->iters >= c->start_after_iters) {
			uint64_t steps = (st->iters - c->start_after_iters) / every;
			want = c->initial_pct + steps * c->increment_pct;
		}
	} else {
		uint32_t syncs = c->trigger_syncs != 0 ? c->trigger_syncs : 1;
		/* 128-bit: a sync may move terabytes. */
		bool high = (unsigned __int128)dirty_bytes * 100 >
		            (unsigned __int128)sent_bytes * c->trigger_ratio_pct;
		if (high && ++st->high_syncs >= syncs) {
			st->high_syncs = 0;
			want = st->pct == 0 ? c->initial_pct : (uint64_t)st->pct + c->increment_pct;
		} else if (!high && c->trigger_consecutive) {
			st->high_syncs = 0;
		}
	}
	want = cv_cap(c, want);
	if (want > st->pct)
		st->pct = (uint32_t)want;
	return st->pct;
}

/*
 * The dirty-rate-driven throttle.
 *
 * R = the guest's unthrottled dirty rate.  The rate was measured under the
 *     throttle p0 then in force, and a throttle p leaves the guest running a
 *     share 1-p of the time, so R = dirty_bps / (1 - p0).
 * B = wire bandwidth, L = downtime limit, D = bytes still to send.
 *
 * An iteration sends D bytes in D/B seconds.  Meanwhile a guest throttled
 * at p dirties at R(1-p), so the next iteration has
 *     D' = R(1-p) D / B = q D,   q = R(1-p) / B
 * bytes (an upper bound: a page written twice is sent once).  Switchover
 * is possible once the residue can be sent within the limit: D_k <= B L.
 * With one iteration left (the brief's case, k = 1):
 *     R(1-p) D / B <= B L   <=>   p >= 1 - B^2 L / (R D).
 * Over a horizon of k iterations, D q^k <= B L:
 *     p >= 1 - (B / R) (B L / D)^(1/k).
 * B L / D < 1 whenever a throttle is needed at all, so this also keeps
 * q < 1 (the residue shrinks at every iteration).  The result is rounded
 * up to a whole percent and clamped to [0, 99]; if 99 is not enough the
 * stall detector says why.
 */
uint32_t
tern_converge_rate_pct(const struct tern_converge_rate_in *in)
{
	double share, r, fit, p;
	uint32_t k = in->iterations != 0 ? in->iterations : 1;

	if (in->bw_bps <= 0.0)
		return CV_MAX_PCT;
	fit = in->bw_bps * (in->downtime_s > 0.0 ? in->downtime_s : 0.0);
	if ((double)in->remaining <= fit || in->dirty_bps <= 0.0)
		return 0;
	share = 1.0 - (double)(in->current_pct < 100 ? in->current_pct : 99) / 100.0;
	r = in->dirty_bps / share;
	p = 1.0 - (in->bw_bps / r) * pow(fit / (double)in->remaining, 1.0 / (double)k);
	/* Round up, forgiving float noise on exact percentages. */
	p = ceil(p * 100.0 - 1e-9);
	if (p <= 0.0)
		return 0;
	return p >= CV_MAX_PCT ? CV_MAX_PCT : (uint32_t)p;
}

uint64_t
tern_converge_downtime_ns(uint64_t remaining, double dirty_bps, double bw_bps, uint64_t lead_ns)
{
	double bytes, ns;

	if (bw_bps <= 0.0)
		return UINT64_MAX;
	bytes = (double)remaining + (dirty_bps > 0.0 ? dirty_bps : 0.0) * (double)lead_ns / 1e9;
	ns = bytes / bw_bps * 1e9;
	return ns >= 1.8e19 ? UINT64_MAX : (uint64_t)ns;
}

/* cv_mbps formats a rate in MB/s (10^6 bytes): whole numbers above 10. */
static void
cv_mbps(double bps, char *buf, size_t len)
{
	double mb = bps / 1e6;

	snprintf(buf, len, mb >= 10.0 ? "%.0f MB/s" : "%.1f MB/s", mb);
}

void
tern_converge_reason(double dirty_bps, double bw_bps, char *why, size_t whylen)
{
	char d[32], b[32];

	if (why == NULL || whylen == 0)
		return;
	cv_mbps(dirty_bps, d, sizeof(d));
	cv_mbps(bw_bps, b, sizeof(b));
	if (dirty_bps > bw_bps)
		snprintf(why, whylen, "dirty rate %s exceeds bandwidth %s", d, b);
	else
		snprintf(why, whylen, "remaining bytes not decreasing: dirty rate %s, bandwidth %s",
		         d, b);
}

bool
tern_converge_stalled(const struct tern_converge_sample *s, size_t n, uint64_t window_ns,
                      double dirty_bps, double bw_bps, char *why, size_t whylen)
{
	uint64_t t_last, t_mid, lo_early = UINT64_MAX, lo_late = UINT64_MAX;
	size_t first = n;

	if (n < 2 || window_ns == 0 || s[n - 1].t_ns < window_ns)
		return false;
	t_last = s[n - 1].t_ns;
	for (size_t i = n; i-- > 0;) {
		if (s[i].t_ns <= t_last - window_ns) {
			first = i;
			break;
		}
	}
	if (first == n)
		return false; /* the samples do not cover the window yet */
	t_mid = t_last - window_ns / 2;
	for (size_t i = first; i < n; i++) {
		uint64_t *lo = s[i].t_ns <= t_mid ? &lo_early : &lo_late;
		if (s[i].remaining < *lo)
			*lo = s[i].remaining;
	}
	if (lo_late < lo_early)
		return false;
	tern_converge_reason(dirty_bps, bw_bps, why, whylen);
	return true;
}

void
tern_converge_ctl_init(struct tern_converge_ctl *c, int mode, uint32_t initial_pct,
                       uint32_t increment_pct, uint32_t max_pct, uint32_t stall_window_ms)
{
	memset(c, 0, sizeof(*c));
	c->mode = mode;
	if (mode == TERN_CONVERGE_QEMU)
		tern_converge_defaults_qemu(&c->conv);
	else
		tern_converge_defaults_seed(&c->conv);
	if (initial_pct)
		c->conv.initial_pct = initial_pct;
	if (increment_pct)
		c->conv.increment_pct = increment_pct;
	if (max_pct)
		c->conv.max_pct = max_pct;
	c->window_ns = (uint64_t)(stall_window_ms ? stall_window_ms : 5000) * 1000000ull;
}

uint32_t
tern_converge_ctl_pct(struct tern_converge_ctl *c, const struct tern_converge_in *in)
{
	switch (c->mode) {
	case TERN_CONVERGE_STEP:
	case TERN_CONVERGE_QEMU:
		return tern_converge_step(&c->conv, &c->st, in->dirty_bytes, in->sent_bytes);
	case TERN_CONVERGE_RATE: {
		struct tern_converge_rate_in r = {
		    .dirty_bps = in->dirty_bps,
		    .current_pct = in->current_pct,
		    .bw_bps = in->bw_bps,
		    .downtime_s = in->downtime_s,
		    .remaining = in->dirty_bytes,
		    .iterations = 1,
		};
		uint32_t pct = tern_converge_rate_pct(&r);
		return pct < in->current_pct ? in->current_pct : pct;
	}
	default:
		return in->current_pct;
	}
}

bool
tern_converge_ctl_stalled(struct tern_converge_ctl *c, const struct tern_converge_in *in, char *why,
                          size_t whylen)
{
	if (c->nsamples == TERN_CONVERGE_SAMPLES) {
		memmove(c->samples, c->samples + 1, sizeof(c->samples) - sizeof(c->samples[0]));
		c->nsamples--;
	}
	c->samples[c->nsamples++] = (struct tern_converge_sample){in->now_ns, in->dirty_bytes};
	return tern_converge_stalled(c->samples, c->nsamples, c->window_ns, in->dirty_bps,
	                             in->bw_bps, why, whylen);
}
