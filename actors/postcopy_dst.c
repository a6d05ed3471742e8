/*
 * The destination's postcopy state and its PostcopyFaultActor (see
 * postcopy.h).
 */
#include <endian.h>
#include <poll.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "actors/postcopy.h"
#include "messages/msg.h"
#include "tern/error.h"

/* Pages asked for per fault: the faulting page and the stale pages right
 * after it (a guest touching a page tends to touch the next). */
#define PF_WINDOW 16u
/* Faults read per wake-up, so that a storm of faults cannot hold the actor
 * from its mailbox (a stop) for long. */
#define PF_BATCH 256

int
tern_pc_dst_init(struct tern_pc_dst *pc, struct tern_guest *g)
{
	memset(pc, 0, offsetof(struct tern_pc_dst, samples_us));
	pc->g = g;
	if (tern_bitmap_init(&pc->stale, g->npages) != 0 ||
	    tern_bitmap_init(&pc->arrived, g->npages) != 0 ||
	    tern_bitmap_init(&pc->requested, g->npages) != 0)
		return TERN_ENOMEM;
	return 0;
}

int
tern_pc_dst_stale(struct tern_pc_dst *pc, uint64_t first, uint64_t count, const void *words,
                  uint64_t len, char *why, size_t whylen)
{
	if (first % 64 != 0 || count == 0 || first > pc->g->npages ||
	    count > pc->g->npages - first || len != (count + 63) / 64 * sizeof(uint64_t)) {
		snprintf(why, whylen,
		         "stale set slice of %llu pages at %llu (%llu bytes) outside %llu pages",
		         (unsigned long long)count, (unsigned long long)first,
		         (unsigned long long)len, (unsigned long long)pc->g->npages);
		return TERN_EPROTO;
	}
	const uint8_t *p = words;
	for (uint64_t i = 0; i < len / 8; i++) {
		uint64_t w, at = first + i * 64;
		memcpy(&w, p + i * 8, sizeof(w));
		w = le64toh(w);
		if (i == len / 8 - 1 && count % 64 != 0)
			w &= (1ull << (count % 64)) - 1;
		w &= ~pc->stale.words[at / 64]; /* new stale pages only */
		pc->stale.words[at / 64] |= w;
		/* Each run of new stale pages goes now: missing, not stale. */
		while (w != 0) {
			uint64_t b = (uint64_t)__builtin_ctzll(w), e = b;
			while (e < 64 && ((w >> e) & 1))
				e++;
			w &= e == 64 ? 0 : ~0ull << e;
			uint64_t off = (at + b) * TERN_PAGE_SIZE, n = (e - b) * TERN_PAGE_SIZE;
			int rc = tern_guest_range_ok(pc->g, off, n)
			             ? tern_guest_discard(pc->g, off, n)
			             : TERN_ERANGE;
			if (rc != 0) {
				snprintf(why, whylen, "cannot discard stale pages %llu+%llu: %s",
				         (unsigned long long)(at + b), (unsigned long long)(e - b),
				         tern_strerror(rc));
				return rc == TERN_ERANGE ? TERN_EPROTO : rc;
			}
			pc->stale_pages += e - b;
		}
	}
	return 0;
}

int
tern_pc_dst_start(struct tern_pc_dst *pc, char *why, size_t whylen)
{
	int rc = tern_uffd_missing_open(&pc->uffd, pc->g, why, whylen);
	if (rc == 0 && pc->verify)
		tern_uffd_missing_hash(pc->uffd);
	return rc;
}

static void
pc_mark(struct tern_bitmap *b, uint64_t first, uint64_t n)
{
	for (uint64_t p = first; p < first + n; p++)
		__atomic_fetch_or(&b->words[p >> 6], 1ull << (p & 63), __ATOMIC_RELAXED);
}

static bool
pc_test(const struct tern_bitmap *b, uint64_t p)
{
	return (__atomic_load_n(&b->words[p >> 6], __ATOMIC_RELAXED) >> (p & 63)) & 1;
}

int
tern_pc_dst_place(struct tern_pc_dst *pc, uint64_t off, const void *src, uint64_t len,
                  uint64_t *placed)
{
	int rc = src != NULL ? tern_uffd_missing_place(pc->uffd, off, src, len, placed)
	                     : tern_uffd_missing_place_zero(pc->uffd, off, len, placed);
	if (rc == 0) /* placed now or before: in place either way */
		pc_mark(&pc->arrived, off / TERN_PAGE_SIZE, len / TERN_PAGE_SIZE);
	return rc;
}

