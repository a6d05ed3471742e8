/*
 * The actor runtime: ids, mailboxes, actor threads, supervision, queues.
 *
 * Every address (actor or tern_mailbox) is a pull0 socket listening on
 * inproc://tern-<rt>-<id>.  The runtime keeps, per id, one push0 socket
 * dialed to it and shared by every sender: nng sockets are thread-safe and
 * one push0 socket with one pipe delivers in the order each thread sent, so
 * per-sender FIFO order holds without a socket per (sender, receiver) pair.
 *
 * nng 1.5.2 specifics this file relies on (checked in its source):
 * - pull0 keeps at most one message per pipe and ignores NNG_OPT_RECVBUF
 *   (the option is accepted by the socket core but the protocol has no
 *   receive queue), so a mailbox's depth is the push0 NNG_OPT_SENDBUF.
 * - NNG_OPT_RECVFD is the read end of a pipe(2) owned by the socket; it polls
 *   readable while a message is ready (level-triggered).
 */
#include <errno.h>
#include <fcntl.h>
#include <nng/nng.h>
#include <nng/protocol/pipeline0/pull.h>
#include <nng/protocol/pipeline0/push.h>
#include <poll.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "actors/actor.h"
#include "actors/fault.h"
#include "tern/error.h"

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
static _Thread_local struct tern_actor *rt_self;

static void actor_fault(struct tern_actor *a, const char *kind, const char *arg);
static int actor_block(struct tern_actor *a, nng_aio *aio);
static void actor_unblock(struct tern_actor *a);

/* ---- ids and tracing ---- */

static uint32_t
rt_new_id(struct tern_runtime *rt)
{
	uv_mutex_lock(&rt->mtx);
	uint32_t id = rt->next_id++;
	uv_mutex_unlock(&rt->mtx);
	return id;
}

static void
rt_trace(struct tern_runtime *rt, uint32_t kind, uint32_t actor, const char *name, uint32_t peer,
         const struct tern_msg *m, uint64_t value, const char *text)
{
	struct tern_trace_record r;

	if (rt->trace == NULL)
		return;
	memset(&r, 0, sizeof(r));
	r.kind = kind;
	r.actor = actor;
	snprintf(r.actor_name, sizeof(r.actor_name), "%s", name != NULL ? name : "");
	r.peer = peer;
	if (m != NULL) {
		r.type = m->type;
		r.seq = m->seq;
		r.re = m->re;
	}
	r.value = value;
	snprintf(r.text, sizeof(r.text), "%s", text != NULL ? text : "");
	(void)tern_trace_write(rt->trace, &r);
}

/* rt_name copies the name of id into buf ("" when unknown or closed). */
static void
rt_name(struct tern_runtime *rt, uint32_t id, char *buf, size_t cap)
{
	buf[0] = '\0';
	if (rt->trace == NULL)
		return;
	uv_mutex_lock(&rt->mtx);
	if (id != 0 && id < rt->nslots && rt->slots[id].open)
		snprintf(buf, cap, "%s", rt->slots[id].name);
	uv_mutex_unlock(&rt->mtx);
}

/* rt_lookup finds the push socket of `to` and, when tracing, copies the name
 * of `from` (the slot may go away as soon as the lock is dropped). */
static int
rt_lookup(struct tern_runtime *rt, uint32_t from, uint32_t to, nng_socket *push, char *fname,
          size_t fcap)
{
	int rc = TERN_ECLOSED;

	uv_mutex_lock(&rt->mtx);
	if (to != 0 && to < rt->nslots && rt->slots[to].open) {
		*push = rt->slots[to].push;
		rc = 0;
	}
	if (fname != NULL && from != 0 && from < rt->nslots && rt->slots[from].open)
		snprintf(fname, fcap, "%s", rt->slots[from].name);
	uv_mutex_unlock(&rt->mtx);
	return rc;
}

/* ---- encoding ---- */

static int
rt_encode(const struct tern_msg *m, nng_msg **out)
{
	char buf[RT_ENCODE_STACK];
	size_t len = 0;
	nng_msg *msg;
	int rv;

	if (tern_msg_encode(m, buf, sizeof(buf), &len) == 0) {
		if ((rv = nng_msg_alloc(&msg, len)) != 0)
			return tern_from_nng(rv);
		memcpy(nng_msg_body(msg), buf, len);
		*out = msg;
		return 0;
	}
	size_t size = tern_msg_encoded_size(m);
	if (size <= sizeof(buf))
		return TERN_EMSG; /* unknown type or invalid field */
	if ((rv = nng_msg_alloc(&msg, size)) != 0)
		return tern_from_nng(rv);
	int rc = tern_msg_encode(m, nng_msg_body(msg), size, &len);
	if (rc != 0) {
		nng_msg_free(msg);
		return rc;
	}
	(void)nng_msg_chop(msg, size - len); /* shrinking cannot fail */
	*out = msg;
	return 0;
}

static int
rt_decode(nng_msg *msg, struct tern_msg *m)
{
	return tern_msg_decode(nng_msg_body(msg), nng_msg_len(msg), m);
}

/* rt_send_wait sends msg to a full mailbox, waiting up to
 * TERN_SEND_TIMEOUT_MS; a kill of the calling actor ends the wait.  On
 * failure msg is still the caller's. */
static void rt_aio_wait(nng_aio *aio);

static int
rt_send_wait(nng_socket push, nng_msg *msg)
{
	nng_aio *aio;
	int rv;

	if ((rv = nng_aio_alloc(&aio, NULL, NULL)) != 0)
		return rv;
	nng_aio_set_msg(aio, msg);
	nng_aio_set_timeout(aio, TERN_SEND_TIMEOUT_MS);
	nng_send_aio(push, aio);
	rt_aio_wait(aio);
	rv = nng_aio_result(aio);
	nng_aio_free(aio);
	return rv == NNG_ETIMEDOUT ? NNG_EAGAIN : rv;
}

/* rt_send is tern_send with the sender's name known (NULL: look it up) and
 * nng flags (NNG_FLAG_NONBLOCK: a full mailbox gives TERN_ETIMEDOUT). */
static int
rt_send(struct tern_runtime *rt, uint32_t from, const char *from_name, uint32_t to,
        struct tern_msg *m, int flags)
{
	char fname[64] = "";
	nng_socket push;
	nng_msg *msg;
	int rc, rv;

