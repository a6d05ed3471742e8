/*
 * The receiving end shared by actors and mailboxes: selective receive for
 * requests, monitor notices (a request fails at once when its target
 * exits), and mailboxes for plain threads.
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
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "actors/actor.h"
#include "actors/fault.h"
#include "actors/runtime.h"
#include "tern/error.h"

/* ---- the receiving end ---- */

int
terni_mbx_open(struct tern_runtime *rt, struct rt_mbx *mb, const char *name)
{
	char url[96];
	nng_socket push;
	int rv;

	memset(mb, 0, sizeof(*mb));
	mb->rt = rt;
	mb->name = name;
	mb->rfd = -1;
	mb->id = terni_rt_new_id(rt);
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

/* terni_rt_unregister closes the address id: later sends get TERN_ECLOSED at once,
 * senders blocked on its full mailbox get TERN_ECLOSED, and every request
 * waiting on it is told at once with e (its reason, code and why). */
void
terni_rt_unregister(struct tern_runtime *rt, uint32_t id, const char *name,
                    const struct tern_exit *e)
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
		(void)terni_rt_send(rt, id, name, c->waiter, &m, 0);
		free(c);
	}
}

/* terni_mbx_close unregisters the mailbox (if not done yet), closes its receiving
 * socket and frees what was queued. */
void
terni_mbx_drain(struct rt_mbx *mb)
{
	nng_msg *msg;
	while (nng_recvmsg(mb->pull, &msg, NNG_FLAG_NONBLOCK) == 0)
		nng_msg_free(msg);
}

void
terni_mbx_close(struct rt_mbx *mb, const struct tern_exit *e)
{
	terni_mbx_drain(mb);
	terni_rt_unregister(mb->rt, mb->id, mb->name, e);
	terni_mbx_drain(mb);
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

void
terni_mbx_release_held(struct rt_mbx *mb)
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

nng_msg *
terni_mbx_undefer(struct rt_mbx *mb)
{
	if (mb->dlen == 0)
		return NULL;
	nng_msg *msg = mb->dq[mb->dhead];
	mb->dhead = (mb->dhead + 1) % mb->dcap;
	mb->dlen--;
	return msg;
}

uint64_t
terni_rt_deadline(int timeout_ms)
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

/* mbx_recv takes the next message from the socket (not the deferred FIFO)
 * before deadline.  A kill of self (the mailbox's actor, or NULL) aborts the
 * wait with TERN_EKILLED. */
static int
mbx_recv(struct rt_mbx *mb, nng_msg **out, uint64_t deadline, struct tern_actor *self)
{
	for (;;) {
		if (self != NULL && terni_actor_killed(self))
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
bool
terni_rt_is_down_notice(const struct tern_msg *m)
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

/* terni_mbx_request is the selective receive of tern_actor_request and
 * tern_mailbox_request: everything that is not the reply is deferred.  If
 * the target exits first the request fails at once with its exit (reply is
 * then that SYS_EXIT). */
int
terni_mbx_request(struct rt_mbx *mb, uint32_t to, struct tern_msg *m, struct tern_msg *reply,
                  int timeout_ms, struct tern_actor *self)
{
	uint64_t deadline = terni_rt_deadline(timeout_ms);
	struct rt_waiter w = {.waiter = mb->id, .target = to};
	nng_msg *msg;
	int rc;

	terni_mbx_release_held(mb);
	if (reply == NULL || m == NULL)
		return TERN_EINVAL;
	m->seq = atomic_fetch_add_explicit(&mb->rt->seq, 1, memory_order_relaxed) + 1;
	w.seq = m->seq;
	if ((rc = rt_watch(mb->rt, &w)) != 0)
		return rc;
	if ((rc = terni_rt_send(mb->rt, mb->id, mb->name, to, m, RT_KEEP_SEQ)) != 0) {
		rt_unwatch(mb->rt, &w);
		return rc;
	}
	for (;;) {
		if ((rc = mbx_recv(mb, &msg, deadline, self)) != 0)
			break;
		if (terni_rt_decode(msg, reply) == 0 && reply->re == m->seq) {
			mb->held = msg;
			terni_rt_trace(mb->rt, TERN_TRACE_RECV, mb->id, mb->name, reply->from,
			               reply, 0, NULL);
			rt_unwatch(mb->rt, &w);
			if (terni_rt_is_down_notice(reply))
				return rt_down_code(reply);
			if (self != NULL)
				terni_actor_fault(self, "recv", tern_msg_name(reply->type));
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
	if ((rc = terni_mbx_open(rt, &mb->mb, mb->name)) != 0) {
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

	uint64_t deadline = terni_rt_deadline(timeout_ms);
	terni_mbx_release_held(&mb->mb);
	for (;;) {
		if ((msg = terni_mbx_undefer(&mb->mb)) == NULL &&
		    (rc = mbx_recv(&mb->mb, &msg, deadline, NULL)) != 0)
			return rc;
		if ((rc = terni_rt_decode(msg, m)) != 0) {
			nng_msg_free(msg);
			return rc;
		}
		if (!terni_rt_is_down_notice(m))
			break;
		nng_msg_free(msg); /* for a request that timed out already */
	}
	mb->mb.held = msg;
	terni_rt_trace(mb->mb.rt, TERN_TRACE_RECV, mb->mb.id, mb->name, m->from, m, 0, NULL);
	return 0;
}

int
tern_mailbox_request(struct tern_mailbox *mb, uint32_t to, struct tern_msg *m,
                     struct tern_msg *reply, int timeout_ms)
{
	return terni_mbx_request(&mb->mb, to, m, reply, timeout_ms, NULL);
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
	terni_mbx_close(&mb->mb, &e);
	free(mb);
}
