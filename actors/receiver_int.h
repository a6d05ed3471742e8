/*
 * The ReceiverCoordinator's state, shared by its files: receiver.c (the
 * phase machine) and postcopy_recv.c (the postcopy switch and end).  Not
 * for other modules: the receiver's interface is receiver.h.
 */
#ifndef TERN_ACTORS_RECEIVER_INT_H
#define TERN_ACTORS_RECEIVER_INT_H

#include "actors/postcopy.h"
#include "actors/receiver.h"

/* In order: a control frame moves the phase forward only (see receiver.h). */
enum rc_phase {
	RC_LISTENING,
	RC_CONFIGURED,
	RC_POSTCOPY, /* stale set in: faults served, the state comes */
	RC_STATE,
	RC_PC_RUNNING,  /* postcopy: the guest runs, missing pages arrive */
	RC_PC_PAUSED,   /* postcopy: the link is lost, the driver waits for the source */
	RC_PC_RELINKED, /* postcopy: the source is back, W_RESUME comes */
	RC_VERIFIED,
	RC_RESUMED,
	RC_ABORTED
};

struct rc_state {
	struct tern_receiver_args *a;
	struct tern_actor *conns[TERN_MAX_CONNECTIONS];
	uint32_t retired[TERN_MAX_CONNECTIONS]; /* ids of data connections joined at W_STATE */
	bool memory_ended;                      /* the end of memory is behind */
	uint8_t *blob;                          /* state parts so far (W_STATE_PART) */
	uint64_t blob_len;
	enum rc_phase phase;
	uint64_t last_heard_ns; /* last frame from the source */
	uint64_t idle_limit_ns;
	bool verify;            /* W_CONFIG asked for a digest */
	struct tern_pc_dst *pc; /* postcopy (a->pc once started) */
	struct tern_actor *faults;
	struct tern_pc_faults_args fargs;
	uint64_t pc_lost_ns; /* the link was lost (recovery) */
};

extern const char *const rc_phase_names[];

void rc_set_phase(struct tern_actor *self, struct rc_state *s, enum rc_phase p);
/* rc_answer sends W_RESULT for step to the source. */
int rc_answer(struct tern_actor *self, struct rc_state *s, uint32_t step, int status,
              uint64_t value, const char *why);
/* rc_fail ends the migration with a reason; returns TERN_ACTOR_DONE. */
int rc_fail(struct tern_actor *self, struct rc_state *s, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
int rc_out_of_phase(struct tern_actor *self, struct rc_state *s, uint32_t type, const char *rule);
/* rc_end_memory: no page is written from now on; data connections retire. */
int rc_end_memory(struct tern_actor *self, struct rc_state *s, uint32_t type);
/* receiver_config.c: W_CONFIG, the guest taken or built. */
int rc_config(struct tern_actor *self, struct rc_state *s, const struct tern_msg_w_config *c);

/* rc_spawn_conns starts a ConnectionActor on each link of a->conns; a
 * link whose actor could not start is closed.  0 or the first error. */
int rc_spawn_conns(struct tern_actor *self, struct rc_state *s);

/* postcopy_recv.c */
int rc_postcopy(struct tern_actor *self, struct rc_state *s, struct tern_guest *g,
                const struct tern_msg_w_postcopy *f, const struct tern_bin *p);
int rc_pc_run(struct tern_actor *self, struct rc_state *s, struct tern_guest *g);
int rc_pc_complete(struct tern_actor *self, struct rc_state *s);
int rc_pc_digest(struct tern_actor *self, struct rc_state *s, uint64_t digest);
/* Recovery: the link is lost (why) -- pause if it may come back, else
 * fail; the driver's answer; the source's W_RESUME. */
int rc_pc_lost(struct tern_actor *self, struct rc_state *s, int code, const char *why);
int rc_pc_relinked(struct tern_actor *self, struct rc_state *s,
                   const struct tern_msg_pc_relinked *r);
int rc_pc_resume(struct tern_actor *self, struct rc_state *s);

#endif /* TERN_ACTORS_RECEIVER_INT_H */
