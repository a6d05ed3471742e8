/*
 * Shared work queues: many producers, many consumers, each item to exactly
 * one consumer and only when it asks.
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
	q->id = terni_rt_new_id(rt);
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
	if ((rc = terni_rt_encode(m, &msg)) != 0)
		return rc;
	if ((rv = nng_aio_alloc(&aio, NULL, NULL)) != 0) {
		nng_msg_free(msg);
		return tern_from_nng(rv);
	}
	nng_aio_set_msg(aio, msg);
	nng_aio_set_timeout(aio, rt_duration(timeout_ms));
	nng_send_aio(q->push, aio);
	terni_rt_aio_wait(aio);
	if ((rv = nng_aio_result(aio)) != 0)
		nng_msg_free(nng_aio_get_msg(aio)); /* not sent: still ours */
	nng_aio_free(aio);
	if (rv == NNG_ECANCELED && terni_self != NULL)
		return TERN_EKILLED;
	if (rv != 0)
		return tern_from_nng(rv);
	char fname[64];
	terni_rt_name(q->rt, from, fname, sizeof(fname));
	terni_rt_trace(q->rt, TERN_TRACE_SEND, from, fname, q->id, m, 0, NULL);
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
		terni_rt_aio_wait(aio);
		if ((rv = nng_aio_result(aio)) == 0)
			msg = nng_aio_get_msg(aio);
		nng_aio_free(aio);
	}
	if (rv == NNG_ECANCELED && terni_self != NULL)
		return TERN_EKILLED;
	if (rv != 0)
		return tern_from_nng(rv);
	rc = terni_rt_decode(msg, m);
	nng_msg_free(msg); /* queue items borrow nothing (tern_queue_put) */
	if (rc != 0)
		return rc;
	char bname[64];
	terni_rt_name(q->rt, by, bname, sizeof(bname));
	terni_rt_trace(q->rt, TERN_TRACE_RECV, by, bname, q->id, m, 0, NULL);
	/* The item is the taker's even if the fault kills it now: a crash
	 * right after taking work is what the handback paths are for. */
	if (m->type == TERN_MSG_CHUNK && terni_self != NULL && terni_self->mb.id == by)
		terni_actor_fault(terni_self, "chunk", NULL);
	return 0;
}

int
tern_queue_fd(struct tern_queue *q)
{
	return q->fd;
}

static void
queue_drain(struct tern_queue *q)
{
	nng_msg *msg;
	while (nng_recvmsg(q->pull, &msg, NNG_FLAG_NONBLOCK) == 0)
		nng_msg_free(msg);
}

void
tern_queue_close(struct tern_queue *q)
{
	if (atomic_exchange_explicit(&q->closed, true, memory_order_acq_rel))
		return;
	/* Items nobody took are freed here, before the sockets close: nng
	 * 1.5.2 can drop (leak) a message that sits in a pull pipe when the
	 * pipe closes under it (LeakSanitizer saw it).  Closing then fails
	 * blocked putters and takers with NNG_ECLOSED. */
	queue_drain(q);
	nng_close(q->push);
	queue_drain(q);
	nng_close(q->pull);
}
