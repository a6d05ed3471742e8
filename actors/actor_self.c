/*
 * What an actor's own callbacks call on self (actors/actor_self.h): its
 * name and address, sending and requests, trace records, the reason it is
 * failing, its tick and watched fds, sockets to shut down on a kill, sleeps
 * a kill cuts short.  Kept apart from actor.c, which runs the actor thread
 * and its lifecycle, because these calls are the actor's side of the
 * runtime and never touch the dispatch loop.
 */
#include <errno.h>
#include <nng/nng.h>
#include <poll.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <sys/socket.h>
#include <time.h>
#include <uv.h>

#include "actors/actor.h"
#include "actors/fault.h"
#include "actors/runtime.h"
#include "tern/error.h"

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

bool
terni_actor_killed(struct tern_actor *a)
{
	return atomic_load_explicit(&a->killed, memory_order_acquire);
}

void
terni_actor_fault(struct tern_actor *a, const char *kind, const char *arg)
{
	if (!tern_fault_enabled())
		return;
	switch (tern_fault_check(a->desc->name, a->instance, a->mb.id, kind, arg, a->rt->trace)) {
	case TERN_FAULT_KILL:
		tern_actor_kill(a);
		break;
	case TERN_FAULT_CUT:
		terni_rt_cut_links(a->rt);
		break;
	default:
		break;
	}
}

void
tern_actor_event(struct tern_actor *self, const char *kind, const char *arg)
{
	terni_actor_fault(self, kind, arg);
}

bool
tern_actor_killed(struct tern_actor *self)
{
	return terni_actor_killed(self);
}

/* terni_actor_block records the nng operation a is about to wait in, so that a
 * kill cancels it; TERN_EKILLED (cancel it yourself) if a is killed. */
int
terni_actor_block(struct tern_actor *a, nng_aio *aio)
{
	int rc = 0;

	uv_mutex_lock(&a->mtx);
	if (terni_actor_killed(a))
		rc = TERN_EKILLED;
	else
		a->blocking = aio;
	uv_mutex_unlock(&a->mtx);
	return rc;
}

void
terni_actor_unblock(struct tern_actor *a)
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
	if (terni_actor_killed(self))
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
		if (terni_actor_killed(self))
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
tern_actor_send(struct tern_actor *self, uint32_t to, struct tern_msg *m)
{
	return terni_rt_send(self->rt, self->mb.id, self->desc->name, to, m, 0);
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
	return terni_mbx_request(&self->mb, to, m, reply, timeout_ms, self);
}

void
tern_actor_state(struct tern_actor *self, const char *state)
{
	terni_rt_trace(self->rt, TERN_TRACE_STATE, self->mb.id, self->desc->name, 0, NULL, 0,
	               state);
	terni_actor_fault(self, "state", state);
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
	terni_verrf(self->why, sizeof(self->why), fmt, ap);
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
