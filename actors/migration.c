/*
 * The caller-owned migration handle (tern.h): start returns at once, the
 * migration runs on a thread of its own (the blocking tern_migrate_send or
 * tern_migrate_receive), progress and the end come by callback, cancel never
 * blocks, statistics can be read from any thread, close waits and frees.
 */
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <uv.h>

#include "actors/session.h"
#include "messages/msg.h"
#include "tern/tern.h"

struct tern_migration {
	void *data;
	struct tern_migration_cb cb;
	bool sending;
	struct tern_send_opts send;
	struct tern_recv_opts recv;
	/* The blocking call polls it: set by cancel from any thread. */
	volatile int cancel;
	struct terni_live_params live;

	uv_thread_t thread;
	uv_mutex_t mtx; /* guards everything below */
	uv_cond_t cv;
	bool done;
	int result;
	char err[512];
	struct tern_stats stats;     /* final, once done */
	struct tern_progress latest; /* the last progress, while running */
	char state[32];              /* latest.state points here */
	uint64_t start_ns;
};

static void
mig_progress(const struct tern_progress *p, void *arg)
{
	struct tern_migration *m = arg;
	uv_mutex_lock(&m->mtx);
	m->latest = *p;
	snprintf(m->state, sizeof(m->state), "%s", p->state != NULL ? p->state : "");
	m->latest.state = m->state;
	uv_mutex_unlock(&m->mtx);
	if (m->cb.progress != NULL)
		m->cb.progress(m, p);
}

static void
mig_main(void *arg)
{
	struct tern_migration *m = arg;
	struct tern_stats st;
	char err[512] = "";
	int rc = m->sending ? terni_migrate_send(&m->send, &m->live, &st, err, sizeof(err))
	                    : tern_migrate_receive(&m->recv, &st, err, sizeof(err));
	uv_mutex_lock(&m->mtx);
	m->stats = st;
	m->result = rc;
	snprintf(m->err, sizeof(m->err), "%s", rc != 0 && err[0] == '\0' ? tern_strerror(rc) : err);
	uv_mutex_unlock(&m->mtx);
	/* done is the last callback; the handle is marked done after it, so a
	 * close called from another thread waits for the callback too. */
	if (m->cb.done != NULL)
		m->cb.done(m, rc, m->err);
	uv_mutex_lock(&m->mtx);
	m->done = true;
	uv_cond_broadcast(&m->cv);
	uv_mutex_unlock(&m->mtx);
}

static int
mig_start(struct tern_migration **out, struct tern_migration *m, const struct tern_migration_cb *cb,
          void *data)
{
	*out = NULL;
	m->data = data;
	if (cb != NULL)
		m->cb = *cb;
	m->start_ns = tern_now_ns();
	snprintf(m->state, sizeof(m->state), "setup");
	m->latest.state = m->state;
	if (uv_mutex_init(&m->mtx) != 0) {
		free(m);
		return TERN_ENOMEM;
	}
	if (uv_cond_init(&m->cv) != 0) {
		uv_mutex_destroy(&m->mtx);
		free(m);
		return TERN_ENOMEM;
	}
	/* libuv's codes are -errno on Unix, as tern's. */
	int rc = uv_thread_create(&m->thread, mig_main, m);
	if (rc != 0) {
		/* A synchronous error: no callback will come. */
		uv_cond_destroy(&m->cv);
		uv_mutex_destroy(&m->mtx);
		free(m);
		return rc;
	}
	*out = m;
	return 0;
}

int
tern_migration_send(struct tern_migration **out, const struct tern_send_opts *opts,
                    const struct tern_migration_cb *cb, void *data)
{
	if (out != NULL)
		*out = NULL;
	if (out == NULL || opts == NULL || (opts->to == NULL && opts->nfds == 0) ||
	    (opts->provider == NULL && opts->guest == NULL))
		return TERN_EINVAL;
	struct tern_migration *m = calloc(1, sizeof(*m));
	if (m == NULL)
		return TERN_ENOMEM;
	m->sending = true;
	m->send = *opts;
	m->send.stop_flag = &m->cancel;
	m->send.progress = mig_progress;
	m->send.progress_arg = m;
	return mig_start(out, m, cb, data);
}

int
tern_migration_receive(struct tern_migration **out, const struct tern_recv_opts *opts,
                       const struct tern_migration_cb *cb, void *data)
{
	if (out != NULL)
		*out = NULL;
	if (out == NULL || opts == NULL || (opts->listen == NULL && opts->nfds == 0))
		return TERN_EINVAL;
	struct tern_migration *m = calloc(1, sizeof(*m));
	if (m == NULL)
		return TERN_ENOMEM;
	m->recv = *opts;
	m->recv.stop_flag = &m->cancel;
	return mig_start(out, m, cb, data);
}

void *
tern_migration_data(const struct tern_migration *m)
{
	return m->data;
}

void
tern_migration_cancel(struct tern_migration *m)
{
	/* The blocking call polls it (within 100 ms on the source). */
	__atomic_store_n(&m->cancel, 1, __ATOMIC_RELAXED);
}