int
tern_pc_dst_zero_fill(struct tern_pc_dst *pc, uint64_t off, uint64_t *placed)
{
	return tern_uffd_missing_fill_zero(pc->uffd, off, TERN_PAGE_SIZE, placed);
}

void
tern_pc_dst_latency(struct tern_pc_dst *pc, uint64_t t_ns)
{
	uint64_t now = tern_now_ns();
	if (t_ns == 0 || t_ns > now)
		return;
	uint32_t i = atomic_fetch_add(&pc->nsamples, 1);
	if (i < TERN_PC_SAMPLES)
		pc->samples_us[i] =
		    (uint32_t)((now - t_ns) / 1000 > UINT32_MAX ? UINT32_MAX : (now - t_ns) / 1000);
}

uint64_t
tern_pc_dst_missing(const struct tern_pc_dst *pc)
{
	uint64_t n = 0;
	for (uint64_t i = 0; i < pc->stale.nwords; i++)
		n += (uint64_t)__builtin_popcountll(
		    pc->stale.words[i] & ~__atomic_load_n(&pc->arrived.words[i], __ATOMIC_RELAXED));
	return n;
}

static int
pc_cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

void
tern_pc_dst_stats(struct tern_pc_dst *pc, struct tern_stats *st)
{
	st->postcopy = 1;
	st->postcopy_pages = pc->stale_pages;
	st->postcopy_faults = atomic_load(&pc->faults);
	st->postcopy_zero_pages = atomic_load(&pc->zero_pages);
	st->postcopy_requests = atomic_load(&pc->requests);
	st->postcopy_urgent_pages = atomic_load(&pc->urgent_pages);
	uint32_t n = atomic_load(&pc->nsamples);
	if (n > TERN_PC_SAMPLES)
		n = TERN_PC_SAMPLES;
	if (n == 0)
		return;
	qsort(pc->samples_us, n, sizeof(pc->samples_us[0]), pc_cmp_u32);
	st->postcopy_fault_p50_us = pc->samples_us[n / 2];
	st->postcopy_fault_p99_us = pc->samples_us[(uint64_t)n * 99 / 100];
	st->postcopy_fault_max_us = pc->samples_us[n - 1];
}

void
tern_pc_dst_fini(struct tern_pc_dst *pc)
{
	tern_uffd_missing_close(pc->uffd);
	pc->uffd = NULL;
	tern_bitmap_fini(&pc->stale);
	tern_bitmap_fini(&pc->arrived);
	tern_bitmap_fini(&pc->requested);
}

/* ---- PostcopyFaultActor ---- */

struct pf_state {
	struct tern_pc_faults_args *a;
};

static int
pf_init(struct tern_actor *self, void *state, void *arg)
{
	struct pf_state *s = state;
	s->a = arg;
	return tern_actor_watch_fd(self, tern_uffd_missing_fd(s->a->pc->uffd), POLLIN);
}

/* Sends a request for pages [p, p+n) through connection 0.  With the link
 * lost (no connection 0, or it just went) the request waits: the pages
 * stay marked requested, and the relink asks them again. */
static int
pf_ask(struct tern_actor *self, struct pf_state *s, uint64_t p, uint64_t n)
{
	struct tern_pc_dst *pc = s->a->pc;
	uint32_t conn0 = atomic_load(&s->a->conn0);
	if (conn0 == 0)
		return 0;
	uint8_t pair[16], buf[256];
	size_t len;
	tern_ranges_put(pair, 0, p * TERN_PAGE_SIZE, n * TERN_PAGE_SIZE);
	struct tern_msg f, out;
	tern_msg_init(&f, TERN_MSG_W_PAGE_REQ);
	f.u.w_page_req.ranges = (struct tern_ranges){pair, 1};
	f.u.w_page_req.t = tern_now_ns();
	f.time_ns = f.u.w_page_req.t;
	int rc = tern_msg_encode(&f, buf, sizeof(buf), &len);
	if (rc != 0)
		return rc;
	tern_msg_init(&out, TERN_MSG_CTL_OUT);
	out.u.ctl_out.frame = (struct tern_bin){buf, len};
	atomic_fetch_add(&pc->requests, 1);
	if (tern_actor_send(self, conn0, &out) != 0)
		atomic_store(&s->a->conn0, 0); /* gone: the receiver relinks */
	return 0;
}

