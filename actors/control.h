/*
 * The source's control-frame protocol over connection 0.  The coordinator
 * sends W_CONFIG, W_STATE, W_DIGEST, W_COMPLETE and W_ABORT as CTL_OUT
 * messages to ConnectionActor 0, which sends them as frames; every frame
 * the destination sends back arrives as CTL_IN.  Every request but W_ABORT
 * expects a W_RESULT within the I/O timeout (the digest also gets time to
 * hash the destination's memory); tern_ctl_expired says when it is late.
 */
#ifndef TERN_ACTORS_CONTROL_H
#define TERN_ACTORS_CONTROL_H

#include <stdbool.h>
#include <stdint.h>

#include "actors/actor.h"

struct tern_ctl {
	uint32_t conn0;       /* ConnectionActor 0 */
	bool alive;           /* connection 0 has not exited */
	uint64_t timeout_ns;  /* the I/O timeout */
	uint64_t digest_ns;   /* extra time a W_DIGEST answer may take */
	uint64_t discard_ns;  /* extra time a W_POSTCOPY round's answer may take */
	uint64_t deadline_ns; /* a request awaits its W_RESULT (0: none) */
};

/* tern_ctl_send encodes frame (time_ns set here) and sends it with payload
 * to connection 0, arming the answer's deadline.  0 or a negative code. */
int tern_ctl_send(struct tern_actor *self, struct tern_ctl *c, struct tern_msg *frame,
                  const void *payload, size_t plen);

/* tern_ctl_recv decodes the frame of CTL_IN m into *frame and reports it
 * as a "recv" event (fault injection: recv:W_RESULT ...).  A W_RESULT
 * disarms the deadline.  0 or TERN_EMSG. */
int tern_ctl_recv(struct tern_actor *self, struct tern_ctl *c, const struct tern_msg *m,
                  struct tern_msg *frame);

/* tern_ctl_abort tells the destination why the migration ends (W_ABORT).
 * Returns true when sent: its answer (or connection 0's end) is worth
 * waiting for. */
bool tern_ctl_abort(struct tern_actor *self, struct tern_ctl *c, int code, const char *why);

/* tern_ctl_expired: an answer is overdue at now. */
bool tern_ctl_expired(const struct tern_ctl *c, uint64_t now);

#endif /* TERN_ACTORS_CONTROL_H */
