/*
 * tern-fuzz-seeds DIR: writes the fuzz targets' seed corpora into
 * DIR/<target>/, each seed made by tern's own encoders (tern_msg_encode,
 * tern_wire_send, tern_wire_hello, tern_guest_spec_format, the guest's
 * state_save), so the seeds follow the schema and the formats as they
 * change.  Run at build time (tests/fuzz/CMakeLists.txt).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "kvm/guest.h"
#include "net/wire.h"
#include "tern/error.h"
#include "tests/fuzz/harness.h"

#define SEED_MAX (FUZZ_FEED_MAX)

static const char *seed_dir;
static uint8_t seed_buf[SEED_MAX];
static uint8_t seed_bin[40];
static uint8_t seed_pairs[2 * 16];

static int
seed_write(const char *target, const char *name, const void *p, size_t len)
{
	char path[4096];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", seed_dir, target);
	if (mkdir(path, 0755) != 0 && errno != EEXIST)
		return -errno;
	snprintf(path, sizeof(path), "%s/%s/%s", seed_dir, target, name);
	if ((f = fopen(path, "wb")) == NULL)
		return -errno;
	if (fwrite(p, 1, len, f) != len) {
		fclose(f);
		return TERN_EINVAL;
	}
	return fclose(f) == 0 ? 0 : -errno;
}

/* ---- fuzz_msg: one message of every schema type, every field set ---- */

#define SEED_FIELD static __attribute__((unused)) void
SEED_FIELD
seed_U32(uint32_t *v)
{
	*v = 7;
}
SEED_FIELD
seed_U64(uint64_t *v)
{
	*v = 1ull << 40;
}
SEED_FIELD
seed_I32(int32_t *v)
{
	*v = -5;
}
SEED_FIELD
seed_I64(int64_t *v)
{
	*v = -(1ll << 35);
}
SEED_FIELD
seed_F64(double *v)
{
	*v = 0.5;
}
SEED_FIELD
seed_BOOL(bool *v)
{
	*v = true;
}
SEED_FIELD
seed_STR(char (*s)[TERN_STR_MAX])
{
	snprintf(*s, TERN_STR_MAX, "seed");
}
SEED_FIELD
seed_BIN(struct tern_bin *v)
{
	*v = (struct tern_bin){seed_bin, sizeof(seed_bin)};
}
SEED_FIELD
seed_RANGES(struct tern_ranges *v)
{
	*v = (struct tern_ranges){seed_pairs, 2};
}

