/*
 * Guest pause/resume with fault injection and a retried resume (see
 * guest_call.h).
 */
#include <errno.h>
#include <stdint.h>
#include <time.h>

#include "actors/actor.h"
#include "actors/fault.h"
#include "actors/guest_call.h"
#include "kvm/guest.h"

/* Waits before try n+1 (n from 1): 10 ms, then 50 ms.  Short: the guest is
 * paused meanwhile, so this is downtime; long enough for a vCPU thread that
 * was descheduled, or a transient ioctl failure, to pass. */
static uint64_t
gc_backoff_ns(unsigned n)
{
	return n == 1 ? 10000000ull : 50000000ull;
}

static void
gc_sleep(struct tern_actor *self, uint64_t ns)
{
	if (self != NULL) {
		/* Returns at once if self was killed: the next try follows
		 * without waiting, so a kill is never delayed by the backoff. */
		(void)tern_actor_sleep(self, ns);
		return;
	}
	struct timespec ts = {(time_t)(ns / 1000000000u), (long)(ns % 1000000000u)};
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

int
tern_guest_fault_hit(const char *call, struct tern_trace *trace)
{
	return tern_fault_check("guest", 0, 0, call, NULL, trace) == TERN_FAULT_FAIL ? -EIO : 0;
}

int
tern_guest_pause_checked(struct tern_guest *g, struct tern_trace *trace)
{
	if (tern_fault_check("guest", 0, 0, "pause", NULL, trace) == TERN_FAULT_FAIL)
		return -EIO;
	return g->ops->pause(g);
}

int
tern_guest_resume_checked(struct tern_guest *g, struct tern_trace *trace)
{
	if (tern_fault_check("guest", 0, 0, "resume", NULL, trace) == TERN_FAULT_FAIL)
		return -EIO;
	return g->ops->resume(g);
}

int
tern_guest_resume_retry(struct tern_guest *g, struct tern_actor *self, struct tern_trace *trace)
{
	int rc = 0;
	for (unsigned n = 1; n <= TERN_RESUME_TRIES; n++) {
		rc = tern_guest_resume_checked(g, trace);
		if (rc == 0 || n == TERN_RESUME_TRIES)
			break;
		gc_sleep(self, gc_backoff_ns(n));
	}
	return rc;
}
