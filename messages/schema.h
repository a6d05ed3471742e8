/*
 * The one schema of every actor message and every wire-frame header.
 *
 * Each message is one line of TERN_MESSAGES: X(NAME, name, id).  Its fields
 * are listed by the macro TERN_FIELDS_<NAME>(F), one F(TYPE, field) per field,
 * in wire order.  messages/msg.h turns this table into the type enum, one
 * struct per message, the name table and the msgpack codec; nothing else in
 * tern spells a message out by hand.
 *
 * Field types:
 *   U32, U64, I32, I64, F64, BOOL  scalars
 *   STR     NUL-terminated text, at most TERN_STR_MAX-1 bytes (char[])
 *   BIN     opaque bytes, struct tern_bin (borrowed from the decoded buffer)
 *   RANGES  (gpa, len) pairs, struct tern_ranges (borrowed, little-endian)
 *
 * Ids: application messages 0x0001-0x0fff, wire frames 0x1000-0x1fff,
 * runtime (system) messages 0xf000 and above, as the Pony runtime reserves
 * its system ids above the application range.
 */
#ifndef TERN_MESSAGES_SCHEMA_H
#define TERN_MESSAGES_SCHEMA_H

/* ---- runtime (system) messages ---- */
#define TERN_FIELDS_SYS_STOP(F)
#define TERN_FIELDS_SYS_EXIT(F) F(U32, actor) F(STR, name) F(U32, reason) F(I32, code) F(STR, why)
#define TERN_FIELDS_PING(F) F(U64, value) F(STR, text)

/* ---- source-side actor messages ---- */
/* Coordinator -> DirtyLogActor: begin background harvesting. */
#define TERN_FIELDS_DIRTY_START(F) F(U32, period_ms) F(U32, window_ms)
/* Coordinator -> DirtyLogActor request: hand over the accumulated set. */
#define TERN_FIELDS_DIRTY_TAKE(F) F(BOOL, final)
/* DirtyLogActor reply: `set` is the id (actors/set_table.h: 1..TERN_DIRTY_MAPS)
 * of one of the actor's maps, lent to the coordinator unchanged until it
 * sends DIRTY_GIVE with the same id (after every chunk cut from it is
 * acknowledged); the DirtyLogActor clears it then and owns it again. */
#define TERN_FIELDS_DIRTY_SET(F) F(U32, set) F(U64, pages) F(U64, rate_pps) F(U64, harvest_ns)
#define TERN_FIELDS_DIRTY_GIVE(F) F(U32, set)
#define TERN_FIELDS_DIRTY_STOP(F)
/* Work item on the shared chunk queue: a descriptor, never page data.  The
 * chunk is the dirty pages of set `set` (an id of actors/set_table.h, which
 * every reader gets at spawn; the set is read-only while the chunk is
 * unacknowledged) inside the window [gpa, gpa+len): `pages` pages in at most
 * TERN_CHUNK_MAX_RUNS runs. */
#define TERN_FIELDS_CHUNK(F)                                                                       \
	F(U32, iter) F(U64, chunk) F(U64, gpa) F(U64, len) F(U32, flags) F(U32, set) F(U64, pages)
/* CHUNK flags, about the zero map of the set table (one bit per page):
 * ZSCANNED: a ZeroScanActor set the zero map's bits of this chunk (1 = all
 * zero), the pages go as announcements; ZHOLES (--zero-pages off): the map
 * marks holes, which go as data read from a static zero page, never from
 * the mapping. */
#define TERN_CHUNK_ZSCANNED 1u
#define TERN_CHUNK_ZHOLES 2u
/* ConnectionActor -> Coordinator: the destination acknowledged a chunk. */
#define TERN_FIELDS_CHUNK_DONE(F)                                                                  \
	F(U64, chunk) F(U32, conn) F(U64, bytes) F(U64, wire_ns) F(U64, zero_pages)
/* ConnectionActor -> Coordinator: the connection failed; `chunks` lists the
 * unacknowledged chunk ids (as (id, 0) pairs) for re-queueing. */
#define TERN_FIELDS_CONN_DOWN(F) F(U32, conn) F(I32, code) F(STR, why) F(RANGES, chunks)
/* ConnectionActor -> Coordinator, sent by its stop (so before its SYS_EXIT):
 * the connection's final counters, bytes on the wire and the times of its
 * first send and last ack.  Page bytes and chunks are not here: every
 * CHUNK_DONE carries them. */
#define TERN_FIELDS_CONN_STATS(F)                                                                  \
	F(U32, conn) F(U64, wire_bytes) F(U64, first_send_ns) F(U64, last_ack_ns)
/* ZeroScanActor -> Coordinator, sent by its stop: pages scanned (of which
 * all zero) and the time spent scanning them. */
