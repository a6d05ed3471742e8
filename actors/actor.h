/*
 * The actor runtime.
 *
 * An actor is declared once as a descriptor and runs on its own thread with
 * an nng mailbox (a pull0 socket listening on inproc://).  The runtime owns
 * spawn, join and the exit report: whatever path an actor leaves by (normal
 * stop, an error from a callback, a kill), its stop callback runs exactly
 * once on its own thread, its thread is joined by tern_actor_join, and its
 * supervisor (if any) receives one SYS_EXIT message.
 *
 * Addresses are small integers (ids) allocated by the runtime; 0 is "nobody".
 * Actors and plain threads (through a tern_mailbox) share one id space, so a
 * test or the CLI's main thread can send to actors, supervise them and be
 * replied to.
 *
 * Ordering: messages from one sender to one receiver arrive in send order.
 * Backpressure: a send blocks while the receiver's mailbox is full
 * (TERN_MAILBOX_DEPTH messages) and fails with TERN_ETIMEDOUT after
 * TERN_SEND_TIMEOUT_MS, so a wedged receiver cannot wedge its senders forever.
 *
 * Tracing: with a trace attached, every send, receive (with its handling
 * time), state change, spawn and exit is recorded.
 *
 * This header holds the descriptor and an actor's lifecycle (actor.c);
 * what an actor calls on itself is in actors/actor_self.h, included here.
 */
#ifndef TERN_ACTORS_ACTOR_H
#define TERN_ACTORS_ACTOR_H

#include <stdbool.h>
#include <stdint.h>

#include "actors/actor_self.h"
#include "messages/msg.h"
#include "messages/trace.h"

#define TERN_MAILBOX_DEPTH 1024
#define TERN_SEND_TIMEOUT_MS 5000

/* Return value of handle/tick/on_fd asking for a normal stop. */
#define TERN_ACTOR_DONE 1

struct tern_runtime;
struct tern_actor;
struct tern_mailbox;
struct tern_queue;

enum tern_exit_reason {
	TERN_EXIT_NORMAL = 0, /* stopped by request or TERN_ACTOR_DONE */
	TERN_EXIT_ERROR = 1,  /* a callback returned < 0 (or init failed) */
	TERN_EXIT_KILLED = 2, /* tern_actor_kill */
};

struct tern_exit {
	uint32_t actor;
	uint32_t reason; /* enum tern_exit_reason */
	int code;        /* the callback's error code, 0 for NORMAL */
	char why[TERN_STR_MAX];
};

struct tern_actor_desc {
	const char *name;
	size_t state_size; /* the runtime allocates and zeroes the state */
	/* init runs first, on the actor's thread.  Non-zero fails the spawn
	 * (tern_spawn returns it).  init MUST leave a state that stop can be
	 * called on, whatever it returns. */
	int (*init)(struct tern_actor *self, void *state, void *arg);
	/* handle is called once per received message.  Return 0 to go on,
	 * TERN_ACTOR_DONE to stop normally, < 0 to exit with an error. */
	int (*handle)(struct tern_actor *self, void *state, const struct tern_msg *m);
	/* tick (optional) is called every tern_actor_set_tick period. */
	int (*tick)(struct tern_actor *self, void *state);
	/* on_fd (optional) is called when a watched fd is ready. */
	int (*on_fd)(struct tern_actor *self, void *state, int fd, short revents);
	/* stop is called exactly once, last, on the actor's thread, on every
	 * path (it releases what init acquired).  It must not block long. */
	void (*stop)(struct tern_actor *self, void *state);
};

/* tern_runtime_create makes a runtime.  trace may be NULL.  Returns 0 or a
 * negative code. */
int tern_runtime_create(struct tern_runtime **rt, struct tern_trace *trace);

/* tern_runtime_destroy kills and joins any actor still running (bounded by
 * a few seconds), closes every mailbox and queue, and frees rt. */
void tern_runtime_destroy(struct tern_runtime *rt);

/* tern_runtime_trace returns the runtime's trace (may be NULL). */
struct tern_trace *tern_runtime_trace(struct tern_runtime *rt);

/* tern_spawn starts an actor and waits for its init to finish.  supervisor
 * is the id that receives the SYS_EXIT report (0: none).  On success *out is
 * the actor, which the caller must eventually tern_actor_join.  If init fails
 * the thread is already joined, nothing is reported, init's code is returned
 * and *failed (may be NULL) says why (what init passed to tern_actor_fail, or
 * the code's text). */