	if (m == NULL)
		return TERN_EINVAL;
	rc = rt_lookup(rt, from, to, &push, rt->trace != NULL && from_name == NULL ? fname : NULL,
	               sizeof(fname));
	if (rc != 0)
		return rc;
	if (!(flags & RT_KEEP_SEQ))
		m->seq = atomic_fetch_add_explicit(&rt->seq, 1, memory_order_relaxed) + 1;
	m->from = from;
	m->time_ns = uv_hrtime();
	if ((rc = rt_encode(m, &msg)) != 0)
		return rc;
	rv = nng_sendmsg(push, msg, NNG_FLAG_NONBLOCK);
	if (rv == NNG_EAGAIN && !(flags & NNG_FLAG_NONBLOCK))
		rv = rt_send_wait(push, msg);
	if (rv != 0) {
		nng_msg_free(msg);
		if (rv == NNG_ECANCELED && rt_self != NULL)
			return TERN_EKILLED;
		return rv == NNG_EAGAIN ? TERN_ETIMEDOUT : tern_from_nng(rv);
	}
	rt_trace(rt, TERN_TRACE_SEND, from, from_name != NULL ? from_name : fname, to, m, 0, NULL);
	if (rt_self != NULL && rt_self->mb.id == from)
		actor_fault(rt_self, "send", tern_msg_name(m->type));
	return 0;
}

/* ---- the receiving end ---- */

static int
mbx_open(struct tern_runtime *rt, struct rt_mbx *mb, const char *name)
{
	char url[96];
	nng_socket push;
	int rv;

	memset(mb, 0, sizeof(*mb));
	mb->rt = rt;
	mb->name = name;
	mb->rfd = -1;
	mb->id = rt_new_id(rt);
	snprintf(url, sizeof(url), "inproc://tern-%p-%u", (void *)rt, mb->id);

	if ((rv = nng_pull0_open(&mb->pull)) != 0)
		return tern_from_nng(rv);
	/* Accepted but without effect on pull0 in nng 1.5.2 (see the top). */
	if ((rv = nng_socket_set_int(mb->pull, NNG_OPT_RECVBUF, TERN_MAILBOX_DEPTH)) != 0 ||
	    (rv = nng_listen(mb->pull, url, NULL, 0)) != 0 ||
	    (rv = nng_socket_get_int(mb->pull, NNG_OPT_RECVFD, &mb->rfd)) != 0)
		goto fail_pull;
	if ((rv = nng_push0_open(&push)) != 0)
		goto fail_pull;
	if ((rv = nng_socket_set_int(push, NNG_OPT_SENDBUF, TERN_MAILBOX_DEPTH)) != 0 ||
	    (rv = nng_socket_set_ms(push, NNG_OPT_SENDTIMEO, TERN_SEND_TIMEOUT_MS)) != 0 ||
	    (rv = nng_dial(push, url, NULL, 0)) != 0)
		goto fail_push;

	uv_mutex_lock(&rt->mtx);
	if (mb->id >= rt->nslots) {
		uint32_t n = rt->nslots ? rt->nslots : 64;
		while (n <= mb->id)
			n *= 2;
		struct rt_slot *s = realloc(rt->slots, n * sizeof(*s));
		if (s == NULL) {
			uv_mutex_unlock(&rt->mtx);
			rv = NNG_ENOMEM;
			goto fail_push;
		}
		memset(s + rt->nslots, 0, (n - rt->nslots) * sizeof(*s));
		rt->slots = s;
		rt->nslots = n;
	}
	rt->slots[mb->id] = (struct rt_slot){.push = push, .name = name, .open = true};
	uv_mutex_unlock(&rt->mtx);
	return 0;

fail_push:
	nng_close(push);
fail_pull:
	nng_close(mb->pull);
	mb->rfd = -1;
	return tern_from_nng(rv);
}

/* rt_unregister closes the address id: later sends get TERN_ECLOSED at once,
 * senders blocked on its full mailbox get TERN_ECLOSED, and every request
 * waiting on it is told at once with e (its reason, code and why). */
static void
rt_unregister(struct tern_runtime *rt, uint32_t id, const char *name, const struct tern_exit *e)
{
	nng_socket push = NNG_SOCKET_INITIALIZER;
	bool had = false;
	struct rt_waiter *told = NULL;

	uv_mutex_lock(&rt->mtx);
	if (id < rt->nslots && rt->slots[id].open) {
		push = rt->slots[id].push;
		rt->slots[id].open = false;
		rt->slots[id].name = NULL;
		had = true;
	}
	/* Copies: the waiters' nodes live on their stacks and go away as soon
	 * as they see the notice (or time out). */
	for (struct rt_waiter *w = rt->waiters; w != NULL; w = w->next) {
		if (w->target != id)
			continue;
		struct rt_waiter *c = malloc(sizeof(*c));
		if (c == NULL)
			break; /* the waiter falls back on its timeout */
		*c = *w;
		c->next = told;
		told = c;
	}
	uv_mutex_unlock(&rt->mtx);
	if (had)
		nng_close(push);
	while (told != NULL) {
		struct rt_waiter *c = told;
		told = c->next;
		struct tern_msg m;
		tern_msg_init(&m, TERN_MSG_SYS_EXIT);
		m.re = c->seq;
		m.u.sys_exit.actor = id;
		snprintf(m.u.sys_exit.name, sizeof(m.u.sys_exit.name), "%s", name);
		m.u.sys_exit.reason = e->reason;
		m.u.sys_exit.code = e->code;
		snprintf(m.u.sys_exit.why, sizeof(m.u.sys_exit.why), "%s", e->why);
		(void)rt_send(rt, id, name, c->waiter, &m, 0);
		free(c);
	}
}

/* mbx_close unregisters the mailbox (if not done yet), closes its receiving
 * socket and frees what was queued. */
static void
mbx_close(struct rt_mbx *mb, const struct tern_exit *e)
{
	rt_unregister(mb->rt, mb->id, mb->name, e);
	nng_close(mb->pull);
	mb->rfd = -1;
	while (mb->dlen > 0) {
		nng_msg_free(mb->dq[mb->dhead]);
		mb->dhead = (mb->dhead + 1) % mb->dcap;
		mb->dlen--;
	}
	free(mb->dq);
	mb->dq = NULL;
	if (mb->held != NULL)
		nng_msg_free(mb->held);
	mb->held = NULL;
}

static void
mbx_release_held(struct rt_mbx *mb)
{
	if (mb->held != NULL) {
		nng_msg_free(mb->held);
		mb->held = NULL;
	}
}

