/*
 * fuzz_state: the simvm state loader (kvm/simvm_state.c), which the
 * destination runs on the W_STATE payload, through the guest's ops as the
 * receiver calls it, into two paused destination guests (an idle one and a
 * memtouch one, harness.h) built once.
 *
 * Beyond "no crash, no leak, no undefined behaviour": a refusal is
 * TERN_EMSG with the guest's reason; an accepted blob is exactly what the
 * guest saves again (header and vCPU flags; the step counts live in guest
 * memory until the guest runs).
 */
#include <stdlib.h>
#include <string.h>

#include "kvm/guest.h"
#include "tern/error.h"
#include "tests/fuzz/harness.h"

#define FS_STATE_HDR 24u /* simvm_state.c: magic, version, vcpus, workload, mem */
#define FS_STATE_VCPU 16u

static struct tern_guest *fs_guests[FUZZ_STATE_NGUESTS];
static uint8_t fs_saved[FS_STATE_HDR + 256 * FS_STATE_VCPU];

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	static const char *specs[FUZZ_STATE_NGUESTS] = FUZZ_STATE_SPECS;
	struct tern_guest_config cfg;
	char err[TERN_STR_MAX];

	for (int i = 0; i < FUZZ_STATE_NGUESTS; i++)
		if (tern_guest_spec_parse(specs[i], &cfg, err, sizeof(err)) != 0 ||
		    tern_guest_create_provided(&fs_guests[i], &cfg, TERN_GUEST_DESTINATION, err,
		                               sizeof(err)) != 0)
			abort();
	return 0;
}

static void
fs_load(struct tern_guest *g, const uint8_t *data, size_t size)
{
	size_t len = 0;

	g->why[0] = '\0';
	int rv = g->ops->state_load(g, data, size);
	if (rv != 0) {
		if (rv != TERN_EMSG || g->why[0] == '\0')
			abort();
		return;
	}
	if (g->ops->state_save(g, fs_saved, sizeof(fs_saved), &len) != 0 || len != size ||
	    memcmp(fs_saved, data, FS_STATE_HDR) != 0)
		abort();
	for (size_t off = FS_STATE_HDR; off < len; off += FS_STATE_VCPU)
		if (memcmp(fs_saved + off + 8, data + off + 8, 8) != 0)
			abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	for (int i = 0; i < FUZZ_STATE_NGUESTS; i++)
		fs_load(fs_guests[i], data, size);
	return 0;
}
