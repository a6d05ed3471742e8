/*
 * A W_PAGES frame on the destination, without the socket: the checks run
 * before a byte of it is written, the announced zero ranges, where its data
 * goes in guest memory and the written-page map.  A pure module (no actor
 * calls, no runtime, no I/O), so that the part of the receive path that
 * turns network numbers into guest addresses is fuzzed on its own
 * (tests/fuzz/fuzz_pages.c).  The destination ConnectionActor
 * (actors/conn_recv.c) calls check, zero and iov in this order, then reads
 * the payload into the vectors.
 *
 * Every function but tern_page_frame_check takes a frame that passed it.
 */
#ifndef TERN_ACTORS_PAGE_FRAME_H
#define TERN_ACTORS_PAGE_FRAME_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "kvm/guest.h"
#include "messages/msg.h"

/* tern_page_frame_check validates the header of a W_PAGES frame against
 * guest g before anything is written: at least one range, at most
 * TERN_FRAME_MAX_RANGES of each kind, none empty, every one inside guest
 * memory (overflow-safe), and the data ranges adding up to plen, the
 * payload that follows.  Returns 0, or TERN_EPROTO / TERN_ERANGE with a
 * one-line reason (a static string) in *why. */
int tern_page_frame_check(const struct tern_guest *g, const struct tern_msg_w_pages *p,
                          uint64_t plen, const char **why);

/* tern_page_frame_zero makes every zero range of p read as zero.  Only pages
 * that received data before (set in written) need clearing: the others were
 * never populated here and already read as zero.  Adds the pages announced
 * to *zero_pages.  Returns 0 or tern_guest_zero's error. */
int tern_page_frame_zero(struct tern_guest *g, const struct tern_bitmap *written,
                         const struct tern_msg_w_pages *p, uint64_t *zero_pages);

/* tern_page_frame_iov marks the pages of p's data ranges written in the map
 * (atomically: the connections share it) and points iov[0..p->ranges.count)
 * at their guest memory, in order; with populate, a memfd's pages are
 * populated ahead of the data first (an optimisation only: a failure is
 * ignored).  Marked before the payload is read, never after: the map must
 * cover every page that may hold data, also when the frame is cut off inside
 * its payload, since an announced zero range clears only marked pages. */
void tern_page_frame_iov(struct tern_guest *g, struct tern_bitmap *written,
                         const struct tern_msg_w_pages *p, bool populate, struct iovec *iov);

#endif /* TERN_ACTORS_PAGE_FRAME_H */
