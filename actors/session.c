/*
 * tern_migrate_send / tern_migrate_receive: the public entry points.  They build the
 * runtime, the guest and the connections, spawn the coordinator of their
 * side, relay progress to the caller's thread, and tear everything down on
 * every path.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <uv.h>

#include "actors/accept.h"
#include "actors/coordinator.h"
#include "actors/guest_call.h"
#include "actors/receiver.h"
#include "actors/session.h"
#include "kvm/guest_ready.h"
#include "net/net.h"
#include "net/tls.h"
#include "net/wire.h"
#include "tern/tern.h"

/* The process's CPU time (all threads) between two marks, into stats: what
 * a migration costs each side, the guest's build and a preallocation
 * excluded (they happen before the first mark). */
static void
session_cpu(struct rusage *mark, struct tern_stats *stats)
{
	struct rusage now;
	if (getrusage(RUSAGE_SELF, &now) != 0)
		return;
	if (stats == NULL) {
		*mark = now;
		return;
	}
	stats->cpu_user_ms = (uint64_t)(((now.ru_utime.tv_sec - mark->ru_utime.tv_sec) * 1000000 +
	                                 (now.ru_utime.tv_usec - mark->ru_utime.tv_usec)) /
	                                1000);
	stats->cpu_sys_ms = (uint64_t)(((now.ru_stime.tv_sec - mark->ru_stime.tv_sec) * 1000000 +
	                                (now.ru_stime.tv_usec - mark->ru_stime.tv_usec)) /
	                               1000);
}

static void
session_err(char *err, size_t errlen, const char *fmt, const char *why)
{
	if (err != NULL && errlen > 0)
		snprintf(err, errlen, fmt, why);
}

static int
session_trace(const char *path, const char *side, struct tern_trace **t, char *err, size_t errlen)
{
	*t = NULL;
	if (path == NULL || path[0] == '\0')
		return 0;
	int rc = tern_trace_open(t, path, side);
	if (rc != 0)
		session_err(err, errlen, "cannot write the trace: %s", tern_strerror(rc));
	return rc;
}

/* session_tls makes the TLS context the options ask for (*t NULL: plain). */
static int
session_tls(enum tern_tls_role role, const char *creds, const char *psk, const char *hostname,
            struct tern_tls **t, char *err, size_t errlen)
{
	struct tern_tls_config cfg = {.creds_dir = creds, .psk_file = psk, .hostname = hostname};
	char why[TERN_STR_MAX] = "";
	int rc;

	*t = NULL;
	if (creds == NULL && psk == NULL)
		return 0;
	if ((rc = tern_tls_create(t, role, &cfg, why, sizeof(why))) != 0)
		session_err(err, errlen, "TLS: %s", why);
	return rc;
}

/* After a failed migration the source guest must be running: resume it
 * (idempotent: the coordinator already did on every path it saw; retried:
 * this is the last attempt), then prove it with the workload's own progress
 * counter.  Returns the resume's error: the guest is paused. */
static int
session_source_alive(struct tern_guest *g, struct tern_stats *stats, struct tern_trace *trace)
{
	uint64_t p0 = 0, p1 = 0;
	char why[TERN_STR_MAX];
	int rc = tern_guest_resume_retry(g, NULL, trace);
	if (rc != 0) {
		stats->source_resume_failed = 1;
		stats->workload_ok = -1; /* it does not run */
		return rc;
	}
	if (g->cfg.workload != TERN_WORKLOAD_MEMTOUCH)
		return 0;
	int crc = tern_guest_check(g, &p0, why, sizeof(why));
	usleep(100000);
	if (crc == 0)
		crc = tern_guest_check(g, &p1, why, sizeof(why));
	stats->workload_progress_at_resume = p0;
	stats->workload_progress_after = p1;
	stats->workload_ok = crc == 0 && p1 > p0 ? 1 : -1;
	return 0;
}

/* The loudest failure there is: say it first, then why the migration failed.
 * err may hold that reason already. */
static void
session_paused_err(char *err, size_t errlen, int resume_rc, int rc)
{
	char cause[512];
	snprintf(cause, sizeof(cause), "%s", err != NULL && err[0] ? err : tern_strerror(rc));
	if (err != NULL && errlen > 0)
		snprintf(err, errlen,
		         "the source guest could not be resumed: %s - it is PAUSED; "
		         "the migration failed: %s",
		         tern_strerror(resume_rc), cause);
}

