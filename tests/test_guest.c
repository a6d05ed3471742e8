/*
 * Tests of kvm/: spec parsing, bitmaps, the simvm guest (memory, fill,
 * workload, pause/resume, state, digest) and its dirty tracking through
 * userfaultfd async write-protect + PAGEMAP_SCAN, iteration-stamped as the
 * KVM dirty_log_test does.
 */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <endian.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "kvm/bitmap.h"
#include "kvm/guest.h"
#include "messages/msg.h"
#include "tern/error.h"
#include "tests/guest_util.h"

#define PG TERN_PAGE_SIZE
#define CTL_PAGES 64u /* memtouch control pages (vcpus <= 64) */

static uint64_t
rnd(uint64_t *s)
{
	uint64_t x = *s;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return *s = x;
}

static uint64_t
fd_blocks(const struct tern_guest *g)
{
	struct stat st;

	cr_assert_geq(g->regions[0].fd, 0);
	cr_assert_eq(fstat(g->regions[0].fd, &st), 0);
	return (uint64_t)st.st_blocks;
}

static uint64_t
progress_of(struct tern_guest *g)
{
	char why[256];
	uint64_t p = 0;
	int rv = tern_guest_check(g, &p, why, sizeof(why));

	cr_assert_eq(rv, 0, "check: %s", why);
	return p;
}

/* wait_progress polls until the workload's step count exceeds `above`: on
 * a loaded machine the vCPU threads may wait for a core. */
static uint64_t
wait_progress(struct tern_guest *g, uint64_t above)
{
	uint64_t p, t0 = tern_now_ns();

	while ((p = progress_of(g)) <= above && tern_now_ns() - t0 < 5000000000ull)
		sleep_us(2000);
	return p;
}

/* ---- spec parsing ---- */

