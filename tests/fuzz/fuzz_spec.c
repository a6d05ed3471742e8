/*
 * fuzz_spec: the guest spec parser (kvm/spec.c), which the destination runs
 * on the spec a source announces in W_CONFIG, and the size parser behind
 * --max-mem and the spec's sizes.
 *
 * Beyond "no crash, no leak, no undefined behaviour": a refusal says why; an
 * accepted spec passes the config check, formats into its canonical spec,
 * and that parses back into the same canonical spec (a fixed point).
 */
#include <stdlib.h>
#include <string.h>

#include "kvm/guest.h"
#include "messages/msg.h"
#include "tern/error.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct tern_guest_config cfg, cfg2;
	char err[TERN_STR_MAX], canon[512], canon2[512];
	uint64_t bytes;
	char *spec;
	int rv;

	/* An exact-size heap copy: ASan sees a read past its end. */
	if ((spec = malloc(size + 1)) == NULL)
		return 0;
	memcpy(spec, data, size);
	spec[size] = '\0';

	rv = tern_parse_size(spec, &bytes);
	if (rv != 0 && rv != TERN_EINVAL)
		abort();

	err[0] = '\0';
	rv = tern_guest_spec_parse(spec, &cfg, err, sizeof(err));
	if (rv != 0) {
		if (rv != TERN_EINVAL || err[0] == '\0')
			abort();
		free(spec);
		return 0;
	}
	if (terni_guest_config_check(&cfg, err, sizeof(err)) != 0)
		abort();
	if (tern_guest_spec_format(&cfg, canon, sizeof(canon)) != 0)
		abort();
	if (tern_guest_spec_parse(canon, &cfg2, err, sizeof(err)) != 0)
		abort();
	if (tern_guest_spec_format(&cfg2, canon2, sizeof(canon2)) != 0 ||
	    strcmp(canon, canon2) != 0)
		abort();
	/* What the canonical spec carries must survive it unchanged. */
	if (cfg2.mem_size != cfg.mem_size || cfg2.vcpus != cfg.vcpus || cfg2.fill != cfg.fill ||
	    cfg2.backing != cfg.backing || cfg2.workload != cfg.workload || cfg2.seed != cfg.seed ||
	    strcmp(cfg2.backend, cfg.backend) != 0)
		abort();
	free(spec);
	return 0;
}
