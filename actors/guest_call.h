/*
 * The runtime's calls into the source guest's vCPUs: pause, resume, and the
 * retried resume that must leave the source guest running after a failed or
 * cancelled migration.
 *
 * Every pause and resume the coordinator and the session make goes through
 * here, so that TERN_FAULT=guest@pause / guest@resume (actors/fault.h) can
 * make exactly that call fail (-EIO) without a special guest backend.  The
 * throttle's pauses go through the throttle guard instead (kvm/) and are not
 * counted as guest events.
 */
#ifndef TERN_ACTORS_GUEST_CALL_H
#define TERN_ACTORS_GUEST_CALL_H

struct tern_actor;
struct tern_guest;
struct tern_trace;

/* tern_guest_fault_hit is called just before libtern calls the guest's
 * `call` slot ("dirty_start", "harvest", "save", "load"): -EIO when
 * TERN_FAULT=guest@CALL fires there (the call is then not made), else 0. */
int tern_guest_fault_hit(const char *call, struct tern_trace *trace);

/* Attempts tern_guest_resume_retry makes before giving up. */
#define TERN_RESUME_TRIES 3

/* tern_guest_pause_checked / tern_guest_resume_checked make one call (trace,
 * for the fault's record, may be NULL).  0, -EIO from an injected fault, or
 * the guest's error. */
int tern_guest_pause_checked(struct tern_guest *g, struct tern_trace *trace);
int tern_guest_resume_checked(struct tern_guest *g, struct tern_trace *trace);

/* tern_guest_resume_retry resumes g, trying up to TERN_RESUME_TRIES times
 * with a short backoff (resume is idempotent, and a transient failure must
 * not leave the guest paused).  self: the calling actor, whose kill cuts the
 * backoff short (the tries still happen), or NULL off actor threads.
 * Returns 0 once a try succeeded, else the last try's error. */
int tern_guest_resume_retry(struct tern_guest *g, struct tern_actor *self,
                            struct tern_trace *trace);

#endif /* TERN_ACTORS_GUEST_CALL_H */
