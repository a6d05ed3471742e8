/*
 * Coordinator setup (see coordinator_int.h): what the coordinator starts and
 * stops.  init builds the sets and queues and spawns the children into the
 * table (actors/children.h), each with its exit policy, in an order that
 * matters: dirty tracking starts before the bulk set is read, and the
 * connections come last.  Once the migration is over, co_close asks them to
 * stop and co_collect records the final counters they send; stop joins them,
 * last spawned first, and completes the statistics.  Also here: the messages
 * to the children (dirty-set take and give, throttle requests) and progress.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "actors/coordinator_int.h"
#include "actors/guest_call.h"
#include "tern/error.h"

/* Chunks in flight per connection (credits). */
#define CO_WINDOW 4

/* How long a migration that is over waits for its children's final
 * counters before stop joins (and if need be kills) them. */
#define CO_CLOSE_WAIT_NS 2000000000ull

static int
co_bulk_extent(uint64_t start, uint64_t end, void *arg)
{
	struct co_state *s = arg;
	uint64_t first = start >> TERN_PAGE_SHIFT;
	uint64_t last = (end + TERN_PAGE_SIZE - 1) >> TERN_PAGE_SHIFT;
	if (s->a->opts->zero_pages == TERN_ZERO_OFF) {
		for (uint64_t p = first; p < last; p++)
			s->zmap.words[p >> 6] &= ~(1ull << (p & 63));
	} else {
		tern_bitmap_set_range(&s->bulk, first, last - first);
	}
	return 0;
}

/* The bulk set: every page that may hold data.  Never-populated pages read
 * as zero on a fresh destination; they are skipped without being read (on a
 * memfd, reading a hole would allocate it; on anonymous memory it faults).
 * With --zero-pages off every page goes, and the hole map tells the
 * connections to send holes from a zero buffer instead of the mapping. */
static int
co_build_bulk(struct co_state *s)
{
	int rc = tern_bitmap_init(&s->bulk, s->g->npages);
	if (rc != 0)
		return rc;
	if (s->a->opts->zero_pages == TERN_ZERO_OFF) {
		tern_guest_mark_all(s->g, &s->bulk);
		tern_guest_mark_all(s->g, &s->zmap);
	}
	return tern_guest_extents(s->g, co_bulk_extent, s);
}

static int
co_spawn(struct tern_actor *self, struct co_state *s, const struct tern_actor_desc *desc,
         void *args, enum tern_child_policy on_exit, uint32_t index, struct tern_child **out,
         const char *what)
{
	struct tern_exit why;
	int rc = tern_children_spawn(self, &s->kids, desc, args, on_exit, index, out, &why);
	if (rc != 0)
		return tern_actor_fail(self, rc, "%s%s", what, why.why);
	return 0;
}

/* The sets every chunk reader resolves by id (actors/set_table.h). */
static void
co_fill_sets(struct co_state *s)
{
	struct tern_set_table *t = &s->a->sets;
	*t = (struct tern_set_table){0};
	for (uint32_t i = 0; i < TERN_DIRTY_MAPS; i++)
		t->set[TERN_SET_DIRTY + i] = &s->a->dirty.maps[i];
	t->set[TERN_SET_BULK] = &s->bulk;
	t->set[TERN_SET_RING] = &s->feed.ring.ring;
	t->set[TERN_SET_FINAL] = &s->final;
	t->zmap = s->zmap.words != NULL ? &s->zmap : NULL;
}

static int
co_start_scanners(struct tern_actor *self, struct co_state *s)
{
	int rc = tern_queue_open(tern_actor_rt(self), "scan", &s->feed.scan_queue);
	for (uint32_t i = 0; rc == 0 && i < s->nscanners; i++) {
		struct tern_zero_scan_args *z = &s->a->scanners[i];
		z->guest = s->g;
		z->in = s->feed.scan_queue;
		z->out = s->feed.queue;
		z->sets = &s->a->sets;
		z->zmap = &s->zmap;
		z->coordinator = tern_actor_id(self);
		rc = co_spawn(self, s, &tern_zero_scan_actor, z, TERN_CHILD_FATAL, i, NULL,
		              "cannot start a zero scanner: ");
	}
	return rc;
}

