/*
 * The actor runtime's own shared parts (not for actors: actors/actor.h is
 * their interface).  The runtime is five files: runtime.c (ids, tracing,
 * encoding, sending, the runtime object), mailbox.c (receiving, requests
 * and monitors, mailboxes for plain threads), actor.c (actor threads,
 * lifecycle, kills), actor_self.c (what an actor calls on itself), queue.c
 * (shared work queues).
 */
#ifndef TERN_ACTORS_RUNTIME_H
#define TERN_ACTORS_RUNTIME_H

#include <nng/nng.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "actors/actor.h"

/* tern_from_nng converts an nng error number (positive) to a tern code, at
 * the one boundary where nng's errors enter tern: NNG_ETIMEDOUT becomes
 * TERN_ETIMEDOUT, NNG_ECLOSED TERN_ECLOSED, NNG_ENOMEM TERN_ENOMEM, a system
 * error -errno, anything else TERN_ENNG.  0 stays 0. */
int tern_from_nng(int nng_err);

/* Messages dispatched per wake-up before fds and the tick get a turn. */
#define RT_BATCH 64
#define RT_WATCH_MAX 8
/* Queues hold a few items in flight only: work stays with the producer until
 * a consumer asks, so no consumer can hoard a backlog. */
#define RT_QUEUE_BUF 8
/* Bound of each kill+join in tern_runtime_destroy. */
#define RT_DESTROY_JOIN_MS 2000
/* Encoding fast path: most messages fit; larger ones are sized exactly. */
#define RT_ENCODE_STACK 1024
/* Sockets an actor may hand the runtime to shut down when it is killed. */
#define RT_OWNED_MAX 8
/* Bound of the join after a kill in tern_actor_stop_join. */
#define RT_KILL_JOIN_MS 5000
/* rt_send flag (beside nng's): m->seq is already assigned. */
#define RT_KEEP_SEQ 0x10000

/* A request in progress: if `target` exits, `waiter` is told at once (a
 * SYS_EXIT whose re is the request's seq), as an Erlang monitor. */
struct rt_waiter {
	uint32_t waiter;
	uint32_t target;
	uint64_t seq;
	struct rt_waiter *next;
};

/* One id of the runtime's address space. */
struct rt_slot {
	nng_socket push; /* shared by every sender to this id */
	const char *name;
	bool open;
};

/* The receiving end shared by actors and mailboxes. */
struct rt_mbx {
	struct tern_runtime *rt;
	uint32_t id;
	const char *name;
	nng_socket pull;
	int rfd;
	/* Messages received while waiting for a reply, handled later in
	 * their order (a ring of owned nng_msg pointers). */
	nng_msg **dq;
	size_t dhead, dlen, dcap;
	/* The message whose borrowed fields the owner may still be reading:
	 * the last reply (actors) or the last received message (mailboxes). */
	nng_msg *held;
};

struct tern_actor {
	struct rt_mbx mb;
	struct tern_runtime *rt;
	const struct tern_actor_desc *desc;
	void *state;
	void *arg;
	uint32_t supervisor;
	uv_thread_t thread;

	uv_mutex_t mtx; /* guards init_done, init_rc, done, owned, blocking */
	uv_cond_t cond;
	bool init_done;
	int init_rc;
	bool done;
	/* What a kill must release: sockets to shut down, the nng operation
	 * the actor waits in (a queue take or put, a send to a full mailbox). */
	int owned[RT_OWNED_MAX];
	int nowned;
	nng_aio *blocking;
	/* An eventfd written once by the kill; every wait of the actor polls
	 * it, so a kill wakes an actor whatever it waits for. */
	int wakefd;
	uint32_t instance; /* spawn index among actors of this name (faults) */

	/* Set by other threads, read by the actor at every dispatch point.
	 * The flags carry no data of their own: release (writer) / acquire
	 * (reader) only makes "flag set before the wake-up message" hold
	 * without reasoning about nng's internal locks. */
	atomic_bool killed;
	atomic_bool stop_asked; /* tern_actor_stop is idempotent */
	atomic_bool stop_retry; /* SYS_STOP did not fit: the actor queues it */

	/* Owned by the actor's thread. */
	uint64_t tick_period;
	uint64_t next_tick;
	struct pollfd watch[RT_WATCH_MAX];
	int nwatch;
	bool why_set;
	char why[TERN_STR_MAX];
	struct tern_exit exit;

	struct tern_actor *next; /* rt->actors, in spawn order */
	struct tern_actor *prev;
};

struct tern_mailbox {
	struct rt_mbx mb;
	char name[64];
	struct tern_mailbox *next;
	struct tern_mailbox *prev;
};

