/*
 * The guest spec (spec.h): parsing, validation and the canonical format.
 */
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "kvm/guest.h"
#include "messages/msg.h"
#include "tern/error.h"

int
tern_parse_size(const char *s, uint64_t *out)
{
	uint64_t v = 0, mul = 1;
	const char *p = s;

	if (s == NULL || *p < '0' || *p > '9')
		return TERN_EINVAL;
	for (; *p >= '0' && *p <= '9'; p++) {
		if (v > (UINT64_MAX - (uint64_t)(*p - '0')) / 10)
			return TERN_EINVAL;
		v = v * 10 + (uint64_t)(*p - '0');
	}
	switch (*p) {
	case '\0':
		break;
	case 'k':
	case 'K':
		mul = 1ull << 10;
		break;
	case 'm':
	case 'M':
		mul = 1ull << 20;
		break;
	case 'g':
	case 'G':
		mul = 1ull << 30;
		break;
	case 't':
	case 'T':
		mul = 1ull << 40;
		break;
	default:
		return TERN_EINVAL;
	}
	if (*p != '\0' && p[1] != '\0')
		return TERN_EINVAL;
	if (v > UINT64_MAX / mul)
		return TERN_EINVAL;
	*out = v * mul;
	return 0;
}

int
terni_guest_config_check(const struct tern_guest_config *cfg, char *err, size_t errlen)
{
	if (memchr(cfg->backend, '\0', sizeof(cfg->backend)) == NULL) {
		terni_errf(err, errlen, "backend: name is not terminated");
		return TERN_EINVAL;
	}
	if (terni_guest_backend_find(cfg->backend) == NULL) {
		if (strcmp(cfg->backend, "kvm") == 0)
			terni_errf(err, errlen,
			           "backend 'kvm' is not available: this build has only simvm");
		else
			terni_errf(err, errlen,
			           "backend '%s' is unknown: this build has only simvm",
			           cfg->backend);
		return TERN_EINVAL;
	}
	if (cfg->mem_size == 0 || cfg->mem_size % TERN_PAGE_SIZE != 0) {
		terni_errf(err, errlen,
		           "mem: %" PRIu64
		           " bytes is not a positive multiple of the %llu-byte page",
		           cfg->mem_size, TERN_PAGE_SIZE);
		return TERN_EINVAL;
	}
	if (cfg->vcpus == 0 || cfg->vcpus > 256) {
		terni_errf(err, errlen, "vcpus: %u is outside 1..256", cfg->vcpus);
		return TERN_EINVAL;
	}
	if (cfg->nregions > 64 ||
	    cfg->mem_size / TERN_PAGE_SIZE < (cfg->nregions ? cfg->nregions : 1)) {
		terni_errf(err, errlen, "regions: %u regions need 1..64 and at least a page each",
		           cfg->nregions);
		return TERN_EINVAL;
	}
	if (cfg->fill == TERN_FILL_RANDOM && cfg->fill_size > cfg->mem_size) {
		terni_errf(err, errlen, "fill: random:SIZE is larger than mem");
		return TERN_EINVAL;
	}
	if (cfg->fill > TERN_FILL_PERCENT ||
	    (cfg->fill == TERN_FILL_PERCENT && cfg->fill_pct > 100)) {
		terni_errf(err, errlen, "fill: percentage %u is above 100", cfg->fill_pct);
		return TERN_EINVAL;
	}
	if (cfg->backing > TERN_BACKING_ANON_THP) {
		terni_errf(err, errlen, "backing: unknown backing %u", cfg->backing);
		return TERN_EINVAL;
	}
	if (cfg->workload > TERN_WORKLOAD_MEMTOUCH || cfg->pattern > TERN_PATTERN_RANDOM) {
		terni_errf(err, errlen, "workload: unknown workload or pattern");
		return TERN_EINVAL;
	}
	if (cfg->ws_size > cfg->mem_size) {
		terni_errf(err, errlen, "ws: working set of %" PRIu64 " bytes exceeds mem=%" PRIu64,
		           cfg->ws_size, cfg->mem_size);
		return TERN_EINVAL;
	}
	if (cfg->workload == TERN_WORKLOAD_MEMTOUCH) {
		uint64_t npages = cfg->mem_size / TERN_PAGE_SIZE;
		uint64_t ctl =
		    cfg->vcpus > TERN_GUEST_CTL_PAGES_MIN ? cfg->vcpus : TERN_GUEST_CTL_PAGES_MIN;
		uint64_t ws = cfg->ws_size / TERN_PAGE_SIZE;

		if (npages < ctl + cfg->vcpus) {
			terni_errf(err, errlen,
			           "mem: workload=memtouch with vcpus=%u needs at least %" PRIu64
			           " pages (%" PRIu64
			           " control pages + one working-set page per vCPU)",
			           cfg->vcpus, ctl + cfg->vcpus, ctl);
			return TERN_EINVAL;
		}
		if (ws < cfg->vcpus) {
			terni_errf(err, errlen,
			           "ws: working set of %" PRIu64
			           " bytes gives fewer than one page per vCPU",
			           cfg->ws_size);
			return TERN_EINVAL;
		}
	}
	return 0;
}

