/*
 * embed_vmm: a minimal VMM embedding libtern through its public API only
 * (<tern/tern.h>; it links libtern and nothing else of the tree).  Its guest
 * is its own: one memfd mapped as two regions as a PC's RAM is (low memory
 * at gpa 0, the rest above 4 GiB; the split is not a multiple of 64 pages),
 * a writer thread standing in for a
 * vCPU (a sequence number and a per-page stamp stored into random pages), a
 * pause flag the writer acknowledges, dirty tracking by the VMM itself (it
 * knows what its writer writes), a state blob (magic, the writer's sequence
 * number, a checksum of memory taken while paused).
 *
 * With no arguments it re-executes itself as the destination (--dest FD:
 * libtern writes "PORT\n" to FD), migrates its guest there over loopback and
 * exits 0 only if both sides succeeded: the destination's memory has the
 * blob's checksum, every page's stamp is consistent, and its writer runs on.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* memfd_create */
#endif
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <tern/tern.h>

#define VMM_MEM_SIZE (64ull << 20)
#define VMM_PAGE TERN_GUEST_PAGE_SIZE
#define VMM_LOW_PAGES ((40u << 20) / VMM_PAGE + 3) /* region 0: 40 MiB + 3 pages */
#define VMM_HIGH_GPA (4ull << 30)                  /* region 1 starts here */
#define VMM_MAGIC 0x4d4d5645u                      /* "EVMM" */
#define VMM_VERSION 1u
#define VMM_BURST 16      /* stores between two naps: a bounded dirty rate */
#define VMM_NAP_NS 200000 /* so pre-copy converges, and pause answers fast */
#define VMM_WARMUP_MS 300 /* the source's writer runs this long first */
#define VMM_ADVANCE 100   /* stores the destination's writer must make */

struct vmm {
	const char *role; /* "source" / "destination", for messages */
	int memfd;
	uint8_t *mem;
	uint64_t npages;
	/* One bit per page, set by the writer after its stores to that page
	 * (set before, a store could land after the harvest that cleared
	 * its bit and after libtern read the page: lost for good).  Region
	 * r's bits start at word dword[r]. */
	_Atomic uint64_t *dirty;
	uint64_t nwords;
	uint64_t first_page[3]; /* region r: pages [first_page[r], first_page[r+1]) */
	uint64_t dword[2];
	atomic_int tracking;
	_Atomic uint64_t seq; /* the writer's last sequence number: its "vCPU state" */

	pthread_t writer;
	int writer_started;
	pthread_mutex_t mtx;
	pthread_cond_t parked_cv; /* writer -> pause: parked (or gone) */
	pthread_cond_t go_cv;     /* resume / quit -> writer */
	atomic_int pause_req;     /* read by the writer before every store */
	int parked;               /* under mtx */
	int quit;                 /* under mtx */

	/* Destination: the loaded blob, and the check made at the first
	 * resume after it (memory is complete only at the handoff). */
	int loaded, checked;
	uint64_t loaded_seq, expect_sum;
	uint64_t got_sum, pages_written, pages_hole, pages_bad;
};

struct vmm_blob {
	uint32_t magic, version;
	uint64_t npages, seq, checksum;
};

