/*
 * Postcopy's destination memory: pages that have not arrived yet are
 * missing, and whoever touches one (a vCPU, the VMM, libtern) blocks in the
 * kernel until it is placed.  Built on userfaultfd in missing mode, as QEMU's
 * postcopy is: the guest's regions are registered, each fault is read from
 * the userfaultfd and named by its offset in the migration's space
 * (kvm/guest.h), and pages are placed with UFFDIO_COPY, which installs a
 * whole page atomically and wakes every thread waiting on it.
 *
 * A page is placed once.  The kernel is the authority: UFFDIO_COPY onto a
 * page that is present fails with EEXIST and writes nothing, so a page the
 * guest has already run on (placed by an urgent request, then written) is
 * never overwritten by a later copy of it from the background stream.
 * tern_uffd_missing_place skips such pages and counts only the pages it
 * placed.
 *
 * Threads: open and close from one thread while nothing else uses
 * the object; next_fault from one thread (the fault handler); place and
 * place_zero from any threads at once (connections and the fault handler).
 */
#ifndef TERN_KVM_UFFD_MISSING_H
#define TERN_KVM_UFFD_MISSING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kvm/guest.h"

struct tern_uffd_missing;

/* tern_uffd_missing_open registers every region of g for missing faults.
 * Pages present now stay; pages absent now (never written, or discarded with
 * tern_guest_discard)
 * fault until placed.  0, or TERN_ENOTSUP / -errno with a one-line reason
 * naming the missing kernel feature in why; nothing is left registered. */
int tern_uffd_missing_open(struct tern_uffd_missing **out, struct tern_guest *g, char *why,
                           size_t whylen);

/* tern_uffd_missing_fd: poll it for POLLIN (faults waiting). */
int tern_uffd_missing_fd(const struct tern_uffd_missing *m);

/* tern_uffd_missing_next_fault reads one fault without blocking: 0 with
 * the faulting page's offset (page-aligned) in *off, TERN_ETIMEDOUT when
 * none is waiting, another code if the userfaultfd failed or reported an
 * address outside every region. */
int tern_uffd_missing_next_fault(struct tern_uffd_missing *m, uint64_t *off);

/* tern_uffd_missing_place copies [src, src+len) into [off, off+len)
 * (inside one region, whole pages), page by page atomically, skipping pages
 * already present; *placed (may be NULL) gets the number of pages it
 * placed.  Waiters on the pages wake. */
int tern_uffd_missing_place(struct tern_uffd_missing *m, uint64_t off, const void *src,
                            uint64_t len, uint64_t *placed);

/* tern_uffd_missing_place_zero places zero pages the same way. */
int tern_uffd_missing_place_zero(struct tern_uffd_missing *m, uint64_t off, uint64_t len,
                                 uint64_t *placed);

/* tern_uffd_missing_hash turns hashing of placed pages on (before any
 * page is placed): a 4 KiB hash per page, paid only for --verify. */
void tern_uffd_missing_hash(struct tern_uffd_missing *m);

/* tern_uffd_missing_hashed: the XOR of tern_page_hash over every page
 * placed so far, with what was placed (for postcopy's --verify). */
uint64_t tern_uffd_missing_hashed(const struct tern_uffd_missing *m);

/* tern_uffd_missing_fill_zero places zero pages as place_zero does, but
 * leaves them out of the hash: pages that read as zero whatever arrives
 * (never written, or announced zero before the switch). */
int tern_uffd_missing_fill_zero(struct tern_uffd_missing *m, uint64_t off, uint64_t len,
                                uint64_t *placed);

/* tern_uffd_missing_placed: pages placed so far (by any thread). */
uint64_t tern_uffd_missing_placed(const struct tern_uffd_missing *m);

/* tern_uffd_missing_close unregisters every region (threads still blocked
 * on a missing page then fault it in as an ordinary page: zero) and frees
 * m.  NULL is fine. */
void tern_uffd_missing_close(struct tern_uffd_missing *m);

#endif /* TERN_KVM_UFFD_MISSING_H */
