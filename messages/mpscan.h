/*
 * Private to messages/: a bounds check run before msgpack_unpack_next.
 *
 * msgpack-c allocates a container's element array as soon as it reads the
 * header, so five bytes claiming an array of 2^32-1 elements make it ask for
 * ~100 GB.  tern_mp_scan walks one object without allocating and rejects any
 * container that claims more elements than there are bytes left, so the
 * unpacker never allocates more than a few times the input size.
 */
#ifndef TERN_MESSAGES_MPSCAN_H
#define TERN_MESSAGES_MPSCAN_H

#include <stddef.h>

/* tern_mp_scan measures the first msgpack object of buf[0..len).  Returns 0
 * with *end set to its size, 1 when the object is incomplete (the input ends
 * inside it), TERN_EMSG on a byte that is not msgpack. */
int tern_mp_scan(const void *buf, size_t len, size_t *end);

#endif /* TERN_MESSAGES_MPSCAN_H */