static int
mbx_defer(struct rt_mbx *mb, nng_msg *msg)
{
	if (mb->dlen == mb->dcap) {
		size_t n = mb->dcap ? mb->dcap * 2 : 16;
		nng_msg **q = malloc(n * sizeof(*q));
		if (q == NULL)
			return TERN_ENOMEM;
		for (size_t i = 0; i < mb->dlen; i++)
			q[i] = mb->dq[(mb->dhead + i) % mb->dcap];
		free(mb->dq);
		mb->dq = q;
		mb->dcap = n;
		mb->dhead = 0;
	}
	mb->dq[(mb->dhead + mb->dlen) % mb->dcap] = msg;
	mb->dlen++;
	return 0;
}

static nng_msg *
mbx_undefer(struct rt_mbx *mb)
{
	if (mb->dlen == 0)
		return NULL;
	nng_msg *msg = mb->dq[mb->dhead];
	mb->dhead = (mb->dhead + 1) % mb->dcap;
	mb->dlen--;
	return msg;
}

static uint64_t
rt_deadline(int timeout_ms)
{
	return timeout_ms < 0 ? UINT64_MAX : uv_hrtime() + (uint64_t)timeout_ms * 1000000u;
}

/* rt_wait polls fd for POLLIN until deadline (UINT64_MAX: forever), and
 * wakefd (-1: none) for a kill.  Returns 0 when fd may be readable,
 * TERN_EKILLED, TERN_ETIMEDOUT, or -errno. */
static int
rt_wait(int fd, int wakefd, uint64_t deadline)
{
	struct pollfd p[2] = {{.fd = fd, .events = POLLIN}, {.fd = wakefd, .events = POLLIN}};
	struct timespec ts, *tp = NULL;

	if (deadline != UINT64_MAX) {
		uint64_t now = uv_hrtime();
		if (now >= deadline)
			return TERN_ETIMEDOUT;
		ts.tv_sec = (deadline - now) / 1000000000u;
		ts.tv_nsec = (deadline - now) % 1000000000u;
		tp = &ts;
	}
	int n = ppoll(p, wakefd >= 0 ? 2 : 1, tp, NULL);
	if (n < 0)
		return errno == EINTR ? 0 : -errno;
	if (wakefd >= 0 && p[1].revents != 0)
		return TERN_EKILLED;
	return 0;
}

static bool actor_killed(struct tern_actor *a);

/* mbx_recv takes the next message from the socket (not the deferred FIFO)
 * before deadline.  A kill of self (the mailbox's actor, or NULL) aborts the
 * wait with TERN_EKILLED. */
static int
mbx_recv(struct rt_mbx *mb, nng_msg **out, uint64_t deadline, struct tern_actor *self)
{
	for (;;) {
		if (self != NULL && actor_killed(self))
			return TERN_EKILLED;
		int rv = nng_recvmsg(mb->pull, out, NNG_FLAG_NONBLOCK);
		if (rv == 0)
			return 0;
		if (rv != NNG_EAGAIN)
			return tern_from_nng(rv);
		int rc = rt_wait(mb->rfd, self != NULL ? self->wakefd : -1, deadline);
		if (rc != 0)
			return rc;
	}
}

/* rt_watch registers w (a request about to be sent to w->target); returns
 * TERN_ECLOSED if the target is gone already. */
static int
rt_watch(struct tern_runtime *rt, struct rt_waiter *w)
{
	int rc = TERN_ECLOSED;

	uv_mutex_lock(&rt->mtx);
	if (w->target != 0 && w->target < rt->nslots && rt->slots[w->target].open) {
		w->next = rt->waiters;
		rt->waiters = w;
		rc = 0;
	}
	uv_mutex_unlock(&rt->mtx);
	return rc;
}

static void
rt_unwatch(struct tern_runtime *rt, struct rt_waiter *w)
{
	uv_mutex_lock(&rt->mtx);
	for (struct rt_waiter **p = &rt->waiters; *p != NULL; p = &(*p)->next) {
		if (*p == w) {
			*p = w->next;
			break;
		}
	}
	uv_mutex_unlock(&rt->mtx);
}

/* A SYS_EXIT with re set is a monitor's notice for a request (the target
 * exited); supervisors' reports have re 0. */
static bool
rt_is_down_notice(const struct tern_msg *m)
{
	return m->type == TERN_MSG_SYS_EXIT && m->re != 0;
}

/* rt_down_code is what a request returns when its target exited first. */
static int
rt_down_code(const struct tern_msg *m)
{
	switch (m->u.sys_exit.reason) {
	case TERN_EXIT_KILLED:
		return TERN_EKILLED;
	case TERN_EXIT_ERROR:
		return m->u.sys_exit.code < 0 ? m->u.sys_exit.code : TERN_EACTOR;
	default:
		return TERN_ECLOSED;
	}
}

/* mbx_request is the selective receive of tern_actor_request and
 * tern_mailbox_request: everything that is not the reply is deferred.  If
 * the target exits first the request fails at once with its exit (reply is
 * then that SYS_EXIT). */
static int
mbx_request(struct rt_mbx *mb, uint32_t to, struct tern_msg *m, struct tern_msg *reply,
            int timeout_ms, struct tern_actor *self)
{
	uint64_t deadline = rt_deadline(timeout_ms);
	struct rt_waiter w = {.waiter = mb->id, .target = to};
	nng_msg *msg;
	int rc;

	mbx_release_held(mb);
	if (reply == NULL || m == NULL)
		return TERN_EINVAL;
	m->seq = atomic_fetch_add_explicit(&mb->rt->seq, 1, memory_order_relaxed) + 1;
	w.seq = m->seq;
	if ((rc = rt_watch(mb->rt, &w)) != 0)
		return rc;
	if ((rc = rt_send(mb->rt, mb->id, mb->name, to, m, RT_KEEP_SEQ)) != 0) {
		rt_unwatch(mb->rt, &w);
		return rc;
	}
	for (;;) {
		if ((rc = mbx_recv(mb, &msg, deadline, self)) != 0)
			break;
		if (rt_decode(msg, reply) == 0 && reply->re == m->seq) {
			mb->held = msg;
			rt_trace(mb->rt, TERN_TRACE_RECV, mb->id, mb->name, reply->from, reply, 0,
			         NULL);
			rt_unwatch(mb->rt, &w);
			if (rt_is_down_notice(reply))
				return rt_down_code(reply);
			if (self != NULL)
				actor_fault(self, "recv", tern_msg_name(reply->type));
			return 0;
		}
		/* Undecodable messages are deferred too: the owner's normal
		 * receive path reports them. */
		if ((rc = mbx_defer(mb, msg)) != 0) {
			nng_msg_free(msg);
			break;
		}
	}
	rt_unwatch(mb->rt, &w);
	memset(reply, 0, sizeof(*reply));
	return rc;
}

/* ---- runtime ---- */