int
tern_migrate_send(const struct tern_send_opts *opts, struct tern_stats *stats, char *err,
                  size_t errlen)
{
	return terni_migrate_send(opts, NULL, stats, err, errlen);
}

/* session_params sends the coordinator the parameters changed since *seen. */
static void
session_params(struct tern_runtime *rt, struct tern_mailbox *mb, struct tern_actor *co,
               struct terni_live_params *live, uint32_t *seen)
{
	uint32_t gen = atomic_load_explicit(&live->gen, memory_order_acquire);
	if (gen == *seen)
		return;
	struct tern_msg p;
	tern_msg_init(&p, TERN_MSG_PARAMS);
	p.u.params.downtime_limit_ms =
	    atomic_load_explicit(&live->downtime_limit_ms, memory_order_relaxed);
	p.u.params.max_bandwidth = atomic_load_explicit(&live->max_bandwidth, memory_order_relaxed);
	p.u.params.converge = atomic_load_explicit(&live->converge, memory_order_relaxed);
	p.u.params.throttle_initial =
	    atomic_load_explicit(&live->throttle_initial, memory_order_relaxed);
	p.u.params.throttle_increment =
	    atomic_load_explicit(&live->throttle_increment, memory_order_relaxed);
	p.u.params.throttle_max = atomic_load_explicit(&live->throttle_max, memory_order_relaxed);
	p.u.params.start_postcopy =
	    atomic_load_explicit(&live->start_postcopy, memory_order_relaxed);
	if (tern_send(rt, tern_mailbox_id(mb), tern_actor_id(co), &p) == 0)
		*seen = gen;
}

int
terni_migrate_send(const struct tern_send_opts *opts, struct terni_live_params *live,
                   struct tern_stats *stats, char *err, size_t errlen)
{
	struct tern_guest_config cfg;
	struct tern_guest *g = NULL;
	struct tern_runtime *rt = NULL;
	struct tern_trace *trace = NULL;
	struct tern_mailbox *mb = NULL;
	struct tern_actor *co = NULL;
	struct tern_coordinator_args *a = NULL;
	struct tern_tls *tls = NULL;
	char why[TERN_STR_MAX] = "";
	struct rusage cpu0;
	int rc, cpu_marked = 0;

