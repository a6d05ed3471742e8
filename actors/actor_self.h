/*
 * The calls an actor makes on itself from its callbacks (and the accessors
 * anyone may use on an actor handle): name and address, sends and requests,
 * trace records, failure reasons, tick and watched fds, sockets shut down on
 * a kill, sleeps a kill cuts short.  Included by actors/actor.h, which holds
 * the descriptor and the lifecycle (spawn, stop, kill, join); implemented in
 * actor_self.c.
 */
#ifndef TERN_ACTORS_ACTOR_SELF_H
#define TERN_ACTORS_ACTOR_SELF_H

#include <stdbool.h>
#include <stdint.h>

#include "messages/msg.h"

struct tern_actor;
struct tern_runtime;

/* tern_actor_id returns a's address. */
uint32_t tern_actor_id(const struct tern_actor *a);

/* tern_actor_name returns the descriptor name. */
const char *tern_actor_name(const struct tern_actor *a);

/* tern_actor_rt returns the runtime a belongs to. */
struct tern_runtime *tern_actor_rt(const struct tern_actor *a);

/* tern_actor_send is tern_send from self. */
int tern_actor_send(struct tern_actor *self, uint32_t to, struct tern_msg *m);

/* tern_actor_reply sends rep to the sender of req with rep->re = req->seq. */
int tern_actor_reply(struct tern_actor *self, const struct tern_msg *req, struct tern_msg *rep);

/* tern_actor_request sends m to `to` and waits up to timeout_ms for the
 * message whose re equals m's seq; other messages arriving meanwhile are kept
 * and handled afterwards in their order.  The reply's BIN/RANGES fields stay
 * valid until the next receive by self.  TERN_ETIMEDOUT on timeout.
 * Monitor semantics: if `to` has exited, or exits while the request waits,
 * it fails at once: TERN_ECLOSED (gone before, or exited normally),
 * TERN_EKILLED (killed) or the target's error code, with *reply the target's
 * SYS_EXIT (reply->type == TERN_MSG_SYS_EXIT: name, reason, why).  A kill of
 * self ends the wait with TERN_EKILLED. */
int tern_actor_request(struct tern_actor *self, uint32_t to, struct tern_msg *m,
                       struct tern_msg *reply, int timeout_ms);

/* tern_actor_killed tells a handler in a long loop that self was killed. */
bool tern_actor_killed(struct tern_actor *self);

/* tern_actor_own_fd hands the runtime a socket of self to shut down
 * (shutdown(2), not close) if self is killed, so that a read or write
 * blocked on it returns.  At most 8.  The runtime forgets them all before
 * stop runs; an actor that closes one earlier calls tern_actor_disown_fd
 * first.  Only from self's thread. */
int tern_actor_own_fd(struct tern_actor *self, int fd);
void tern_actor_disown_fd(struct tern_actor *self, int fd);

/* tern_actor_sleep waits ns nanoseconds; TERN_EKILLED at once if self is
 * killed meanwhile. */
int tern_actor_sleep(struct tern_actor *self, uint64_t ns);

/* tern_actor_event reports a named event of self that the runtime does not
 * see itself (a wire frame sent or received: "send"/"recv" with the frame
 * name, "iteration"), for fault injection (actors/fault.h).  The runtime
 * reports message sends and receives, state changes and chunk takes. */
void tern_actor_event(struct tern_actor *self, const char *kind, const char *arg);

/* tern_actor_state records a state change of self in the trace. */
void tern_actor_state(struct tern_actor *self, const char *state);

/* tern_actor_counter records a named value of self in the trace. */
void tern_actor_counter(struct tern_actor *self, const char *name, double value);

/* tern_actor_fail records why self is failing (reported in SYS_EXIT and the
 * trace) and returns code, for `return tern_actor_fail(self, rc, "...")`. */
int tern_actor_fail(struct tern_actor *self, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* tern_actor_set_tick calls desc->tick every period_ns (0 disables). */
void tern_actor_set_tick(struct tern_actor *self, uint64_t period_ns);

/* tern_actor_watch_fd adds fd (events as for poll) to self's wait set; at
 * most 8 fds.  tern_actor_unwatch_fd removes it.  Only from self's thread. */
int tern_actor_watch_fd(struct tern_actor *self, int fd, short events);
void tern_actor_unwatch_fd(struct tern_actor *self, int fd);

#endif /* TERN_ACTORS_ACTOR_SELF_H */
