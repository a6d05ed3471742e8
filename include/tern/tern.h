/*
 * libtern: live migration of a running guest's memory and state.
 *
 * A VMM (or the `tern` CLI) calls tern_migrate_send on the source and
 * tern_migrate_receive on the destination.  Both run the migration's actors on their
 * own threads and return when the migration has ended, one way or the other:
 *
 *   - tern_migrate_send returns 0 once the destination has confirmed that it holds
 *     every page and the state and that its guest runs.  On any failure
 *     before that confirmation the source guest is running again when
 *     tern_migrate_send returns.  Two exceptions: TERN_EPEER with
 *     stats->handoff_unknown set is a control connection lost after the
 *     final request was sent: the destination may already run the guest, so
 *     the source guest is left paused, never both running.  And a guest whose
 *     resume fails (3 tries, with a backoff) stays paused: then
 *     stats->source_resume_failed is set, the outcome is "failed" and err
 *     begins "the source guest could not be resumed: <reason>".
 *   - tern_migrate_receive returns 0 once the guest runs on this side.
 *
 * Errors are negative codes (tern/error.h); err gets a one-line reason.
 */
#ifndef TERN_TERN_H
#define TERN_TERN_H

#include <stddef.h>
#include <stdint.h>

#include "tern/error.h"
#include "tern/guest.h"

