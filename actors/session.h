/*
 * The blocking migrations behind tern_migrate_send / tern_migrate_receive,
 * with what the migration handle (actors/migration.c) adds: parameters
 * changed while the migration runs.
 */
#ifndef TERN_ACTORS_SESSION_H
#define TERN_ACTORS_SESSION_H

#include <stdatomic.h>
#include <stdint.h>

#include "tern/tern.h"

/* Parameters set while running: the handle writes a value, then bumps gen
 * (release); the session's loop sees gen change (acquire) and sends the
 * coordinator the values (0: unchanged; max_bandwidth UINT64_MAX: no cap). */
struct terni_live_params {
	_Atomic uint32_t downtime_limit_ms;
	_Atomic uint64_t max_bandwidth;
	/* Auto-converge: converge is the mode + 1 (0: unchanged); the
	 * throttle settings in % (0: unchanged). */
	_Atomic uint32_t converge;
	_Atomic uint32_t throttle_initial, throttle_increment, throttle_max;
	_Atomic uint32_t start_postcopy; /* 1: switch at the next decision */
	_Atomic uint32_t gen;
};

/* terni_migrate_send is tern_migrate_send with live parameters (may be NULL). */
int terni_migrate_send(const struct tern_send_opts *opts, struct terni_live_params *live,
                       struct tern_stats *stats, char *err, size_t errlen);

#endif /* TERN_ACTORS_SESSION_H */