#define TERN_FIELDS_SCAN_STATS(F) F(U64, pages) F(U64, zero) F(U64, scan_ns)
/* Coordinator <-> ConnectionActor 0: a control frame to send / received. */
#define TERN_FIELDS_CTL_OUT(F) F(BIN, frame) F(BIN, payload)
#define TERN_FIELDS_CTL_IN(F) F(BIN, frame) F(BIN, payload)
/* Coordinator -> driver: one progress sample per iteration and per second. */
#define TERN_FIELDS_PROGRESS(F)                                                                    \
	F(U32, iter)                                                                               \
	F(STR, state)                                                                              \
	F(U64, transferred)                                                                        \
	F(U64, remaining) F(U64, dirty_pps) F(U64, bw_bps) F(U64, eta_ms) F(U64, elapsed_ms)
/* Destination ConnectionActor -> ReceiverCoordinator: pages written. */
#define TERN_FIELDS_PAGES_IN(F) F(U32, conn) F(U64, bytes) F(U64, frames) F(U64, zero_pages)
/* Coordinator -> ThrottleActor request: enforce pct (0..99, 0 = off). */
#define TERN_FIELDS_THROTTLE_SET(F) F(U32, pct)
/* ThrottleActor reply: the pct in force, the guest's measured run-time
 * share over the last slices (parts per million), the slices enforced so
 * far, and status (0, or TERN_EINVAL for a pct above 99, which is ignored). */
#define TERN_FIELDS_THROTTLE_STATE(F)                                                              \
	F(U32, pct) F(U32, run_share_ppm) F(U64, slices) F(I32, status)

/* ---- wire frame headers (connection 0 carries control and data) ---- */
/* W_HELLO binds its connection to its migration (net/hello.h): `key` (hex,
 * connection 0 only) is the migration's secret, `bind` (hex) a MAC with it
 * over this connection's TLS exporter, index, count and migration id. */
#define TERN_FIELDS_W_HELLO(F)                                                                     \
	F(U64, magic)                                                                              \
	F(U32, version) F(STR, migration) F(U32, conn) F(U32, nconns) F(STR, key) F(STR, bind)
#define TERN_FIELDS_W_HELLO_ACK(F) F(U32, version) F(I32, status) F(STR, why) F(U64, time_ns)
/* layout: the guest's memory regions as (gpa, size) pairs in gpa order;
 * page offsets in every later frame are in the space they define
 * (kvm/guest.h).  mem_size is their sum. */
#define TERN_FIELDS_W_CONFIG(F)                                                                    \
	F(U64, mem_size)                                                                           \
	F(U32, page_size) F(U32, vcpus) F(STR, guest) F(BOOL, verify) F(RANGES, layout)
/* Page data: the payload is the bytes of every range, in order.  `zeros`
 * are ranges announced all-zero: no payload, the destination makes them read
 * as zero. */
#define TERN_FIELDS_W_PAGES(F) F(U64, chunk) F(RANGES, ranges) F(RANGES, zeros)
#define TERN_FIELDS_W_ACK(F) F(U64, chunk) F(I32, status)
/* Device/vCPU state: the payload follows the header. */
#define TERN_FIELDS_W_STATE(F) F(U64, len)
#define TERN_FIELDS_W_DIGEST(F) F(U64, digest) F(U64, hash_ns)
#define TERN_FIELDS_W_COMPLETE(F)
/* The response to every control request: step names the request type. */
#define TERN_FIELDS_W_RESULT(F) F(U32, step) F(I32, status) F(STR, why) F(U64, value)
#define TERN_FIELDS_W_ABORT(F) F(I32, code) F(STR, why)
/* Source -> destination on connection 0: connection `conn` is dead to the
 * source; write nothing more from it.  Answered (W_RESULT, value = conn)
 * once none of its writes is in progress: only then does the source resend
 * what was in flight on it, so a stale copy can never land on a newer one. */
#define TERN_FIELDS_W_FENCE(F) F(U32, conn)
/* Device state larger than one control payload goes first in parts
 * (payload: bytes from offset, in order, each TERN_STATE_PART), then W_STATE
 * with the total length and the last part; no answer to a part. */
#define TERN_FIELDS_W_STATE_PART(F) F(U64, offset)
/* Postcopy (docs/postcopy.md).  W_POSTCOPY, source -> destination on
 * connection 0 after the switch: the stale set, the pages whose copy on the
 * destination is out of date, as bitmap words (payload, little-endian u64)
 * for pages [first, first + count), first a multiple of 64, in order; the
 * destination answers the `last` slice, once those pages are missing there
 * and faults on them are served. */
#define TERN_FIELDS_W_POSTCOPY(F) F(U64, first) F(U64, count) F(BOOL, last)
/* Destination -> source on connection 0: a vCPU waits for these pages
 * (t: the destination's clock when the fault was read, echoed back). */
#define TERN_FIELDS_W_PAGE_REQ(F) F(RANGES, ranges) F(U64, t)
/* Source -> destination on connection 0: requested pages (payload: the
 * bytes of every range, in order), ahead of the background stream; not
 * acknowledged (the background stream's acks say when every page is in). */
#define TERN_FIELDS_W_URGENT(F) F(RANGES, ranges) F(U64, t)
/* Postcopy recovery (docs/postcopy.md).  W_RESUME, source -> destination on
 * a new connection 0 after the link was lost: the stream goes on; answered
 * (W_RESULT, value = stale pages still missing there) only by the
 * destination that paused this very migration. */
