/*
 * The coordinator's state, shared by its two files: coordinator.c (the phase
 * machine) and coordinator_setup.c (what it starts and stops: sets, queues,
 * children and their exits, the throttle, progress and statistics).  Not for
 * other modules: the coordinator's interface is coordinator.h.
 */
#ifndef TERN_ACTORS_COORDINATOR_INT_H
#define TERN_ACTORS_COORDINATOR_INT_H

#include "actors/children.h"
#include "actors/control.h"
#include "actors/converge.h"
#include "actors/coordinator.h"
#include "actors/feeder.h"

enum co_phase {
	CO_SETUP,      /* waiting for W_CONFIG's result */
	CO_BULK,       /* iteration 0: every populated page */
	CO_ITERATE,    /* dirty sets */
	CO_FINAL,      /* guest paused, sending the last dirty set */
	CO_STATE,      /* waiting for W_STATE's result */
	CO_DIGEST,     /* waiting for W_DIGEST's result */
	CO_POSTCOPY,   /* switched: W_POSTCOPY (the stale set) sent, awaiting its result */
	CO_PC_STREAM,  /* postcopy: the destination runs; the stale set streams */
	CO_PC_PAUSED,  /* postcopy: the link is lost; dialing again (postcopy_recover.c) */
	CO_PC_RECOVER, /* postcopy: connected again, W_RESUME awaits its answer */
	CO_HANDOFF,    /* W_COMPLETE sent: the destination resumes */
	CO_COMPLETED,
	CO_ABORTING, /* W_ABORT sent, source running: waiting for the answer */
	CO_ABORTED,
};

struct co_state {
	struct tern_coordinator_args *a;
	struct tern_guest *g;
	struct tern_children kids;
	struct tern_child *dirty_log, *throttle; /* in kids; throttle NULL once lost */
	struct tern_feeder feed;
	struct tern_ctl ctl;
	struct tern_bitmap bulk;  /* TERN_SET_BULK */
	struct tern_bitmap final; /* TERN_SET_FINAL */
	struct tern_bitmap zmap;  /* zero pages (detect) or holes (off) */
	uint32_t nconns, alive, nscanners;
	enum co_phase phase;
	int paused;
	int resume_failed;   /* every try failed: the session has the last word */
	int await_dirty;     /* the last set was empty: take again at the next tick */
	uint32_t limit_ms;   /* downtime limit set while running (0: the option's) */
	uint32_t fds_handed; /* given sockets passed to connection actors */
	bool closing;        /* over: children asked to stop, their counters collected */
	uint64_t close_deadline_ns;
	uint32_t lent; /* id of the dirty set being sent (0: ours) */

	/* iteration accounting */
	uint32_t iter;
	uint64_t iter_start_ns, iter_bytes;
	uint64_t bw_bps, cum_bytes, cum_ns;
	/* Live bandwidth from acknowledged bytes, for progress only (the
	 * switchover estimate uses whole iterations): smoothed over samples
	 * at least 200 ms apart. */
	uint64_t live_bytes, live_ns;
	double live_bps;
	uint64_t dirty_pps, remaining;
	uint64_t start_ns, pause_ns, verify_ns, last_progress_ns;
	uint8_t *state_buf; /* state_cap bytes (state.c) */
	size_t state_cap;
	uint64_t abort_deadline_ns;

	/* Chunks of dead connections held until the destination fenced them
	 * (actors/fence.c). */
	struct co_fence {
		uint64_t ids[TERN_CONN_WINDOW_MAX];
		uint32_t n;
		bool pending;
	} fence[TERN_MAX_CONNECTIONS];

	/* Postcopy (postcopy_src.c): switched, when, and the buffer requested
	 * pages are gathered into. */
	bool pc;            /* paused for good: the switch is made */
	bool pc_requested;  /* tern_migration_start_postcopy (migrate-start-postcopy) */
	uint32_t pc_rounds; /* rounds of the stale set sent */
	uint64_t pc_fresh;  /* new stale pages in the last round */
	uint64_t pc_start_ns;
	uint8_t *pc_buf;
	/* Recovery (postcopy_recover.c): when the link was lost (0: it is up),
	 * in which phase, the next dial, the tries so far and the reasons. */
	uint64_t pc_lost_ns, pc_retry_ns;
	enum co_phase pc_lost_phase;
	uint32_t pc_tries;
	char pc_why[TERN_STR_MAX];   /* why the link was lost */
	char pc_retry[TERN_STR_MAX]; /* why the last dial failed ("": none yet) */

	/* Convergence: the throttle and its policy. */
	int guard_ready, held;
	uint32_t throttle_pct;
	struct tern_converge_ctl conv;
};

extern const char *const co_phase_names[];

