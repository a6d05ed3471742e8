/*
 * The throttle guard (see throttle_guard.h): one mutex around every guest
 * pause/resume the throttle makes, plus the record of who paused.  It is
 * deliberately tiny, because it is what must still work when the actor that
 * used it is gone.
 */
#include <stddef.h>

#include "kvm/throttle_guard.h"
#include "messages/msg.h"
#include "tern/error.h"

/* tg_resume_locked ends a throttle pause; lock held. */
static int
tg_resume_locked(struct tern_throttle_guard *g, uint64_t *t_call, uint64_t *t_ret)
{
	uint64_t t0 = tern_now_ns();
	int rc;

	/* Relaxed: every writer holds the lock; lock-free readers only want
	 * a snapshot and order nothing else by it. */
	if (!atomic_load_explicit(&g->paused, memory_order_relaxed))
		return 1;
	rc = g->guest->ops->resume(g->guest);
	if (t_call != NULL)
		*t_call = t0;
	if (t_ret != NULL)
		*t_ret = tern_now_ns();
	if (rc != 0)
		return rc;
	atomic_store_explicit(&g->paused, false, memory_order_relaxed);
	g->resumes++;
	return 0;
}

int
tern_throttle_guard_init(struct tern_throttle_guard *g, struct tern_guest *guest)
{
	int rc;

	if (g == NULL || guest == NULL || guest->ops == NULL)
		return TERN_EINVAL;
	g->guest = guest;
	atomic_init(&g->paused, false);
	g->holds = 0;
	g->closed = false;
	g->pauses = 0;
	g->resumes = 0;
	if ((rc = uv_mutex_init(&g->lock)) != 0)
		return rc; /* -errno, as libuv's codes on Unix */
	return 0;
}

void
tern_throttle_guard_fini(struct tern_throttle_guard *g)
{
	if (g == NULL || g->guest == NULL)
		return;
	(void)tern_throttle_guard_release(g);
	uv_mutex_destroy(&g->lock);
	g->guest = NULL;
}

int
tern_throttle_guard_pause(struct tern_throttle_guard *g, uint64_t *t_call, uint64_t *t_ret)
{
	int rc = 0;
	uint64_t t0;

	uv_mutex_lock(&g->lock);
	if (g->closed) {
		rc = TERN_ECLOSED;
	} else if (g->holds > 0) {
		rc = TERN_ESTATE;
	} else if (!atomic_load_explicit(&g->paused, memory_order_relaxed)) {
		t0 = tern_now_ns();
		/* Counted as paused before the call: if pause fails half way
		 * the vCPUs may be stopped, and resume is idempotent, so a
		 * release must try. */
		atomic_store_explicit(&g->paused, true, memory_order_relaxed);
		rc = g->guest->ops->pause(g->guest);
		if (t_call != NULL)
			*t_call = t0;
		if (t_ret != NULL)
			*t_ret = tern_now_ns();
		g->pauses++;
	} else if (t_call != NULL || t_ret != NULL) {
		/* Already paused by the throttle: report an empty pause. */
		t0 = tern_now_ns();
		if (t_call != NULL)
			*t_call = t0;
		if (t_ret != NULL)
			*t_ret = t0;
	}
	uv_mutex_unlock(&g->lock);
	return rc;
}

int
tern_throttle_guard_resume(struct tern_throttle_guard *g, uint64_t *t_call, uint64_t *t_ret)
{
	int rc;

	uv_mutex_lock(&g->lock);
	rc = tg_resume_locked(g, t_call, t_ret);
	uv_mutex_unlock(&g->lock);
	return rc;
}

int
tern_throttle_guard_hold(struct tern_throttle_guard *g)
{
	int rc;

	uv_mutex_lock(&g->lock);
	g->holds++;
	rc = tg_resume_locked(g, NULL, NULL);
	uv_mutex_unlock(&g->lock);
	return rc < 0 ? rc : 0;
}

void
tern_throttle_guard_unhold(struct tern_throttle_guard *g)
{
	uv_mutex_lock(&g->lock);
	if (g->holds > 0)
		g->holds--;
	uv_mutex_unlock(&g->lock);
}

int
tern_throttle_guard_release(struct tern_throttle_guard *g)
{
	int rc;

	uv_mutex_lock(&g->lock);
	g->closed = true;
	rc = tg_resume_locked(g, NULL, NULL);
	uv_mutex_unlock(&g->lock);
	return rc < 0 ? rc : 0;
}

bool
tern_throttle_guard_paused(struct tern_throttle_guard *g)
{
	return atomic_load_explicit(&g->paused, memory_order_relaxed);
}