static int
seed_msgs(void)
{
	struct tern_msg m;
	size_t len;
	int rv = 0;

	memset(seed_bin, 0xa5, sizeof(seed_bin));
	tern_ranges_put(seed_pairs, 0, 0, TERN_PAGE_SIZE);
	tern_ranges_put(seed_pairs, 1, 8 * TERN_PAGE_SIZE, 2 * TERN_PAGE_SIZE);
#define SEED_SET(type, name) seed_##type(&b->name);
#define X(NAME, name, id)                                                                          \
	if (rv == 0) {                                                                             \
		tern_msg_init(&m, TERN_MSG_##NAME);                                                \
		m.seq = 3;                                                                         \
		m.from = 2;                                                                        \
		m.time_ns = 123456789;                                                             \
		struct tern_msg_##name *b = &m.u.name;                                             \
		(void)b;                                                                           \
		TERN_FIELDS_##NAME(SEED_SET) rv = tern_msg_encode(&m, seed_buf, SEED_MAX, &len);   \
		if (rv == 0)                                                                       \
			rv = seed_write("fuzz_msg", #NAME, seed_buf, len);                         \
	}
	TERN_MESSAGES(X)
#undef X
#undef SEED_SET
	return rv;
}

/* ---- fuzz_wire and fuzz_pages: frames as a peer sends them ---- */

/* A stream of frames being built in seed_buf. */
struct seed_stream {
	size_t len;
	int rv;
};

static void
seed_frame(struct seed_stream *st, const struct tern_msg *m, const void *payload, size_t plen)
{
	size_t n = 0;

	if (st->rv == 0)
		st->rv = fuzz_frame(m, payload, plen, seed_buf + st->len, SEED_MAX - st->len, &n);
	st->len += n;
}

/* A W_HELLO as tern_wire_hello sends it, bound with fuzz_key. */
static void
seed_hello(struct seed_stream *st, uint32_t conn, uint32_t nconns)
{
	size_t n = 0;

	if (st->rv == 0)
		st->rv = fuzz_hello_frame(conn, nconns, seed_buf + st->len, SEED_MAX - st->len, &n);
	st->len += n;
}

static void
seed_ack(struct seed_stream *st, int status, const char *why)
{
	struct tern_msg m;

	tern_msg_init(&m, TERN_MSG_W_HELLO_ACK);
	m.u.w_hello_ack.version = TERN_WIRE_VERSION;
	m.u.w_hello_ack.status = status;
	snprintf(m.u.w_hello_ack.why, TERN_STR_MAX, "%s", why);
	m.u.w_hello_ack.time_ns = status == 0 ? 42 : 0;
	seed_frame(st, &m, NULL, 0);
}

/* A W_PAGES frame: ndata data ranges and nzero zero ranges, (gpa, len)
 * pairs in order, the payload a byte pattern. */
static void
seed_pages(struct seed_stream *st, const uint64_t *data, uint32_t ndata, const uint64_t *zero,
           uint32_t nzero)
{
	static uint8_t ranges[8 * 16], zeros[8 * 16], payload[16 * TERN_PAGE_SIZE];
	struct tern_msg m;
	size_t plen = 0;

	for (uint32_t i = 0; i < ndata; i++) {
		tern_ranges_put(ranges, i, data[2 * i], data[2 * i + 1]);
		plen += data[2 * i + 1];
	}
	for (uint32_t i = 0; i < nzero; i++)
		tern_ranges_put(zeros, i, zero[2 * i], zero[2 * i + 1]);
	for (size_t i = 0; i < plen && i < sizeof(payload); i++)
		payload[i] = (uint8_t)(i * 7 + 1);
	tern_msg_init(&m, TERN_MSG_W_PAGES);
	m.u.w_pages.chunk = 1;
	m.u.w_pages.ranges = (struct tern_ranges){ranges, ndata};
	m.u.w_pages.zeros = (struct tern_ranges){zeros, nzero};
	seed_frame(st, &m, payload, plen);
}

/* A W_PAGES frame of n one-page zero ranges (0 .. n-1, wrapping at 130
 * pages): the counts the destination takes (at most TERN_FRAME_MAX_RANGES
 * of each kind, at least one range) and just past them. */
static void
seed_zero_ranges(struct seed_stream *st, uint32_t n)
{
	static uint8_t zeros[(TERN_FRAME_MAX_RANGES + 1) * 16];
	struct tern_msg m;

	for (uint32_t i = 0; i < n; i++)
		tern_ranges_put(zeros, i, (i % 130) * TERN_PAGE_SIZE, TERN_PAGE_SIZE);
	tern_msg_init(&m, TERN_MSG_W_PAGES);
	m.u.w_pages.chunk = 2;
	m.u.w_pages.ranges = (struct tern_ranges){zeros, 0};
	m.u.w_pages.zeros = (struct tern_ranges){zeros, n};
	seed_frame(st, &m, NULL, 0);
}

static void
seed_control(struct seed_stream *st)
{
	static const uint8_t state[40] = {0x54, 0x4e, 0x53, 0x54, 1};
	uint8_t layout[16];
	struct tern_msg m;

	tern_msg_init(&m, TERN_MSG_W_CONFIG);
	tern_ranges_put(layout, 0, 0, 1ull << 20);
	m.u.w_config.layout = (struct tern_ranges){layout, 1};
	m.u.w_config.mem_size = 1ull << 20;
	m.u.w_config.page_size = TERN_PAGE_SIZE;
	m.u.w_config.vcpus = 1;
	snprintf(m.u.w_config.guest, TERN_STR_MAX, "simvm:mem=1M,vcpus=1,workload=idle");
	seed_frame(st, &m, NULL, 0);
	tern_msg_init(&m, TERN_MSG_W_STATE);
	m.u.w_state.len = sizeof(state);
	seed_frame(st, &m, state, sizeof(state));
	tern_msg_init(&m, TERN_MSG_W_DIGEST);
	m.u.w_digest.digest = 0x1234;
	seed_frame(st, &m, NULL, 0);
	tern_msg_init(&m, TERN_MSG_W_COMPLETE);
	seed_frame(st, &m, NULL, 0);
	tern_msg_init(&m, TERN_MSG_W_ABORT);
	m.u.w_abort.code = TERN_ECANCELED;
	snprintf(m.u.w_abort.why, TERN_STR_MAX, "cancelled by the user");
	seed_frame(st, &m, NULL, 0);
}

static int
seed_end(struct seed_stream *st, const char *target, const char *name)
{
	int rv = st->rv;

	if (rv == 0)
		rv = seed_write(target, name, seed_buf, st->len);
	*st = (struct seed_stream){0};
	return rv;
}

/* Starts a seed with the byte fuzz_wire and fuzz_pages take first: who
 * reads the rest (fuzz_wire.c: 0 the frame loop, 1 the destination's hello,
 * 2 the source's hello), or which guest (fuzz_pages.c). */
static void
seed_mode(struct seed_stream *st, uint8_t mode)
{
	seed_buf[0] = mode;
	st->len = 1;
}

static int
seed_wire(void)
{
	static const uint64_t data[] = {0, TERN_PAGE_SIZE, 8 * TERN_PAGE_SIZE, 100};
	struct seed_stream st = {0};
	int rv = 0;

	seed_mode(&st, 1);
	seed_hello(&st, 0, 2);
	rv = rv ? rv : seed_end(&st, "fuzz_wire", "hello-conn0");
	seed_mode(&st, 1);
	seed_hello(&st, 1, 2);
	rv = rv ? rv : seed_end(&st, "fuzz_wire", "hello-conn1");
	seed_mode(&st, 2);
	seed_ack(&st, 0, "");
	rv = rv ? rv : seed_end(&st, "fuzz_wire", "ack");
	seed_mode(&st, 2);
	seed_ack(&st, TERN_EAUTH,
	         "authentication failed: connection 1 is not bound to migration x");
	rv = rv ? rv : seed_end(&st, "fuzz_wire", "ack-refused");
	seed_mode(&st, 0);
	seed_pages(&st, data, 2, data, 1);
	rv = rv ? rv : seed_end(&st, "fuzz_wire", "pages");
	seed_mode(&st, 0);
	seed_hello(&st, 0, 1);
	seed_control(&st);
	rv = rv ? rv : seed_end(&st, "fuzz_wire", "session");
	return rv;
}

/* fuzz_pages: the first byte (seed_mode) picks the guest (fuzz_pages.c: 0-2 anonymous
 * 1, 3, 130 pages; 3-5 memfd 2, 65, 130 pages) and, bit 3, populate. */
static int
seed_page_frames(void)
{
	const uint64_t P = TERN_PAGE_SIZE;
	const uint64_t one[] = {0, P};
	const uint64_t partial[] = {100, 200, 2 * P - 50, 100};
	const uint64_t words_zero[] = {0, 130 * P};
	const uint64_t words_data[] = {62 * P, 3 * P, 127 * P, P + 10};
	const uint64_t memfd_zero[] = {P / 2, 40 * P};
	struct seed_stream st = {0};
	int rv = 0;

	seed_mode(&st, 0);
	seed_pages(&st, one, 1, NULL, 0);
	rv = rv ? rv : seed_end(&st, "fuzz_pages", "anon1-one-page");
	seed_mode(&st, 1);
	seed_pages(&st, partial, 2, one, 1);
	rv = rv ? rv : seed_end(&st, "fuzz_pages", "anon3-partial");
	/* Data, then zero over it and beyond: clears only what was written,
	 * across the written map's words. */
	seed_mode(&st, 2);
	seed_pages(&st, words_data, 2, NULL, 0);
	seed_pages(&st, NULL, 0, words_zero, 1);
	seed_pages(&st, words_data, 1, words_data + 2, 1);
	rv = rv ? rv : seed_end(&st, "fuzz_pages", "anon130-words");
	seed_mode(&st, 4 | 8);
	seed_pages(&st, words_data, 1, NULL, 0);
	seed_pages(&st, NULL, 0, memfd_zero, 1);
	rv = rv ? rv : seed_end(&st, "fuzz_pages", "memfd65-populate");
	/* The range counts taken and refused: a valid frame first, since a
	 * refused one ends the connection. */
	seed_mode(&st, 2);
	seed_zero_ranges(&st, 1);
	seed_zero_ranges(&st, 0);
	rv = rv ? rv : seed_end(&st, "fuzz_pages", "anon130-1-then-0-ranges");
	seed_mode(&st, 2);
	seed_zero_ranges(&st, TERN_FRAME_MAX_RANGES);
	seed_zero_ranges(&st, TERN_FRAME_MAX_RANGES + 1);
	rv = rv ? rv : seed_end(&st, "fuzz_pages", "anon130-512-then-513-ranges");
	seed_mode(&st, 3);
	seed_control(&st);
	seed_pages(&st, partial, 2, NULL, 0);
	rv = rv ? rv : seed_end(&st, "fuzz_pages", "memfd2-control");
	return rv;
}

/* ---- fuzz_spec and fuzz_state ---- */

static int
seed_specs(void)
{
	static const char *specs[] = {
	    "simvm:mem=1G,vcpus=2",
	    "simvm:mem=64M,vcpus=4,fill=random:16M,backing=anon-thp,workload=memtouch:ws=32M",
	    "simvm:workload=memtouch:rate=200M,pattern=random,seed=7",
	    "simvm:mem=4096K,fill=50,workload=memtouch:ws=1M,pattern=seq",
	    "simvm:mem=1T,fill=random,workload=idle,seed=18446744073709551615",
	    "kvm:mem=1G",
	    "128M",
	};
	struct tern_guest_config cfg;
	char err[TERN_STR_MAX], canon[512], name[32];
	int rv = 0;

	for (size_t i = 0; rv == 0 && i < sizeof(specs) / sizeof(specs[0]); i++) {
		snprintf(name, sizeof(name), "spec-%zu", i);
		rv = seed_write("fuzz_spec", name, specs[i], strlen(specs[i]));
		if (rv == 0 && tern_guest_spec_parse(specs[i], &cfg, err, sizeof(err)) == 0 &&
		    tern_guest_spec_format(&cfg, canon, sizeof(canon)) == 0) {
			snprintf(name, sizeof(name), "canonical-%zu", i);
			rv = seed_write("fuzz_spec", name, canon, strlen(canon));
		}
	}
	return rv;
}

static int
seed_states(void)
{
	static const char *specs[FUZZ_STATE_NGUESTS] = FUZZ_STATE_SPECS;
	struct tern_guest_config cfg;
	struct tern_guest *g;
	char err[TERN_STR_MAX], name[32];
	size_t len;
	int rv = 0;

	for (int i = 0; rv == 0 && i < FUZZ_STATE_NGUESTS; i++) {
		rv = tern_guest_spec_parse(specs[i], &cfg, err, sizeof(err));
		if (rv == 0)
			rv = tern_guest_create_provided(&g, &cfg, TERN_GUEST_DESTINATION, err,
			                                sizeof(err));
		if (rv != 0) {
			fprintf(stderr, "tern-fuzz-seeds: %s: %s\n", specs[i], err);
			return rv;
		}
		rv = g->ops->state_save(g, seed_buf, SEED_MAX, &len);
		tern_guest_destroy(g);
		snprintf(name, sizeof(name), "state-%d", i);
		if (rv == 0)
			rv = seed_write("fuzz_state", name, seed_buf, len);
		/* The same with the last vCPU halted (flags bit 0). */
		seed_buf[len - 8] = 1;
		snprintf(name, sizeof(name), "state-%d-halted", i);
		if (rv == 0)
			rv = seed_write("fuzz_state", name, seed_buf, len);
	}
	return rv;
}

int
main(int argc, char **argv)
{
	int rv;

	if (argc != 2) {
		fprintf(stderr, "usage: tern-fuzz-seeds DIR\n");
		return 2;
	}
	seed_dir = argv[1];
	if (mkdir(seed_dir, 0755) != 0 && errno != EEXIST) {
		fprintf(stderr, "tern-fuzz-seeds: %s: %s\n", seed_dir, strerror(errno));
		return 1;
	}
	rv = seed_msgs();
	if (rv == 0)
		rv = seed_wire();
	if (rv == 0)
		rv = seed_page_frames();
	if (rv == 0)
		rv = seed_specs();
	if (rv == 0)
		rv = seed_states();
	if (rv != 0) {
		fprintf(stderr, "tern-fuzz-seeds: %s\n", tern_strerror(rv));
		return 1;
	}
	return 0;
}
