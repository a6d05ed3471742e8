/*
 * The backend-independent half of the guest: spec parsing and formatting,
 * dispatch to a backend's ops, range checks, populate, digest and check.
 */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>
#include <xxhash.h>

#include "kvm/guest.h"
#include "tern/error.h"

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

#include "kvm/pagemap_scan.h"

/* The memtouch layout shared with simvm.c: control pages first (one per
 * vCPU, at least 64), then the working set. */
#define GUEST_CTL_PAGES_MIN 64u

static const struct terni_backend_ops *const guest_backends[] = {
    &tern_simvm_ops,
};

static const struct terni_backend_ops *
guest_backend_find(const char *name)
{
	for (size_t i = 0; i < sizeof(guest_backends) / sizeof(guest_backends[0]); i++)
		if (strcmp(name, guest_backends[i]->name) == 0)
			return guest_backends[i];
	return NULL;
}

static void
guest_errf(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

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

/* guest_config_check validates a filled-in config; parse and create share
 * it so that a hand-built config gets the same messages. */
static int
guest_config_check(const struct tern_guest_config *cfg, char *err, size_t errlen)
{
	if (memchr(cfg->backend, '\0', sizeof(cfg->backend)) == NULL) {
		guest_errf(err, errlen, "backend: name is not terminated");
		return TERN_EINVAL;
	}
	if (guest_backend_find(cfg->backend) == NULL) {
		if (strcmp(cfg->backend, "kvm") == 0)
			guest_errf(err, errlen,
			           "backend 'kvm' is not available: this build has only simvm");
		else
			guest_errf(err, errlen,
			           "backend '%s' is unknown: this build has only simvm",
			           cfg->backend);
		return TERN_EINVAL;
	}
	if (cfg->mem_size == 0 || cfg->mem_size % TERN_PAGE_SIZE != 0) {
		guest_errf(err, errlen,
		           "mem: %" PRIu64
		           " bytes is not a positive multiple of the %llu-byte page",
		           cfg->mem_size, TERN_PAGE_SIZE);
		return TERN_EINVAL;
	}
	if (cfg->vcpus == 0 || cfg->vcpus > 256) {
		guest_errf(err, errlen, "vcpus: %u is outside 1..256", cfg->vcpus);
		return TERN_EINVAL;
	}
	if (cfg->fill == TERN_FILL_RANDOM && cfg->fill_size > cfg->mem_size) {
		guest_errf(err, errlen, "fill: random:SIZE is larger than mem");
		return TERN_EINVAL;
	}
	if (cfg->fill > TERN_FILL_PERCENT ||
	    (cfg->fill == TERN_FILL_PERCENT && cfg->fill_pct > 100)) {
		guest_errf(err, errlen, "fill: percentage %u is above 100", cfg->fill_pct);
		return TERN_EINVAL;
	}
	if (cfg->backing > TERN_BACKING_ANON_THP) {
		guest_errf(err, errlen, "backing: unknown backing %u", cfg->backing);
		return TERN_EINVAL;
	}
	if (cfg->workload > TERN_WORKLOAD_MEMTOUCH || cfg->pattern > TERN_PATTERN_RANDOM) {
		guest_errf(err, errlen, "workload: unknown workload or pattern");
		return TERN_EINVAL;
	}
	if (cfg->ws_size > cfg->mem_size) {
		guest_errf(err, errlen, "ws: working set of %" PRIu64 " bytes exceeds mem=%" PRIu64,
		           cfg->ws_size, cfg->mem_size);
		return TERN_EINVAL;
	}
	if (cfg->workload == TERN_WORKLOAD_MEMTOUCH) {
		uint64_t npages = cfg->mem_size / TERN_PAGE_SIZE;
		uint64_t ctl = cfg->vcpus > GUEST_CTL_PAGES_MIN ? cfg->vcpus : GUEST_CTL_PAGES_MIN;
		uint64_t ws = cfg->ws_size / TERN_PAGE_SIZE;

		if (npages < ctl + cfg->vcpus) {
			guest_errf(err, errlen,
			           "mem: workload=memtouch with vcpus=%u needs at least %" PRIu64
			           " pages (%" PRIu64
			           " control pages + one working-set page per vCPU)",
			           cfg->vcpus, ctl + cfg->vcpus, ctl);
			return TERN_EINVAL;
		}
		if (ws < cfg->vcpus) {
			guest_errf(err, errlen,
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
		guest_errf(err, errlen, "spec: '%s' is not key=value", tok);
		return TERN_EINVAL;
	}
	*val++ = '\0';
	if (strcmp(key, "mem") == 0) {
		if (tern_parse_size(val, &cfg->mem_size) != 0) {
			guest_errf(err, errlen, "mem: '%s' is not a size (4096, 64K, 256M, 1G, 1T)",
			           val);
			return TERN_EINVAL;
		}
	} else if (strcmp(key, "vcpus") == 0) {
		if (guest_parse_u64(val, &x) != 0 || x == 0 || x > 256) {
			guest_errf(err, errlen, "vcpus: '%s' is not a number in 1..256", val);
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
				guest_errf(err, errlen,
				           "fill: '%s' needs a page-aligned size, e.g. random:1G", val);
				return TERN_EINVAL;
			}
			cfg->fill = TERN_FILL_RANDOM;
			cfg->fill_size = x;
		} else if (guest_parse_u64(val, &x) == 0 && x <= 100) {
			cfg->fill = TERN_FILL_PERCENT;
			cfg->fill_pct = (uint32_t)x;
		} else {
			guest_errf(err, errlen,
			           "fill: '%s' is not zero, random or a percentage 0..100", val);
			return TERN_EINVAL;
		}
	} else if (strcmp(key, "backing") == 0) {
		if (strcmp(val, "memfd") == 0) {
			cfg->backing = TERN_BACKING_MEMFD;
		} else if (strcmp(val, "anon-thp") == 0) {
			cfg->backing = TERN_BACKING_ANON_THP;
		} else {
			guest_errf(err, errlen, "backing: '%s' is not memfd or anon-thp", val);
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
			guest_errf(err, errlen, "workload: '%s' is not idle or memtouch", val);
			return TERN_EINVAL;
		}
		if (sub != NULL) {
			if (!*seen_memtouch) {
				guest_errf(err, errlen, "workload: idle takes no options ('%s')",
				           sub);
				return TERN_EINVAL;
			}
			return guest_parse_opt(sub, cfg, seen_memtouch, ws_set, err, errlen);
		}
	} else if (strcmp(key, "ws") == 0 || strcmp(key, "rate") == 0 ||
	           strcmp(key, "pattern") == 0) {
		if (!*seen_memtouch) {
			guest_errf(err, errlen, "%s: only valid after workload=memtouch", key);
			return TERN_EINVAL;
		}
		if (key[0] == 'w') {
			if (tern_parse_size(val, &cfg->ws_size) != 0) {
				guest_errf(err, errlen, "ws: '%s' is not a size", val);
				return TERN_EINVAL;
			}
			*ws_set = true;
		} else if (key[0] == 'r') {
			if (tern_parse_size(val, &cfg->rate) != 0) {
				guest_errf(err, errlen, "rate: '%s' is not a size in bytes/s", val);
				return TERN_EINVAL;
			}
		} else if (strcmp(val, "seq") == 0) {
			cfg->pattern = TERN_PATTERN_SEQ;
		} else if (strcmp(val, "random") == 0) {
			cfg->pattern = TERN_PATTERN_RANDOM;
		} else {
			guest_errf(err, errlen, "pattern: '%s' is not seq or random", val);
			return TERN_EINVAL;
		}
	} else if (strcmp(key, "seed") == 0) {
		if (guest_parse_u64(val, &cfg->seed) != 0) {
			guest_errf(err, errlen, "seed: '%s' is not a decimal number", val);
			return TERN_EINVAL;
		}
	} else {
		guest_errf(err, errlen, "spec: unknown key '%s'", key);
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

	guest_errf(err, errlen, "%s", "");
	if (spec == NULL || strlen(spec) >= sizeof(buf)) {
		guest_errf(err, errlen, "spec: missing or longer than %zu characters",
		           sizeof(buf) - 1);
		return TERN_EINVAL;
	}
	strcpy(buf, spec);
	opts = strchr(buf, ':');
	if (opts != NULL)
		*opts++ = '\0';
	blen = strlen(buf);
	if (blen == 0 || blen >= sizeof(cfg->backend)) {
		guest_errf(err, errlen, "spec: backend '%s' is %s (expected 'simvm:key=value,...')",
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

	/* The backend is checked before its options, so that "kvm:..." is
	 * reported as a missing backend, not as an option simvm lacks. */
	if (guest_backend_find(cfg->backend) == NULL)
		return guest_config_check(cfg, err, errlen);
	for (tok = opts ? strtok_r(opts, ",", &save) : NULL; tok != NULL;
	     tok = strtok_r(NULL, ",", &save)) {
		if ((rv = guest_parse_opt(tok, cfg, &seen_memtouch, &ws_set, err, errlen)) != 0)
			return rv;
	}
	if (!ws_set)
		cfg->ws_size = (cfg->mem_size / 4) & ~(TERN_PAGE_SIZE - 1);
	return guest_config_check(cfg, err, errlen);
}

static void
guest_format_size(uint64_t v, char *buf, size_t len)
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
}

int
tern_guest_spec_format(const struct tern_guest_config *cfg, char *buf, size_t len)
{
	char mem[32], ws[32], rate[32], fill[40];
	int n;

	guest_format_size(cfg->mem_size, mem, sizeof(mem));
	guest_format_size(cfg->ws_size, ws, sizeof(ws));
	guest_format_size(cfg->rate, rate, sizeof(rate));
	if (cfg->fill == TERN_FILL_ZERO)
		snprintf(fill, sizeof(fill), "zero");
	else if (cfg->fill == TERN_FILL_RANDOM && cfg->fill_size != 0)
		snprintf(fill, sizeof(fill), "random:%" PRIu64 "K", cfg->fill_size >> 10);
	else if (cfg->fill == TERN_FILL_RANDOM)
		snprintf(fill, sizeof(fill), "random");
	else
		snprintf(fill, sizeof(fill), "%u", cfg->fill_pct);
	if (cfg->workload == TERN_WORKLOAD_MEMTOUCH)
		n = snprintf(
		    buf, len,
		    "%s:mem=%s,vcpus=%u,fill=%s,backing=%s,workload=memtouch:ws=%s,rate=%s,"
		    "pattern=%s,seed=%" PRIu64,
		    cfg->backend, mem, cfg->vcpus, fill,
		    cfg->backing == TERN_BACKING_ANON_THP ? "anon-thp" : "memfd", ws, rate,
		    cfg->pattern == TERN_PATTERN_SEQ ? "seq" : "random", cfg->seed);
	else
		n = snprintf(
		    buf, len, "%s:mem=%s,vcpus=%u,fill=%s,backing=%s,workload=idle,seed=%" PRIu64,
		    cfg->backend, mem, cfg->vcpus, fill,
		    cfg->backing == TERN_BACKING_ANON_THP ? "anon-thp" : "memfd", cfg->seed);
	if (n < 0 || (size_t)n >= len)
		return TERN_EINVAL;
	return 0;
}

int
tern_guest_create(struct tern_guest **gp, const struct tern_guest_config *cfg, int role, char *err,
                  size_t errlen)
{
	const struct terni_backend_ops *ops = NULL;
	struct tern_guest *g;
	int rv;

	*gp = NULL;
	guest_errf(err, errlen, "%s", "");
	if ((rv = guest_config_check(cfg, err, errlen)) != 0)
		return rv;
	if (role != TERN_GUEST_SOURCE && role != TERN_GUEST_DESTINATION) {
		guest_errf(err, errlen, "role: %d is neither source nor destination", role);
		return TERN_EINVAL;
	}
	ops = guest_backend_find(cfg->backend);
	if ((g = calloc(1, sizeof(*g))) == NULL) {
		guest_errf(err, errlen, "out of memory");
		return TERN_ENOMEM;
	}
	g->ops = ops;
	g->cfg = *cfg;
	g->role = role;
	g->region.fd = -1;
	g->npages = cfg->mem_size / TERN_PAGE_SIZE;
	g->dirty_mode = ops->dirty_modes != NULL ? ops->dirty_modes[0] : NULL;
	g->dirty_ring_size = TERN_DIRTY_RING_DEFAULT;
	if ((rv = ops->create(g, cfg, role)) != 0) {
		if (g->why[0] != '\0')
			guest_errf(err, errlen, "%s", g->why);
		else
			guest_errf(err, errlen, "%s backend: %s", ops->name, tern_strerror(rv));
		ops->destroy(g);
		free(g);
		return rv;
	}
	*gp = g;
	return 0;
}

void
tern_guest_destroy(struct tern_guest *g)
{
	if (g == NULL)
		return;
	g->ops->destroy(g);
	free(g);
}

int
tern_guest_set_dirty_mode(struct tern_guest *g, const char *mode, uint32_t ring_size, char *why,
                          size_t whylen)
{
	const struct tern_dirty_mode *const *m = g->ops->dirty_modes, *found = NULL;
	char names[128] = "", r[160];
	size_t len = 0;

	guest_errf(why, whylen, "%s", "");
	if (m == NULL || m[0] == NULL) {
		guest_errf(why, whylen, "dirty-log mode '%s': backend %s has no dirty tracking",
		           mode ? mode : "", g->ops->name);
		return TERN_ENOTSUP;
	}
	if (mode == NULL || mode[0] == '\0')
		mode = m[0]->name;
	for (; *m != NULL; m++) {
		if (strcmp((*m)->name, mode) == 0)
			found = *m;
		if (len < sizeof(names))
			len += (size_t)snprintf(names + len, sizeof(names) - len, "%s%s",
			                        len ? ", " : "", (*m)->name);
	}
	if (found == NULL) {
		guest_errf(why, whylen, "dirty-log mode '%s' is unknown (backend %s has: %s)", mode,
		           g->ops->name, names);
		return TERN_EINVAL;
	}
	if (g->dirty_tracking) {
		guest_errf(why, whylen,
		           "dirty-log mode '%s': cannot change mode while '%s' tracking runs", mode,
		           g->dirty_mode->name);
		return TERN_ESTATE;
	}
	if (ring_size == 0)
		ring_size = TERN_DIRTY_RING_DEFAULT;
	if (ring_size < TERN_DIRTY_RING_MIN || ring_size > TERN_DIRTY_RING_MAX ||
	    (ring_size & (ring_size - 1)) != 0) {
		guest_errf(why, whylen,
		           "dirty-log mode '%s': ring size %u is not a power of two in %u..%u",
		           mode, ring_size, TERN_DIRTY_RING_MIN, TERN_DIRTY_RING_MAX);
		return TERN_EINVAL;
	}
	if (found->supported != NULL && !found->supported(g, r, sizeof(r))) {
		guest_errf(why, whylen, "dirty-log mode '%s' is not supported: %s", mode, r);
		return TERN_ENOTSUP;
	}
	g->dirty_mode = found;
	g->dirty_ring_size = ring_size;
	return 0;
}

bool
tern_guest_range_ok(const struct tern_guest *g, uint64_t gpa, uint64_t len)
{
	const struct tern_guest_region *r = &g->region;

	return gpa >= r->gpa && len <= r->size && gpa - r->gpa <= r->size - len;
}

uint8_t *
tern_guest_hva(const struct tern_guest *g, uint64_t gpa)
{
	return g->region.host + (gpa - g->region.gpa);
}

int
tern_guest_populate(struct tern_guest *g, uint64_t gpa, uint64_t len)
{
	const struct tern_guest_region *r = &g->region;
	uint64_t off, end;

	if (!tern_guest_range_ok(g, gpa, len))
		return TERN_ERANGE;
	if (len == 0)
		return 0;
	/* Whole pages; the region size is page-aligned so end stays inside. */
	off = (gpa - r->gpa) & ~(TERN_PAGE_SIZE - 1);
	end = (gpa - r->gpa + len + TERN_PAGE_SIZE - 1) & ~(TERN_PAGE_SIZE - 1);
	/* For shmem, allocating the page cache first is cheaper per page than
	 * letting the populate fault allocate it (MACHINE.md). */
	if (r->fd >= 0 && fallocate(r->fd, 0, (off_t)(r->fd_offset + off), (off_t)(end - off)) != 0)
		return -errno;
	while (madvise(r->host + off, end - off, MADV_POPULATE_WRITE) != 0) {
		if (errno != EINTR)
			return -errno;
	}
	return 0;
}

int
tern_guest_dirty_harvest_slice(struct tern_guest *g, struct tern_bitmap *bm, uint64_t *cursor,
    uint64_t max_pages, uint64_t *pages, bool *done)
{
	const struct tern_dirty_mode *m = g->dirty_mode;
	*done = true;
	if (m == NULL || m->harvest_range == NULL || max_pages == 0 || !g->dirty_tracking ||
	    bm == NULL || bm->nbits < g->npages) {
		*cursor = 0;
		return g->ops->dirty_harvest(g, bm, pages);
	}
	uint64_t first = *cursor < g->npages ? *cursor : 0;
	uint64_t count = g->npages - first < max_pages ? g->npages - first : max_pages;
	int rc = m->harvest_range(g, bm, first, count, pages);
	if (rc != 0)
		return rc;
	*cursor = first + count;
	*done = *cursor >= g->npages;
	if (*done)
		*cursor = 0;
	return 0;
}

int
tern_guest_zero(struct tern_guest *g, uint64_t gpa, uint64_t len)
{
	const struct tern_guest_region *r = &g->region;
	if (!tern_guest_range_ok(g, gpa, len))
		return TERN_ERANGE;
	uint64_t off = gpa - r->gpa, end = off + len;
	uint64_t a = (off + TERN_PAGE_SIZE - 1) & ~(TERN_PAGE_SIZE - 1);
	uint64_t b = end & ~(TERN_PAGE_SIZE - 1);
	if (a >= b) { /* inside one page */
		memset(r->host + off, 0, len);
		return 0;
	}
	memset(r->host + off, 0, a - off);
	memset(r->host + b, 0, end - b);
	if (r->fd >= 0) {
		if (fallocate(r->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
			(off_t)(r->fd_offset + a), (off_t)(b - a)) != 0)
			return -errno;
	} else {
		/* Anonymous memory may sit in huge pages: dropping part of one
		 * would split it, clearing keeps it whole. */
		memset(r->host + a, 0, b - a);
	}
	return 0;
}

/* Anonymous memory: PAGEMAP_SCAN lists the pages that exist (present or
 * swapped); everything else reads as zero and is never touched. */
static int
guest_extents_anon(struct tern_guest *g, tern_extent_fn fn, void *arg)
{
	const struct tern_guest_region *r = &g->region;
	struct page_region vec[256];
	struct pm_scan_arg a;
	uint64_t base = (uintptr_t)r->host, pos = base, end = base + r->size;
	int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC), rv = 0;

	if (fd < 0)
		return fn(0, r->size, arg); /* no pagemap: everything may hold data */
	while (pos < end && rv == 0) {
		memset(&a, 0, sizeof(a));
		a.size = sizeof(a);
		a.start = pos;
		a.end = end;
		a.vec = (uintptr_t)vec;
		a.vec_len = sizeof(vec) / sizeof(vec[0]);
		a.category_anyof_mask = PAGE_IS_PRESENT | PAGE_IS_SWAPPED;
		a.return_mask = PAGE_IS_PRESENT | PAGE_IS_SWAPPED;
		long n = ioctl(fd, PAGEMAP_SCAN, &a);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && pos == base) { /* kernel without PAGEMAP_SCAN */
			close(fd);
			return fn(0, r->size, arg);
		}
		if (n < 0 || a.walk_end <= pos) {
			rv = n < 0 ? -errno : TERN_EINVAL;
			break;
		}
		for (long i = 0; i < n && rv == 0; i++)
			rv = fn(vec[i].start - base, vec[i].end - base, arg);
		pos = a.walk_end;
	}
	close(fd);
	return rv;
}

static int
guest_extents_memfd(struct tern_guest *g, tern_extent_fn fn, void *arg)
{
	const struct tern_guest_region *r = &g->region;
	uint64_t off = 0;
	int rv = 0;

	while (off < r->size && rv == 0) {
		off_t x = lseek(r->fd, (off_t)(r->fd_offset + off), SEEK_DATA);
		if (x < 0)
			return errno == ENXIO ? 0 : -errno;
		uint64_t data = (uint64_t)x - r->fd_offset;
		if (data >= r->size)
			break;
		x = lseek(r->fd, (off_t)(r->fd_offset + data), SEEK_HOLE);
		if (x < 0)
			return -errno;
		uint64_t hole = (uint64_t)x - r->fd_offset;
		if (hole > r->size)
			hole = r->size;
		rv = fn(data, hole, arg);
		off = hole;
	}
	return rv;
}

int
tern_guest_extents(struct tern_guest *g, tern_extent_fn fn, void *arg)
{
	return g->region.fd >= 0 ? guest_extents_memfd(g, fn, arg) : guest_extents_anon(g, fn, arg);
}

/*
 * The digest: XXH3-64 over the sequence of the XXH3-64 hashes of each 2 MiB
 * block of guest memory (the last block may be shorter).  A block without
 * populated pages is all zero: its hash is computed once, never by reading
 * the block, so a 1 TiB guest that used 1 GiB hashes like a 1 GiB guest.
 * Inside a block, holes are hashed as zeros from a static buffer: reading a
 * hole of a shared memfd through the mapping would allocate it.
 */
#define GUEST_DIGEST_BLOCK (2ull << 20)

struct guest_digest {
	struct tern_guest *g;
	XXH3_state_t *outer; /* over the block hashes */
	XXH3_state_t *block; /* the block being hashed */
	uint64_t block_start; /* offset of the block in progress */
	uint64_t pos;         /* hashed up to here inside it */
	uint64_t zero_hash;   /* of a full all-zero block */
};

static void
guest_hash_zeros(XXH3_state_t *st, uint64_t len)
{
	static const uint8_t zeros[64 * 1024];

	while (len >= sizeof(zeros)) {
		XXH3_64bits_update(st, zeros, sizeof(zeros));
		len -= sizeof(zeros);
	}
	if (len != 0)
		XXH3_64bits_update(st, zeros, len);
}

static void
guest_digest_emit(struct guest_digest *d, uint64_t h)
{
	uint64_t le = htole64(h);
	XXH3_64bits_update(d->outer, &le, sizeof(le));
}

/* Hashes zeros from d->pos up to off, finishing blocks on the way. */
static void
guest_digest_zeros_to(struct guest_digest *d, uint64_t off)
{
	uint64_t size = d->g->region.size;
	while (d->pos < off) {
		uint64_t bend = d->block_start + GUEST_DIGEST_BLOCK;
		if (bend > size)
			bend = size;
		if (d->pos == d->block_start && bend <= off && bend - d->block_start == GUEST_DIGEST_BLOCK) {
			guest_digest_emit(d, d->zero_hash); /* a whole zero block */
		} else {
			uint64_t stop = off < bend ? off : bend;
			guest_hash_zeros(d->block, stop - d->pos);
			d->pos = stop;
			if (stop < bend)
				return;
			guest_digest_emit(d, XXH3_64bits_digest(d->block));
		}
		d->block_start = d->pos = bend;
		XXH3_64bits_reset(d->block);
	}
}

static int
guest_digest_extent(uint64_t start, uint64_t end, void *arg)
{
	struct guest_digest *d = arg;
	guest_digest_zeros_to(d, start);
	while (d->pos < end) {
		uint64_t bend = d->block_start + GUEST_DIGEST_BLOCK;
		if (bend > d->g->region.size)
			bend = d->g->region.size;
		uint64_t stop = end < bend ? end : bend;
		XXH3_64bits_update(d->block, d->g->region.host + d->pos, stop - d->pos);
		d->pos = stop;
		if (stop == bend) {
			guest_digest_emit(d, XXH3_64bits_digest(d->block));
			XXH3_64bits_reset(d->block);
			d->block_start = bend;
		}
	}
	return 0;
}

int
tern_guest_digest(struct tern_guest *g, uint64_t *digest)
{
	struct guest_digest d = { .g = g };
	int rv = TERN_ENOMEM;

	d.outer = XXH3_createState();
	d.block = XXH3_createState();
	if (d.outer == NULL || d.block == NULL)
		goto out;
	XXH3_64bits_reset(d.outer);
	XXH3_64bits_reset(d.block);
	guest_hash_zeros(d.block, GUEST_DIGEST_BLOCK);
	d.zero_hash = XXH3_64bits_digest(d.block);
	XXH3_64bits_reset(d.block);
	rv = tern_guest_extents(g, guest_digest_extent, &d);
	if (rv == 0) {
		guest_digest_zeros_to(&d, g->region.size);
		*digest = XXH3_64bits_digest(d.outer);
	}
out:
	XXH3_freeState(d.outer);
	XXH3_freeState(d.block);
	return rv;
}

int
tern_guest_check(struct tern_guest *g, uint64_t *progress, char *why, size_t whylen)
{
	uint64_t p = 0;
	int rv = 0;

	guest_errf(why, whylen, "%s", "");
	if (g->ops->check != NULL)
		rv = g->ops->check(g, &p, why, whylen);
	if (progress != NULL)
		*progress = p;
	return rv;
}