#ifdef __cplusplus
extern "C" {
#endif

#define TERN_VERSION_MAJOR 0
#define TERN_VERSION_MINOR 1
#define TERN_VERSION_PATCH 0

/* tern_version returns the library's version, "MAJOR.MINOR.PATCH" (that of
 * the libtern loaded, which may differ from the header's TERN_VERSION_*). */
TERN_EXTERN const char *tern_version(void);

#define TERN_MAX_CONNECTIONS 64

/* A progress sample, delivered to the progress callback on the caller's
 * thread (about once per iteration and at least once per second). */
struct tern_progress {
	const char *state; /* "bulk", "iterate", "switchover", ... */
	uint32_t iteration;
	uint64_t transferred_bytes; /* payload bytes acknowledged so far */
	uint64_t remaining_bytes;   /* dirty bytes not yet sent */
	uint64_t dirty_rate_pps;    /* pages/s over the sliding window */
	uint64_t bandwidth_bps;     /* measured wire bandwidth, bytes/s */
	uint64_t eta_ms;
	uint64_t elapsed_ms;
};

typedef void (*tern_progress_fn)(const struct tern_progress *p, void *arg);

enum tern_zero_mode {
	TERN_ZERO_DETECT = 0,
	TERN_ZERO_SKIP_UNPOPULATED = 1,
	TERN_ZERO_OFF = 2,
};

enum tern_converge_mode {
	TERN_CONVERGE_OFF = 0,
	TERN_CONVERGE_STEP = 1, /* +increment every 2 iterations from the 2nd (seed 002) */
	TERN_CONVERGE_QEMU = 2, /* QEMU's: 20% then +10% when dirty > 50% of sent */
	TERN_CONVERGE_RATE = 3, /* straight to the throttle the dirty rate needs */
};

/* Options: fill them after tern_send_opts_init / tern_recv_opts_init, so
 * that fields added later start at their defaults. */
struct tern_send_opts {
	const char *to; /* "HOST:PORT" of the destination */
	/* Or connections the VMM already made (QEMU's fd:, a socket pair,
	 * a tunnel): nfds connected sockets, one per connection (connections
	 * is then nfds; to is only a name for messages).  libtern owns them
	 * from the call on and closes them on every path. */
	const int *fds;
	uint32_t nfds;
	/* The guest to migrate: the VMM's (provider), or, when provider is
	 * NULL, a built-in simulated guest built from the spec in guest
	 * ("simvm:mem=1G,...", for the CLI and tests). */
	const struct tern_guest_provider *provider;
	const char *guest;
	uint32_t connections;       /* 1..TERN_MAX_CONNECTIONS (0 means 1) */
	uint32_t connections_min;   /* carry on with this many if the destination
	                               accepts fewer (0: all are required) */
	uint32_t io_timeout_ms;     /* no progress on a connection for this long:
	                               the peer is gone (0: 10 s) */
	uint64_t chunk_size;        /* bytes per work item (0: default) */
	uint32_t downtime_limit_ms; /* 0: default 300 */
	uint64_t timeout_ms;        /* 0: no timeout */
	uint32_t dirty_period_ms;   /* background harvest period (0: 30) */
	int verify;                 /* compare memory digests at switchover */
	const char *trace_path;     /* NULL: no trace */
	/* TLS 1.3 on every connection (docs/security.md), one of: x509
	 * credentials, a directory holding ca-cert.pem, client-cert.pem and
	 * client-key.pem; or a pre-shared key file (`identity:hexkey` lines,
	 * or one hex key).  Neither: plain TCP. */
	const char *tls_creds;
	const char *tls_psk_file;
	/* x509: the name (or address) the destination's certificate must
	 * carry; NULL: the host of `to`. */
	const char *tls_hostname;
	/* Zero pages: TERN_ZERO_DETECT (default) scans pages and announces the
	 * zero ones; TERN_ZERO_SKIP_UNPOPULATED only skips never-populated
	 * pages; TERN_ZERO_OFF sends every page as data (holes still never
	 * read: they go from a static zero buffer). */
	int zero_pages;
	uint32_t zero_scanners; /* ZeroScanActors (0: 1) */
	const char *dirty_log;  /* "bitmap" (userfaultfd-WP + PAGEMAP_SCAN, default)
	                           or "ring" (per-vCPU dirty rings) */
	uint32_t ring_size;     /* entries per vCPU ring (0: 4096) */
	int ring_only;          /* with "ring": one walk over memory while ring
	                           pages are sent as they arrive (seed 001) */
	uint32_t ring_step;     /* ring-only: force a walk step every N ring pages (1024) */
	/* Convergence. */
	int auto_converge;           /* enum tern_converge_mode */
	uint32_t throttle_initial;   /* % (0: the mode's default) */
	uint32_t throttle_increment; /* % (0: 10) */
	uint32_t throttle_max;       /* % (0: 99) */
	uint64_t max_bandwidth;      /* bytes/s cap on page data (0: none) */
	int switchover_loose;        /* 0 (strict): never pause longer than the limit
	                                allows; resume and iterate instead */
	uint32_t stall_window_ms;    /* remaining bytes not shrinking this long is
	                                a stall (0: 5000) */
	/* Postcopy (docs/postcopy.md): when pre-copy has not converged after
	 * this many iterations (0: never), or when it stalls (postcopy_on_stall),
	 * switch: the destination runs the guest at once and pulls the pages
	 * still missing there.  From the switch on neither side alone holds the
	 * whole guest: a failure then leaves both paused. */
	uint32_t postcopy_after;
	int postcopy_on_stall;
	/* Page data goes through a small buffer by default (one memcpy per
	 * page): where the kernel's first read of a guest page costs a fault
	 * (a shadow-paged host: ~10 us per 4 KiB page) that is several times
	 * faster than letting the socket read guest memory.  Non-zero: send
	 * straight from guest memory.  TLS always reads in user space. */
	int send_direct;
	tern_progress_fn progress;
	void *progress_arg;
	/* Set non-zero (e.g. from a SIGINT handler) to cancel: the migration
	 * aborts, the destination is told, the source guest runs again and
	 * tern_migrate_send returns TERN_ECANCELED.  Too late once the handoff
	 * has begun (the destination may already run the guest). */
	volatile int *stop_flag;
	/* Postcopy recovery (docs/postcopy.md): after the switch a lost link
	 * pauses the migration instead of failing it (postcopy-paused), and the
	 * source dials the destination again, which waits for it, until this
	 * long after the loss (0: TERN_RECOVER_TIMEOUT_MS).  no_recover: fail
	 * at once, as before recovery existed.  (Appended last.) */
	uint32_t recover_timeout_ms;
	int no_recover;
};

#define TERN_RECOVER_TIMEOUT_MS 300000u

struct tern_recv_opts {
	const char *listen; /* "HOST:PORT" */
	/* Or the connections already accepted (the source's nfds): nothing
	 * listens.  libtern owns them from the call on and closes them. */
	const int *fds;
	uint32_t nfds;
	/* The destination's guest, created by the VMM before the migration
	 * (paused; libtern resumes it at the handoff).  The source's announced
	 * memory layout must equal its regions, or the migration is refused.
	 * NULL: a built-in simulated guest is built from guest, or else from
	 * the announced layout (the CLI's demo). */
	const struct tern_guest_provider *provider;
	/* Without a provider: the simulated destination guest to build before
	 * listening ("simvm:mem=1G,..."; its layout must match the source's),
	 * NULL to build it from the announced layout when the source arrives. */
	const char *guest;
	/* Populate the destination guest's memory before listening (QEMU's
	 * prealloc=on): page-table set-up is then off the migration's clock. */
	int prealloc;
	int ready_fd;               /* >= 0: write "PORT\n" there once listening */
	uint64_t accept_timeout_ms; /* 0: wait forever for the source */
	uint64_t run_after_ms;  /* keep the guest running this long after handoff, then check it */
	int exit_after_handoff; /* return as soon as the guest runs */
	int no_populate;        /* do not populate memory ahead of data */
	/* A guest built from the source's layout gets anonymous memory with
	 * transparent huge pages when the kernel has them (populated several
	 * times faster than a memfd here, and received into at memcpy pace);
	 * non-zero: the backing the source's spec names. */
	int same_backing;
	uint32_t max_connections; /* refuse connections beyond this many (0: 64) */
	uint32_t io_timeout_ms;   /* as in tern_send_opts */
	const char *trace_path;
	/* TLS 1.3 (docs/security.md): x509 credentials, a directory holding
	 * ca-cert.pem, server-cert.pem and server-key.pem (the source must
	 * show a certificate of that CA); or a pre-shared key file.  Neither:
	 * plain TCP, refused on a non-loopback address unless insecure. */
	const char *tls_creds;
	const char *tls_psk_file;
	int insecure;
	volatile int *stop_flag; /* set non-zero (e.g. from SIGINT) to stop running the guest */
	/* Operator notes ("refused a connection: ...", "receiving migration
	 * ... over 4 connections"), one line each; NULL: silent. */
	void (*log)(const char *line, void *arg);
	void *log_arg;
	/* Without a guest of its own, the destination builds the one the
	 * source announces: these cap it, checked before anything is
	 * allocated.  0: no memory cap (a sparse guest may exceed this host's
	 * memory), 256 vCPUs.  (Appended last: older callers' zeroed structs
	 * keep the defaults.) */
	uint64_t max_mem;
	uint32_t max_vcpus;
	/* Postcopy recovery, as in tern_send_opts: how long a paused postcopy
	 * listens again on the same address for its source to come back. */
	uint32_t recover_timeout_ms;
	int no_recover;
};

/* One connection's share of a migration. */
struct tern_conn_stats {
	uint64_t bytes;     /* bytes on the wire, both directions */
	uint64_t payload;   /* page bytes acknowledged (source) / written (destination) */
	uint64_t chunks;    /* chunks acknowledged / received */
	uint64_t active_ms; /* first send to last ack */
	int lost;           /* the connection failed during the migration */
};

struct tern_stats {
	/* both sides */
	uint64_t total_ms;       /* migration start (guest built) to handoff */
	uint64_t guest_build_ms; /* building + filling the guest, reported apart */
	uint64_t downtime_ms; /* source pause -> destination confirmed running, hashing excluded */
	uint64_t expected_downtime_ms; /* the estimate that allowed switchover */
	uint32_t downtime_limit_ms;    /* the limit in force at the end (it may change live) */
	uint64_t verify_ms;            /* digest time at switchover (not in downtime) */
	uint64_t bytes_sent;           /* bytes on the wire, all frames */
	uint64_t payload_bytes;        /* page data bytes */
	uint64_t pages_sent;           /* data pages sent (with repeats) */
	uint64_t pages_skipped;        /* never-populated pages skipped (known zero) */
	uint64_t pages_zero;           /* zero pages announced, not sent */
	uint64_t pages_scanned;        /* pages read by the zero scanners */
	uint64_t zero_scan_ms;         /* time the scanners spent, summed */
	uint64_t pages_scan_skipped;   /* sent unscanned: the recent pages held no zeros */
	uint64_t iterations;           /* pre-copy iterations including bulk and final */
	uint64_t dirty_rate_pps;       /* last measured dirty rate */
	uint64_t bandwidth_bps;        /* measured wire bandwidth used for the estimate */
	uint64_t transfer_ms;          /* time spent in iterations (the wire time) */
	uint64_t pause_latency_us;
	uint32_t throttle_pct;       /* throttle in force at switchover */
	uint32_t throttle_max_pct;   /* the highest it went */
	uint32_t switchover_retries; /* strict switchovers that resumed to iterate */
	uint64_t ring_pass_pages;    /* ring-only: ring pages sent during the walk */
	int stalled;                 /* remaining bytes stopped shrinking */
	char stall_reason[160];
	uint64_t final_pages;     /* pages sent while paused */
	int verified;             /* 1 digests compared equal, 0 not asked */
	int handoff_unknown;      /* see tern_migrate_send */
	int source_resume_failed; /* the migration failed and the source guest could not
	                             be resumed: it is PAUSED (outcome "failed") */
	uint32_t connections;     /* connections in use */
	uint32_t connections_lost;
	uint64_t chunks_requeued;      /* chunks resent after their connection died */
	uint64_t state_bytes;          /* source: the device state sent at switchover */
	uint64_t state_save_ms;        /* source: the VMM's state_save (in downtime) */
	uint32_t connections_fenced;   /* dead connections the destination fenced
	                                  before their chunks were resent */
	uint64_t state_bytes_expected; /* source: the VMM's state_size estimate the
	                                  switchover decision counted (0: none) */
	struct tern_conn_stats conn[TERN_MAX_CONNECTIONS];
	/* destination */
	uint64_t workload_progress_at_resume;
	uint64_t workload_progress_after;
	int workload_ok; /* 1 invariant held after running, -1 violated, 0 not checked */
	uint64_t populate_ms;
	/* postcopy (both sides: postcopy says whether it switched) */
	int postcopy;
	char postcopy_reason[96];       /* source: why it switched */
	uint64_t postcopy_pages;        /* pages stale on the destination at the switch */
	uint64_t postcopy_urgent_pages; /* sent (source) / placed (destination) on request */
	uint64_t postcopy_faults;       /* destination: faults read (zero pages included) */
	uint64_t postcopy_zero_pages;   /* destination: missing pages that were zero */
	uint64_t postcopy_requests;     /* destination: page requests sent */
	uint64_t postcopy_fault_p50_us; /* destination: request to placement, median */
	uint64_t postcopy_fault_p99_us;
	uint64_t postcopy_fault_max_us;
	uint64_t postcopy_ms; /* from the switch to the last page (source) */
	/* both sides: the process's CPU time (all threads) over the migration:
	 * the source from its guest built, the destination from its guest made
	 * (and preallocated) to the end; a guest built from the source's
	 * layout and populated during the migration is in it */
	uint64_t cpu_user_ms, cpu_sys_ms;
	char outcome[32]; /* "completed", "aborted", "failed", "postcopy-failed" */
	/* postcopy recovery (both sides): times the link was lost after the
	 * switch, and the time spent paused until it was back */
	uint64_t postcopy_pauses;
	uint64_t postcopy_recover_ms;
};

/* tern_send_opts_init and tern_recv_opts_init zero *opts and set every
 * field to its default. */
TERN_EXTERN void tern_send_opts_init(struct tern_send_opts *opts);
TERN_EXTERN void tern_recv_opts_init(struct tern_recv_opts *opts);

/* tern_migrate_send migrates opts->provider's guest (or, without one, a
 * simulated guest built from opts->guest) to opts->to and returns when the
 * migration has ended: 0 once the destination confirmed that its guest runs,
 * else a negative code with err set and the source guest running (see the
 * top of this file for the two exceptions).  Blocks the calling thread;
 * cancel with opts->stop_flag. */
TERN_EXTERN int tern_migrate_send(const struct tern_send_opts *opts, struct tern_stats *stats,
                                  char *err, size_t errlen);

/* tern_migrate_receive takes one incoming migration into opts->provider's
 * guest (or a simulated one) and returns 0 once that guest runs. */
TERN_EXTERN int tern_migrate_receive(const struct tern_recv_opts *opts, struct tern_stats *stats,
                                     char *err, size_t errlen);

/*
 * The migration handle: the same migrations, started and left to run.
 *
 *   struct tern_migration *m;
 *   int rc = tern_migration_send(&m, &opts, &cb, my_data);  // returns at once
 *   ...                       // progress callbacks; tern_migration_stats()
 *   tern_migration_cancel(m);  // any time, any thread, never blocks
 *   rc = tern_migration_close(m);  // waits for the end, frees, the result
 *
 * A start that fails returns the error and calls nothing back.  Otherwise
 * the done callback comes exactly once, last.  The options' strings and the
 * provider must stay valid until close.  Callbacks run on libtern's thread:
 * they must not block long and must not close the handle.
 */
struct tern_migration;

struct tern_migration_cb {
	/* About once per iteration and at least once per second (source). */
	void (*progress)(struct tern_migration *m, const struct tern_progress *p);
	/* The end: result 0 or a negative code, err a one-line reason ("" on
	 * success).  tern_migration_stats has the final figures from now on. */
	void (*done)(struct tern_migration *m, int result, const char *err);
};

/* tern_migration_send / tern_migration_receive start a migration as
 * tern_migrate_send / tern_migrate_receive (their stop_flag and progress
 * fields are the handle's; use cancel and the callbacks).  data is the
 * caller's, returned by tern_migration_data.  cb may be NULL. */
TERN_EXTERN int tern_migration_send(struct tern_migration **m, const struct tern_send_opts *opts,
                                    const struct tern_migration_cb *cb, void *data);
TERN_EXTERN int tern_migration_receive(struct tern_migration **m, const struct tern_recv_opts *opts,
                                       const struct tern_migration_cb *cb, void *data);
TERN_EXTERN void *tern_migration_data(const struct tern_migration *m);

/* tern_migration_cancel asks the migration to end with the source guest
 * running (TERN_ECANCELED); too late once the handoff has begun.  Never
 * blocks, idempotent, from any thread (a callback included). */
TERN_EXTERN void tern_migration_cancel(struct tern_migration *m);

/* tern_migration_set_downtime_limit (ms > 0) and
 * tern_migration_set_max_bandwidth (bytes/s, 0: no cap) change a running
 * source migration: the limit applies from the next switchover decision,
 * the cap from the next chunk.  Any thread; TERN_ESTATE on a destination. */
TERN_EXTERN int tern_migration_set_downtime_limit(struct tern_migration *m, uint32_t ms);
TERN_EXTERN int tern_migration_set_max_bandwidth(struct tern_migration *m, uint64_t bytes_per_s);

/* tern_migration_start_postcopy asks a running source migration to switch
 * to postcopy at its next decision (the end of the pass in progress), as
 * QEMU's migrate-start-postcopy: the destination then runs the guest and
 * pulls the pages it misses (docs/postcopy.md).  TERN_ESTATE on the
 * destination.  From the switch on a failure loses the guest on both sides
 * (outcome "postcopy-failed"). */
TERN_EXTERN int tern_migration_start_postcopy(struct tern_migration *m);

/* tern_migration_set_auto_converge switches auto-converge on a running
 * source migration: mode is an enum tern_converge_mode (TERN_CONVERGE_OFF
 * lets a throttled guest run at full speed at once), initial, increment and
 * max are the throttle settings in % (0: keep the current).  Applies from
 * the next convergence decision.  Any thread; TERN_ESTATE on a destination,
 * TERN_EINVAL for a mode or a percentage out of range. */
TERN_EXTERN int tern_migration_set_auto_converge(struct tern_migration *m, int mode,
                                                 uint32_t initial, uint32_t increment,
                                                 uint32_t max);

/* tern_migration_stats fills *s from any thread at any time: while running
 * outcome is "active" with the live figures (elapsed time, bytes
 * transferred, iteration, dirty rate, bandwidth), after the done callback
 * the final statistics. */
TERN_EXTERN int tern_migration_stats(struct tern_migration *m, struct tern_stats *s);

/* tern_migration_progress copies the last progress sample; its state name
 * goes into state (statelen bytes; p->state is set NULL). */
TERN_EXTERN int tern_migration_progress(struct tern_migration *m, struct tern_progress *p,
                                        char *state, size_t statelen);

/* tern_migration_wait waits up to timeout_ms (-1: until the end, 0: poll):
 * the result once done (err, may be NULL, gets its reason), TERN_ETIMEDOUT
 * while still running. */
TERN_EXTERN int tern_migration_wait(struct tern_migration *m, int timeout_ms, char *err,
                                    size_t errlen);

/* tern_migration_close waits for the end (cancel first to hurry it), frees
 * the handle and returns the result.  NULL is accepted. */
TERN_EXTERN int tern_migration_close(struct tern_migration *m);

/* tern_stats_json writes stats as one JSON object (stable field names). */
TERN_EXTERN int tern_stats_json(const struct tern_stats *s, char *buf, size_t len);

#ifdef __cplusplus
}
#endif
#endif /* TERN_TERN_H */