	memset(stats, 0, sizeof(*stats));
	snprintf(stats->outcome, sizeof(stats->outcome), "failed");
	if (opts->connections > TERN_MAX_CONNECTIONS || opts->nfds > TERN_MAX_CONNECTIONS ||
	    (opts->nfds > 0 && opts->fds == NULL)) {
		snprintf(err, errlen, "connections must be 1..%d", TERN_MAX_CONNECTIONS);
		rc = TERN_EINVAL;
		goto out;
	}
	if (opts->provider == NULL &&
	    (rc = tern_guest_spec_parse(opts->guest, &cfg, why, sizeof(why))) != 0) {
		session_err(err, errlen, "bad guest spec: %s", why);
		goto out;
	}
	if ((rc = session_tls(TERN_TLS_CLIENT, opts->tls_creds, opts->tls_psk_file,
	                      opts->tls_hostname, &tls, err, errlen)) != 0)
		goto out;
	if ((rc = session_trace(opts->trace_path, "source", &trace, err, errlen)) != 0)
		goto out;
	if (opts->provider != NULL) {
		/* The VMM's guest: libtern only wraps it. */
		rc = tern_guest_from_provider(&g, opts->provider, TERN_GUEST_SOURCE, why,
		                              sizeof(why));
		if (rc != 0) {
			session_err(err, errlen, "%s", why);
			goto out;
		}
	} else if ((rc = tern_guest_create_provided(&g, &cfg, TERN_GUEST_SOURCE, why,
	                                            sizeof(why))) != 0) {
		session_err(err, errlen, "cannot build the guest: %s", why);
		goto out;
	}
	stats->guest_build_ms = g->stats.build_ns / 1000000;
	session_cpu(&cpu0, NULL);
	cpu_marked = 1;
	a = calloc(1, sizeof(*a));
	if (a == NULL) {
		rc = TERN_ENOMEM;
		goto out;
	}
	for (int i = 0; i < TERN_DIRTY_MAPS; i++)
		if ((rc = tern_bitmap_init(&a->dirty.maps[i], g->npages)) != 0)
			goto out;
	if ((rc = tern_runtime_create(&rt, trace)) != 0 ||
	    (rc = tern_mailbox_open(rt, "driver", &mb)) != 0) {
		session_err(err, errlen, "cannot start the actor runtime: %s", tern_strerror(rc));
		goto out;
	}
	a->guest = g;
	a->opts = opts;
	a->stats = stats;
	a->driver = tern_mailbox_id(mb);
	snprintf(a->migration, sizeof(a->migration), "%d-%" PRIu64, (int)getpid(), tern_now_ns());
	/* The migration's secret (net/hello.h): its data connections prove
	 * they belong to it. */
	if (RAND_bytes(a->key, sizeof(a->key)) != 1) {
		session_err(err, errlen, "%s", "cannot draw the migration key");
		rc = TERN_ENOMEM;
		goto out;
	}
	a->tls = tls;
	if (opts->to != NULL)
		(void)tern_net_host(opts->to, a->tls_host, sizeof(a->tls_host));
	struct tern_exit failed;
	rc = tern_spawn(rt, &tern_coordinator_actor, a, tern_mailbox_id(mb), &co, &failed);
	if (rc != 0) {
		session_err(err, errlen, "%s", failed.why);
		goto out;
	}
	int cancel_sent = 0;
	uint32_t params_seen = 0;
	for (;;) {
		struct tern_msg m;
		if (live != NULL)
			session_params(rt, mb, co, live, &params_seen);
		if (!cancel_sent && opts->stop_flag != NULL &&
		    __atomic_load_n(opts->stop_flag, __ATOMIC_RELAXED)) {
			struct tern_msg c;
			tern_msg_init(&c, TERN_MSG_CANCEL);
			snprintf(c.u.cancel.why, sizeof(c.u.cancel.why), "cancel requested");
			cancel_sent =
			    tern_send(rt, tern_mailbox_id(mb), tern_actor_id(co), &c) == 0;
		}
		/* Short slices: a cancel or a parameter is noticed within 100 ms. */
		rc = tern_mailbox_recv(mb, &m, 100);
		if (rc == TERN_ETIMEDOUT)
			continue;
		if (rc != 0)
			break;
		if (m.type == TERN_MSG_SYS_EXIT && m.u.sys_exit.actor == tern_actor_id(co))
			break;
		if (m.type == TERN_MSG_PROGRESS && opts->progress != NULL) {
			struct tern_progress p = {
			    .state = m.u.progress.state,
			    .iteration = m.u.progress.iter,
			    .transferred_bytes = m.u.progress.transferred,
			    .remaining_bytes = m.u.progress.remaining,
			    .dirty_rate_pps = m.u.progress.dirty_pps,
			    .bandwidth_bps = m.u.progress.bw_bps,
			    .eta_ms = m.u.progress.eta_ms,
			    .elapsed_ms = m.u.progress.elapsed_ms,
			};
			opts->progress(&p, opts->progress_arg);
		}
	}
	struct tern_exit ex;
	(void)tern_actor_join(co, -1, &ex);
	co = NULL;
	rc = a->result;
	/* The outcome the coordinator recorded stands, however it exited
	 * afterwards: once the destination confirmed (result 0) the guest runs
	 * there, and resuming the source too would run it twice.  Only an
	 * unrecorded outcome (still TERN_ECANCELED) takes the exit's reason. */
	if (ex.reason != TERN_EXIT_NORMAL && rc != 0) {
		if (rc == TERN_ECANCELED)
			rc = ex.reason == TERN_EXIT_KILLED ? TERN_EKILLED
			                                   : (ex.code ? ex.code : TERN_EACTOR);
		if (a->err[0] == '\0')
			snprintf(a->err, sizeof(a->err), "the coordinator actor %s: %.180s",
			         ex.reason == TERN_EXIT_KILLED ? "was killed" : "failed", ex.why);
	}
	if (rc != 0)
		session_err(err, errlen, "%s", a->err[0] ? a->err : tern_strerror(rc));
out:
	/* Given sockets are libtern's from the call on: the coordinator closes
	 * those it took; the rest are closed here. */
	if (opts->nfds > 0 && opts->fds != NULL && (a == NULL || !a->fds_owned))
		for (uint32_t i = 0; i < opts->nfds && i < TERN_MAX_CONNECTIONS; i++)
			close(opts->fds[i]);
	if (rc != 0 && stats->postcopy) {
		/* Neither side holds the whole guest: never resumed here. */
		snprintf(stats->outcome, sizeof(stats->outcome), "postcopy-failed");
	} else if (rc != 0 && g != NULL && !stats->handoff_unknown) {
		int rrc = session_source_alive(g, stats, trace);
		if (rrc != 0)
			session_paused_err(err, errlen, rrc, rc);
		snprintf(stats->outcome, sizeof(stats->outcome), rrc != 0 ? "failed" : "aborted");
	} else if (rc != 0 && stats->handoff_unknown) {
		snprintf(stats->outcome, sizeof(stats->outcome), "unknown");
	}
	if (co != NULL) {
		tern_actor_kill(co);
		(void)tern_actor_join(co, -1, NULL);
	}
	if (cpu_marked)
		session_cpu(&cpu0, stats);
	tern_mailbox_close(mb);
	tern_runtime_destroy(rt);
	if (a != NULL) {
		for (int i = 0; i < TERN_DIRTY_MAPS; i++)
			tern_bitmap_fini(&a->dirty.maps[i]);
		OPENSSL_cleanse(a->key, sizeof(a->key));
		free(a);
	}
	tern_tls_destroy(tls);
	tern_guest_destroy(g);
	tern_trace_close(trace);
	return rc;
}