int
tern_runtime_create(struct tern_runtime **out, struct tern_trace *trace)
{
	struct tern_runtime *rt = calloc(1, sizeof(*rt));
	int rc;

	if (rt == NULL)
		return TERN_ENOMEM;
	if ((rc = uv_mutex_init(&rt->mtx)) != 0) {
		free(rt);
		return rc;
	}
	rt->trace = trace;
	rt->next_id = 1;
	atomic_init(&rt->seq, 0);
	*out = rt;
	return 0;
}

struct tern_trace *
tern_runtime_trace(struct tern_runtime *rt)
{
	return rt->trace;
}

static void actor_free(struct tern_actor *a);

void
tern_runtime_destroy(struct tern_runtime *rt)
{
	bool leaked = false;

	if (rt == NULL)
		return;
	/* Oldest first: supervisors are spawned before their children, and a
	 * supervisor's stop callback may join its children itself. */
	for (;;) {
		uv_mutex_lock(&rt->mtx);
		struct tern_actor *a = rt->actors;
		uv_mutex_unlock(&rt->mtx);
		if (a == NULL)
			break;
		tern_actor_kill(a);
		if (tern_actor_join(a, RT_DESTROY_JOIN_MS, NULL) != 0) {
			fprintf(stderr, "tern: actor %s (%u) did not exit in %d ms; leaking it\n",
			        a->desc->name, a->mb.id, RT_DESTROY_JOIN_MS);
			uv_mutex_lock(&rt->mtx);
			rt->actors = a->next;
			if (a->next != NULL)
				a->next->prev = NULL;
			else
				rt->actors_tail = NULL;
			uv_mutex_unlock(&rt->mtx);
			leaked = true;
		}
	}
	while (rt->mailboxes != NULL)
		tern_mailbox_close(rt->mailboxes);
	while (rt->queues != NULL) {
		struct tern_queue *q = rt->queues;
		rt->queues = q->next;
		tern_queue_close(q);
		close(q->fd);
		free(q);
	}
	/* A wedged actor thread still uses rt: leaking beats a use after free. */
	if (leaked)
		return;
	free(rt->slots);
	uv_mutex_destroy(&rt->mtx);
	free(rt);
}

/* ---- actors ---- */

uint32_t
tern_actor_id(const struct tern_actor *a)
{
	return a->mb.id;
}

const char *
tern_actor_name(const struct tern_actor *a)
{
	return a->desc->name;
}

struct tern_runtime *
tern_actor_rt(const struct tern_actor *a)
{
	return a->rt;
}

static bool
actor_killed(struct tern_actor *a)
{
	return atomic_load_explicit(&a->killed, memory_order_acquire);
}

/* actor_dispatch handles one received message; returns the handler's code,
 * TERN_ACTOR_DONE for SYS_STOP. */
static int
actor_dispatch(struct tern_actor *a, nng_msg *msg)
{
	struct tern_msg m;
	int rc;

	/* A new receive: the previous request's reply is no longer readable. */
	mbx_release_held(&a->mb);
	if ((rc = rt_decode(msg, &m)) != 0) {
		nng_msg_free(msg);
		return tern_actor_fail(a, rc, "undecodable message in mailbox");
	}
	if (m.type == TERN_MSG_SYS_STOP) {
		nng_msg_free(msg);
		return TERN_ACTOR_DONE;
	}
	if (rt_is_down_notice(&m)) {
		/* For a request that has ended (timed out) already. */
		nng_msg_free(msg);
		return 0;
	}
	actor_fault(a, "recv", tern_msg_name(m.type));
	if (actor_killed(a)) {
		nng_msg_free(msg);
		return TERN_EKILLED;
	}
	uint64_t t0 = uv_hrtime();
	rc = a->desc->handle(a, a->state, &m);
	rt_trace(a->rt, TERN_TRACE_RECV, a->mb.id, a->desc->name, m.from, &m, uv_hrtime() - t0,
	         NULL);
	/* BIN and RANGES fields borrowed from msg until the handler returned. */
	nng_msg_free(msg);
	return rc;
}

/* actor_drain dispatches up to RT_BATCH messages, deferred ones first.
 * *more tells whether the batch bound cut it short. */
static int
actor_drain(struct tern_actor *a, bool *more)
{
	*more = false;
	for (int n = 0; n < RT_BATCH; n++) {
		nng_msg *msg;
		if (actor_killed(a))
			return TERN_EKILLED;
		if ((msg = mbx_undefer(&a->mb)) == NULL) {
			int rv = nng_recvmsg(a->mb.pull, &msg, NNG_FLAG_NONBLOCK);
			if (rv == NNG_EAGAIN)
				return 0;
			if (rv != 0)
				return tern_actor_fail(a, tern_from_nng(rv),
				                       "mailbox receive failed");
		}
		int rc = actor_dispatch(a, msg);
		if (rc != 0)
			return rc;
	}
	*more = true;
	return 0;
}

/* actor_loop runs until a callback asks to stop or fails, or a kill. */
static int
actor_loop(struct tern_actor *a)
{
	struct pollfd p[2 + RT_WATCH_MAX];
	int rc;

	for (;;) {
		bool more;

		/* tern_actor_stop found the mailbox full: queue SYS_STOP now
		 * that this thread is draining it (never blocks). */
		if (atomic_load_explicit(&a->stop_retry, memory_order_acquire)) {
			struct tern_msg stop;
			tern_msg_init(&stop, TERN_MSG_SYS_STOP);
			if (rt_send(a->rt, 0, "", a->mb.id, &stop, NNG_FLAG_NONBLOCK) == 0)
				atomic_store_explicit(&a->stop_retry, false, memory_order_relaxed);
		}
		if ((rc = actor_drain(a, &more)) != 0)
			return rc;

		uint64_t now = uv_hrtime();
		if (a->tick_period != 0 && a->desc->tick != NULL && now >= a->next_tick) {
			if (actor_killed(a))
				return TERN_EKILLED;
			/* Late ticks are not replayed in a burst. */
			a->next_tick += a->tick_period;
			if (a->next_tick <= now)
				a->next_tick = now + a->tick_period;
			if ((rc = a->desc->tick(a, a->state)) != 0)
				return rc;
			now = uv_hrtime();
		}

		struct timespec ts, *tp = NULL;
		if (more) {
			ts = (struct timespec){0, 0};
			tp = &ts;
		} else if (a->tick_period != 0 && a->desc->tick != NULL) {
			uint64_t next = a->next_tick;
			uint64_t d = next > now ? next - now : 0;
			ts.tv_sec = d / 1000000000u;
			ts.tv_nsec = d % 1000000000u;
			tp = &ts;
		}
		/* A copy: on_fd may watch or unwatch while we walk the results. */
		int nfds = 2 + a->nwatch;
		p[0] = (struct pollfd){.fd = a->mb.rfd, .events = POLLIN};
		p[1] = (struct pollfd){.fd = a->wakefd, .events = POLLIN};
		memcpy(&p[2], a->watch, a->nwatch * sizeof(p[0]));
		if (ppoll(p, nfds, tp, NULL) < 0) {
			if (errno == EINTR)
				continue;
			return tern_actor_fail(a, -errno, "poll failed");
		}
		if (p[1].revents != 0)
			return TERN_EKILLED;
		for (int i = 2; i < nfds; i++) {
			if (p[i].revents == 0)
				continue;
			bool watched = false;
			for (int j = 0; j < a->nwatch; j++)
				watched = watched || a->watch[j].fd == p[i].fd;
			if (!watched)
				continue;
			if (actor_killed(a))
				return TERN_EKILLED;
			if (a->desc->on_fd != NULL &&
			    (rc = a->desc->on_fd(a, a->state, p[i].fd, p[i].revents)) != 0)
				return rc;
			/* A closed fd never becomes valid again (its number may
			 * be reused by someone else): stop polling it. */
			if (p[i].revents & POLLNVAL)
				tern_actor_unwatch_fd(a, p[i].fd);
		}
	}
}