int tern_spawn(struct tern_runtime *rt, const struct tern_actor_desc *desc, void *arg,
               uint32_t supervisor, struct tern_actor **out, struct tern_exit *failed);

/* tern_send sends m to `to` on behalf of `from` (an actor or mailbox id, or
 * 0).  It fills m->seq, m->from and m->time_ns.  Returns 0, TERN_ECLOSED when
 * `to` does not exist (any more), TERN_ETIMEDOUT when its mailbox stays full. */
int tern_send(struct tern_runtime *rt, uint32_t from, uint32_t to, struct tern_msg *m);

/* tern_actor_stop asks a to stop after the messages already in its mailbox
 * (it queues SYS_STOP).  Non-blocking and idempotent. */
void tern_actor_stop(struct tern_actor *a);

/* tern_actor_kill makes a exit at its next dispatch point without handling
 * more messages, as if it had crashed: stop still runs (its resources are
 * released as a dying process's would be) and the exit is reported KILLED.
 * A kill releases an actor blocked in the runtime (a request, a queue take
 * or put, a send to a full mailbox, tern_actor_sleep: they return
 * TERN_EKILLED) or in I/O on a socket it handed to tern_actor_own_fd (shut
 * down).  Non-blocking, idempotent, from any thread. */
void tern_actor_kill(struct tern_actor *a);

/* tern_actor_join waits up to timeout_ms (-1: forever) for a's thread to end.
 * On success fills *exit (may be NULL), frees a and returns 0; returns
 * TERN_ETIMEDOUT (a untouched) if it is still running. */
int tern_actor_join(struct tern_actor *a, int timeout_ms, struct tern_exit *exit);

/* tern_actor_stop_join stops *a, joins it within timeout_ms, and if it is
 * still running then kills and joins it (bounded: an actor still running
 * 5 s after the kill is reported on stderr and left to
 * tern_runtime_destroy).  Sets *a to NULL; a NULL *a is accepted.  For
 * supervisors ending their children. */
void tern_actor_stop_join(struct tern_actor **a, int timeout_ms, struct tern_exit *exit);

/* A mailbox for a thread that is not an actor (main thread, tests). */
int tern_mailbox_open(struct tern_runtime *rt, const char *name, struct tern_mailbox **mb);
uint32_t tern_mailbox_id(const struct tern_mailbox *mb);
/* tern_mailbox_recv waits up to timeout_ms (-1 forever, 0 poll).  BIN and
 * RANGES fields of *m stay valid until the next recv or close. */
int tern_mailbox_recv(struct tern_mailbox *mb, struct tern_msg *m, int timeout_ms);
/* tern_mailbox_request: as tern_actor_request, for a mailbox. */
int tern_mailbox_request(struct tern_mailbox *mb, uint32_t to, struct tern_msg *m,
                         struct tern_msg *reply, int timeout_ms);
void tern_mailbox_close(struct tern_mailbox *mb);

/* A shared work queue: many producers put, many consumers take, each item
 * goes to exactly one consumer, and only when that consumer asks for it (so a
 * slow consumer never holds a backlog).  Items are messages without BIN or
 * RANGES fields. */
int tern_queue_open(struct tern_runtime *rt, const char *name, struct tern_queue **q);
/* tern_queue_put blocks up to timeout_ms while the queue is full. */
int tern_queue_put(struct tern_queue *q, uint32_t from, struct tern_msg *m, int timeout_ms);
/* tern_queue_take returns 0 with *m, TERN_ETIMEDOUT when nothing arrived in
 * timeout_ms (0: do not wait), TERN_ECLOSED once the queue is closed. */
int tern_queue_take(struct tern_queue *q, uint32_t by, struct tern_msg *m, int timeout_ms);
/* tern_queue_fd returns an fd that polls readable while items may be
 * available (level-triggered hint: take with timeout 0 may still find none). */
int tern_queue_fd(struct tern_queue *q);
/* tern_queue_close wakes every taker and putter with TERN_ECLOSED.  The
 * memory of q stays valid (every call returns TERN_ECLOSED) until the runtime
 * is destroyed, so consumers still running are safe. Idempotent. */
void tern_queue_close(struct tern_queue *q);

#endif /* TERN_ACTORS_ACTOR_H */