/* The destination's own guest, made before anything listens: the VMM's, or
 * a simulated one from opts->guest (NULL *own: none, built from the
 * announced layout later).  With prealloc its memory is populated now. */
static int
session_own_guest(const struct tern_recv_opts *opts, struct tern_guest **own,
                  struct tern_stats *stats, char *err, size_t errlen)
{
	struct tern_guest_config cfg;
	char why[TERN_STR_MAX] = "";
	int rc = 0;

	*own = NULL;
	if (opts->provider != NULL) {
		rc = tern_guest_from_provider(own, opts->provider, TERN_GUEST_DESTINATION, why,
		                              sizeof(why));
	} else if (opts->guest != NULL) {
		rc = tern_guest_spec_parse(opts->guest, &cfg, why, sizeof(why));
		if (rc == 0)
			rc = tern_guest_create_provided(own, &cfg, TERN_GUEST_DESTINATION, why,
			                                sizeof(why));
		if (rc == 0)
			stats->guest_build_ms = (*own)->stats.build_ns / 1000000;
	}
	if (rc != 0) {
		session_err(err, errlen, "cannot make the destination guest: %s", why);
		return rc;
	}
	if (*own != NULL && opts->prealloc) {
		uint64_t t0 = tern_now_ns();
		/* On every core, as QEMU's prealloc-threads: off the clock, but a
		 * memfd page costs ~10 us here before it takes a recv quickly. */
		if ((rc = tern_guest_prepare_all(*own, (int)uv_available_parallelism())) != 0) {
			session_err(err, errlen, "cannot preallocate the guest's memory: %s",
			            tern_strerror(rc));
			tern_guest_destroy(*own);
			*own = NULL;
			return rc;
		}
		stats->populate_ms = (tern_now_ns() - t0) / 1000000;
	} else if (opts->prealloc) {
		session_err(err, errlen, "%s",
		            "prealloc needs the destination's guest (a provider or a guest spec)");
		return TERN_EINVAL;
	}
	return 0;
}

/* Postcopy, link lost (PC_PAUSED): listen again where the migration came
 * in and take its source back (only it), then tell the receiver.  Runs on
 * the caller's thread while the receiver and the guest go on. */
static void
session_recover(const struct tern_recv_opts *opts, struct tern_tls *tls,
                struct tern_receiver_args *a, const char *here, struct tern_runtime *rt,
                struct tern_mailbox *mb, struct tern_actor *rcv, const char *why)
{
	uint32_t ms = opts->recover_timeout_ms ? opts->recover_timeout_ms : TERN_RECOVER_TIMEOUT_MS;
	char err[TERN_STR_MAX] = "";
	int lfd = -1, rc;
	terni_recv_log(opts, "postcopy paused: %s; waiting up to %u s for the source on %s", why,
	               ms / 1000, here[0] ? here : "(no address)");
	if (here[0] == '\0') {
		rc = TERN_EINVAL;
		snprintf(err, sizeof(err), "no address to listen on (the sockets were given)");
	} else if ((rc = tern_net_listen(here, &lfd, err, sizeof(err))) == 0) {
		rc = tern_accept_resume(opts, lfd, tls, a, tern_now_ns() + ms * 1000000ull, err,
		                        sizeof(err));
		close(lfd);
	}
	struct tern_msg r;
	tern_msg_init(&r, TERN_MSG_PC_RELINKED);
	r.u.pc_relinked.status = rc;
	snprintf(r.u.pc_relinked.why, sizeof(r.u.pc_relinked.why), "%s", err);
	(void)tern_send(rt, tern_mailbox_id(mb), tern_actor_id(rcv), &r);
}