int
co_start_throttle(struct tern_actor *self, struct co_state *s)
{
	struct tern_coordinator_args *a = s->a;
	int rc = tern_throttle_guard_init(&a->guard, s->g);
	if (rc != 0)
		return rc;
	s->guard_ready = 1;
	a->throttle.guest = s->g;
	a->throttle.guard = &a->guard;
	a->throttle.result = NULL; /* nobody reads it: its trace says the share */
	a->throttle.realtime = true;
	return co_spawn(self, s, &tern_throttle_actor, &a->throttle, TERN_CHILD_OPTIONAL, 0,
	                &s->throttle, "cannot start the throttle: ");
}

static int
co_start_conns(struct tern_actor *self, struct co_state *s)
{
	const struct tern_send_opts *o = s->a->opts;
	for (uint32_t i = 0; i < s->nconns; i++) {
		struct tern_conn_send_args *c = &s->a->conns[i];
		c->guest = s->g;
		c->queue = s->feed.queue;
		c->sets = &s->a->sets;
		c->to = o->to != NULL ? o->to : "the given socket";
		c->given_fd = o->nfds ? o->fds[i] : -1;
		s->fds_handed = i + 1;
		c->migration = s->a->migration;
		c->key = s->a->key;
		c->tls = s->a->tls;
		c->tls_host = s->a->tls_host;
		c->conn = i;
		c->nconns = s->nconns;
		c->coordinator = tern_actor_id(self);
		c->window = CO_WINDOW;
		c->urgent_lane = &s->a->urgent_lane;
		c->limit = &s->a->limit; /* a cap may come later (PARAMS) */
		c->deadline_ms = o->io_timeout_ms ? (int)o->io_timeout_ms : 10000;
		c->send_direct = o->send_direct;
		/* Connection 0 carries the control frames: losing it ends the
		 * migration; the others are interchangeable. */
		struct tern_child *k;
		int rc = co_spawn(self, s, &tern_conn_send_actor, c,
		                  i == 0 ? TERN_CHILD_FATAL : TERN_CHILD_DATA, i, &k, "");
		if (rc != 0)
			return rc;
		if (i == 0)
			s->ctl.conn0 = tern_children_id(k);
	}
	s->ctl.alive = true;
	return 0;
}