struct tern_queue {
	struct tern_runtime *rt;
	uint32_t id;
	char name[64];
	nng_socket push;
	nng_socket pull;
	/* A dup of the pull socket's recv fd: it stays a valid fd until the
	 * runtime is destroyed, and once the queue is closed (nng closes the
	 * pipe's write end) it polls readable forever, so watchers wake up and
	 * find TERN_ECLOSED instead of polling a recycled fd number. */
	int fd;
	atomic_bool closed;
	struct tern_queue *next;
};

struct tern_runtime {
	struct tern_trace *trace;
	uv_mutex_t mtx; /* guards everything below */
	struct rt_slot *slots;
	uint32_t nslots;
	uint32_t next_id;
	struct tern_actor *actors, *actors_tail;
	struct tern_mailbox *mailboxes;
	struct tern_queue *queues;
	struct rt_waiter *waiters; /* requests in progress (monitors) */
	/* Sequence numbers are unique per runtime, hence increasing per sender;
	 * only uniqueness matters (it matches replies), so relaxed suffices. */
	atomic_uint_fast64_t seq;
};

/* The actor whose thread this is (NULL on other threads): the runtime's
 * blocking calls use it to stay killable, its fault hooks to know where an
 * event happened. */
extern _Thread_local struct tern_actor *terni_self;

/* ---- runtime.c ---- */

uint32_t terni_rt_new_id(struct tern_runtime *rt);

void terni_rt_trace(struct tern_runtime *rt, uint32_t kind, uint32_t actor, const char *name,
                    uint32_t peer, const struct tern_msg *m, uint64_t value, const char *text);

/* terni_rt_cut_links shuts down every socket an actor of rt owns
 * (tern_actor_own_fd), both ways: the "link" fault, a network cut as both
 * ends see it, with no actor killed. */
void terni_rt_cut_links(struct tern_runtime *rt);

/* terni_rt_name copies the name of id into buf ("" when unknown or closed). */
void terni_rt_name(struct tern_runtime *rt, uint32_t id, char *buf, size_t cap);

int terni_rt_encode(const struct tern_msg *m, nng_msg **out);

int terni_rt_decode(nng_msg *msg, struct tern_msg *m);

/* terni_rt_aio_wait waits for aio; on an actor's thread a kill cancels it. */
void terni_rt_aio_wait(nng_aio *aio);

/* terni_rt_send is tern_send with the sender's name known (NULL: look it up) and
 * nng flags (NNG_FLAG_NONBLOCK: a full mailbox gives TERN_ETIMEDOUT). */
int terni_rt_send(struct tern_runtime *rt, uint32_t from, const char *from_name, uint32_t to,
                  struct tern_msg *m, int flags);

/* ---- mailbox.c ---- */

int terni_mbx_open(struct tern_runtime *rt, struct rt_mbx *mb, const char *name);

/* terni_rt_unregister closes the address id: later sends get TERN_ECLOSED at once,
 * senders blocked on its full mailbox get TERN_ECLOSED, and every request
 * waiting on it is told at once with e (its reason, code and why). */
void terni_rt_unregister(struct tern_runtime *rt, uint32_t id, const char *name,
                         const struct tern_exit *e);

/* terni_mbx_close unregisters the mailbox (if not done yet), closes its receiving
 * socket and frees what was queued. */
void terni_mbx_close(struct rt_mbx *mb, const struct tern_exit *e);

/* terni_mbx_drain frees the messages waiting in mb's socket.  nng 1.5.2's
 * pull0 keeps a message in its pipe until a reader takes it, and drops it
 * without freeing it when the pipe closes under it (LeakSanitizer saw that
 * under load): a mailbox about to close is drained first. */
void terni_mbx_drain(struct rt_mbx *mb);

void terni_mbx_release_held(struct rt_mbx *mb);

nng_msg *terni_mbx_undefer(struct rt_mbx *mb);

uint64_t terni_rt_deadline(int timeout_ms);

/* A SYS_EXIT with re set is a monitor's notice for a request (the target
 * exited); supervisors' reports have re 0. */
bool terni_rt_is_down_notice(const struct tern_msg *m);

/* terni_mbx_request is the selective receive of tern_actor_request and
 * tern_mailbox_request: everything that is not the reply is deferred.  If
 * the target exits first the request fails at once with its exit (reply is
 * then that SYS_EXIT). */
int terni_mbx_request(struct rt_mbx *mb, uint32_t to, struct tern_msg *m, struct tern_msg *reply,
                      int timeout_ms, struct tern_actor *self);

/* ---- actor_self.c ---- */

bool terni_actor_killed(struct tern_actor *a);

void terni_actor_fault(struct tern_actor *a, const char *kind, const char *arg);

/* terni_actor_block records the nng operation a is about to wait in, so that a
 * kill cancels it; TERN_EKILLED (cancel it yourself) if a is killed. */
int terni_actor_block(struct tern_actor *a, nng_aio *aio);

void terni_actor_unblock(struct tern_actor *a);

#endif /* TERN_ACTORS_RUNTIME_H */