static int
mig_set(struct tern_migration *m, uint32_t downtime_ms, uint64_t max_bw)
{
	if (!m->sending)
		return TERN_ESTATE; /* the source decides both */
	if (downtime_ms != 0)
		atomic_store_explicit(&m->live.downtime_limit_ms, downtime_ms,
		                      memory_order_relaxed);
	if (max_bw != 0)
		atomic_store_explicit(&m->live.max_bandwidth, max_bw, memory_order_relaxed);
	/* Release: the values above are seen with the new generation. */
	atomic_fetch_add_explicit(&m->live.gen, 1, memory_order_release);
	return 0;
}

int
tern_migration_set_downtime_limit(struct tern_migration *m, uint32_t ms)
{
	return ms == 0 ? TERN_EINVAL : mig_set(m, ms, 0);
}

int
tern_migration_set_max_bandwidth(struct tern_migration *m, uint64_t bytes_per_s)
{
	return mig_set(m, 0, bytes_per_s == 0 ? UINT64_MAX : bytes_per_s);
}

int
tern_migration_start_postcopy(struct tern_migration *m)
{
	if (!m->sending)
		return TERN_ESTATE;
	atomic_store_explicit(&m->live.start_postcopy, 1, memory_order_relaxed);
	/* Release: the flag is seen with the new generation. */
	atomic_fetch_add_explicit(&m->live.gen, 1, memory_order_release);
	return 0;
}

int
tern_migration_set_auto_converge(struct tern_migration *m, int mode, uint32_t initial,
                                 uint32_t increment, uint32_t max)
{
	if (mode < TERN_CONVERGE_OFF || mode > TERN_CONVERGE_RATE || initial > 99 ||
	    increment > 99 || max > 99)
		return TERN_EINVAL;
	if (!m->sending)
		return TERN_ESTATE;
	atomic_store_explicit(&m->live.converge, (uint32_t)mode + 1, memory_order_relaxed);
	atomic_store_explicit(&m->live.throttle_initial, initial, memory_order_relaxed);
	atomic_store_explicit(&m->live.throttle_increment, increment, memory_order_relaxed);
	atomic_store_explicit(&m->live.throttle_max, max, memory_order_relaxed);
	/* Release: the values above are seen with the new generation. */
	atomic_fetch_add_explicit(&m->live.gen, 1, memory_order_release);
	return 0;
}

int
tern_migration_stats(struct tern_migration *m, struct tern_stats *out)
{
	uv_mutex_lock(&m->mtx);
	if (m->done) {
		*out = m->stats;
	} else {
		memset(out, 0, sizeof(*out));
		snprintf(out->outcome, sizeof(out->outcome), "active");
		out->total_ms = (tern_now_ns() - m->start_ns) / 1000000;
		out->payload_bytes = m->latest.transferred_bytes;
		out->iterations = m->latest.iteration;
		out->dirty_rate_pps = m->latest.dirty_rate_pps;
		out->bandwidth_bps = m->latest.bandwidth_bps;
	}
	uv_mutex_unlock(&m->mtx);
	return 0;
}

int
tern_migration_progress(struct tern_migration *m, struct tern_progress *out, char *state,
                        size_t statelen)
{
	uv_mutex_lock(&m->mtx);
	*out = m->latest;
	if (state != NULL && statelen > 0)
		snprintf(state, statelen, "%s",
		         m->done ? (m->result == 0 ? "completed" : "failed") : m->state);
	out->state = NULL; /* ours changes under the caller: the copy is in state */
	uv_mutex_unlock(&m->mtx);
	return 0;
}

int
tern_migration_wait(struct tern_migration *m, int timeout_ms, char *err, size_t errlen)
{
	/* Monotonic, as uv_cond_timedwait's relative timeout. */
	uint64_t deadline = uv_hrtime() + (uint64_t)(timeout_ms > 0 ? timeout_ms : 0) * 1000000u;
	uv_mutex_lock(&m->mtx);
	while (!m->done && timeout_ms != 0) {
		if (timeout_ms < 0) {
			uv_cond_wait(&m->cv, &m->mtx);
			continue;
		}
		uint64_t now = uv_hrtime();
		if (now >= deadline || uv_cond_timedwait(&m->cv, &m->mtx, deadline - now) != 0)
			break;
	}
	int rc = m->done ? m->result : TERN_ETIMEDOUT;
	if (m->done && err != NULL && errlen > 0)
		snprintf(err, errlen, "%s", m->err);
	uv_mutex_unlock(&m->mtx);
	return rc;
}

int
tern_migration_close(struct tern_migration *m)
{
	if (m == NULL)
		return 0;
	int rc = tern_migration_wait(m, -1, NULL, 0);
	(void)uv_thread_join(&m->thread);
	uv_cond_destroy(&m->cv);
	uv_mutex_destroy(&m->mtx);
	free(m);
	return rc;
}
