/*
 * Coordinator: the source's pre-copy state machine and the supervisor of
 * every other source actor.
 *
 *   setup -> bulk -> iterate(n) -> switchover (guest paused) -> handoff
 *         -> completed
 *   any failure before the destination confirms -> aborted (guest running)
 *
 * init spawns the DirtyLogActor and the ConnectionActors (connecting and
 * handshaking), then sends W_CONFIG.  It decides what to send (the memfd's
 * data extents in bulk, then each dirty set), when the expected downtime
 * fits the limit, and owns the statistics.  Progress goes to `driver` as
 * PROGRESS messages.  Once over, it stops its children and collects their
 * final counters (CONN_STATS, SCAN_STATS), then ends with TERN_ACTOR_DONE;
 * the outcome is in args.  The page sets its chunks name by id are in
 * args->sets (actors/set_table.h), valid until the coordinator is joined.
 */
#ifndef TERN_ACTORS_COORDINATOR_H
#define TERN_ACTORS_COORDINATOR_H

#include <stdatomic.h>

#include "actors/conn_send.h"
#include "actors/dirty_log.h"
#include "actors/set_table.h"
#include "actors/throttle.h"
#include "actors/zero_scan.h"
#include "kvm/throttle_guard.h"
#include "tern/tern.h"

#define TERN_MAX_SCANNERS 16

struct tern_coordinator_args {
	struct tern_guest *guest;
	const struct tern_send_opts *opts;
	uint32_t driver; /* mailbox receiving PROGRESS */
	char migration[64];
	uint8_t key[32];      /* the migration's secret (net/hello.h) */
	struct tern_tls *tls; /* NULL: plain TCP */
	char tls_host[256];   /* the host of opts->to, for the certificate check */
	struct tern_dirty_log_args dirty;
	struct tern_set_table sets; /* filled by the coordinator; lent to chunk readers */
	struct tern_conn_send_args conns[TERN_MAX_CONNECTIONS];
	struct tern_zero_scan_args scanners[TERN_MAX_SCANNERS];
	struct tern_throttle_guard guard; /* outlives the ThrottleActor */
	struct tern_throttle_args throttle;
	struct tern_rate_limit limit; /* --max-bandwidth, shared by connections */
	/* Postcopy with data connections: connection 0 takes no more chunks,
	 * so that requested pages never wait behind the background stream. */
	atomic_bool urgent_lane;
	/* outcome */
	int result;
	char err[TERN_STR_MAX];
	int fds_owned; /* the coordinator took the given sockets (it closes them) */
	struct tern_stats *stats;
};

extern const struct tern_actor_desc tern_coordinator_actor;

#endif /* TERN_ACTORS_COORDINATOR_H */