/* Asks for page p and the stale pages after it not yet asked for. */
static int
pf_request(struct tern_actor *self, struct pf_state *s, uint64_t p)
{
	struct tern_pc_dst *pc = s->a->pc;
	uint64_t n = 1;
	while (n < PF_WINDOW && p + n < pc->g->npages && pc_test(&pc->stale, p + n) &&
	       !pc_test(&pc->arrived, p + n) && !pc_test(&pc->requested, p + n) &&
	       tern_guest_range_ok(pc->g, p * TERN_PAGE_SIZE, (n + 1) * TERN_PAGE_SIZE))
		n++;
	pc_mark(&pc->requested, p, n);
	return pf_ask(self, s, p, n);
}

/* PC_RELINK: the new connection 0; every page asked for that has not
 * arrived is asked again (a vCPU may wait on it), in runs of at most
 * PF_WINDOW pages. */
static int
pf_relink(struct tern_actor *self, struct pf_state *s, uint32_t conn0)
{
	struct tern_pc_dst *pc = s->a->pc;
	atomic_store(&s->a->conn0, conn0);
	for (uint64_t w = 0; w < pc->requested.nwords; w++) {
		uint64_t bits = __atomic_load_n(&pc->requested.words[w], __ATOMIC_RELAXED) &
		                ~__atomic_load_n(&pc->arrived.words[w], __ATOMIC_RELAXED);
		while (bits != 0) {
			uint64_t b = (uint64_t)__builtin_ctzll(bits), e = b;
			while (e < 64 && e - b < PF_WINDOW && ((bits >> e) & 1))
				e++;
			bits &= e == 64 ? 0 : ~0ull << e;
			uint64_t p = w * 64 + b;
			if (!tern_guest_range_ok(pc->g, p * TERN_PAGE_SIZE,
			                         (e - b) * TERN_PAGE_SIZE))
				continue; /* never asked that way: a run across regions */
			int rc = pf_ask(self, s, p, e - b);
			if (rc != 0)
				return tern_actor_fail(self, rc, "asking again: %s",
				                       tern_strerror(rc));
		}
	}
	return 0;
}

static int
pf_on_fd(struct tern_actor *self, void *state, int fd, short revents)
{
	struct pf_state *s = state;
	struct tern_pc_dst *pc = s->a->pc;
	for (int i = 0; i < PF_BATCH; i++) {
		uint64_t off;
		int rc = tern_uffd_missing_next_fault(pc->uffd, &off);
		if (rc == TERN_ETIMEDOUT)
			return 0;
		if (rc != 0)
			return tern_actor_fail(self, rc, "reading guest faults: %s",
			                       tern_strerror(rc));
		atomic_fetch_add(&pc->faults, 1);
		tern_actor_event(self, "fault", NULL);
		if (tern_actor_killed(self))
			return TERN_EKILLED;
		uint64_t p = off / TERN_PAGE_SIZE, placed = 0;
		if (!pc_test(&pc->stale, p)) {
			/* Never written or announced zero: zero, no question. */
			rc = tern_pc_dst_zero_fill(pc, off, &placed);
			if (rc != 0)
				return tern_actor_fail(self, rc, "placing a zero page: %s",
				                       tern_strerror(rc));
			atomic_fetch_add(&pc->zero_pages, placed);
			continue;
		}
		if (pc_test(&pc->arrived, p) || pc_test(&pc->requested, p))
			continue; /* on its way: its placement wakes every waiter */
		if ((rc = pf_request(self, s, p)) != 0)
			return tern_actor_fail(self, rc, "asking for page %llu: %s",
			                       (unsigned long long)p, tern_strerror(rc));
	}
	return 0;
}

static int
pf_handle(struct tern_actor *self, void *state, const struct tern_msg *m)
{
	if (m->type == TERN_MSG_PC_RELINK)
		return pf_relink(self, state, m->u.pc_relink.conn0);
	return tern_actor_fail(self, TERN_EPROTO, "unexpected message %s", tern_msg_name(m->type));
}

const struct tern_actor_desc tern_pc_faults_actor = {
    .name = "pc-faults",
    .state_size = sizeof(struct pf_state),
    .init = pf_init,
    .handle = pf_handle,
    .on_fd = pf_on_fd,
};
