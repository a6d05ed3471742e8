/*
 * Page sets named by id.  A CHUNK names the set its pages come from by a
 * small id, never by address: every actor that reads chunks (ConnectionActors,
 * ZeroScanActors) is given the table at spawn and resolves the id itself.
 *
 * Ids:
 *   1..TERN_DIRTY_MAPS  the DirtyLogActor's maps (struct tern_dirty_log_args):
 *                       DIRTY_SET lends one by this id, DIRTY_GIVE returns it
 *   TERN_SET_BULK       the coordinator's first pass (every populated page)
 *   TERN_SET_RING       ring pages behind the ring-only walk
 *   TERN_SET_FINAL      the coordinator's final set (last dirty set | last harvest)
 *   0                   no set
 *
 * Lifetime: the bitmaps live in the coordinator's spawn arguments and state,
 * which outlive every actor that reads them (the coordinator joins its
 * children in its stop; the session frees the dirty maps after that).  A set
 * is not written while a chunk cut from it is unacknowledged, except the
 * zero map (zmap), whose bits ZeroScanActors set with atomic operations.
 */
#ifndef TERN_ACTORS_SET_TABLE_H
#define TERN_ACTORS_SET_TABLE_H

#include <stdint.h>

#include "kvm/bitmap.h"

/* The DirtyLogActor's bitmaps: one accumulates, the coordinator may hold up
 * to two (the set being decided on and the final harvest at switchover). */
#define TERN_DIRTY_MAPS 3

enum tern_set_id {
	TERN_SET_NONE = 0,
	TERN_SET_DIRTY = 1, /* first of TERN_DIRTY_MAPS ids */
	TERN_SET_BULK = TERN_SET_DIRTY + TERN_DIRTY_MAPS,
	TERN_SET_RING,
	TERN_SET_FINAL,
	TERN_SET_COUNT,
};

struct tern_set_table {
	const struct tern_bitmap *set[TERN_SET_COUNT]; /* by id; [0] stays NULL */
	/* One bit per guest page, for chunks flagged TERN_CHUNK_ZSCANNED (1 =
	 * all zero) or TERN_CHUNK_ZHOLES (1 = never populated); NULL without. */
	const struct tern_bitmap *zmap;
};

/* tern_set_get returns the set named id, or NULL for an id out of range or
 * not filled in (a malformed chunk: its reader rejects it). */
static inline const struct tern_bitmap *
tern_set_get(const struct tern_set_table *t, uint64_t id)
{
	return id < TERN_SET_COUNT ? t->set[id] : NULL;
}

#endif /* TERN_ACTORS_SET_TABLE_H */
