/*
 * Source ConnectionActor: owns one TCP connection to the destination.
 *
 * init connects and runs the handshake.  Then it pulls CHUNK descriptors
 * from the shared work queue only while it has window room (so a slow
 * connection takes less work and never hoards a backlog), sends each chunk's
 * pages through a 512 KiB copy buffer (the kernel's first read of a page
 * the guest wrote costs a fault on a shadow-paged host; --send-direct, and
 * TLS, read the mapping instead), and reports every W_ACK to the
 * coordinator as CHUNK_DONE.
 * Connection 0 also carries control: CTL_OUT messages are sent as frames and
 * every non-ACK frame received is forwarded to the coordinator as CTL_IN.
 *
 * However it ends (error, stop, kill), its stop callback sends CONN_DOWN
 * listing the chunks still unacknowledged, so the coordinator can hand them
 * to the surviving connections, and CONN_STATS with its final counters.
 */
#ifndef TERN_ACTORS_CONN_SEND_H
#define TERN_ACTORS_CONN_SEND_H

#include <stdatomic.h>

#include "actors/actor.h"
#include "actors/set_table.h"
#include "kvm/guest.h"
#include "net/tls.h"

#define TERN_CONN_WINDOW_MAX 64

/* A rate cap shared by every connection: each chunk reserves its share of
 * wire time on one timeline (lock-free), and its sender waits for it. */
struct tern_rate_limit {
	/* 0: no cap.  The coordinator may change it while connections run
	 * (a live parameter): relaxed, each chunk reads it once. */
	_Atomic uint64_t bytes_per_s;
	_Atomic uint64_t next_ns;
};

struct tern_conn_send_args {
	struct tern_guest *guest;
	struct tern_queue *queue;
	const struct tern_set_table *sets; /* resolves CHUNK.set and the zero map */
	const char *to;
	int given_fd; /* a connected socket the VMM passed (>= 0), else connect to `to` */
	const char *migration;
	const uint8_t *key;   /* the migration's (net/hello.h) */
	struct tern_tls *tls; /* NULL: plain TCP */
	const char *tls_host; /* the dialled host, for the certificate check */
	uint32_t conn, nconns;
	uint32_t coordinator;          /* receives CHUNK_DONE and CTL_IN */
	uint32_t window;               /* chunks in flight (credits) */
	struct tern_rate_limit *limit; /* never NULL; bytes_per_s 0: no cap */
	int deadline_ms;               /* no progress for this long: the peer is gone */
	int send_direct;               /* tern_send_opts.send_direct */
	uint64_t peer_time_ns;         /* destination clock at handshake */
	/* Set: connection 0 pulls no chunks (the coordinator's urgent lane). */
	const atomic_bool *urgent_lane;
};

extern const struct tern_actor_desc tern_conn_send_actor;

#endif /* TERN_ACTORS_CONN_SEND_H */