int
co_init(struct tern_actor *self, void *state, void *arg)
{
	struct co_state *s = state;
	struct tern_coordinator_args *a = arg;
	const struct tern_send_opts *o = a->opts;
	s->a = a;
	a->fds_owned = 1; /* co_stop closes the given sockets not handed on */
	s->g = a->guest;
	s->start_ns = tern_now_ns();
	s->last_progress_ns = s->start_ns;
	s->nconns = o->nfds ? o->nfds : o->connections ? o->connections : 1;
	a->result = TERN_ECANCELED;
	a->stats->connections = s->nconns;
	co_set_phase(self, s, CO_SETUP);
	s->state_cap = TERN_STATE_PART;
	s->state_buf = malloc(s->state_cap);
	if (s->state_buf == NULL)
		return TERN_ENOMEM;
	int rc;
	if (o->ring_only && (o->dirty_log == NULL || strcmp(o->dirty_log, "ring") != 0))
		return tern_actor_fail(self, TERN_EINVAL, "--ring-only needs --dirty-log ring");
	if ((rc = tern_bitmap_init(&s->final, s->g->npages)) != 0)
		return rc;
	if (o->zero_pages == TERN_ZERO_DETECT || o->zero_pages == TERN_ZERO_OFF) {
		if ((rc = tern_bitmap_init(&s->zmap, s->g->npages)) != 0)
			return rc;
	}
	if (o->ring_only &&
	    (rc = tern_ring_pass_init(&s->feed.ring, s->g->npages, o->ring_step)) != 0)
		return rc;
	co_fill_sets(s);
	/* Enough outstanding to keep every connection's window and every
	 * scanner busy, no more: nothing queued far ahead of the wire. */
	if (o->zero_pages == TERN_ZERO_DETECT) {
		s->nscanners = o->zero_scanners ? o->zero_scanners : 1;
		if (s->nscanners > TERN_MAX_SCANNERS)
			s->nscanners = TERN_MAX_SCANNERS;
	}
	uint64_t chunk = o->chunk_size ? o->chunk_size : (1u << 20);
	uint64_t chunk_pages = chunk / TERN_PAGE_SIZE ? chunk / TERN_PAGE_SIZE : 1;
	if ((rc = tern_feeder_init(&s->feed, s->nconns * CO_WINDOW + 2 + 2 * s->nscanners,
	                           chunk_pages)) != 0)
		return rc;
	s->feed.from = tern_actor_id(self);
	s->feed.stats = a->stats;
	s->feed.zholes = o->zero_pages == TERN_ZERO_OFF;
	if ((rc = tern_queue_open(tern_actor_rt(self), "chunks", &s->feed.queue)) != 0)
		return rc;
	if (o->zero_pages == TERN_ZERO_DETECT && (rc = co_start_scanners(self, s)) != 0)
		return rc;
	a->dirty.guest = s->g;
	a->dirty.period_ms = o->dirty_period_ms;
	a->dirty.mode = o->dirty_log;
	a->dirty.ring_size = o->ring_size;
	if ((rc = co_spawn(self, s, &tern_dirty_log_actor, &a->dirty, TERN_CHILD_FATAL, 0,
	                   &s->dirty_log, "")) != 0)
		return rc;
	atomic_init(&a->limit.bytes_per_s, o->max_bandwidth);
	atomic_init(&a->limit.next_ns, 0);
	tern_converge_ctl_init(&s->conv, o->auto_converge, o->throttle_initial,
	                       o->throttle_increment, o->throttle_max, o->stall_window_ms);
	if (o->auto_converge != TERN_CONVERGE_OFF && (rc = co_start_throttle(self, s)) != 0)
		return rc;
	/* Only now, with every later write tracked, may the bulk set be read
	 * off the memfd: a hole written before tracking started and after the
	 * scan would be in neither set — a lost page. */
	if ((rc = co_build_bulk(s)) != 0)
		return tern_actor_fail(self, rc, "cannot map guest memory: %s", tern_strerror(rc));
	s->ctl.timeout_ns = (uint64_t)(o->io_timeout_ms ? o->io_timeout_ms : 10000) * 1000000ull;
	s->ctl.digest_ns = s->g->npages * TERN_PAGE_SIZE; /* 1 ns per byte: >= 1 GB/s hashing */
	if ((rc = co_start_conns(self, s)) != 0)
		return rc;
	s->alive = s->nconns;

	struct tern_msg f;
	uint8_t layout[TERN_GUEST_MAX_REGIONS * 16];
	tern_msg_init(&f, TERN_MSG_W_CONFIG);
	for (uint32_t i = 0; i < s->g->nregions; i++)
		tern_ranges_put(layout, i, s->g->regions[i].gpa, s->g->regions[i].size);
	f.u.w_config.layout = (struct tern_ranges){layout, s->g->nregions};
	f.u.w_config.mem_size = tern_guest_mem_bytes(s->g);
	f.u.w_config.page_size = TERN_PAGE_SIZE;
	f.u.w_config.vcpus = s->g->cfg.vcpus;
	f.u.w_config.verify = o->verify != 0;
	rc = tern_guest_spec_format(&s->g->cfg, f.u.w_config.guest, sizeof(f.u.w_config.guest));
	if (rc != 0)
		return rc;
	if ((rc = tern_ctl_send(self, &s->ctl, &f, NULL, 0)) != 0)
		return rc;
	tern_actor_set_tick(self, 20000000ull);
	return 0;
}
/* A child exited: what that means is its policy (children.h), chosen at
 * spawn: the throttle is optional, a data connection one of several, any
 * other child (or a stranger) fatal. */