static uint64_t
vmm_mix(uint64_t x)
{
	/* splitmix64's finaliser: cheap, and every input bit matters. */
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ull;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

/* What the writer stores beside sequence number seq in page pg. */
static uint64_t
vmm_stamp(uint64_t pg, uint64_t seq)
{
	return vmm_mix(pg * 0x9e3779b97f4a7c15ull ^ seq) | 1; /* never 0: 0 is a hole */
}

/* Four independent lanes, so that the multiplies overlap: hashing is bound
 * by memory bandwidth (64 MiB: ~15 ms of the downtime, on each side). */
static uint64_t
vmm_checksum(const struct vmm *v)
{
	const uint64_t *w = (const uint64_t *)(const void *)v->mem;
	uint64_t h[4] = {1, 2, 3, 4};
	for (uint64_t i = 0; i < VMM_MEM_SIZE / 8; i += 4)
		for (int k = 0; k < 4; k++)
			h[k] = (h[k] ^ w[i + k]) * 0x100000001b3ull + (h[k] >> 29);
	return vmm_mix(h[0] ^ vmm_mix(h[1] ^ vmm_mix(h[2] ^ vmm_mix(h[3]))));
}

static void
vmm_sleep_ns(long ns)
{
	struct timespec ts = {ns / 1000000000L, ns % 1000000000L};
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* vmm_park: the writer stays here while a pause is requested.  Returns 1
 * when it must exit. */
static int
vmm_park(struct vmm *v)
{
	int quit;
	pthread_mutex_lock(&v->mtx);
	while (atomic_load(&v->pause_req) && !v->quit) {
		v->parked = 1;
		pthread_cond_broadcast(&v->parked_cv);
		pthread_cond_wait(&v->go_cv, &v->mtx);
	}
	quit = v->quit;
	/* Gone counts as parked: a pause waiting for it must return. */
	v->parked = quit;
	if (quit)
		pthread_cond_broadcast(&v->parked_cv);
	pthread_mutex_unlock(&v->mtx);
	return quit;
}

static void *
vmm_writer(void *arg)
{
	struct vmm *v = arg;
	uint64_t rng = vmm_mix((uint64_t)getpid() ^ (uintptr_t)v) | 1;

	for (;;) {
		if (atomic_load_explicit(&v->pause_req, memory_order_acquire) && vmm_park(v))
			return NULL;
		for (int i = 0; i < VMM_BURST; i++) {
			if (atomic_load_explicit(&v->pause_req, memory_order_acquire))
				break;
			rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
			uint64_t pg = rng % v->npages;
			uint64_t s = atomic_load_explicit(&v->seq, memory_order_relaxed) + 1;
			uint64_t *p = (uint64_t *)(void *)(v->mem + pg * VMM_PAGE);
			/* libtern reads pages while we write: atomic stores, so
			 * neither side sees a torn word. */
			__atomic_store_n(&p[0], s, __ATOMIC_RELAXED);
			__atomic_store_n(&p[1], vmm_stamp(pg, s), __ATOMIC_RELAXED);
			int r = pg >= v->first_page[1];
			uint64_t lp = pg - v->first_page[r];
			atomic_fetch_or_explicit(&v->dirty[v->dword[r] + lp / 64],
			                         1ull << (lp % 64), memory_order_release);
			atomic_store_explicit(&v->seq, s, memory_order_release);
		}
		vmm_sleep_ns(VMM_NAP_NS);
	}
}

/* Waits for the writer to be parked, unless a resume overrode the pause
 * meanwhile (then the last call wins: the guest runs).  Under v->mtx. */
static void
vmm_wait_parked(struct vmm *v)
{
	while (!v->parked && atomic_load(&v->pause_req) && !v->quit)
		pthread_cond_wait(&v->parked_cv, &v->mtx);
}

static int
vmm_pause(void *guest)
{
	struct vmm *v = guest;
	pthread_mutex_lock(&v->mtx);
	atomic_store(&v->pause_req, 1);
	vmm_wait_parked(v);
	pthread_mutex_unlock(&v->mtx);
	return 0;
}

/* The destination's memory is complete at the handoff, which is where
 * libtern resumes the guest: checked here, before the writer touches it,
 * against the checksum the source took while paused.  Under v->mtx. */
static int
vmm_check_memory(struct vmm *v)
{
	v->checked = 1;
	for (uint64_t pg = 0; pg < v->npages; pg++) {
		const uint64_t *p = (const uint64_t *)(const void *)(v->mem + pg * VMM_PAGE);
		if (p[0] == 0 && p[1] == 0)
			v->pages_hole++;
		else if (p[1] == vmm_stamp(pg, p[0]) && p[0] <= v->loaded_seq)
			v->pages_written++;
		else if (v->pages_bad++ == 0)
			fprintf(stderr,
			        "embed_vmm[%s]: page %" PRIu64 " holds seq %" PRIu64
			        " stamp %016" PRIx64 " (want %016" PRIx64 ", seq <= %" PRIu64 ")\n",
			        v->role, pg, p[0], p[1], vmm_stamp(pg, p[0]), v->loaded_seq);
	}
	v->got_sum = vmm_checksum(v);
	if (v->pages_bad == 0 && v->got_sum == v->expect_sum)
		return 0;
	fprintf(stderr,
	        "embed_vmm[%s]: memory differs from the source's at the handoff: "
	        "checksum %016" PRIx64 ", state blob says %016" PRIx64 "; %" PRIu64
	        " pages with a bad stamp; not resuming\n",
	        v->role, v->got_sum, v->expect_sum, v->pages_bad);
	return -EIO;
}

static int
vmm_resume(void *guest)
{
	struct vmm *v = guest;
	int rc = 0;
	pthread_mutex_lock(&v->mtx);
	if (v->loaded && !v->checked) {
		vmm_wait_parked(v);
		rc = vmm_check_memory(v);
	}
	if (rc == 0) {
		atomic_store(&v->pause_req, 0);
		pthread_cond_broadcast(&v->go_cv);
	}
	pthread_mutex_unlock(&v->mtx);
	return rc;
}

static int
vmm_regions(void *guest, struct tern_mem_region *out, uint32_t cap, uint32_t *count)
{
	struct vmm *v = guest;
	for (uint32_t r = 0; r < 2 && r < cap; r++) {
		uint64_t off = v->first_page[r] * VMM_PAGE;
		out[r] = (struct tern_mem_region){
		    .gpa = r == 0 ? 0 : VMM_HIGH_GPA,
		    .size = (v->first_page[r + 1] - v->first_page[r]) * VMM_PAGE,
		    .host = v->mem + off,
		    .fd = v->memfd,
		    .fd_offset = off};
	}
	*count = 2;
	return 0;
}

static int
vmm_dirty_start(void *guest, uint32_t mode, uint32_t ring_entries)
{
	struct vmm *v = guest;
	(void)ring_entries; /* ring mode is not offered */
	if (mode != TERN_DIRTY_BITMAP) {
		fprintf(stderr, "embed_vmm[%s]: dirty_start: mode %u not offered\n", v->role, mode);
		return -EOPNOTSUPP;
	}
	/* Writes before this are in the pages libtern's first pass reads. */
	for (uint64_t i = 0; i < v->nwords; i++)
		atomic_store_explicit(&v->dirty[i], 0, memory_order_relaxed);
	atomic_store(&v->tracking, 1);
	return 0;
}

static int
vmm_dirty_harvest(void *guest, uint32_t region, uint64_t first, uint64_t count, uint64_t *bitmap,
                  uint64_t *pages)
{
	struct vmm *v = guest;
	uint64_t n = 0;
	uint64_t rpages = region < 2 ? v->first_page[region + 1] - v->first_page[region] : 0;

	if (!atomic_load(&v->tracking) || region >= 2 || first % 64 != 0 || count > rpages ||
	    first > rpages - count) {
		fprintf(stderr,
		        "embed_vmm[%s]: dirty_harvest(region %u, pages %" PRIu64 "+%" PRIu64
		        ") refused (tracking %d, %" PRIu64 " pages)\n",
		        v->role, region, first, count, atomic_load(&v->tracking), rpages);
		return -EINVAL;
	}
	for (uint64_t i = 0; i * 64 < count; i++) {
		_Atomic uint64_t *w = &v->dirty[v->dword[region] + first / 64 + i];
		uint64_t left = count - i * 64, bits;
		/* Collect-and-clear: a bit set after the exchange is the next
		 * harvest's.  A short last word clears only its own pages. */
		if (left >= 64) {
			bits = atomic_exchange_explicit(w, 0, memory_order_acquire);
		} else {
			uint64_t mask = (1ull << left) - 1;
			bits = atomic_fetch_and_explicit(w, ~mask, memory_order_acquire) & mask;
		}
		bitmap[i] |= bits;
		n += (uint64_t)__builtin_popcountll(bits);
	}
	*pages += n;
	return 0;
}

static int
vmm_dirty_stop(void *guest)
{
	struct vmm *v = guest;
	atomic_store(&v->tracking, 0);
	return 0;
}

/* Device state as a real VMM's may be: megabytes (a GPU, a NIC's queues),
 * more than one control frame carries, an odd size so the parts do not
 * divide it.  Its bytes follow the writer's sequence number, so the
 * destination can tell a whole, ordered copy from anything else. */
#define VMM_DEV_BYTES ((3u << 20) + 4099u)

static uint8_t
vmm_dev_byte(uint64_t seq, uint64_t i)
{
	return (uint8_t)(seq * 31 + i * 7 + (i >> 12));
}

/* What state_save will write, for libtern's downtime estimate. */
static uint64_t
vmm_state_size(void *guest)
{
	(void)guest;
	return sizeof(struct vmm_blob) + VMM_DEV_BYTES;
}

static int
vmm_state_save(void *guest, void *buf, uint64_t cap, uint64_t *len)
{
	struct vmm *v = guest;

	pthread_mutex_lock(&v->mtx);
	int parked = v->parked;
	pthread_mutex_unlock(&v->mtx);
	/* The checksum means something only if memory holds still. */
	if (!parked) {
		fprintf(stderr, "embed_vmm[%s]: state_save with the guest running\n", v->role);
		return -EBUSY;
	}
	struct vmm_blob b = {.magic = VMM_MAGIC,
	                     .version = VMM_VERSION,
	                     .npages = v->npages,
	                     .seq = atomic_load(&v->seq),
	                     .checksum = vmm_checksum(v)};
	if (cap < sizeof(b) + VMM_DEV_BYTES)
		return -ENOSPC; /* libtern asks again with more room */
	memcpy(buf, &b, sizeof(b));
	for (uint64_t i = 0; i < VMM_DEV_BYTES; i++)
		((uint8_t *)buf)[sizeof(b) + i] = vmm_dev_byte(b.seq, i);
	*len = sizeof(b) + VMM_DEV_BYTES;
	return 0;
}

static int
vmm_state_load(void *guest, const void *buf, uint64_t len)
{
	struct vmm *v = guest;
	struct vmm_blob b = {0};

	if (len == sizeof(b) + VMM_DEV_BYTES)
		memcpy(&b, buf, sizeof(b));
	uint64_t bad = 0;
	for (uint64_t i = 0; len == sizeof(b) + VMM_DEV_BYTES && i < VMM_DEV_BYTES; i++)
		bad += ((const uint8_t *)buf)[sizeof(b) + i] != vmm_dev_byte(b.seq, i);
	if (len != sizeof(b) + VMM_DEV_BYTES || b.magic != VMM_MAGIC || b.version != VMM_VERSION ||
	    b.npages != v->npages || bad != 0) {
		fprintf(stderr,
		        "embed_vmm[%s]: state blob of %" PRIu64 " bytes (magic %08x "
		        "version %u, %" PRIu64 " pages, %" PRIu64 " device bytes wrong) is not "
		        "this VMM's\n",
		        v->role, len, b.magic, b.version, b.npages, bad);
		return -EINVAL;
	}
	pthread_mutex_lock(&v->mtx);
	atomic_store(&v->seq, b.seq);
	v->loaded_seq = b.seq;
	v->expect_sum = b.checksum;
	v->loaded = 1;
	v->checked = 0;
	pthread_mutex_unlock(&v->mtx);
	return 0;
}

static const struct tern_guest_ops vmm_ops = {
    .size = sizeof(struct tern_guest_ops),
    .name = "embed-vmm",
    .regions = vmm_regions,
    .dirty_modes = TERN_DIRTY_BITMAP,
    .dirty_start = vmm_dirty_start,
    .dirty_harvest = vmm_dirty_harvest,
    .dirty_stop = vmm_dirty_stop,
    .pause = vmm_pause,
    .resume = vmm_resume,
    .state_save = vmm_state_save,
    .state_size = vmm_state_size,
    .state_load = vmm_state_load,
};

/* The source's memory starts full, one page in eight left a hole, so that
 * every page has to arrive for the checksum to match. */
static void
vmm_fill(struct vmm *v)
{
	for (uint64_t pg = 0; pg < v->npages; pg++) {
		uint64_t *p = (uint64_t *)(void *)(v->mem + pg * VMM_PAGE);
		if (pg % 8 == 7)
			continue;
		p[1] = vmm_stamp(pg, 0);
		for (uint64_t i = 2; i < VMM_PAGE / 8; i++)
			p[i] = vmm_mix(pg << 9 | i);
	}
}

static void
vmm_destroy(struct vmm *v)
{
	if (v->writer_started) {
		pthread_mutex_lock(&v->mtx);
		v->quit = 1;
		atomic_store(&v->pause_req, 1);
		pthread_cond_broadcast(&v->go_cv);
		pthread_mutex_unlock(&v->mtx);
		pthread_join(v->writer, NULL);
		v->writer_started = 0;
	}
	pthread_cond_destroy(&v->go_cv);
	pthread_cond_destroy(&v->parked_cv);
	pthread_mutex_destroy(&v->mtx);
	if (v->mem != NULL && v->mem != MAP_FAILED)
		munmap(v->mem, VMM_MEM_SIZE);
	if (v->memfd >= 0)
		close(v->memfd);
	free((void *)v->dirty);
}

/* vmm_create: a guest whose writer runs (source) or is parked (the
 * destination's empty guest, which libtern resumes at the handoff). */
static int
vmm_create(struct vmm *v, const char *role, int paused)
{
	int rc;

	memset(v, 0, sizeof(*v));
	v->role = role;
	v->memfd = -1;
	v->npages = VMM_MEM_SIZE / VMM_PAGE;
	v->first_page[1] = VMM_LOW_PAGES;
	v->first_page[2] = v->npages;
	v->dword[1] = (VMM_LOW_PAGES + 63) / 64;
	v->nwords = v->dword[1] + (v->npages - VMM_LOW_PAGES + 63) / 64;
	atomic_init(&v->pause_req, paused);
	pthread_mutex_init(&v->mtx, NULL);
	pthread_cond_init(&v->parked_cv, NULL);
	pthread_cond_init(&v->go_cv, NULL);
	if ((v->dirty = calloc(v->nwords, sizeof(*v->dirty))) == NULL) {
		fprintf(stderr, "embed_vmm[%s]: out of memory\n", role);
		goto fail;
	}
	if ((v->memfd = memfd_create("embed-vmm", MFD_CLOEXEC)) < 0 ||
	    ftruncate(v->memfd, (off_t)VMM_MEM_SIZE) != 0 ||
	    (v->mem = mmap(NULL, VMM_MEM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, v->memfd, 0)) ==
	        MAP_FAILED) {
		fprintf(stderr, "embed_vmm[%s]: guest memory (memfd of %llu MiB): %s\n", role,
		        VMM_MEM_SIZE >> 20, strerror(errno));
		goto fail;
	}
	if (!paused)
		vmm_fill(v);
	if ((rc = pthread_create(&v->writer, NULL, vmm_writer, v)) != 0) {
		fprintf(stderr, "embed_vmm[%s]: writer thread: %s\n", role, strerror(rc));
		goto fail;
	}
	v->writer_started = 1;
	return 0;
fail:
	vmm_destroy(v);
	return -1;
}

static void
vmm_log(const char *line, void *arg)
{
	fprintf(stderr, "embed_vmm[%s]: tern: %s\n", (const char *)arg, line);
}

/* The destination: an empty paused guest of the same shape, handed to
 * tern_migrate_receive; then the checks libtern cannot make for us. */
static int
vmm_destination(int ready_fd)
{
	struct tern_recv_opts o;
	struct tern_stats st;
	struct vmm v;
	char err[512] = "";
	uint64_t seq = 0;
	int rc;

	if (vmm_create(&v, "destination", 1) != 0) {
		close(ready_fd);
		return 1;
	}
	struct tern_guest_provider p = {.ops = &vmm_ops, .guest = &v};
	tern_recv_opts_init(&o);
	o.listen = "127.0.0.1:0";
	o.provider = &p;
	o.ready_fd = ready_fd;
	o.accept_timeout_ms = 60000; /* a source that never comes is an error */
	o.exit_after_handoff = 1;
	o.log = vmm_log;
	o.log_arg = (void *)"destination";
	rc = tern_migrate_receive(&o, &st, err, sizeof(err));
	close(ready_fd);
	/* libtern calls no slot any more: v is ours alone but for the writer. */
	if (rc != 0) {
		fprintf(stderr, "embed_vmm[destination]: receive failed: %s (%s)\n", err,
		        tern_err_name(rc));
	} else if (!v.checked) {
		fprintf(stderr, "embed_vmm[destination]: the migration completed but the guest "
		                "was never resumed after a state load\n");
		rc = -1;
	} else {
		/* The guest runs on: the writer carries on from the loaded seq
		 * (within 10 s: a liveness bound, not a timing one). */
		for (int i = 0;
		     (seq = atomic_load(&v.seq)) < v.loaded_seq + VMM_ADVANCE && i < 1000; i++)
			vmm_sleep_ns(10000000);
		if (seq < v.loaded_seq + VMM_ADVANCE) {
			fprintf(stderr,
			        "embed_vmm[destination]: the writer did not run after the "
			        "handoff (seq %" PRIu64 ", loaded %" PRIu64 ")\n",
			        seq, v.loaded_seq);
			rc = -1;
		}
	}
	vmm_destroy(&v);
	if (rc != 0)
		return 1;
	printf("embed_vmm[destination]: memory equal (checksum %016" PRIx64 "; %" PRIu64
	       " pages written, %" PRIu64 " holes), writer resumed at seq %" PRIu64
	       " and ran to %" PRIu64 "\n",
	       v.got_sum, v.pages_written, v.pages_hole, v.loaded_seq, seq);
	return 0;
}

/* Reads "PORT\n" from fd (one write(2) of a few bytes: atomic on a pipe);
 * 0 on EOF (the destination died), timeout or garbage. */
static int
vmm_read_port(int fd, int timeout_ms)
{
	struct pollfd pfd = {.fd = fd, .events = POLLIN};
	char buf[32];
	ssize_t n;

	if (poll(&pfd, 1, timeout_ms) != 1)
		return 0;
	while ((n = read(fd, buf, sizeof(buf) - 1)) < 0 && errno == EINTR)
		;
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	int port = atoi(buf);
	return port > 0 && port < 65536 && strchr(buf, '\n') != NULL ? port : 0;
}

/* Reaps the destination within timeout_ms, killing it after that: its exit
 * status, or -1 if it was killed or did not exit normally. */
static int
vmm_reap(pid_t pid, int timeout_ms)
{
	int status = 0;
	pid_t r;

	for (int ms = 0; (r = waitpid(pid, &status, WNOHANG)) == 0 && ms < timeout_ms; ms += 20)
		vmm_sleep_ns(20000000);
	if (r == 0) {
		fprintf(stderr,
		        "embed_vmm: the destination (pid %d) did not exit within %d ms: "
		        "killed\n",
		        (int)pid, timeout_ms);
		kill(pid, SIGKILL);
		(void)waitpid(pid, &status, 0);
		return -1;
	}
	if (r < 0) {
		fprintf(stderr, "embed_vmm: waitpid: %s\n", strerror(errno));
		return -1;
	}
	if (WIFEXITED(status))
		return WEXITSTATUS(status);
	fprintf(stderr, "embed_vmm: the destination died of signal %d\n", WTERMSIG(status));
	return -1;
}

static int
vmm_source(void)
{
	struct tern_send_opts o;
	struct tern_stats st;
	struct vmm v;
	char to[64], err[512] = "", arg[16];
	int fds[2], port_fd, port, rc, drc;
	pid_t pid;

	/* The destination is this program again, with the write end of a pipe
	 * for libtern's "PORT\n"; forked before this process has threads. */
	if (pipe(fds) != 0 || fcntl(fds[0], F_SETFD, FD_CLOEXEC) != 0 || (pid = fork()) < 0) {
		fprintf(stderr, "embed_vmm: starting the destination: %s\n", strerror(errno));
		return 1;
	}
	if (pid == 0) {
		snprintf(arg, sizeof(arg), "%d", fds[1]);
		execl("/proc/self/exe", "embed_vmm", "--dest", arg, (char *)NULL);
		fprintf(stderr, "embed_vmm: exec /proc/self/exe: %s\n", strerror(errno));
		_exit(127);
	}
	close(fds[1]); /* the child's now: EOF on fds[0] if it dies first */
	port_fd = fds[0];
	if (vmm_create(&v, "source", 0) != 0) {
		close(port_fd);
		(void)vmm_reap(pid, 0);
		return 1;
	}
	port = vmm_read_port(port_fd, 30000);
	close(port_fd);
	if (port == 0) {
		fprintf(stderr, "embed_vmm: the destination announced no port within 30 s\n");
		vmm_destroy(&v);
		(void)vmm_reap(pid, 0);
		return 1;
	}
	vmm_sleep_ns(VMM_WARMUP_MS * 1000000L);

	struct tern_guest_provider p = {.ops = &vmm_ops, .guest = &v};
	snprintf(to, sizeof(to), "127.0.0.1:%d", port);
	tern_send_opts_init(&o);
	o.to = to;
	o.provider = &p;
	o.verify = 1;
	o.timeout_ms = 120000; /* never hang a test: fail, guest running */
	rc = tern_migrate_send(&o, &st, err, sizeof(err));
	int paused = atomic_load(&v.pause_req);
	uint64_t seq = atomic_load(&v.seq);
	vmm_destroy(&v);
	if (rc != 0) {
		fprintf(stderr, "embed_vmm[source]: send failed: %s (%s); source guest %s\n", err,
		        tern_err_name(rc), paused ? "PAUSED" : "running");
	} else if (!paused) {
		fprintf(stderr, "embed_vmm[source]: the migration completed with the source guest "
		                "running\n");
		rc = -1;
	}
	drc = vmm_reap(pid, rc == 0 ? 30000 : 60000);
	if (drc != 0)
		fprintf(stderr, "embed_vmm: the destination failed (exit %d)\n", drc);
	if (rc != 0 || drc != 0)
		return 1;
	if (st.state_bytes != sizeof(struct vmm_blob) + VMM_DEV_BYTES) {
		fprintf(stderr,
		        "embed_vmm: libtern reports %" PRIu64 " bytes of state, this VMM "
		        "saved %zu\n",
		        st.state_bytes, sizeof(struct vmm_blob) + VMM_DEV_BYTES);
		return 1;
	}
	if (st.state_bytes_expected != vmm_state_size(NULL)) {
		fprintf(stderr,
		        "embed_vmm: the switchover estimate counted %" PRIu64 " bytes of state, "
		        "this VMM's state_size says %" PRIu64 "\n",
		        st.state_bytes_expected, vmm_state_size(NULL));
		return 1;
	}
	printf("embed_vmm: migrated %llu MiB (libtern %s): %" PRIu64 " bytes on the wire, %" PRIu64
	       " pages sent, %" PRIu64 " zero, downtime %" PRIu64 " ms, %" PRIu64
	       " iterations, total %" PRIu64 " ms, verified %d, writer seq %" PRIu64
	       ", device state %" PRIu64 " bytes saved in %" PRIu64 " ms\n",
	       VMM_MEM_SIZE >> 20, tern_version(), st.bytes_sent, st.pages_sent, st.pages_zero,
	       st.downtime_ms, st.iterations, st.total_ms, st.verified, seq, st.state_bytes,
	       st.state_save_ms);
	return 0;
}

int
main(int argc, char **argv)
{
	if (argc == 1)
		return vmm_source();
	if (argc == 3 && strcmp(argv[1], "--dest") == 0) {
		char *end;
		long fd = strtol(argv[2], &end, 10);
		if (*end == '\0' && fd >= 0 && fd < 65536 && fcntl((int)fd, F_GETFD) >= 0)
			return vmm_destination((int)fd);
	}
	fprintf(stderr, "usage: embed_vmm            migrate to a second instance of itself\n"
	                "       embed_vmm --dest FD  (that instance: \"PORT\\n\" goes to FD)\n");
	return 2;
}