/* actor_exit: stop, close the mailbox, report, end.  Every path goes here. */
static void
actor_exit(struct tern_actor *a, int rc, bool report)
{
	struct tern_exit *e = &a->exit;

	memset(e, 0, sizeof(*e));
	e->actor = a->mb.id;
	if (actor_killed(a)) {
		e->reason = TERN_EXIT_KILLED;
		e->code = TERN_EKILLED;
		snprintf(e->why, sizeof(e->why), "killed");
	} else if (rc < 0) {
		e->reason = TERN_EXIT_ERROR;
		e->code = rc;
		snprintf(e->why, sizeof(e->why), "%s", a->why_set ? a->why : tern_strerror(rc));
	} else {
		e->reason = TERN_EXIT_NORMAL;
	}

	/* Monitor semantics: gone for everyone before stop runs. */
	rt_unregister(a->rt, a->mb.id, a->desc->name, e);
	/* stop closes the sockets: a kill must not shut down a number that
	 * may be reused from here on. */
	uv_mutex_lock(&a->mtx);
	a->nowned = 0;
	uv_mutex_unlock(&a->mtx);
	if (a->desc->stop != NULL)
		a->desc->stop(a, a->state);
	mbx_close(&a->mb, e);
	rt_trace(a->rt, TERN_TRACE_EXIT, a->mb.id, a->desc->name, a->supervisor, NULL, e->reason,
	         e->why);
	if (report && a->supervisor != 0) {
		struct tern_msg m;
		tern_msg_init(&m, TERN_MSG_SYS_EXIT);
		m.u.sys_exit.actor = a->mb.id;
		snprintf(m.u.sys_exit.name, sizeof(m.u.sys_exit.name), "%s", a->desc->name);
		m.u.sys_exit.reason = e->reason;
		m.u.sys_exit.code = e->code;
		snprintf(m.u.sys_exit.why, sizeof(m.u.sys_exit.why), "%s", e->why);
		/* Best effort: a supervisor that is gone cannot be told. */
		(void)rt_send(a->rt, a->mb.id, a->desc->name, a->supervisor, &m, 0);
	}
}

static void
actor_main(void *arg)
{
	struct tern_actor *a = arg;
	int rc;

	rt_self = a;
	rt_trace(a->rt, TERN_TRACE_SPAWN, a->mb.id, a->desc->name, a->supervisor, NULL, 0,
	         a->desc->name);
	rc = a->desc->init != NULL ? a->desc->init(a, a->state, a->arg) : 0;
	if (rc != 0) {
		/* tern_spawn returns rc; nobody is told, stop still runs. */
		actor_exit(a, rc < 0 ? rc : TERN_EACTOR, false);
	} else {
		a->next_tick = uv_hrtime() + a->tick_period;
		actor_fault(a, "spawn", NULL);
	}
	uv_mutex_lock(&a->mtx);
	a->init_done = true;
	a->init_rc = rc;
	uv_cond_broadcast(&a->cond);
	uv_mutex_unlock(&a->mtx);
	if (rc != 0)
		return;

	actor_exit(a, actor_loop(a), true);
	uv_mutex_lock(&a->mtx);
	a->done = true;
	uv_cond_broadcast(&a->cond);
	uv_mutex_unlock(&a->mtx);
}

static void
actor_free(struct tern_actor *a)
{
	close(a->wakefd);
	uv_cond_destroy(&a->cond);
	uv_mutex_destroy(&a->mtx);
	free(a->state);
	free(a);
}

static void
actor_fault(struct tern_actor *a, const char *kind, const char *arg)
{
	if (tern_fault_enabled() &&
	    tern_fault_check(a->desc->name, a->instance, a->mb.id, kind, arg, a->rt->trace) ==
	        TERN_FAULT_KILL)
		tern_actor_kill(a);
}

void
tern_actor_event(struct tern_actor *self, const char *kind, const char *arg)
{
	actor_fault(self, kind, arg);
}

bool
tern_actor_killed(struct tern_actor *self)
{
	return actor_killed(self);
}

/* actor_block records the nng operation a is about to wait in, so that a
 * kill cancels it; TERN_EKILLED (cancel it yourself) if a is killed. */
static int
actor_block(struct tern_actor *a, nng_aio *aio)
{
	int rc = 0;

	uv_mutex_lock(&a->mtx);
	if (actor_killed(a))
		rc = TERN_EKILLED;
	else
		a->blocking = aio;
	uv_mutex_unlock(&a->mtx);
	return rc;
}

static void
actor_unblock(struct tern_actor *a)
{
	uv_mutex_lock(&a->mtx);
	a->blocking = NULL;
	uv_mutex_unlock(&a->mtx);
}

int
tern_actor_own_fd(struct tern_actor *self, int fd)
{
	int rc = 0;

	if (fd < 0)
		return TERN_EINVAL;
	uv_mutex_lock(&self->mtx);
	if (actor_killed(self))
		(void)shutdown(fd, SHUT_RDWR);
	else if (self->nowned == RT_OWNED_MAX)
		rc = -ENOSPC;
	else
		self->owned[self->nowned++] = fd;
	uv_mutex_unlock(&self->mtx);
	return rc;
}