void
co_child_exit(struct tern_actor *self, struct co_state *s, struct tern_child *k,
              const struct tern_msg_sys_exit *e)
{
	const struct tern_send_opts *o = s->a->opts;
	int rc;
	if (k != NULL && k->desc == &tern_conn_send_actor) {
		/* Postcopy, link lost: every connection was cut on purpose. */
		if (s->phase == CO_PC_PAUSED)
			return;
		if (k->index == 0 && co_pc_recoverable(s)) {
			char why[TERN_STR_MAX];
			/* The connection's own reason names it. */
			snprintf(why, sizeof(why), "%s",
			         e->why[0] ? e->why : "connection 0 closed");
			co_pc_lost(self, s, why);
			return;
		}
	}
	switch (k != NULL ? k->on_exit : TERN_CHILD_FATAL) {
	case TERN_CHILD_OPTIONAL:
		/* The throttle died: its guard has the vCPUs running; carry on
		 * without throttling. */
		rc = tern_throttle_guard_release(&s->a->guard);
		if (tern_actor_join(k->actor, 2000, NULL) == 0)
			k->actor = NULL;
		s->throttle = NULL;
		tern_actor_state(self, "throttle lost");
		if (rc != 0) {
			/* Its pause outlived it: never iterate on with a paused guest. */
			s->paused = 1;
			if ((rc = co_resume(self, s)) != 0)
				co_abort(self, s, rc,
				         "the throttle died with the guest paused, and resuming it "
				         "failed %d times: %s",
				         TERN_RESUME_TRIES, tern_strerror(rc));
		}
		return;
	case TERN_CHILD_DATA: {
		s->alive--;
		/* After the end of memory the destination retires its data
		 * connections (they end normally): nothing was lost. */
		if (e->reason == TERN_EXIT_NORMAL && s->phase >= CO_STATE)
			return;
		/* A data connection died: the others take its work. */
		s->a->stats->connections_lost++;
		s->a->stats->conn[k->index].lost = 1;
		uint32_t need = o->connections_min ? o->connections_min : s->nconns;
		/* Postcopy's stream runs on data connections only. */
		if (atomic_load(&s->a->urgent_lane) && need < 2)
			need = 2;
		if (s->alive < need && co_pc_recoverable(s)) {
			char why[TERN_STR_MAX];
			snprintf(why, sizeof(why), "%u of %u connections left: %.200s", s->alive,
			         s->nconns, e->why[0] ? e->why : "a connection exited");
			co_pc_lost(self, s, why);
			return;
		}
		if (s->alive < need) {
			co_abort(self, s, e->code ? e->code : TERN_EACTOR,
			         "%u of %u connections left (need %u): %s", s->alive, s->nconns,
			         need, e->why[0] ? e->why : "a connection exited");
			return;
		}
		tern_actor_counter(self, "connections_alive", (double)s->alive);
		co_feed(self, s);
		return;
	}
	case TERN_CHILD_FATAL:
		co_abort(self, s, e->code ? e->code : TERN_EACTOR, "%s: %s", e->name,
		         e->why[0] ? e->why : "exited");
	}
}