static int
guest_parse_u64(const char *v, uint64_t *out)
{
	uint64_t x = 0;

	if (*v == '\0')
		return TERN_EINVAL;
	for (; *v != '\0'; v++) {
		if (*v < '0' || *v > '9' || x > (UINT64_MAX - (uint64_t)(*v - '0')) / 10)
			return TERN_EINVAL;
		x = x * 10 + (uint64_t)(*v - '0');
	}
	*out = x;
	return 0;
}

/* One "key=value" option.  seen_memtouch says whether workload=memtouch
 * came earlier: ws, rate and pattern belong to it. */
static int
guest_parse_opt(char *tok, struct tern_guest_config *cfg, bool *seen_memtouch, bool *ws_set,
                char *err, size_t errlen)
{
	char *key = tok, *val = strchr(tok, '='), *sub = NULL;
	uint64_t x;

	if (val == NULL || val == key) {
		terni_errf(err, errlen, "spec: '%s' is not key=value", tok);
		return TERN_EINVAL;
	}
	*val++ = '\0';
	if (strcmp(key, "mem") == 0) {
		if (tern_parse_size(val, &cfg->mem_size) != 0) {
			terni_errf(err, errlen, "mem: '%s' is not a size (4096, 64K, 256M, 1G, 1T)",
			           val);
			return TERN_EINVAL;
		}
	} else if (strcmp(key, "vcpus") == 0) {
		if (guest_parse_u64(val, &x) != 0 || x == 0 || x > 256) {
			terni_errf(err, errlen, "vcpus: '%s' is not a number in 1..256", val);
			return TERN_EINVAL;
		}
		cfg->vcpus = (uint32_t)x;
	} else if (strcmp(key, "fill") == 0) {
		if (strcmp(val, "zero") == 0) {
			cfg->fill = TERN_FILL_ZERO;
		} else if (strcmp(val, "random") == 0) {
			cfg->fill = TERN_FILL_RANDOM;
			cfg->fill_size = 0;
		} else if (strncmp(val, "random:", 7) == 0) {
			/* random:SIZE: the first SIZE random, the rest untouched. */
			if (tern_parse_size(val + 7, &x) != 0 || x == 0 || x % TERN_PAGE_SIZE) {
				terni_errf(err, errlen,
				           "fill: '%s' needs a page-aligned size, e.g. random:1G",
				           val);
				return TERN_EINVAL;
			}
			cfg->fill = TERN_FILL_RANDOM;
			cfg->fill_size = x;
		} else if (guest_parse_u64(val, &x) == 0 && x <= 100) {
			cfg->fill = TERN_FILL_PERCENT;
			cfg->fill_pct = (uint32_t)x;
		} else {
			terni_errf(err, errlen,
			           "fill: '%s' is not zero, random or a percentage 0..100", val);
			return TERN_EINVAL;
		}
	} else if (strcmp(key, "backing") == 0) {
		if (strcmp(val, "memfd") == 0) {
			cfg->backing = TERN_BACKING_MEMFD;
		} else if (strcmp(val, "anon-thp") == 0) {
			cfg->backing = TERN_BACKING_ANON_THP;
		} else {
			terni_errf(err, errlen, "backing: '%s' is not memfd or anon-thp", val);
			return TERN_EINVAL;
		}
	} else if (strcmp(key, "workload") == 0) {
		sub = strchr(val, ':');
		if (sub != NULL)
			*sub++ = '\0';
		if (strcmp(val, "idle") == 0) {
			cfg->workload = TERN_WORKLOAD_IDLE;
			*seen_memtouch = false;
		} else if (strcmp(val, "memtouch") == 0) {
			cfg->workload = TERN_WORKLOAD_MEMTOUCH;
			*seen_memtouch = true;
		} else {
			terni_errf(err, errlen, "workload: '%s' is not idle or memtouch", val);
			return TERN_EINVAL;
		}
		if (sub != NULL) {
			if (!*seen_memtouch) {
				terni_errf(err, errlen, "workload: idle takes no options ('%s')",
				           sub);
				return TERN_EINVAL;
			}
			return guest_parse_opt(sub, cfg, seen_memtouch, ws_set, err, errlen);
		}
	} else if (strcmp(key, "ws") == 0 || strcmp(key, "rate") == 0 ||
	           strcmp(key, "pattern") == 0) {
		if (!*seen_memtouch) {
			terni_errf(err, errlen, "%s: only valid after workload=memtouch", key);
			return TERN_EINVAL;
		}
		if (key[0] == 'w') {
			if (tern_parse_size(val, &cfg->ws_size) != 0) {
				terni_errf(err, errlen, "ws: '%s' is not a size", val);
				return TERN_EINVAL;
			}
			*ws_set = true;
		} else if (key[0] == 'r') {
			if (tern_parse_size(val, &cfg->rate) != 0) {
				terni_errf(err, errlen, "rate: '%s' is not a size in bytes/s", val);
				return TERN_EINVAL;
			}
		} else if (strcmp(val, "seq") == 0) {
			cfg->pattern = TERN_PATTERN_SEQ;
		} else if (strcmp(val, "random") == 0) {
			cfg->pattern = TERN_PATTERN_RANDOM;
		} else {
			terni_errf(err, errlen, "pattern: '%s' is not seq or random", val);
			return TERN_EINVAL;
		}
	} else if (strcmp(key, "regions") == 0) {
		if (guest_parse_u64(val, &x) != 0 || x == 0 || x > 64) {
			terni_errf(err, errlen, "regions: '%s' is not a number in 1..64", val);
			return TERN_EINVAL;
		}
		cfg->nregions = (uint32_t)x;
	} else if (strcmp(key, "seed") == 0) {
		if (guest_parse_u64(val, &cfg->seed) != 0) {
			terni_errf(err, errlen, "seed: '%s' is not a decimal number", val);
			return TERN_EINVAL;
		}
	} else {
		terni_errf(err, errlen, "spec: unknown key '%s'", key);
		return TERN_EINVAL;
	}
	return 0;
}