int
tern_migrate_receive(const struct tern_recv_opts *opts, struct tern_stats *stats, char *err,
                     size_t errlen)
{
	struct tern_runtime *rt = NULL;
	struct tern_trace *trace = NULL;
	struct tern_mailbox *mb = NULL;
	struct tern_actor *rcv = NULL;
	struct tern_receiver_args *a = NULL;
	struct tern_guest *g = NULL, *own = NULL;
	struct tern_tls *tls = NULL;
	int lfd = -1, rc, fds_handed = 0;
	uint32_t next_given = 0; /* given sockets taken so far */
	char why[TERN_STR_MAX] = "";
	struct rusage cpu0;
	int cpu_marked = 0;

	memset(stats, 0, sizeof(*stats));
	snprintf(stats->outcome, sizeof(stats->outcome), "failed");
	if ((rc = session_tls(TERN_TLS_SERVER, opts->tls_creds, opts->tls_psk_file, NULL, &tls, err,
	                      errlen)) != 0)
		goto out;
	/* Whoever reaches a plain listener can write guest memory. */
	if (tls == NULL && opts->nfds == 0 && !opts->insecure &&
	    tern_net_is_loopback(opts->listen) == 0) {
		session_err(
		    err, errlen,
		    "refusing to listen on %s without TLS: anyone who reaches it could read "
		    "and write guest memory (give TLS credentials or a PSK file, or say "
		    "insecure)",
		    opts->listen != NULL ? opts->listen : "(none)");
		rc = TERN_EINVAL;
		goto out;
	}
	/* The VMM's guest exists before anything listens: a source is only
	 * ever answered by a destination that can take its layout. */
	if ((rc = session_own_guest(opts, &own, stats, err, errlen)) != 0)
		goto out;
	session_cpu(&cpu0, NULL);
	cpu_marked = 1;
	if (opts->nfds == 0 && (rc = tern_net_listen(opts->listen, &lfd, why, sizeof(why))) != 0) {
		session_err(err, errlen, "%s", why);
		goto out;
	}
	/* Where a postcopy recovery listens again: the same host and port. */
	char here[TERN_STR_MAX] = "";
	if (opts->nfds == 0) {
		char host[TERN_STR_MAX - 8];
		if (tern_net_host(opts->listen, host, sizeof(host)) == 0)
			snprintf(here, sizeof(here), strchr(host, ':') ? "[%s]:%d" : "%s:%d", host,
			         tern_net_local_port(lfd));
	}
	if (opts->nfds == 0 && opts->ready_fd >= 0) {
		char line[32];
		int n = snprintf(line, sizeof(line), "%d\n", tern_net_local_port(lfd));
		if (write(opts->ready_fd, line, (size_t)n) != n) {
			rc = -errno;
			session_err(err, errlen, "cannot write the ready fd: %s",
			            tern_strerror(rc));
			goto out;
		}
	}
	if ((rc = session_trace(opts->trace_path, "destination", &trace, err, errlen)) != 0)
		goto out;
	a = calloc(1, sizeof(*a));
	if (a == NULL) {
		rc = TERN_ENOMEM;
		goto out;
	}
	for (int i = 0; i < TERN_MAX_CONNECTIONS; i++)
		tern_link_plain(&a->conns[i].link, -1);
	a->opts = opts;
	a->stats = stats;
	a->own = own;
	atomic_init(&a->recover_cancel, false);
	rc = tern_accept_migration(opts, lfd, tls, a, &next_given, err, errlen);
	/* All in (or given up): nobody else gets to knock. */
	if (lfd >= 0) {
		close(lfd);
		lfd = -1;
	}
	if (rc != 0)
		goto out;
	a->start_ns = tern_now_ns();
	stats->connections = a->nconns;
	if ((rc = tern_runtime_create(&rt, trace)) != 0 ||
	    (rc = tern_mailbox_open(rt, "driver", &mb)) != 0) {
		session_err(err, errlen, "cannot start the actor runtime: %s", tern_strerror(rc));
		goto out;
	}
	/* From here on the connection actors own the fds (the receiver closes
	 * those it could not hand over). */
	fds_handed = 1;
	a->driver = tern_mailbox_id(mb);
	struct tern_exit failed;
	rc = tern_spawn(rt, &tern_receiver_actor, a, tern_mailbox_id(mb), &rcv, &failed);
	if (rc != 0) {
		session_err(err, errlen, "cannot start the receiver: %s", failed.why);
		goto out;
	}
	for (;;) {
		struct tern_msg m;
		rc = tern_mailbox_recv(mb, &m, 200);
		if (rc == 0 && m.type == TERN_MSG_SYS_EXIT &&
		    m.u.sys_exit.actor == tern_actor_id(rcv))
			break;
		if (rc == 0 && m.type == TERN_MSG_PC_PAUSED)
			session_recover(opts, tls, a, here, rt, mb, rcv, m.u.pc_paused.why);
		if (rc != 0 && rc != TERN_ETIMEDOUT)
			break;
		if (opts->stop_flag != NULL && __atomic_load_n(opts->stop_flag, __ATOMIC_RELAXED)) {
			tern_actor_stop(rcv);
		}
	}
	struct tern_exit ex;
	(void)tern_actor_join(rcv, -1, &ex);
	rcv = NULL;
	session_cpu(&cpu0, stats); /* the guest's run after the handoff is not the migration's */
	cpu_marked = 0;
	rc = a->result;
	g = atomic_load(&a->guest);
	/* As on the source: a guest the receiver resumed (result 0) runs here
	 * and stays running, whatever happened to the receiver afterwards. */
	if (ex.reason != TERN_EXIT_NORMAL && rc != 0) {
		if (rc == TERN_ECANCELED)
			rc = ex.reason == TERN_EXIT_KILLED ? TERN_EKILLED
			                                   : (ex.code ? ex.code : TERN_EACTOR);
		if (a->err[0] == '\0')
			snprintf(a->err, sizeof(a->err), "the receiver actor %s: %.180s",
			         ex.reason == TERN_EXIT_KILLED ? "was killed" : "failed", ex.why);
	}
	if (rc != 0) {
		session_err(err, errlen, "%s", a->err[0] ? a->err : tern_strerror(rc));
		goto out;
	}
	/* The guest runs here now: keep it running, then check the workload
	 * (a VMM's guest has none tern knows of: not checked). */
	uint64_t p0 = 0, p1 = 0;
	if (g->ops->check == NULL)
		goto out;
	char cwhy[TERN_STR_MAX] = "";
	(void)tern_guest_check(g, &p0, cwhy, sizeof(cwhy));
	stats->workload_progress_at_resume = p0;
	if (!opts->exit_after_handoff) {
		uint64_t until = opts->run_after_ms
		                     ? tern_now_ns() + opts->run_after_ms * 1000000ull
		                     : UINT64_MAX;
		while (tern_now_ns() < until &&
		       !(opts->stop_flag && __atomic_load_n(opts->stop_flag, __ATOMIC_RELAXED)))
			usleep(20000);
		int crc = tern_guest_check(g, &p1, cwhy, sizeof(cwhy));
		stats->workload_progress_after = p1;
		stats->workload_ok = crc == 0 ? 1 : -1;
		if (crc != 0) {
			rc = crc;
			session_err(err, errlen, "workload check failed after resume: %s", cwhy);
		}
	}
out:
	if (rcv != NULL) {
		tern_actor_kill(rcv);
		(void)tern_actor_join(rcv, -1, NULL);
	}
	if (cpu_marked)
		session_cpu(&cpu0, stats);
	if (a != NULL) {
		for (int i = 0; !fds_handed && i < TERN_MAX_CONNECTIONS; i++)
			tern_link_close(&a->conns[i].link);
		if (g == NULL)
			g = atomic_load(&a->guest);
		tern_bitmap_fini(&a->written);
		OPENSSL_cleanse(a->key, sizeof(a->key));
		free(a);
	}
	tern_mailbox_close(mb);
	tern_runtime_destroy(rt);
	if (own != NULL && own != g)
		tern_guest_destroy(own); /* never published: refused or not reached */
	tern_guest_destroy(g);
	if (lfd >= 0)
		close(lfd);
	/* Given sockets never taken are still ours to close. */
	for (uint32_t i = next_given; i < opts->nfds && opts->fds != NULL; i++)
		close(opts->fds[i]);
	tern_tls_destroy(tls);
	tern_trace_close(trace);
	return rc;
}