void
co_progress(struct tern_actor *self, struct co_state *s)
{
	struct tern_stats *st = s->a->stats;
	uint64_t now = tern_now_ns();
	s->last_progress_ns = now;
	struct tern_msg m;
	tern_msg_init(&m, TERN_MSG_PROGRESS);
	struct tern_msg_progress *p = &m.u.progress;
	p->iter = s->iter;
	if (s->phase == CO_PC_PAUSED)
		snprintf(p->state, sizeof(p->state), "postcopy-paused: %.100s%s%.100s", s->pc_why,
		         s->pc_retry[0] ? "; reconnecting, " : "", s->pc_retry);
	else if (st->stalled && s->phase == CO_ITERATE)
		snprintf(p->state, sizeof(p->state), "stalled: %s", st->stall_reason);
	else if (s->throttle_pct && s->phase == CO_ITERATE)
		snprintf(p->state, sizeof(p->state), "iterate, throttle %u%%", s->throttle_pct);
	else
		snprintf(p->state, sizeof(p->state), "%s", co_phase_names[s->phase]);
	if (s->live_ns == 0 || now - s->live_ns >= 200000000ull) {
		if (s->live_ns != 0) {
			double inst = (double)(st->payload_bytes - s->live_bytes) * 1e9 /
			              (double)(now - s->live_ns);
			s->live_bps = s->live_bps > 0 ? 0.5 * s->live_bps + 0.5 * inst : inst;
		}
		s->live_ns = now;
		s->live_bytes = st->payload_bytes;
	}
	/* While pages flow, what flows now; between iterations and after,
	 * the last iteration's figure. */
	uint64_t bw = s->phase >= CO_BULK && s->phase <= CO_FINAL && s->live_bps >= 1.0
	                  ? (uint64_t)s->live_bps
	                  : s->bw_bps;
	p->transferred = st->payload_bytes;
	p->remaining = s->remaining;
	p->dirty_pps = s->dirty_pps;
	p->bw_bps = bw;
	p->eta_ms = bw ? s->remaining * 1000 / bw : 0;
	p->elapsed_ms = (now - s->start_ns) / 1000000;
	(void)tern_actor_send(self, s->a->driver, &m);
	tern_actor_counter(self, "remaining_bytes", (double)s->remaining);
	tern_actor_counter(self, "bandwidth_bps", (double)s->bw_bps);
}

/* Takes the DirtyLogActor's accumulated set: *id names the lent set
 * (actors/set_table.h), which stays unchanged until co_give. */
int
co_take(struct tern_actor *self, struct co_state *s, int final, uint32_t *id, uint64_t *pages)
{
	struct tern_msg m, r;
	tern_msg_init(&m, TERN_MSG_DIRTY_TAKE);
	m.u.dirty_take.final = final;
	int rc = tern_actor_request(self, tern_children_id(s->dirty_log), &m, &r, 5000);
	if (rc != 0)
		return rc;
	if (r.type != TERN_MSG_DIRTY_SET || r.u.dirty_set.set < TERN_SET_DIRTY ||
	    r.u.dirty_set.set >= TERN_SET_DIRTY + TERN_DIRTY_MAPS)
		return TERN_EPROTO;
	*id = r.u.dirty_set.set;
	*pages = r.u.dirty_set.pages;
	s->dirty_pps = r.u.dirty_set.rate_pps;
	return 0;
}

int
co_give(struct tern_actor *self, struct co_state *s, uint32_t id)
{
	struct tern_msg m;
	tern_msg_init(&m, TERN_MSG_DIRTY_GIVE);
	m.u.dirty_give.set = id;
	return tern_actor_send(self, tern_children_id(s->dirty_log), &m);
}

/* Collects the ring pages reported since the last time (ring-only walk). */
int
co_ring_refill(struct tern_actor *self, struct co_state *s)
{
	if (!tern_feeder_ring_idle(&s->feed))
		return 0;
	uint32_t id;
	uint64_t pages;
	int rc = co_take(self, s, 0, &id, &pages);
	if (rc != 0)
		return rc;
	tern_ring_pass_merge(&s->feed.ring, co_set(s, id));
	return co_give(self, s, id);
}

