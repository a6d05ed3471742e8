/*
 * Actors from the outside: spawn, the actor's thread and dispatch loop, the
 * exit report, stop, kill and join.  What an actor calls on itself from its
 * callbacks is in actor_self.c; this file owns the thread and its lifecycle,
 * so every path an actor leaves by can be read in one place.
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

_Thread_local struct tern_actor *terni_self;

/* actor_dispatch handles one received message; returns the handler's code,
 * TERN_ACTOR_DONE for SYS_STOP. */
static int
actor_dispatch(struct tern_actor *a, nng_msg *msg)
{
	struct tern_msg m;
	int rc;

	/* A new receive: the previous request's reply is no longer readable. */
	terni_mbx_release_held(&a->mb);
	if ((rc = terni_rt_decode(msg, &m)) != 0) {
		nng_msg_free(msg);
		return tern_actor_fail(a, rc, "undecodable message in mailbox");
	}
	if (m.type == TERN_MSG_SYS_STOP) {
		nng_msg_free(msg);
		return TERN_ACTOR_DONE;
	}
	if (terni_rt_is_down_notice(&m)) {
		/* For a request that has ended (timed out) already. */
		nng_msg_free(msg);
		return 0;
	}
	terni_actor_fault(a, "recv", tern_msg_name(m.type));
	if (terni_actor_killed(a)) {
		nng_msg_free(msg);
		return TERN_EKILLED;
	}
	uint64_t t0 = uv_hrtime();
	rc = a->desc->handle(a, a->state, &m);
	terni_rt_trace(a->rt, TERN_TRACE_RECV, a->mb.id, a->desc->name, m.from, &m,
	               uv_hrtime() - t0, NULL);
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
		if (terni_actor_killed(a))
			return TERN_EKILLED;
		if ((msg = terni_mbx_undefer(&a->mb)) == NULL) {
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
			if (terni_rt_send(a->rt, 0, "", a->mb.id, &stop, NNG_FLAG_NONBLOCK) == 0)
				atomic_store_explicit(&a->stop_retry, false, memory_order_relaxed);
		}
		if ((rc = actor_drain(a, &more)) != 0)
			return rc;

		uint64_t now = uv_hrtime();
		if (a->tick_period != 0 && a->desc->tick != NULL && now >= a->next_tick) {
			if (terni_actor_killed(a))
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
			if (terni_actor_killed(a))
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
	if (terni_actor_killed(a)) {
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

	/* Monitor semantics: gone for everyone before stop runs.  What is
	 * waiting in the mailbox will never be handled: free it first (see
	 * terni_mbx_drain). */
	terni_mbx_drain(&a->mb);
	terni_rt_unregister(a->rt, a->mb.id, a->desc->name, e);
	/* stop closes the sockets: a kill must not shut down a number that
	 * may be reused from here on. */
	uv_mutex_lock(&a->mtx);
	a->nowned = 0;
	uv_mutex_unlock(&a->mtx);
	if (a->desc->stop != NULL)
		a->desc->stop(a, a->state);
	terni_mbx_close(&a->mb, e);
	terni_rt_trace(a->rt, TERN_TRACE_EXIT, a->mb.id, a->desc->name, a->supervisor, NULL,
	               e->reason, e->why);
	if (report && a->supervisor != 0) {
		struct tern_msg m;
		tern_msg_init(&m, TERN_MSG_SYS_EXIT);
		m.u.sys_exit.actor = a->mb.id;
		snprintf(m.u.sys_exit.name, sizeof(m.u.sys_exit.name), "%s", a->desc->name);
		m.u.sys_exit.reason = e->reason;
		m.u.sys_exit.code = e->code;
		snprintf(m.u.sys_exit.why, sizeof(m.u.sys_exit.why), "%s", e->why);
		/* Best effort: a supervisor that is gone cannot be told. */
		(void)terni_rt_send(a->rt, a->mb.id, a->desc->name, a->supervisor, &m, 0);
	}
}

static void
actor_main(void *arg)
{
	struct tern_actor *a = arg;
	int rc;

	terni_self = a;
	terni_rt_trace(a->rt, TERN_TRACE_SPAWN, a->mb.id, a->desc->name, a->supervisor, NULL, 0,
	               a->desc->name);
	rc = a->desc->init != NULL ? a->desc->init(a, a->state, a->arg) : 0;
	if (rc != 0) {
		/* tern_spawn returns rc; nobody is told, stop still runs. */
		actor_exit(a, rc < 0 ? rc : TERN_EACTOR, false);
	} else {
		a->next_tick = uv_hrtime() + a->tick_period;
		terni_actor_fault(a, "spawn", NULL);
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
	if ((rc = terni_mbx_open(rt, &a->mb, desc->name)) != 0)
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
	terni_mbx_close(&a->mb, &a->exit);
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
	return terni_rt_send(rt, from, NULL, to, m, 0);
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
	if (terni_rt_send(a->rt, 0, "", a->mb.id, &m, NNG_FLAG_NONBLOCK) == TERN_ETIMEDOUT)
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
	uint64_t deadline = terni_rt_deadline(timeout_ms);
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