Test(spec, defaults)
{
	struct tern_guest_config c;
	char err[200];

	cr_assert_eq(tern_guest_spec_parse("simvm", &c, err, sizeof(err)), 0, "%s", err);
	cr_assert_str_eq(c.backend, "simvm");
	cr_assert_eq(c.mem_size, 1ull << 30);
	cr_assert_eq(c.vcpus, 1);
	cr_assert_eq(c.fill, TERN_FILL_ZERO);
	cr_assert_eq(c.backing, TERN_BACKING_MEMFD);
	cr_assert_eq(c.workload, TERN_WORKLOAD_IDLE);
	cr_assert_eq(c.ws_size, 256ull << 20);
	cr_assert_eq(c.rate, 0);
	cr_assert_eq(c.pattern, TERN_PATTERN_RANDOM);
	cr_assert_eq(c.seed, 1);
	cr_assert_eq(tern_guest_spec_parse("simvm:mem=2G", &c, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(c.ws_size, 512ull << 20, "ws defaults to mem/4");
}

Test(spec, full_forms_and_round_trip)
{
	static const char *specs[] = {
	    "simvm:mem=1G,vcpus=2,fill=random,backing=memfd,workload=memtouch:ws=256M,rate=200M,"
	    "pattern=seq,seed=7",
	    "simvm:mem=64M,fill=50,backing=anon-thp,workload=memtouch,ws=1M,seed=3",
	    "simvm:workload=memtouch:pattern=random,mem=1T,vcpus=256",
	    "simvm:mem=4096K,fill=0,workload=idle",
	    "simvm:mem=8M,fill=100,seed=18446744073709551615",
	};
	struct tern_guest_config c, d;
	char err[200], buf[300];

	cr_assert_eq(tern_guest_spec_parse(specs[0], &c, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(c.mem_size, 1ull << 30);
	cr_assert_eq(c.vcpus, 2);
	cr_assert_eq(c.fill, TERN_FILL_RANDOM);
	cr_assert_eq(c.workload, TERN_WORKLOAD_MEMTOUCH);
	cr_assert_eq(c.ws_size, 256ull << 20);
	cr_assert_eq(c.rate, 200ull << 20);
	cr_assert_eq(c.pattern, TERN_PATTERN_SEQ);
	cr_assert_eq(c.seed, 7);
	cr_assert_eq(tern_guest_spec_parse(specs[1], &c, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(c.fill, TERN_FILL_PERCENT);
	cr_assert_eq(c.fill_pct, 50);
	cr_assert_eq(c.backing, TERN_BACKING_ANON_THP);
	cr_assert_eq(c.ws_size, 1ull << 20);
	cr_assert_eq(tern_guest_spec_parse(specs[2], &c, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(c.mem_size, 1ull << 40);
	cr_assert_eq(c.vcpus, 256);
	cr_assert_eq(c.ws_size, 256ull << 30);

	for (size_t i = 0; i < sizeof(specs) / sizeof(specs[0]); i++) {
		cr_assert_eq(tern_guest_spec_parse(specs[i], &c, err, sizeof(err)), 0, "%s: %s",
		             specs[i], err);
		cr_assert_eq(tern_guest_spec_format(&c, buf, sizeof(buf)), 0);
		cr_assert_eq(tern_guest_spec_parse(buf, &d, err, sizeof(err)), 0, "%s: %s", buf,
		             err);
		cr_assert_eq(memcmp(&c, &d, sizeof(c)), 0, "round trip of %s via %s", specs[i],
		             buf);
	}
	cr_assert_neq(tern_guest_spec_format(&c, buf, 10), 0, "short buffer must fail");
}

Test(spec, rejections_name_the_key)
{
	static const struct {
		const char *spec, *needle;
	} bad[] = {
	    {"kvm:mem=1G", "backend 'kvm' is not available: this build has only simvm"},
	    {"qemu", "backend 'qemu'"},
	    {":mem=1G", "backend"},
	    {"simvm:color=blue", "color"},
	    {"simvm:mem", "mem"},
	    {"simvm:mem=3000", "mem"},
	    {"simvm:mem=0", "mem"},
	    {"simvm:mem=1X", "mem"},
	    {"simvm:mem=99999999999999999999", "mem"},
	    {"simvm:vcpus=0", "vcpus"},
	    {"simvm:vcpus=257", "vcpus"},
	    {"simvm:vcpus=two", "vcpus"},
	    {"simvm:fill=101", "fill"},
	    {"simvm:fill=lots", "fill"},
	    {"simvm:backing=hugetlbfs", "backing"},
	    {"simvm:workload=spin", "workload"},
	    {"simvm:workload=idle:ws=1M", "workload"},
	    {"simvm:ws=1M", "ws"},
	    {"simvm:rate=1M", "rate"},
	    {"simvm:workload=memtouch:ws=2G", "ws"},
	    {"simvm:workload=memtouch,pattern=zigzag", "pattern"},
	    {"simvm:workload=memtouch,rate=fast", "rate"},
	    {"simvm:mem=64K,workload=memtouch", "mem"},
	    {"simvm:mem=1M,vcpus=4,workload=memtouch:ws=8K", "ws"},
	    {"simvm:seed=-1", "seed"},
	};
	struct tern_guest_config c;
	char err[200];

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		memset(err, 0, sizeof(err));
		cr_assert_eq(tern_guest_spec_parse(bad[i].spec, &c, err, sizeof(err)), TERN_EINVAL,
		             "%s must be rejected", bad[i].spec);
		cr_assert(err[0] != '\0', "%s: empty message", bad[i].spec);
		cr_assert_null(strchr(err, '\n'), "%s: message must be one line", bad[i].spec);
		cr_assert_not_null(strstr(err, bad[i].needle), "%s: '%s' does not name '%s'",
		                   bad[i].spec, err, bad[i].needle);
	}
}

Test(spec, parse_size)
{
	uint64_t v;

	cr_assert_eq(tern_parse_size("4096", &v), 0);
	cr_assert_eq(v, 4096);
	cr_assert_eq(tern_parse_size("64K", &v), 0);
	cr_assert_eq(v, 64 << 10);
	cr_assert_eq(tern_parse_size("256M", &v), 0);
	cr_assert_eq(v, 256ull << 20);
	cr_assert_eq(tern_parse_size("1g", &v), 0);
	cr_assert_eq(v, 1ull << 30);
	cr_assert_eq(tern_parse_size("1T", &v), 0);
	cr_assert_eq(v, 1ull << 40);
	cr_assert_eq(tern_parse_size("0", &v), 0);
	cr_assert_eq(v, 0);
	cr_assert_eq(tern_parse_size("", &v), TERN_EINVAL);
	cr_assert_eq(tern_parse_size("K", &v), TERN_EINVAL);
	cr_assert_eq(tern_parse_size("1KB", &v), TERN_EINVAL);
	cr_assert_eq(tern_parse_size("-1", &v), TERN_EINVAL);
	cr_assert_eq(tern_parse_size("16777216T", &v), TERN_EINVAL, "overflow");
	cr_assert_eq(tern_parse_size("18446744073709551616", &v), TERN_EINVAL, "overflow");
}

Test(spec, create_rejects_bad_config)
{
	struct tern_guest_config c;
	struct tern_guest *g = (void *)1;
	char err[200];

	cr_assert_eq(tern_guest_spec_parse("simvm:mem=1M", &c, err, sizeof(err)), 0);
	c.mem_size = 12345;
	cr_assert_eq(tern_guest_create(&g, &c, TERN_GUEST_SOURCE, err, sizeof(err)), TERN_EINVAL);
	cr_assert_null(g);
	cr_assert_not_null(strstr(err, "mem"), "%s", err);
	c.mem_size = 1 << 20;
	strcpy(c.backend, "kvm");
	cr_assert_eq(tern_guest_create(&g, &c, TERN_GUEST_SOURCE, err, sizeof(err)), TERN_EINVAL);
	cr_assert_not_null(strstr(err, "only simvm"), "%s", err);
	strcpy(c.backend, "simvm");
	cr_assert_eq(tern_guest_create(&g, &c, 7, err, sizeof(err)), TERN_EINVAL);
	cr_assert_not_null(strstr(err, "role"), "%s", err);
}

/* ---- bitmaps ---- */

Test(bitmap, next_run_matches_naive_reference)
{
	static const uint64_t sizes[] = {1, 2, 63, 64, 65, 127, 128, 129, 1000, 4096, 5003};
	uint64_t s = 0x1234567;

	for (int trial = 0; trial < 400; trial++) {
		uint64_t nbits = trial < 44 ? sizes[trial % 11] : 1 + rnd(&s) % 6000;
		int mode = trial % 4;
		struct tern_bitmap b, o;
		bool *ref = calloc(nbits, 1);
		uint64_t nref = 0, pos, maxc, first, count, p;

		cr_assert_eq(tern_bitmap_init(&b, nbits), 0);
		if (mode == 0 || mode == 1) { /* sparse or dense single bits */
			for (uint64_t i = 0; i < nbits; i++)
				if (rnd(&s) % 100 < (mode == 0 ? 2u : 90u)) {
					ref[i] = true;
					tern_bitmap_set(&b, i);
				}
		} else { /* runs of every length, some crossing words */
			for (int r = 0; r < (mode == 2 ? 5 : 40); r++) {
				uint64_t f = rnd(&s) % nbits,
				         n = 1 + rnd(&s) % (mode == 2 ? 300 : 20);

				if (n > nbits - f)
					n = nbits - f;
				tern_bitmap_set_range(&b, f, n);
				for (uint64_t i = f; i < f + n; i++)
					ref[i] = true;
			}
		}
		for (uint64_t i = 0; i < nbits; i++) {
			nref += ref[i];
			cr_assert_eq(tern_bitmap_test(&b, i), ref[i], "bit %" PRIu64, i);
		}
		cr_assert_eq(tern_bitmap_count(&b), nref);

		maxc = (uint64_t[]){0, 1, 3, 64, 100, 1 + rnd(&s) % 200}[trial % 6];
		pos = rnd(&s) % (nbits + 1);
		p = pos;
		while (tern_bitmap_next_run(&b, &pos, maxc, &first, &count)) {
			uint64_t nf, nc = 0;

			while (p < nbits && !ref[p])
				p++;
			cr_assert_lt(p, nbits, "run reported where the reference has none");
			nf = p;
			while (p < nbits && ref[p] && (maxc == 0 || nc < maxc)) {
				p++;
				nc++;
			}
			cr_assert_eq(first, nf, "nbits %" PRIu64 " max %" PRIu64, nbits, maxc);
			cr_assert_eq(count, nc, "nbits %" PRIu64 " max %" PRIu64 " at %" PRIu64,
			             nbits, maxc, nf);
			cr_assert_eq(pos, p);
		}
		while (p < nbits && !ref[p])
			p++;
		cr_assert_eq(p, nbits, "reference has a run at %" PRIu64 " that was missed", p);

		cr_assert_eq(tern_bitmap_init(&o, nbits), 0);
		tern_bitmap_set_all(&o);
		cr_assert_eq(tern_bitmap_count(&o), nbits, "set_all sets no bit past nbits");
		tern_bitmap_clear_all(&o);
		cr_assert_eq(tern_bitmap_count(&o), 0);
		tern_bitmap_set(&o, nbits - 1);
		tern_bitmap_or(&o, &b);
		cr_assert_eq(tern_bitmap_count(&o), nref + !ref[nbits - 1]);
		tern_bitmap_fini(&o);
		tern_bitmap_fini(&b);
		free(ref);
	}
}

/* ---- creation and fill ---- */

Test(guest, create_1g_and_1t_zero_touch_nothing, .timeout = 30)
{
	struct tern_guest *g;
	uint64_t t0 = tern_now_ns(), t;

	g = mkguest("simvm:mem=1G,vcpus=2", TERN_GUEST_SOURCE);
	t = tern_now_ns() - t0;
	cr_assert_eq(g->npages, 262144);
	cr_assert_eq(fd_blocks(g), 0);
	tern_guest_destroy(g);
	printf("create+destroy 1G fill=zero: %.3f ms\n", t / 1e6);

	t0 = tern_now_ns();
	g = mkguest("simvm:mem=1T,vcpus=2,workload=memtouch", TERN_GUEST_DESTINATION);
	cr_assert_eq(fd_blocks(g), 0, "a 1T fill=zero guest must not allocate");
	t = g->stats.build_ns;
	tern_guest_destroy(g);
	printf("create 1T fill=zero memfd: %.3f ms, with destroy %.3f ms\n", t / 1e6,
	       (tern_now_ns() - t0) / 1e6);
	/* The property is "allocates nothing" (checked above); its speed is
	 * tern-bench's business.  This is only a liveness bound. */
	cr_assert_lt(t, 30000000000ull, "1T fill=zero took %" PRIu64 " ns to build", t);

	g = mkguest("simvm:mem=1T,backing=anon-thp", TERN_GUEST_SOURCE);
	cr_assert_eq(g->regions[0].fd, -1);
	cr_assert_eq((uintptr_t)g->regions[0].host % (2u << 20), 0, "anon region is 2M-aligned");
	printf("create 1T fill=zero anon-thp: %.3f ms\n", g->stats.build_ns / 1e6);
	cr_assert_lt(g->stats.build_ns, 30000000000ull);
	tern_guest_destroy(g);
}

Test(guest, fill_random_and_percent, .timeout = 60)
{
	struct tern_guest *g;
	uint64_t nrand = 0, npages;

	g = mkguest("simvm:mem=64M,fill=random,seed=5", TERN_GUEST_SOURCE);
	printf("fill=random 64M: %.1f ms\n", g->stats.build_ns / 1e6);
	cr_assert_eq(fd_blocks(g) * 512, 64ull << 20, "every page populated");
	for (uint64_t p = 0; p < g->npages; p++) {
		const uint64_t *w = (const uint64_t *)(g->regions[0].host + p * PG);

		cr_assert(w[0] != 0 || w[1] != 0, "page %" PRIu64 " is not random", p);
		if (p > 0)
			cr_assert_neq(w[5],
			              ((const uint64_t *)(g->regions[0].host + (p - 1) * PG))[5]);
	}
	tern_guest_destroy(g);

	g = mkguest("simvm:mem=64M,fill=50,seed=5", TERN_GUEST_SOURCE);
	npages = g->npages;
	/* Only the random pages exist; count them before reading holes. */
	uint64_t blocks = fd_blocks(g);
	for (uint64_t p = 0; p < npages; p++) {
		const uint64_t *w = (const uint64_t *)(g->regions[0].host + p * PG);
		bool zero = true;

		for (unsigned i = 0; i < PG / 8 && zero; i++)
			zero = w[i] == 0;
		nrand += !zero;
	}
	cr_assert_eq(blocks * 512, nrand * PG, "exactly the random pages are allocated");
	cr_assert(nrand > npages * 45 / 100 && nrand < npages * 55 / 100, "%" PRIu64 " of %" PRIu64,
	          nrand, npages);
	tern_guest_destroy(g);

	g = mkguest("simvm:mem=16M,fill=0", TERN_GUEST_SOURCE);
	cr_assert_eq(fd_blocks(g), 0);
	tern_guest_destroy(g);
}

static int
count_fds(void)
{
	int n = 0;

	for (int fd = 0; fd < 1024; fd++)
		n += fcntl(fd, F_GETFD) >= 0;
	return n;
}

Test(guest, create_failure_cleans_up)
{
	struct tern_guest_config c;
	struct tern_guest *g = (void *)1;
	char err[256];
	int before = count_fds(), rv;

	/* 256 TiB is more than the user address space: mmap fails after
	 * memfd_create and ftruncate succeeded. */
	cr_assert_eq(tern_guest_spec_parse("simvm:mem=256T,vcpus=4", &c, err, sizeof(err)), 0, "%s",
	             err);
	rv = tern_guest_create(&g, &c, TERN_GUEST_SOURCE, err, sizeof(err));
	cr_assert_lt(rv, 0);
	cr_assert_null(g);
	cr_assert_not_null(strstr(err, "mmap"), "%s", err);
	cr_assert_eq(count_fds(), before, "the memfd is closed on failure");
	printf("expected failure: %s\n", err);
}

/* ---- digest ---- */

/* The digest's definition (kvm/guest.h): XXH3-64 over the little-endian
 * XXH3-64 hashes of each 2 MiB block. */
static uint64_t
ref_digest(const uint8_t *p, uint64_t size)
{
	XXH3_state_t *st = XXH3_createState();
	XXH3_64bits_reset(st);
	for (uint64_t off = 0; off < size; off += 2u << 20) {
		uint64_t n = size - off < (2u << 20) ? size - off : (2u << 20);
		uint64_t h = htole64(XXH3_64bits(p + off, n));
		XXH3_64bits_update(st, &h, sizeof(h));
	}
	uint64_t d = XXH3_64bits_digest(st);
	XXH3_freeState(st);
	return d;
}

Test(guest, digest, .timeout = 60)
{
	struct tern_guest *a, *b, *z, *za;
	uint64_t da, db, dz, dza, ref;
	uint8_t *zeros;

	a = mkguest("simvm:mem=32M,fill=random,seed=9", TERN_GUEST_SOURCE);
	b = mkguest("simvm:mem=32M,fill=random,seed=9,backing=anon-thp", TERN_GUEST_SOURCE);
	cr_assert_eq(tern_guest_digest(a, &da), 0);
	cr_assert_eq(tern_guest_digest(b, &db), 0);
	cr_assert_eq(da, db, "same seed, same memory, same digest");
	cr_assert_eq(da, ref_digest(a->regions[0].host, a->regions[0].size),
	             "digest follows its definition");
	b->regions[0].host[12345] ^= 1;
	cr_assert_eq(tern_guest_digest(b, &db), 0);
	cr_assert_neq(da, db, "a one-byte change changes the digest");
	tern_guest_destroy(b);

	/* fill=50 with holes: memfd holes hashed as zeros equal anon zeros. */
	tern_guest_destroy(a);
	a = mkguest("simvm:mem=32M,fill=50,seed=4", TERN_GUEST_SOURCE);
	b = mkguest("simvm:mem=32M,fill=50,seed=4,backing=anon-thp", TERN_GUEST_SOURCE);
	uint64_t blocks = fd_blocks(a);
	cr_assert_eq(tern_guest_digest(a, &da), 0);
	cr_assert_eq(tern_guest_digest(b, &db), 0);
	cr_assert_eq(fd_blocks(a), blocks, "digest must not allocate holes");
	cr_assert_eq(da, db);
	cr_assert_eq(da, ref_digest(a->regions[0].host, a->regions[0].size));
	tern_guest_destroy(a);
	tern_guest_destroy(b);

	z = mkguest("simvm:mem=256M", TERN_GUEST_DESTINATION);
	za = mkguest("simvm:mem=256M,backing=anon-thp", TERN_GUEST_DESTINATION);
	uint64_t t0 = tern_now_ns();
	cr_assert_eq(tern_guest_digest(z, &dz), 0);
	printf("digest of a 256M zero memfd guest: %.1f ms\n", (tern_now_ns() - t0) / 1e6);
	cr_assert_eq(fd_blocks(z), 0, "digest of a zero memfd guest allocates nothing");
	cr_assert_eq(tern_guest_digest(za, &dza), 0);
	zeros = calloc(1, 256u << 20);
	ref = ref_digest(zeros, 256u << 20);
	free(zeros);
	cr_assert_eq(dz, ref);
	cr_assert_eq(dza, ref);
	tern_guest_destroy(z);
	tern_guest_destroy(za);
}

Test(guest, range_and_hva)
{
	struct tern_guest *g = mkguest("simvm:mem=1M", TERN_GUEST_DESTINATION);
	uint64_t sz = 1 << 20;

	cr_assert(tern_guest_range_ok(g, 0, sz));
	cr_assert(tern_guest_range_ok(g, sz, 0));
	cr_assert(tern_guest_range_ok(g, sz - PG, PG));
	cr_assert_not(tern_guest_range_ok(g, sz - PG, PG + 1));
	cr_assert_not(tern_guest_range_ok(g, 0, sz + 1));
	cr_assert_not(tern_guest_range_ok(g, UINT64_MAX, 2));
	cr_assert_not(tern_guest_range_ok(g, 2, UINT64_MAX));
	cr_assert_not(tern_guest_range_ok(g, sz + 1, 0));
	cr_assert_eq(tern_guest_hva(g, 5 * PG), g->regions[0].host + 5 * PG);
	cr_assert_eq(tern_guest_populate(g, sz - PG, 2 * PG), TERN_ERANGE);
	tern_guest_destroy(g);
}

Test(guest, populate_makes_writes_cheaper, .timeout = 60)
{
	static const char *specs[] = {"simvm:mem=256M", "simvm:mem=256M,backing=anon-thp"};

	for (int k = 0; k < 2; k++) {
		struct tern_guest *g = mkguest(specs[k], TERN_GUEST_DESTINATION);
		uint64_t half = g->regions[0].size / 2, t0, tfault, tpop, twrite;

		t0 = tern_now_ns();
		for (uint64_t o = 0; o < half; o += PG)
			*(uint64_t *)(g->regions[0].host + o) = o ^ 0xabcdef;
		tfault = tern_now_ns() - t0;
		t0 = tern_now_ns();
		/* Populating the whole range must not disturb the written half. */
		cr_assert_eq(tern_guest_populate(g, 0, g->regions[0].size), 0);
		tpop = tern_now_ns() - t0;
		if (g->regions[0].fd >= 0)
			cr_assert_eq(fd_blocks(g) * 512, g->regions[0].size);
		t0 = tern_now_ns();
		for (uint64_t o = half; o < g->regions[0].size; o += PG)
			*(uint64_t *)(g->regions[0].host + o) = o ^ 0xabcdef;
		twrite = tern_now_ns() - t0;
		printf("%s: first-touch writes %.1f ms/128M, populate %.1f ms/256M, writes after "
		       "populate %.1f ms/128M\n",
		       specs[k], tfault / 1e6, tpop / 1e6, twrite / 1e6);
		for (uint64_t o = 0; o < g->regions[0].size; o += PG)
			cr_assert_eq(*(uint64_t *)(g->regions[0].host + o), o ^ 0xabcdef,
			             "offset %" PRIu64, o);
		tern_guest_destroy(g);
	}
}

/* ---- workload, pause/resume, check, state ---- */

Test(guest, pause_resume, .timeout = 30)
{
	struct tern_guest *g = mkguest(
	    "simvm:mem=16M,vcpus=2,fill=random,workload=memtouch:ws=4M,rate=0", TERN_GUEST_SOURCE);
	uint64_t p0, p1, p2;

	wait_progress(g, 0);
	cr_assert_eq(g->ops->pause(g), 0);
	cr_assert_eq(g->ops->pause(g), 0, "pause is idempotent");
	p0 = progress_of(g);
	cr_assert_gt(p0, 0, "the workload ran before the pause");
	cr_assert_eq(g->stats.workload_steps, p0);
	sleep_us(30000);
	p1 = progress_of(g);
	cr_assert_eq(p0, p1, "steps advanced while paused (%" PRIu64 " -> %" PRIu64 ")", p0, p1);
	printf("pause latency %.1f us\n", g->stats.last_pause_ns / 1e3);
	cr_assert_gt(g->stats.last_pause_ns, 0);
	cr_assert_eq(g->ops->resume(g), 0);
	cr_assert_eq(g->ops->resume(g), 0, "resume is idempotent");
	p2 = wait_progress(g, p1);
	cr_assert_gt(p2, p1, "steps advance after resume");
	printf("resume latency %.1f us\n", g->stats.last_resume_ns / 1e3);
	tern_guest_destroy(g);

	/* A paced vCPU sleeping in its 1 ms slot is woken by the pause. */
	g = mkguest("simvm:mem=16M,vcpus=2,workload=memtouch:ws=4M,rate=8M", TERN_GUEST_SOURCE);
	wait_progress(g, 0);
	cr_assert_eq(g->ops->pause(g), 0);
	printf("pause latency of a paced guest %.1f us\n", g->stats.last_pause_ns / 1e3);
	tern_guest_destroy(g);

	/* A destination paused before any memory arrived reads nothing. */
	g = mkguest("simvm:mem=16M,vcpus=2,workload=memtouch", TERN_GUEST_DESTINATION);
	cr_assert_eq(g->ops->pause(g), 0);
	cr_assert_eq(fd_blocks(g), 0);
	tern_guest_destroy(g);

	/* Idle vCPUs pause and resume at once. */
	g = mkguest("simvm:mem=1M,vcpus=4", TERN_GUEST_SOURCE);
	cr_assert_eq(g->ops->pause(g), 0);
	cr_assert_eq(g->ops->resume(g), 0);
	cr_assert_eq(progress_of(g), 0);
	tern_guest_destroy(g);
}

Test(guest, check_invariant, .timeout = 30)
{
	static const char *specs[] = {
	    "simvm:mem=16M,vcpus=2,fill=random,workload=memtouch:ws=4M,pattern=random",
	    "simvm:mem=16M,vcpus=3,fill=50,workload=memtouch:ws=2M,pattern=seq",
	    "simvm:mem=16M,vcpus=2,backing=anon-thp,workload=memtouch:ws=4M,rate=100M",
	};
	char why[256];

	for (int k = 0; k < 3; k++) {
		struct tern_guest *g = mkguest(specs[k], TERN_GUEST_SOURCE);
		uint64_t p = 0, q = 0;
		uint64_t *w;

		for (int i = 0; i < 3; i++) {
			sleep_us(10000);
			cr_assert_eq(tern_guest_check(g, &q, why, sizeof(why)), 0, "%s: %s",
			             specs[k], why);
			cr_assert_geq(q, p);
			p = q;
		}
		p = wait_progress(g, 0);
		cr_assert_gt(p, 0, "%s: no progress", specs[k]);
		/* Corrupt word 0 of a working-set page of vCPU 1. */
		cr_assert_eq(g->ops->pause(g), 0);
		w = (uint64_t *)tern_guest_hva(g, (CTL_PAGES + 1) * PG);
		*w += 1;
		cr_assert_eq(tern_guest_check(g, &q, why, sizeof(why)), TERN_EVERIFY, "%s",
		             specs[k]);
		cr_assert_not_null(strstr(why, "vCPU 1"), "%s", why);
		*w -= 1;
		cr_assert_eq(tern_guest_check(g, &q, why, sizeof(why)), 0, "%s", why);
		/* A broken control page is reported too. */
		*(uint64_t *)tern_guest_hva(g, 0) = 0;
		cr_assert_eq(tern_guest_check(g, &q, why, sizeof(why)), TERN_EVERIFY);
		cr_assert_not_null(strstr(why, "vCPU 0"), "%s", why);
		tern_guest_destroy(g);
	}
}

Test(guest, state_round_trip_and_rejection, .timeout = 30)
{
	const char *spec = "simvm:mem=8M,vcpus=2,fill=random,workload=memtouch:ws=2M";
	struct tern_guest *src = mkguest(spec, TERN_GUEST_SOURCE), *dst, *other;
	uint8_t buf[4096], bad[4096];
	size_t len = 0, tiny = 0;
	uint64_t ps, pd, ds, dd;
	char why[256];

	wait_progress(src, 0);
	cr_assert_eq(src->ops->pause(src), 0);
	ps = progress_of(src);
	cr_assert_eq(src->ops->state_save(src, buf, sizeof(buf), &len), 0);
	cr_assert_eq(len, 24 + 2 * 16);
	cr_assert_neq(src->ops->state_save(src, buf, 8, &tiny), 0, "too small a buffer");
	cr_assert_eq(tiny, len, "reports the size it needs");

	dst = mkguest(spec, TERN_GUEST_DESTINATION);
	/* Garbage, truncation, another version or shape are refused. */
	memset(bad, 0xa5, sizeof(bad));
	cr_assert_eq(dst->ops->state_load(dst, bad, len), TERN_EMSG);
	cr_assert(dst->why[0] != '\0');
	cr_assert_eq(dst->ops->state_load(dst, buf, len - 1), TERN_EMSG);
	cr_assert_eq(dst->ops->state_load(dst, buf, 3), TERN_EMSG);
	memcpy(bad, buf, len);
	bad[4] ^= 0x7;
	cr_assert_eq(dst->ops->state_load(dst, bad, len), TERN_EMSG);
	cr_assert_not_null(strstr(dst->why, "version"), "%s", dst->why);
	memcpy(bad, buf, len);
	bad[24 + 8] = 0x80;
	cr_assert_eq(dst->ops->state_load(dst, bad, len), TERN_EMSG);
	other = mkguest("simvm:mem=8M,vcpus=3,workload=memtouch:ws=2M", TERN_GUEST_DESTINATION);
	cr_assert_eq(other->ops->state_load(other, buf, len), TERN_EMSG);
	cr_assert_not_null(strstr(other->why, "vcpus"), "%s", other->why);
	tern_guest_destroy(other);

	/* Migrate by hand: memory, then state, then resume. */
	memcpy(dst->regions[0].host, src->regions[0].host, src->regions[0].size);
	cr_assert_eq(tern_guest_digest(src, &ds), 0);
	cr_assert_eq(tern_guest_digest(dst, &dd), 0);
	cr_assert_eq(ds, dd);
	cr_assert_eq(dst->ops->state_load(dst, buf, len), 0, "%s", dst->why);
	cr_assert_eq(progress_of(dst), ps, "destination starts where the source stopped");
	cr_assert_eq(dst->ops->resume(dst), 0);
	pd = wait_progress(dst, ps);
	cr_assert_gt(pd, ps, "destination continues the workload");
	cr_assert_eq(progress_of(src), ps, "source stays paused");
	/* Loading into a running guest is refused. */
	cr_assert_eq(dst->ops->state_load(dst, buf, len), TERN_ESTATE);
	tern_guest_destroy(dst);
	tern_guest_destroy(src);

	/* A destination resumed without its memory halts and says so. */
	dst = mkguest(spec, TERN_GUEST_DESTINATION);
	cr_assert_eq(tern_guest_digest(dst, &ds), 0);
	cr_assert_eq(dst->ops->resume(dst), 0);
	sleep_us(5000);
	cr_assert_eq(tern_guest_check(dst, &pd, why, sizeof(why)), TERN_EVERIFY);
	cr_assert_not_null(strstr(why, "no ledger"), "%s", why);
	cr_assert_eq(tern_guest_digest(dst, &dd), 0);
	cr_assert_eq(dd, ds, "a halted vCPU wrote nothing");
	/* It only read its control page (which allocates a memfd hole). */
	cr_assert_leq(fd_blocks(dst) * 512, 2 * PG);
	tern_guest_destroy(dst);
}

/* ---- dirty tracking ---- */

/* expect_none_lost: every page of want is in got. */
static void
expect_none_lost(const struct tern_bitmap *got, const struct tern_bitmap *want, const char *what,
                 int iter)
{
	for (uint64_t w = 0; w < want->nwords; w++) {
		uint64_t lost = want->words[w] & ~got->words[w];

		cr_assert_eq(lost, 0, "%s iter %d: written page %" PRIu64 " not reported", what,
		             iter, w * 64 + (uint64_t)(lost ? __builtin_ctzll(lost) : 0));
	}
}

/* expect_no_extra: got holds only pages of allowed; with THP, also pages
 * of a 2 MiB block holding an allowed page (a first write into a hole
 * allocates and reports the whole huge page). */
static void
expect_no_extra(const struct tern_bitmap *got, const struct tern_bitmap *allowed, bool thp,
                const char *what, int iter)
{
	for (uint64_t w = 0; w < got->nwords; w++) {
		uint64_t extra = got->words[w] & ~allowed->words[w], page, blk;
		bool any = false;

		if (extra == 0)
			continue;
		page = w * 64 + (uint64_t)__builtin_ctzll(extra);
		cr_assert(thp, "%s iter %d: clean page %" PRIu64 " reported", what, iter, page);
		blk = page / 512 * 512;
		for (uint64_t p = blk; p < blk + 512 && p < allowed->nbits && !any; p++)
			any = tern_bitmap_test(allowed, p);
		cr_assert(any,
		          "%s iter %d: clean page %" PRIu64 " reported outside written 2M blocks",
		          what, iter, page);
	}
}

static void
expect_exact(const struct tern_bitmap *got, const struct tern_bitmap *want, bool thp,
             const char *what, int iter)
{
	expect_none_lost(got, want, what, iter);
	expect_no_extra(got, want, thp, what, iter);
}

static struct tern_guest *
dirty_guest(const char *spec, bool paused)
{
	struct tern_guest *g = mkguest(spec, TERN_GUEST_SOURCE);
	int rv;

	if (paused)
		cr_assert_eq(g->ops->pause(g), 0);
	rv = g->ops->dirty_start(g);

	cr_assert_eq(rv, 0, "dirty_start: %s (%s)", g->why, tern_strerror(rv));
	return g;
}

/* Paused vCPUs: the test writes pages and the harvest must report exactly
 * those (holes and populated pages alike), iteration after iteration. */
static void
dirty_exact(const char *spec)
{
	struct tern_guest *g = dirty_guest(spec, true);
	bool thp = g->cfg.backing == TERN_BACKING_ANON_THP;
	struct tern_bitmap got, want, ever;
	uint64_t s = 0xfeed ^ g->cfg.fill, pages = 0, holes = 0;

	cr_assert_eq(tern_bitmap_init(&got, g->npages), 0);
	cr_assert_eq(tern_bitmap_init(&want, g->npages), 0);
	cr_assert_eq(tern_bitmap_init(&ever, g->npages), 0);
	cr_assert_eq(g->ops->dirty_harvest(g, &got, &pages), 0, "%s", g->why);
	/* The pause wrote nothing, and dirty_start re-armed everything. */
	cr_assert_eq(pages, 0, "%s: %" PRIu64 " pages dirty with nobody writing", spec, pages);

	for (int it = 1; it <= 8; it++) {
		tern_bitmap_clear_all(&got);
		tern_bitmap_clear_all(&want);
		for (int k = 0; k < 300; k++) {
			uint64_t p = rnd(&s) % g->npages;

			if (k % 4 == 0) { /* rewrite a page from an earlier iteration */
				uint64_t pos = rnd(&s) % g->npages, f, c;

				if (tern_bitmap_next_run(&ever, &pos, 1, &f, &c))
					p = f;
			}
			if (g->regions[0].fd >= 0 && !tern_bitmap_test(&ever, p)) {
				off_t d = lseek(g->regions[0].fd, (off_t)(p * PG), SEEK_DATA);

				holes += d < 0 || (uint64_t)d != p * PG;
			}
			((volatile uint64_t *)(g->regions[0].host + p * PG))[1] = (uint64_t)it;
			tern_bitmap_set(&want, p);
			tern_bitmap_set(&ever, p);
		}
		pages = 0;
		cr_assert_eq(g->ops->dirty_harvest(g, &got, &pages), 0, "%s", g->why);
		cr_assert_eq(pages, tern_bitmap_count(&got));
		expect_exact(&got, &want, thp, spec, it);
		/* Every reported written page carries this iteration's stamp. */
		for (uint64_t p = 0, f, c; tern_bitmap_next_run(&want, &p, 0, &f, &c);)
			for (uint64_t q = f; q < f + c; q++)
				cr_assert_eq(((uint64_t *)(g->regions[0].host + q * PG))[1],
				             (uint64_t)it);
		/* Nothing written since: the next harvest is empty. */
		pages = 0;
		tern_bitmap_clear_all(&got);
		cr_assert_eq(g->ops->dirty_harvest(g, &got, &pages), 0);
		cr_assert_eq(pages, 0, "%s iter %d: %" PRIu64 " pages re-reported", spec, it,
		             pages);
	}
	if (g->regions[0].fd >= 0)
		cr_assert_gt(holes, 50, "%s: the test must write into holes (%" PRIu64 ")", spec,
		             holes);
	cr_assert_eq(g->stats.harvests, 17);
	cr_assert_eq(g->ops->dirty_stop(g), 0);
	cr_assert_eq(g->ops->dirty_stop(g), 0, "dirty_stop is idempotent");
	tern_bitmap_fini(&got);
	tern_bitmap_fini(&want);
	tern_bitmap_fini(&ever);
	tern_guest_destroy(g);
}

/* Each backing, sparse (half filled) and empty. */
static const char *const exact_specs[] = {
    "simvm:mem=64M,vcpus=2,fill=50,workload=memtouch:ws=8M",
    "simvm:mem=64M,vcpus=1,workload=memtouch:ws=8M",
    "simvm:mem=64M,vcpus=2,fill=50,backing=anon-thp,workload=memtouch:ws=8M",
    "simvm:mem=64M,vcpus=1,backing=anon-thp,workload=memtouch:ws=8M",
};

/* Parameters are indexes into the spec tables (no pointers in them). */
ParameterizedTestParameters(dirty, exact)
{
	static int idx[] = {0, 1, 2, 3};
	return cr_make_param_array(int, idx, sizeof(idx) / sizeof(idx[0]));
}

ParameterizedTest(int *i, dirty, exact, .timeout = 60)
{
	dirty_exact(exact_specs[*i]);
}

Test(dirty, exact_on_1t_memfd, .timeout = 60)
{
	struct tern_guest *g;
	struct tern_bitmap got;
	uint64_t s = 77, pages = 0, t0, tstart, tharv, written[100];

	t0 = tern_now_ns();
	g = dirty_guest("simvm:mem=1T", false);
	tstart = tern_now_ns() - t0;
	cr_assert_eq(tern_bitmap_init(&got, g->npages), 0);
	for (int i = 0; i < 100; i++) {
		written[i] = rnd(&s) % g->npages;
		g->regions[0].host[written[i] * PG + 100] = 1;
	}
	t0 = tern_now_ns();
	cr_assert_eq(g->ops->dirty_harvest(g, &got, &pages), 0, "%s", g->why);
	tharv = tern_now_ns() - t0;
	for (int i = 0; i < 100; i++)
		cr_assert(tern_bitmap_test(&got, written[i]), "hole write to page %" PRIu64 " lost",
		          written[i]);
	cr_assert_eq(tern_bitmap_count(&got), pages);
	cr_assert_leq(pages, 100);
	cr_assert_geq(pages, 99, "100 random pages of 2^28 (a collision is possible)");
	printf("1T memfd: dirty_start %.2f ms, harvest of 100 hole writes %.2f ms\n", tstart / 1e6,
	       tharv / 1e6);
	tern_bitmap_fini(&got);
	tern_guest_destroy(g);
}

Test(dirty, misuse)
{
	struct tern_guest *g = mkguest("simvm:mem=1M", TERN_GUEST_SOURCE);
	struct tern_bitmap small, bm;
	uint64_t pages = 0;

	cr_assert_eq(tern_bitmap_init(&bm, g->npages), 0);
	cr_assert_eq(tern_bitmap_init(&small, g->npages - 1), 0);
	cr_assert_eq(g->ops->dirty_harvest(g, &bm, &pages), TERN_ESTATE);
	cr_assert_eq(g->ops->dirty_start(g), 0, "%s", g->why);
	cr_assert_eq(g->ops->dirty_start(g), TERN_ESTATE);
	cr_assert_eq(g->ops->dirty_harvest(g, &small, &pages), TERN_EINVAL);
	cr_assert_eq(g->ops->dirty_stop(g), 0);
	/* Tracking can start again after a stop; destroy stops it too. */
	cr_assert_eq(g->ops->dirty_start(g), 0, "%s", g->why);
	g->regions[0].host[0] = 1;
	cr_assert_eq(g->ops->dirty_harvest(g, &bm, &pages), 0);
	cr_assert(tern_bitmap_test(&bm, 0));
	tern_bitmap_fini(&bm);
	tern_bitmap_fini(&small);
	tern_guest_destroy(g);
}

/* A memtouch workload runs while the test writes stamps and harvests:
 * every change seen between two harvests was reported by one of them, every
 * stamp by its own harvest, and nothing outside what was written. */
static void
dirty_concurrent(const char *spec)
{
	struct tern_guest *g = dirty_guest(spec, false);
	bool thp = g->cfg.backing == TERN_BACKING_ANON_THP;
	uint64_t ws_first = CTL_PAGES, ws_pages = g->cfg.ws_size / PG, n = g->npages;
	uint64_t *snap[2], s = 4242, pages, steps0, steps1, changed = 0;
	struct tern_bitmap h[2], want;
	char why[256];
	const int iters = 12;

	cr_assert_lt(ws_first + ws_pages, n / 2, "stamps go above the working set");
	for (int k = 0; k < 2; k++) {
		snap[k] = calloc(ws_pages, sizeof(uint64_t));
		cr_assert_eq(tern_bitmap_init(&h[k], n), 0);
	}
	cr_assert_eq(tern_bitmap_init(&want, n), 0);
	steps0 = progress_of(g);
	for (int it = 0; it <= iters; it++) {
		uint64_t *cur = snap[it & 1], *prev = snap[(it + 1) & 1];
		struct tern_bitmap *hc = &h[it & 1], *hp = &h[(it + 1) & 1];

		/* Stamps outside the working set, some into holes. */
		tern_bitmap_clear_all(&want);
		for (uint64_t p = 0; p < g->cfg.vcpus; p++)
			tern_bitmap_set(&want, p); /* control pages */
		tern_bitmap_set_range(&want, ws_first, ws_pages);
		for (int k = 0; k < 64; k++) {
			uint64_t p = n / 2 + rnd(&s) % (n / 2);

			((volatile uint64_t *)(g->regions[0].host + p * PG))[3] = (uint64_t)it + 1;
			tern_bitmap_set(&want, p);
		}
		for (uint64_t i = 0; i < ws_pages; i++)
			cur[i] =
			    __atomic_load_n((uint64_t *)(g->regions[0].host + (ws_first + i) * PG),
			                    __ATOMIC_RELAXED);
		tern_bitmap_clear_all(hc);
		pages = 0;
		cr_assert_eq(g->ops->dirty_harvest(g, hc, &pages), 0, "%s", g->why);
		/* Stamps were written before this harvest began: all in it. */
		for (uint64_t p = n / 2; p < n; p++)
			if (tern_bitmap_test(&want, p))
				cr_assert(tern_bitmap_test(hc, p),
				          "%s iter %d: stamp on %" PRIu64 " lost", spec, it, p);
		/* Nothing but control pages, working set and stamps. */
		expect_no_extra(hc, &want, thp, spec, it);
		if (it > 0) {
			/* Changed between the snapshots before harvests it-1 and
			 * it: written after the first snapshot, before the
			 * second, so reported by harvest it-1 or it. */
			for (uint64_t i = 0; i < ws_pages; i++) {
				uint64_t p = ws_first + i;

				if (cur[i] == prev[i])
					continue;
				changed++;
				cr_assert(tern_bitmap_test(hc, p) || tern_bitmap_test(hp, p),
				          "%s iter %d: page %" PRIu64
				          " changed but was never reported",
				          spec, it, p);
			}
		}
		sleep_us(5000);
	}
	cr_assert_gt(changed, 0, "%s: the workload wrote nothing during the test", spec);
	cr_assert_eq(tern_guest_check(g, &steps1, why, sizeof(why)), 0, "%s", why);
	cr_assert_gt(steps1, steps0);
	printf("%s: %" PRIu64 " steps during %d harvests\n", spec, steps1 - steps0, iters + 1);
	for (int k = 0; k < 2; k++) {
		free(snap[k]);
		tern_bitmap_fini(&h[k]);
	}
	tern_bitmap_fini(&want);
	tern_guest_destroy(g);
}

static const char *const concurrent_specs[] = {
    "simvm:mem=64M,vcpus=2,fill=50,workload=memtouch:ws=4M,rate=32M",
    "simvm:mem=64M,vcpus=2,backing=anon-thp,workload=memtouch:ws=4M,rate=32M",
};

ParameterizedTestParameters(dirty, concurrent)
{
	static int idx[] = {0, 1};
	return cr_make_param_array(int, idx, sizeof(idx) / sizeof(idx[0]));
}

ParameterizedTest(int *i, dirty, concurrent, .timeout = 60)
{
	dirty_concurrent(concurrent_specs[*i]);
}