int
tern_guest_spec_parse(const char *spec, struct tern_guest_config *cfg, char *err, size_t errlen)
{
	char buf[512], *opts, *tok, *save = NULL;
	bool seen_memtouch = false, ws_set = false;
	size_t blen;
	int rv;

	terni_errf(err, errlen, "%s", "");
	if (spec == NULL || strlen(spec) >= sizeof(buf)) {
		terni_errf(err, errlen, "spec: missing or longer than %zu characters",
		           sizeof(buf) - 1);
		return TERN_EINVAL;
	}
	strcpy(buf, spec);
	opts = strchr(buf, ':');
	if (opts != NULL)
		*opts++ = '\0';
	blen = strlen(buf);
	if (blen == 0 || blen >= sizeof(cfg->backend)) {
		terni_errf(err, errlen, "spec: backend '%s' is %s (expected 'simvm:key=value,...')",
		           buf, blen == 0 ? "missing" : "unknown");
		return TERN_EINVAL;
	}
	memset(cfg, 0, sizeof(*cfg));
	memcpy(cfg->backend, buf, blen + 1);
	cfg->mem_size = 1ull << 30;
	cfg->vcpus = 1;
	cfg->fill = TERN_FILL_ZERO;
	cfg->backing = TERN_BACKING_MEMFD;
	cfg->workload = TERN_WORKLOAD_IDLE;
	cfg->rate = 0;
	cfg->pattern = TERN_PATTERN_RANDOM;
	cfg->seed = 1;
	cfg->nregions = 1;

	/* The backend is checked before its options, so that "kvm:..." is
	 * reported as a missing backend, not as an option simvm lacks. */
	if (terni_guest_backend_find(cfg->backend) == NULL)
		return terni_guest_config_check(cfg, err, errlen);
	for (tok = opts ? strtok_r(opts, ",", &save) : NULL; tok != NULL;
	     tok = strtok_r(NULL, ",", &save)) {
		if ((rv = guest_parse_opt(tok, cfg, &seen_memtouch, &ws_set, err, errlen)) != 0)
			return rv;
	}
	if (!ws_set)
		cfg->ws_size = (cfg->mem_size / 4) & ~(TERN_PAGE_SIZE - 1);
	return terni_guest_config_check(cfg, err, errlen);
}

