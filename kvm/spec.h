/*
 * The guest spec: "simvm:mem=1G,vcpus=2,..." parsed into a
 * struct tern_guest_config and formatted back (the destination builds its
 * guest from the source's canonical spec).  kvm/guest.h includes this
 * header, so users of the guest need not.
 */
#ifndef TERN_KVM_SPEC_H
#define TERN_KVM_SPEC_H

#include <stddef.h>
#include <stdint.h>

/* The memtouch layout: control pages first (one per vCPU, at least this
 * many), then the working set (simvm.c). */
#define TERN_GUEST_CTL_PAGES_MIN 64u

enum tern_fill { TERN_FILL_ZERO = 0, TERN_FILL_RANDOM = 1, TERN_FILL_PERCENT = 2 };
enum tern_backing { TERN_BACKING_MEMFD = 0, TERN_BACKING_ANON_THP = 1 };
enum tern_workload { TERN_WORKLOAD_IDLE = 0, TERN_WORKLOAD_MEMTOUCH = 1 };
enum tern_pattern { TERN_PATTERN_SEQ = 0, TERN_PATTERN_RANDOM = 1 };

/* Parsed form of "simvm:mem=1G,vcpus=2,fill=random,backing=memfd,
 * workload=memtouch:ws=256M,rate=200M,pattern=random,seed=1". */
struct tern_guest_config {
	char backend[16];   /* "simvm" */
	uint64_t mem_size;  /* bytes, page-aligned, > 0 */
	uint32_t vcpus;     /* 1..256 */
	uint32_t fill;      /* enum tern_fill */
	uint32_t fill_pct;  /* with TERN_FILL_PERCENT: 0..100 */
	uint64_t fill_size; /* with TERN_FILL_RANDOM: only the first fill_size
	                       bytes are random, the rest never touched (0: all) */
	uint32_t backing;   /* enum tern_backing */
	uint32_t workload;  /* enum tern_workload */
	uint64_t ws_size;   /* memtouch working set in bytes (default: mem/4) */
	uint64_t rate;      /* memtouch dirty rate in bytes/s (0: as fast as it can) */
	uint32_t pattern;   /* enum tern_pattern */
	uint64_t seed;
	/* How many memory regions the guest shows (1..64): simvm presents its
	 * memory as that many equal regions with a 1 GiB gpa hole after each,
	 * as a VMM with several memslots does (`regions=N`). */
	uint32_t nregions;
};

/* tern_guest_spec_parse parses spec into *cfg (defaults filled in).  On
 * error returns TERN_EINVAL and writes a one-line reason naming the bad key
 * or value into err. */
int tern_guest_spec_parse(const char *spec, struct tern_guest_config *cfg, char *err,
                          size_t errlen);

/* tern_guest_spec_format writes the canonical spec of cfg (parseable back). */
int tern_guest_spec_format(const struct tern_guest_config *cfg, char *buf, size_t len);

/* tern_parse_size parses "4096", "64K", "256M", "1G", "1T" (powers of 1024)
 * into bytes.  0 or TERN_EINVAL. */
int tern_parse_size(const char *s, uint64_t *out);

/* terni_format_size is its inverse: "4G", "512M", "1T", or plain bytes,
 * written into buf (len bytes), which it returns. */
const char *terni_format_size(uint64_t v, char *buf, size_t len);

/* terni_guest_config_check validates a filled-in config (tern_guest_create
 * checks a hand-built one with it, so that it gets the parser's messages):
 * 0, or TERN_EINVAL with a one-line reason in err. */
int terni_guest_config_check(const struct tern_guest_config *cfg, char *err, size_t errlen);

#endif /* TERN_KVM_SPEC_H */