#define TERN_FIELDS_W_RESUME(F)
/* ReceiverCoordinator -> driver: the link is lost in postcopy; accept the
 * source's new connections (PC_RELINKED says how it went). */
#define TERN_FIELDS_PC_PAUSED(F) F(STR, why)
/* Driver -> ReceiverCoordinator: the source is back (status 0: the new
 * links are in the receiver's args), or not (why). */
#define TERN_FIELDS_PC_RELINKED(F) F(I32, status) F(STR, why)
/* ReceiverCoordinator -> PostcopyFaultActor: requests go through this
 * connection 0 from now on (0: none, the link is down); the pages asked for
 * and not arrived are asked for again. */
#define TERN_FIELDS_PC_RELINK(F) F(U32, conn0)
/* Driver -> Coordinator: cancel the migration (the source guest runs again;
 * refused once the handoff has begun). */
#define TERN_FIELDS_CANCEL(F) F(STR, why)
/* Driver -> Coordinator: parameters changed while running (0: unchanged). */
/* PARAMS: 0 leaves a field unchanged; converge is the auto-converge mode + 1. */
#define TERN_FIELDS_PARAMS(F)                                                                      \
	F(U32, downtime_limit_ms)                                                                  \
	F(U64, max_bandwidth)                                                                      \
	F(U32, converge)                                                                           \
	F(U32, throttle_initial)                                                                   \
	F(U32, throttle_increment) F(U32, throttle_max) F(U32, start_postcopy)

#define TERN_MESSAGES(X)                                                                           \
	X(PING, ping, 0x0001)                                                                      \
	X(DIRTY_START, dirty_start, 0x0010)                                                        \
	X(DIRTY_TAKE, dirty_take, 0x0011)                                                          \
	X(DIRTY_SET, dirty_set, 0x0012)                                                            \
	X(DIRTY_GIVE, dirty_give, 0x0013)                                                          \
	X(DIRTY_STOP, dirty_stop, 0x0014)                                                          \
	X(CHUNK, chunk, 0x0020)                                                                    \
	X(CHUNK_DONE, chunk_done, 0x0021)                                                          \
	X(CONN_DOWN, conn_down, 0x0022)                                                            \
	X(CTL_OUT, ctl_out, 0x0023)                                                                \
	X(CTL_IN, ctl_in, 0x0024)                                                                  \
	X(PROGRESS, progress, 0x0025)                                                              \
	X(PAGES_IN, pages_in, 0x0026)                                                              \
	X(CONN_STATS, conn_stats, 0x0027)                                                          \
	X(SCAN_STATS, scan_stats, 0x0028)                                                          \
	X(THROTTLE_SET, throttle_set, 0x0030)                                                      \
	X(THROTTLE_STATE, throttle_state, 0x0031)                                                  \
	X(CANCEL, cancel, 0x0040)                                                                  \
	X(PARAMS, params, 0x0041)                                                                  \
	X(PC_PAUSED, pc_paused, 0x0050)                                                            \
	X(PC_RELINKED, pc_relinked, 0x0051)                                                        \
	X(PC_RELINK, pc_relink, 0x0052)                                                            \
	X(W_HELLO, w_hello, 0x1001)                                                                \
	X(W_HELLO_ACK, w_hello_ack, 0x1002)                                                        \
	X(W_CONFIG, w_config, 0x1003)                                                              \
	X(W_PAGES, w_pages, 0x1004)                                                                \
	X(W_ACK, w_ack, 0x1005)                                                                    \
	X(W_STATE, w_state, 0x1006)                                                                \
	X(W_DIGEST, w_digest, 0x1007)                                                              \
	X(W_COMPLETE, w_complete, 0x1008)                                                          \
	X(W_RESULT, w_result, 0x1009)                                                              \
	X(W_ABORT, w_abort, 0x100a)                                                                \
	X(W_FENCE, w_fence, 0x100b)                                                                \
	X(W_STATE_PART, w_state_part, 0x100c)                                                      \
	X(W_POSTCOPY, w_postcopy, 0x100d)                                                          \
	X(W_PAGE_REQ, w_page_req, 0x100e)                                                          \
	X(W_URGENT, w_urgent, 0x100f)                                                              \
	X(W_RESUME, w_resume, 0x1010)                                                              \
	X(SYS_STOP, sys_stop, 0xf001)                                                              \
	X(SYS_EXIT, sys_exit, 0xf002)

/* Most dirty runs the coordinator puts in one chunk, and most ranges of
 * each kind (data, zero) in one W_PAGES frame. */
#define TERN_CHUNK_MAX_RUNS 256
/* Device state: sent in parts of TERN_STATE_PART (what one actor message
 * carries beside its header, TERN_MSG_MAX), at most TERN_STATE_MAX in all
 * (both sides hold it whole). */
#define TERN_STATE_PART ((1u << 20) - 4096u)
#define TERN_STATE_MAX (256u << 20)
#define TERN_FRAME_MAX_RANGES 512

#endif /* TERN_MESSAGES_SCHEMA_H */