/* co_set returns the set named id (actors/set_table.h). */
static inline const struct tern_bitmap *
co_set(const struct co_state *s, uint32_t id)
{
	return tern_set_get(&s->a->sets, id);
}

/* coordinator.c */
void co_set_phase(struct tern_actor *self, struct co_state *s, enum co_phase p);
int co_resume(struct tern_actor *self, struct co_state *s);
void co_resume_source(struct tern_actor *self, struct co_state *s);
void co_abort(struct tern_actor *self, struct co_state *s, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void co_feed(struct tern_actor *self, struct co_state *s);
uint64_t co_limit_ms(const struct co_state *s);
/* co_start_iteration sends set id (lent: given back when the iteration is
 * done); co_send_ctl sends a control frame, aborting with what on failure. */
void co_start_iteration(struct tern_actor *self, struct co_state *s, uint32_t id, bool lent);
void co_send_ctl(struct tern_actor *self, struct co_state *s, struct tern_msg *f,
                 const void *payload, size_t plen, const char *what);

/* coordinator_ctl.c: a control frame from the destination (CTL_IN). */
void co_ctl_in(struct tern_actor *self, struct co_state *s, const struct tern_msg *m);

/* state.c: saves the device state and sends it (W_STATE_PART..., W_STATE). */
void co_send_state(struct tern_actor *self, struct co_state *s);

/* postcopy_src.c: whether to switch to postcopy now (why: the reason),
 * the switch (set id is the dirty set just taken), the destination's page
 * requests, and the end of the stream. */
bool co_pc_due(const struct co_state *s, char *why, size_t whylen);
void co_pc_switch(struct tern_actor *self, struct co_state *s, uint32_t id, const char *why);
void co_pc_next(struct tern_actor *self, struct co_state *s);
void co_pc_request(struct tern_actor *self, struct co_state *s,
                   const struct tern_msg_w_page_req *r);
void co_pc_streamed(struct tern_actor *self, struct co_state *s);

/* postcopy_recover.c: whether a lost link now pauses instead of failing,
 * the loss (every connection cut), the tick that dials again, and the
 * destination's answer to W_RESUME. */
bool co_pc_recoverable(const struct co_state *s);
void co_pc_lost(struct tern_actor *self, struct co_state *s, const char *why);
void co_pc_recover_tick(struct tern_actor *self, struct co_state *s, uint64_t now);
void co_pc_resumed(struct tern_actor *self, struct co_state *s, const struct tern_msg_w_result *r);

/* fence.c: a connection went down with chunks in flight; the destination's
 * answer to the fence. */
void co_conn_down(struct tern_actor *self, struct co_state *s, const struct tern_msg_conn_down *d);
void co_fence_done(struct tern_actor *self, struct co_state *s, const struct tern_msg_w_result *r);

/* coordinator_setup.c */
int co_init(struct tern_actor *self, void *state, void *arg);
void co_stop(struct tern_actor *self, void *state);
/* co_child_exit: child k exited (NULL: not a child); its policy decides. */
void co_child_exit(struct tern_actor *self, struct co_state *s, struct tern_child *k,
                   const struct tern_msg_sys_exit *e);
/* co_start_throttle starts the ThrottleActor (auto-converge switched on). */
int co_start_throttle(struct tern_actor *self, struct co_state *s);
/* co_take takes the DirtyLogActor's accumulated set: *id names the lent set,
 * which stays unchanged until co_give hands it back. */
int co_take(struct tern_actor *self, struct co_state *s, int final, uint32_t *id, uint64_t *pages);
int co_give(struct tern_actor *self, struct co_state *s, uint32_t id);
/* co_ring_refill merges the ring pages reported since the last time into
 * the ring-only walk, when its ring set is idle. */
int co_ring_refill(struct tern_actor *self, struct co_state *s);
/* co_collect records the counters a child's message carries: true for
 * CONN_STATS and SCAN_STATS (nothing else to do), false for any other
 * message (CHUNK_DONE is counted for its connection, then handled). */
bool co_collect(struct co_state *s, const struct tern_msg *m);
/* co_close: the migration is over.  Asks the children to stop, once, and
 * returns TERN_ACTOR_DONE when every one has exited (its final counters
 * came before its SYS_EXIT) or the wait is over; 0 while waiting. */
int co_close(struct tern_actor *self, struct co_state *s);
void co_progress(struct tern_actor *self, struct co_state *s);

/* coordinator_converge.c: co_params applies a PARAMS message (live
 * parameters from the driver); co_converge decides the throttle for the
 * next iteration and watches for a stall. */
void co_params(struct tern_actor *self, struct co_state *s, const struct tern_msg_params *p);
void co_converge(struct tern_actor *self, struct co_state *s, uint64_t dirty_bytes, uint64_t now);

#endif /* TERN_ACTORS_COORDINATOR_INT_H */