bool
co_collect(struct co_state *s, const struct tern_msg *m)
{
	struct tern_stats *st = s->a->stats;
	switch (m->type) {
	case TERN_MSG_CHUNK_DONE:
		/* Every ack its connection saw, a duplicate too, as the
		 * connection's own count. */
		if (m->u.chunk_done.conn < s->nconns) {
			st->conn[m->u.chunk_done.conn].payload += m->u.chunk_done.bytes;
			st->conn[m->u.chunk_done.conn].chunks++;
		}
		return false;
	case TERN_MSG_CONN_STATS: {
		const struct tern_msg_conn_stats *c = &m->u.conn_stats;
		if (c->conn < s->nconns) {
			struct tern_conn_stats *cs = &st->conn[c->conn];
			cs->bytes = c->wire_bytes;
			cs->active_ms = c->first_send_ns && c->last_ack_ns > c->first_send_ns
			                    ? (c->last_ack_ns - c->first_send_ns) / 1000000
			                    : 0;
			st->bytes_sent += c->wire_bytes;
		}
		return true;
	}
	case TERN_MSG_SCAN_STATS:
		st->pages_scanned += m->u.scan_stats.pages;
		st->zero_scan_ms += m->u.scan_stats.scan_ns / 1000000;
		return true;
	default:
		return false;
	}
}

int
co_close(struct tern_actor *self, struct co_state *s)
{
	uint64_t now = tern_now_ns();
	if (!s->closing) {
		s->closing = true;
		s->close_deadline_ns = now + CO_CLOSE_WAIT_NS;
		/* Closed queues end the scanners' and connections' waits at once. */
		if (s->feed.scan_queue != NULL)
			tern_queue_close(s->feed.scan_queue);
		if (s->feed.queue != NULL)
			tern_queue_close(s->feed.queue);
		tern_children_stop(&s->kids);
	}
	if (tern_children_running(&s->kids) == 0 || now >= s->close_deadline_ns)
		return TERN_ACTOR_DONE;
	return 0;
}

static void
co_final_stats(struct co_state *s)
{
	struct tern_stats *st = s->a->stats;
	st->ring_pass_pages = s->feed.ring.pages;
	st->downtime_limit_ms = (uint32_t)co_limit_ms(s);
	/* Every outcome reports how long it ran, not only a completed one. */
	if (st->total_ms == 0 && s->start_ns != 0)
		st->total_ms = (tern_now_ns() - s->start_ns) / 1000000;
	st->dirty_rate_pps = s->dirty_pps;
	st->bandwidth_bps = s->bw_bps;
	st->transfer_ms = s->cum_ns / 1000000;
}

void
co_stop(struct tern_actor *self, void *state)
{
	struct co_state *s = state;
	struct tern_coordinator_args *a = s->a;
	if (a == NULL)
		return;
	/* Ended (killed, failed) while waiting for the handoff's answer: the
	 * destination may run the guest, so the source one must stay paused. */
	if (s->phase == CO_HANDOFF)
		a->stats->handoff_unknown = 1;
	/* Killed or failed before the handoff: the source guest runs again. */
	if (s->phase != CO_COMPLETED)
		co_resume_source(self, s);
	free(s->pc_buf);
	s->pc_buf = NULL;
	/* Given sockets no connection actor took: still ours to close. */
	for (uint32_t i = s->fds_handed; i < a->opts->nfds; i++)
		close(a->opts->fds[i]);
	s->fds_handed = a->opts->nfds;
	if (s->feed.scan_queue != NULL)
		tern_queue_close(s->feed.scan_queue);
	if (s->feed.queue != NULL)
		tern_queue_close(s->feed.queue);
	/* After co_close waited already, whoever is left is killed soon. */
	tern_children_stop_all(&s->kids, s->closing ? 200 : 2000);
	if (s->guard_ready) {
		/* Whatever happened to the throttle, the vCPUs it paused run. */
		if (s->held)
			tern_throttle_guard_unhold(&a->guard);
		if (tern_throttle_guard_release(&a->guard) != 0 && s->phase != CO_COMPLETED) {
			s->paused = 1; /* the throttle's pause outlived it */
			co_resume_source(self, s);
		}
		tern_throttle_guard_fini(&a->guard);
		s->guard_ready = 0;
	}
	co_final_stats(s);
	tern_feeder_fini(&s->feed);
	tern_bitmap_fini(&s->bulk);
	tern_bitmap_fini(&s->final);
	tern_bitmap_fini(&s->zmap);
	free(s->state_buf);
	s->state_buf = NULL;
}
