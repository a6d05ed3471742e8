/*
 * Making destination memory ready for data: what "populated" has to mean on
 * a host where installing a page's mapping is not the whole cost.
 *
 * On a paravirtualised host with shadow paging (MACHINE.md: this one), a
 * 4 KiB page that MADV_POPULATE_WRITE mapped still costs ~10 us at the first
 * write through that mapping, and the kernel writing into user memory
 * (recv straight into guest memory) pays it again on its own: a user-space
 * touch does not help the kernel's copy.  So a memfd page is ready for a
 * recv only after a first write by the kernel.  Anonymous memory in huge
 * pages does not pay this (one mapping per 2 MiB): populating it is enough.
 */
#ifndef TERN_KVM_GUEST_READY_H
#define TERN_KVM_GUEST_READY_H

#include <stdint.h>

#include "kvm/guest.h"

/* tern_guest_prepare makes [gpa, gpa+len) (offsets in the migration's space,
 * kvm/guest.h; gaps between regions skipped) ready to receive data: populated
 * (tern_guest_populate), and for a memfd written once by the kernel without
 * changing a byte (pread of the memfd onto its own mapping).  Not safe
 * against concurrent writers of the range: the caller owns it meanwhile.
 * Returns 0 or -errno. */
int tern_guest_prepare(struct tern_guest *g, uint64_t gpa, uint64_t len);

/* tern_guest_prepare_all prepares the whole guest on nthreads threads (1..8;
 * the machine's cores, as QEMU's prealloc-threads): `tern receive
 * --prealloc` before it listens.  Returns 0 or the first error. */
int tern_guest_prepare_all(struct tern_guest *g, int nthreads);

/* tern_guest_fastest_backing returns the backing a destination building a
 * guest from the source's layout should use: anonymous memory with
 * transparent huge pages when the kernel offers them (populated at ~0.3 us
 * per 4 KiB page here, and received into at memcpy pace), else the
 * requested one. */
int tern_guest_fastest_backing(int requested);

#endif /* TERN_KVM_GUEST_READY_H */