void
tern_actor_disown_fd(struct tern_actor *self, int fd)
{
	uv_mutex_lock(&self->mtx);
	for (int i = 0; i < self->nowned; i++) {
		if (self->owned[i] == fd) {
			self->owned[i] = self->owned[--self->nowned];
			break;
		}
	}
	uv_mutex_unlock(&self->mtx);
}

int
tern_actor_sleep(struct tern_actor *self, uint64_t ns)
{
	uint64_t deadline = uv_hrtime() + ns;

	for (;;) {
		if (actor_killed(self))
			return TERN_EKILLED;
		uint64_t now = uv_hrtime();
		if (now >= deadline)
			return 0;
		struct pollfd p = {.fd = self->wakefd, .events = POLLIN};
		struct timespec ts = {(time_t)((deadline - now) / 1000000000u),
		                      (long)((deadline - now) % 1000000000u)};
		if (ppoll(&p, 1, &ts, NULL) < 0 && errno != EINTR)
			return -errno;
	}
}

int
tern_spawn(struct tern_runtime *rt, const struct tern_actor_desc *desc, void *arg,
           uint32_t supervisor, struct tern_actor **out, struct tern_exit *failed)
{
	struct tern_actor *a;
	int rc;

	if (failed != NULL)
		memset(failed, 0, sizeof(*failed));
	if (rt == NULL || desc == NULL || desc->handle == NULL || out == NULL)
		return TERN_EINVAL;
	if ((a = calloc(1, sizeof(*a))) == NULL)
		return TERN_ENOMEM;
	/* calloc(1, 0) may return NULL; the state pointer is always valid. */
	if ((a->state = calloc(1, desc->state_size ? desc->state_size : 1)) == NULL) {
		free(a);
		return TERN_ENOMEM;
	}
	a->rt = rt;
	a->desc = desc;
	a->arg = arg;
	a->supervisor = supervisor;
	atomic_init(&a->killed, false);
	a->instance = tern_fault_instance(desc->name);
	atomic_init(&a->stop_asked, false);
	atomic_init(&a->stop_retry, false);
	if ((a->wakefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0) {
		rc = -errno;
		goto fail_state;
	}
	if ((rc = uv_mutex_init(&a->mtx)) != 0)
		goto fail_wake;
	if ((rc = uv_cond_init(&a->cond)) != 0)
		goto fail_mtx;
	if ((rc = mbx_open(rt, &a->mb, desc->name)) != 0)
		goto fail_cond;
	if ((rc = uv_thread_create(&a->thread, actor_main, a)) != 0)
		goto fail_mbx;

	uv_mutex_lock(&a->mtx);
	while (!a->init_done)
		uv_cond_wait(&a->cond, &a->mtx);
	rc = a->init_rc;
	uv_mutex_unlock(&a->mtx);
	if (rc != 0) {
		uv_thread_join(&a->thread);
		if (failed != NULL)
			*failed = a->exit;
		actor_free(a);
		return rc;
	}

	uv_mutex_lock(&rt->mtx);
	a->prev = rt->actors_tail;
	if (rt->actors_tail != NULL)
		rt->actors_tail->next = a;
	else
		rt->actors = a;
	rt->actors_tail = a;
	uv_mutex_unlock(&rt->mtx);
	*out = a;
	return 0;

fail_mbx:
	mbx_close(&a->mb, &a->exit);
fail_cond:
	uv_cond_destroy(&a->cond);
fail_mtx:
	uv_mutex_destroy(&a->mtx);
fail_wake:
	close(a->wakefd);
fail_state:
	free(a->state);
	free(a);
	return rc;
}

int
tern_send(struct tern_runtime *rt, uint32_t from, uint32_t to, struct tern_msg *m)
{
	return rt_send(rt, from, NULL, to, m, 0);
}

int
tern_actor_send(struct tern_actor *self, uint32_t to, struct tern_msg *m)
{
	return rt_send(self->rt, self->mb.id, self->desc->name, to, m, 0);
}

int
tern_actor_reply(struct tern_actor *self, const struct tern_msg *req, struct tern_msg *rep)
{
	rep->re = req->seq;
	return tern_actor_send(self, req->from, rep);
}

int
tern_actor_request(struct tern_actor *self, uint32_t to, struct tern_msg *m, struct tern_msg *reply,
                   int timeout_ms)
{
	return mbx_request(&self->mb, to, m, reply, timeout_ms, self);
}

void
tern_actor_stop(struct tern_actor *a)
{
	struct tern_msg m;

	if (atomic_exchange_explicit(&a->stop_asked, true, memory_order_relaxed))
		return;
	tern_msg_init(&m, TERN_MSG_SYS_STOP);
	/* Non-blocking: with the mailbox full, the actor queues SYS_STOP
	 * itself at its next wake-up (it is busy draining, so soon). */
	if (rt_send(a->rt, 0, "", a->mb.id, &m, NNG_FLAG_NONBLOCK) == TERN_ETIMEDOUT)
		atomic_store_explicit(&a->stop_retry, true, memory_order_release);
}

void
tern_actor_kill(struct tern_actor *a)
{
	if (atomic_exchange_explicit(&a->killed, true, memory_order_release))
		return;
	/* Wake every wait of the actor: its poll (wakefd), an nng operation it
	 * waits in (cancel), a socket read or write (shutdown). */
	uint64_t one = 1;
	(void)!write(a->wakefd, &one, sizeof(one));
	uv_mutex_lock(&a->mtx);
	for (int i = 0; i < a->nowned; i++)
		(void)shutdown(a->owned[i], SHUT_RDWR);
	if (a->blocking != NULL)
		nng_aio_cancel(a->blocking);
	uv_mutex_unlock(&a->mtx);
}

int
tern_actor_join(struct tern_actor *a, int timeout_ms, struct tern_exit *exit)
{
	uv_thread_t me = uv_thread_self();
	bool done;

	if (uv_thread_equal(&me, &a->thread))
		return TERN_EINVAL;
	uint64_t deadline = rt_deadline(timeout_ms);
	uv_mutex_lock(&a->mtx);
	while (!a->done) {
		if (deadline == UINT64_MAX) {
			uv_cond_wait(&a->cond, &a->mtx);
			continue;
		}
		uint64_t now = uv_hrtime();
		if (now >= deadline)
			break;
		(void)uv_cond_timedwait(&a->cond, &a->mtx, deadline - now);
	}
	done = a->done;
	uv_mutex_unlock(&a->mtx);
	if (!done)
		return TERN_ETIMEDOUT;

	uv_thread_join(&a->thread);
	if (exit != NULL)
		*exit = a->exit;
	struct tern_runtime *rt = a->rt;
	uv_mutex_lock(&rt->mtx);
	if (a->prev != NULL)
		a->prev->next = a->next;
	else
		rt->actors = a->next;
	if (a->next != NULL)
		a->next->prev = a->prev;
	else
		rt->actors_tail = a->prev;
	uv_mutex_unlock(&rt->mtx);
	actor_free(a);
	return 0;
}

void
tern_actor_stop_join(struct tern_actor **a, int timeout_ms, struct tern_exit *exit)
{
	if (*a == NULL)
		return;
	tern_actor_stop(*a);
	if (tern_actor_join(*a, timeout_ms, exit) != 0) {
		tern_actor_kill(*a);
		if (tern_actor_join(*a, RT_KILL_JOIN_MS, exit) != 0) {
			/* Wedged in a call the runtime cannot interrupt: leave it
			 * (tern_runtime_destroy reports it) rather than hang. */
			fprintf(stderr, "tern: actor %s (%u) did not exit %d ms after a kill\n",
			        (*a)->desc->name, (*a)->mb.id, RT_KILL_JOIN_MS);
			if (exit != NULL) {
				memset(exit, 0, sizeof(*exit));
				exit->actor = (*a)->mb.id;
				exit->reason = TERN_EXIT_KILLED;
				exit->code = TERN_ETIMEDOUT;
				snprintf(exit->why, sizeof(exit->why), "did not exit after a kill");
			}
		}
	}
	*a = NULL;
}

void
tern_actor_state(struct tern_actor *self, const char *state)
{
	rt_trace(self->rt, TERN_TRACE_STATE, self->mb.id, self->desc->name, 0, NULL, 0, state);
	actor_fault(self, "state", state);
}

void
tern_actor_counter(struct tern_actor *self, const char *name, double value)
{
	if (self->rt->trace != NULL)
		(void)tern_trace_counter(self->rt->trace, self->mb.id, self->desc->name, name,
		                         value);
}

int
tern_actor_fail(struct tern_actor *self, int code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(self->why, sizeof(self->why), fmt, ap);
	va_end(ap);
	self->why_set = true;
	return code;
}

void
tern_actor_set_tick(struct tern_actor *self, uint64_t period_ns)
{
	self->tick_period = period_ns;
	self->next_tick = uv_hrtime() + period_ns;
}

int
tern_actor_watch_fd(struct tern_actor *self, int fd, short events)
{
	if (fd < 0)
		return TERN_EINVAL;
	for (int i = 0; i < self->nwatch; i++) {
		if (self->watch[i].fd == fd) {
			self->watch[i].events = events;
			return 0;
		}
	}
	if (self->nwatch == RT_WATCH_MAX)
		return -ENOSPC;
	self->watch[self->nwatch++] = (struct pollfd){.fd = fd, .events = events};
	return 0;
}

void
tern_actor_unwatch_fd(struct tern_actor *self, int fd)
{
	for (int i = 0; i < self->nwatch; i++) {
		if (self->watch[i].fd == fd) {
			self->watch[i] = self->watch[--self->nwatch];
			return;
		}
	}
}

/* ---- mailboxes for plain threads ---- */

int
tern_mailbox_open(struct tern_runtime *rt, const char *name, struct tern_mailbox **out)
{
	struct tern_mailbox *mb;
	int rc;

	if (rt == NULL || out == NULL)
		return TERN_EINVAL;
	if ((mb = calloc(1, sizeof(*mb))) == NULL)
		return TERN_ENOMEM;
	snprintf(mb->name, sizeof(mb->name), "%s", name != NULL ? name : "mailbox");
	if ((rc = mbx_open(rt, &mb->mb, mb->name)) != 0) {
		free(mb);
		return rc;
	}
	uv_mutex_lock(&rt->mtx);
	mb->next = rt->mailboxes;
	if (mb->next != NULL)
		mb->next->prev = mb;
	rt->mailboxes = mb;
	uv_mutex_unlock(&rt->mtx);
	*out = mb;
	return 0;
}

uint32_t
tern_mailbox_id(const struct tern_mailbox *mb)
{
	return mb->mb.id;
}

int
tern_mailbox_recv(struct tern_mailbox *mb, struct tern_msg *m, int timeout_ms)
{
	nng_msg *msg;
	int rc;

	uint64_t deadline = rt_deadline(timeout_ms);
	mbx_release_held(&mb->mb);
	for (;;) {
		if ((msg = mbx_undefer(&mb->mb)) == NULL &&
		    (rc = mbx_recv(&mb->mb, &msg, deadline, NULL)) != 0)
			return rc;
		if ((rc = rt_decode(msg, m)) != 0) {
			nng_msg_free(msg);
			return rc;
		}
		if (!rt_is_down_notice(m))
			break;
		nng_msg_free(msg); /* for a request that timed out already */
	}
	mb->mb.held = msg;
	rt_trace(mb->mb.rt, TERN_TRACE_RECV, mb->mb.id, mb->name, m->from, m, 0, NULL);
	return 0;
}

int
tern_mailbox_request(struct tern_mailbox *mb, uint32_t to, struct tern_msg *m,
                     struct tern_msg *reply, int timeout_ms)
{
	return mbx_request(&mb->mb, to, m, reply, timeout_ms, NULL);
}

void
tern_mailbox_close(struct tern_mailbox *mb)
{
	struct tern_runtime *rt;

	if (mb == NULL)
		return;
	rt = mb->mb.rt;
	uv_mutex_lock(&rt->mtx);
	if (mb->prev != NULL)
		mb->prev->next = mb->next;
	else
		rt->mailboxes = mb->next;
	if (mb->next != NULL)
		mb->next->prev = mb->prev;
	uv_mutex_unlock(&rt->mtx);
	struct tern_exit e = {.actor = mb->mb.id, .reason = TERN_EXIT_NORMAL, .code = 0};
	snprintf(e.why, sizeof(e.why), "mailbox closed");
	mbx_close(&mb->mb, &e);
	free(mb);
}

/* ---- shared work queues ---- */

/* Whether a message type has fields that borrow from the received buffer
 * (generated from the schema, like everything else about messages). */
#define RT_BORROWS_U32 0
#define RT_BORROWS_U64 0
#define RT_BORROWS_I32 0
#define RT_BORROWS_I64 0
#define RT_BORROWS_F64 0
#define RT_BORROWS_BOOL 0
#define RT_BORROWS_STR 0
#define RT_BORROWS_BIN 1
#define RT_BORROWS_RANGES 1
#define RT_BORROWS_FIELD(type, name) | RT_BORROWS_##type

static bool
rt_borrows(uint32_t type)
{
	switch (type) {
#define X(NAME, name, id)                                                                          \
	case TERN_MSG_##NAME:                                                                      \
		return (0 TERN_FIELDS_##NAME(RT_BORROWS_FIELD)) != 0;
		TERN_MESSAGES(X)
#undef X
	default:
		return false;
	}
}

/* rt_aio_wait waits for aio; on an actor's thread a kill cancels it. */
static void
rt_aio_wait(nng_aio *aio)
{
	if (rt_self != NULL && actor_block(rt_self, aio) != 0)
		nng_aio_cancel(aio);
	nng_aio_wait(aio);
	if (rt_self != NULL)
		actor_unblock(rt_self);
}

static nng_duration
rt_duration(int timeout_ms)
{
	return timeout_ms < 0 ? NNG_DURATION_INFINITE : (nng_duration)timeout_ms;
}

int
tern_queue_open(struct tern_runtime *rt, const char *name, struct tern_queue **out)
{
	struct tern_queue *q;
	char url[96];
	int rv, rfd;

	if (rt == NULL || out == NULL)
		return TERN_EINVAL;
	if ((q = calloc(1, sizeof(*q))) == NULL)
		return TERN_ENOMEM;
	q->rt = rt;
	q->fd = -1;
	atomic_init(&q->closed, false);
	snprintf(q->name, sizeof(q->name), "%s", name != NULL ? name : "queue");
	q->id = rt_new_id(rt);
	snprintf(url, sizeof(url), "inproc://tern-%p-q%u", (void *)rt, q->id);

	if ((rv = nng_push0_open(&q->push)) != 0)
		goto fail;
	if ((rv = nng_socket_set_int(q->push, NNG_OPT_SENDBUF, RT_QUEUE_BUF)) != 0 ||
	    (rv = nng_listen(q->push, url, NULL, 0)) != 0)
		goto fail_push;
	if ((rv = nng_pull0_open(&q->pull)) != 0)
		goto fail_push;
	if ((rv = nng_socket_set_int(q->pull, NNG_OPT_RECVBUF, RT_QUEUE_BUF)) != 0 ||
	    (rv = nng_dial(q->pull, url, NULL, 0)) != 0 ||
	    (rv = nng_socket_get_int(q->pull, NNG_OPT_RECVFD, &rfd)) != 0)
		goto fail_pull;
	if ((q->fd = fcntl(rfd, F_DUPFD_CLOEXEC, 0)) < 0) {
		rv = NNG_ESYSERR | errno;
		goto fail_pull;
	}
	uv_mutex_lock(&rt->mtx);
	q->next = rt->queues;
	rt->queues = q;
	uv_mutex_unlock(&rt->mtx);
	*out = q;
	return 0;

fail_pull:
	nng_close(q->pull);
fail_push:
	nng_close(q->push);
fail:
	free(q);
	return tern_from_nng(rv);
}

int
tern_queue_put(struct tern_queue *q, uint32_t from, struct tern_msg *m, int timeout_ms)
{
	nng_aio *aio;
	nng_msg *msg;
	int rc, rv;

	if (atomic_load_explicit(&q->closed, memory_order_acquire))
		return TERN_ECLOSED;
	if (m == NULL || rt_borrows(m->type))
		return TERN_EINVAL;
	m->seq = atomic_fetch_add_explicit(&q->rt->seq, 1, memory_order_relaxed) + 1;
	m->from = from;
	m->time_ns = uv_hrtime();
	if ((rc = rt_encode(m, &msg)) != 0)
		return rc;
	if ((rv = nng_aio_alloc(&aio, NULL, NULL)) != 0) {
		nng_msg_free(msg);
		return tern_from_nng(rv);
	}
	nng_aio_set_msg(aio, msg);
	nng_aio_set_timeout(aio, rt_duration(timeout_ms));
	nng_send_aio(q->push, aio);
	rt_aio_wait(aio);
	if ((rv = nng_aio_result(aio)) != 0)
		nng_msg_free(nng_aio_get_msg(aio)); /* not sent: still ours */
	nng_aio_free(aio);
	if (rv == NNG_ECANCELED && rt_self != NULL)
		return TERN_EKILLED;
	if (rv != 0)
		return tern_from_nng(rv);
	char fname[64];
	rt_name(q->rt, from, fname, sizeof(fname));
	rt_trace(q->rt, TERN_TRACE_SEND, from, fname, q->id, m, 0, NULL);
	return 0;
}

int
tern_queue_take(struct tern_queue *q, uint32_t by, struct tern_msg *m, int timeout_ms)
{
	nng_msg *msg = NULL;
	int rc, rv;

	if (atomic_load_explicit(&q->closed, memory_order_acquire))
		return TERN_ECLOSED;
	if (m == NULL)
		return TERN_EINVAL;
	if (timeout_ms == 0) {
		rv = nng_recvmsg(q->pull, &msg, NNG_FLAG_NONBLOCK);
		if (rv == NNG_EAGAIN)
			return TERN_ETIMEDOUT;
	} else {
		/* An aio per take: the pull socket queues waiting takers in
		 * order, so the first to ask gets the next item. */
		nng_aio *aio;
		if ((rv = nng_aio_alloc(&aio, NULL, NULL)) != 0)
			return tern_from_nng(rv);
		nng_aio_set_timeout(aio, rt_duration(timeout_ms));
		nng_recv_aio(q->pull, aio);
		rt_aio_wait(aio);
		if ((rv = nng_aio_result(aio)) == 0)
			msg = nng_aio_get_msg(aio);
		nng_aio_free(aio);
	}
	if (rv == NNG_ECANCELED && rt_self != NULL)
		return TERN_EKILLED;
	if (rv != 0)
		return tern_from_nng(rv);
	rc = rt_decode(msg, m);
	nng_msg_free(msg); /* queue items borrow nothing (tern_queue_put) */
	if (rc != 0)
		return rc;
	char bname[64];
	rt_name(q->rt, by, bname, sizeof(bname));
	rt_trace(q->rt, TERN_TRACE_RECV, by, bname, q->id, m, 0, NULL);
	/* The item is the taker's even if the fault kills it now: a crash
	 * right after taking work is what the handback paths are for. */
	if (m->type == TERN_MSG_CHUNK && rt_self != NULL && rt_self->mb.id == by)
		actor_fault(rt_self, "chunk", NULL);
	return 0;
}

int
tern_queue_fd(struct tern_queue *q)
{
	return q->fd;
}

void
tern_queue_close(struct tern_queue *q)
{
	if (atomic_exchange_explicit(&q->closed, true, memory_order_acq_rel))
		return;
	/* Closing fails blocked putters and takers with NNG_ECLOSED. */
	nng_close(q->push);
	nng_close(q->pull);
}
