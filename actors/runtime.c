/*
 * The actor runtime: ids, tracing, encoding, sending, the runtime object.
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
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "actors/actor.h"
#include "actors/fault.h"
#include "actors/runtime.h"
#include "tern/error.h"

/* ---- ids and tracing ---- */

uint32_t
terni_rt_new_id(struct tern_runtime *rt)
{
	uv_mutex_lock(&rt->mtx);
	uint32_t id = rt->next_id++;
	uv_mutex_unlock(&rt->mtx);
	return id;
}

void
terni_rt_trace(struct tern_runtime *rt, uint32_t kind, uint32_t actor, const char *name,
               uint32_t peer, const struct tern_msg *m, uint64_t value, const char *text)
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

void
terni_rt_cut_links(struct tern_runtime *rt)
{
	/* rt before an actor's own lock, as everywhere: an actor leaves the
	 * list under rt->mtx before it is freed. */
	uv_mutex_lock(&rt->mtx);
	for (struct tern_actor *a = rt->actors; a != NULL; a = a->next) {
		uv_mutex_lock(&a->mtx);
		for (int i = 0; i < a->nowned; i++)
			(void)shutdown(a->owned[i], SHUT_RDWR);
		uv_mutex_unlock(&a->mtx);
	}
	uv_mutex_unlock(&rt->mtx);
}

/* terni_rt_name copies the name of id into buf ("" when unknown or closed). */
void
terni_rt_name(struct tern_runtime *rt, uint32_t id, char *buf, size_t cap)
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

int
terni_rt_encode(const struct tern_msg *m, nng_msg **out)
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

int
terni_rt_decode(nng_msg *msg, struct tern_msg *m)
{
	return tern_msg_decode(nng_msg_body(msg), nng_msg_len(msg), m);
}

/* terni_rt_aio_wait waits for aio; on an actor's thread a kill cancels it. */
void
terni_rt_aio_wait(nng_aio *aio)
{
	if (terni_self != NULL && terni_actor_block(terni_self, aio) != 0)
		nng_aio_cancel(aio);
	nng_aio_wait(aio);
	if (terni_self != NULL)
		terni_actor_unblock(terni_self);
}

/* rt_send_wait sends msg to a full mailbox, waiting up to
 * TERN_SEND_TIMEOUT_MS; a kill of the calling actor ends the wait.  On
 * failure msg is still the caller's. */
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
	terni_rt_aio_wait(aio);
	rv = nng_aio_result(aio);
	nng_aio_free(aio);
	return rv == NNG_ETIMEDOUT ? NNG_EAGAIN : rv;
}

/* terni_rt_send is tern_send with the sender's name known (NULL: look it up) and
 * nng flags (NNG_FLAG_NONBLOCK: a full mailbox gives TERN_ETIMEDOUT). */
int
terni_rt_send(struct tern_runtime *rt, uint32_t from, const char *from_name, uint32_t to,
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
	if ((rc = terni_rt_encode(m, &msg)) != 0)
		return rc;
	rv = nng_sendmsg(push, msg, NNG_FLAG_NONBLOCK);
	if (rv == NNG_EAGAIN && !(flags & NNG_FLAG_NONBLOCK))
		rv = rt_send_wait(push, msg);
	if (rv != 0) {
		nng_msg_free(msg);
		if (rv == NNG_ECANCELED && terni_self != NULL)
			return TERN_EKILLED;
		return rv == NNG_EAGAIN ? TERN_ETIMEDOUT : tern_from_nng(rv);
	}
	terni_rt_trace(rt, TERN_TRACE_SEND, from, from_name != NULL ? from_name : fname, to, m, 0,
	               NULL);
	if (terni_self != NULL && terni_self->mb.id == from)
		terni_actor_fault(terni_self, "send", tern_msg_name(m->type));
	return 0;
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

int
tern_from_nng(int nng_err)
{
	if (nng_err == 0)
		return 0;
	switch (nng_err) {
	case NNG_ETIMEDOUT:
		return TERN_ETIMEDOUT;
	case NNG_ECLOSED:
		return TERN_ECLOSED;
	case NNG_ENOMEM:
		return TERN_ENOMEM;
	case NNG_ECANCELED:
		return TERN_ECANCELED;
	case NNG_EINVAL:
		return TERN_EINVAL;
	default:
		break;
	}
	if (nng_err & NNG_ESYSERR)
		return -(nng_err & ~NNG_ESYSERR);
	return TERN_ENNG;
}