const char *
terni_format_size(uint64_t v, char *buf, size_t len)
{
	static const char suffix[] = "KMGT";
	int i = -1;

	while (i < 3 && v != 0 && v % 1024 == 0) {
		v /= 1024;
		i++;
	}
	if (i < 0)
		snprintf(buf, len, "%" PRIu64, v);
	else
		snprintf(buf, len, "%" PRIu64 "%c", v, suffix[i]);
	return buf;
}

int
tern_guest_spec_format(const struct tern_guest_config *cfg, char *buf, size_t len)
{
	char mem[32], ws[32], rate[32], fill[40], regions[24] = "";
	int n;

	terni_format_size(cfg->mem_size, mem, sizeof(mem));
	terni_format_size(cfg->ws_size, ws, sizeof(ws));
	terni_format_size(cfg->rate, rate, sizeof(rate));
	if (cfg->fill == TERN_FILL_ZERO)
		snprintf(fill, sizeof(fill), "zero");
	else if (cfg->fill == TERN_FILL_RANDOM && cfg->fill_size != 0)
		snprintf(fill, sizeof(fill), "random:%" PRIu64 "K", cfg->fill_size >> 10);
	else if (cfg->fill == TERN_FILL_RANDOM)
		snprintf(fill, sizeof(fill), "random");
	else
		snprintf(fill, sizeof(fill), "%u", cfg->fill_pct);
	if (cfg->nregions > 1) /* one region is the default: specs stay as they were */
		snprintf(regions, sizeof(regions), ",regions=%u", cfg->nregions);
	if (cfg->workload == TERN_WORKLOAD_MEMTOUCH)
		n = snprintf(
		    buf, len,
		    "%s:mem=%s,vcpus=%u,fill=%s,backing=%s,workload=memtouch:ws=%s,rate=%s,"
		    "pattern=%s,seed=%" PRIu64 "%s",
		    cfg->backend, mem, cfg->vcpus, fill,
		    cfg->backing == TERN_BACKING_ANON_THP ? "anon-thp" : "memfd", ws, rate,
		    cfg->pattern == TERN_PATTERN_SEQ ? "seq" : "random", cfg->seed, regions);
	else
		n = snprintf(buf, len,
		             "%s:mem=%s,vcpus=%u,fill=%s,backing=%s,workload=idle,seed=%" PRIu64
		             "%s",
		             cfg->backend, mem, cfg->vcpus, fill,
		             cfg->backing == TERN_BACKING_ANON_THP ? "anon-thp" : "memfd",
		             cfg->seed, regions);
	if (n < 0 || (size_t)n >= len)
		return TERN_EINVAL;
	return 0;
}
