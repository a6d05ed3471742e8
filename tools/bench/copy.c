/*
 * The plain-C data mover, the baseline of `link`: the simplest correct
 * program that moves a memfd's pages to another process over P TCP streams
 * (threads, each a contiguous slice, plain send() from the mapping) into a
 * forked receiver that fallocates and populates a fresh memfd first, then
 * recv(MSG_WAITALL)s each stream straight into its slice.  A per-page
 * signature checks the data.
 *
 * Ready (a destination prepared before the migration, as `tern receive
 * --prealloc`): the receiver prepares its memory before it accepts, off the
 * clock, the same way tern does (populate, then a first write by the kernel
 * through the mapping: here a populated 4 KiB page still costs ~10 us at the
 * kernel's first write into it, see kvm/guest_ready.h).  Unready: populate, then receive, both on
 * the clock.  Each side's CPU time over the clocked part is reported.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

#include "tools/bench/bench.h"

struct copy_report {
	double populate_s, transfer_s; /* measured by the receiver */
	double user_s, sys_s;          /* the receiver's CPU over the clocked part */
	uint64_t sig;
	int err; /* 0 or -errno */
};

struct copy_conn {
	int fd;
	uint8_t *base; /* the slice */
	uint64_t len;
	int err;
	double user_s, sys_s; /* this sender thread's CPU time */
};

static double
copy_tv(struct timeval tv)
{
	return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

/* A cheap check that every page arrived where it belongs. */
uint64_t
bench_copy_sig(const uint8_t *p, uint64_t len)
{
	uint64_t s = 0;
	for (uint64_t off = 0; off < len; off += BENCH_PAGE)
		s ^= *(const uint64_t *)(p + off) * (off / BENCH_PAGE + 1);
	return s;
}

static void
bench_copy_recv_thread(void *arg)
{
	struct copy_conn *c = arg;
	uint64_t off = 0;
	while (off < c->len) {
		ssize_t n = recv(c->fd, c->base + off, c->len - off, MSG_WAITALL);
		if (n <= 0) {
			c->err = n < 0 ? -errno : -EPIPE;
			break;
		}
		off += (uint64_t)n;
	}
}

static void
bench_copy_send_thread(void *arg)
{
	struct copy_conn *c = arg;
	uint64_t off = 0;
	while (off < c->len) {
		size_t want = c->len - off < (4u << 20) ? c->len - off : (4u << 20);
		ssize_t n = send(c->fd, c->base + off, want, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			c->err = n < 0 ? -errno : -EPIPE;
			break;
		}
		off += (uint64_t)n;
	}
	struct rusage ru;
	if (getrusage(RUSAGE_THREAD, &ru) == 0) {
		c->user_s = copy_tv(ru.ru_utime);
		c->sys_s = copy_tv(ru.ru_stime);
	}
}

/* The slice of stream i of p: page-aligned, contiguous. */
static void
bench_copy_slice(uint64_t size, int p, int i, uint64_t *off, uint64_t *len)
{
	uint64_t pages = size / BENCH_PAGE;
	uint64_t a = pages * (uint64_t)i / (uint64_t)p, b = pages * (uint64_t)(i + 1) / (uint64_t)p;
	*off = a * BENCH_PAGE;
	*len = (b - a) * BENCH_PAGE;
}

/* The receiver (a forked child): a fresh memfd, fallocated and populated
 * first, then every stream received straight into its slice. */
static void
bench_copy_receiver(int lfd, uint64_t size, int p, int ready, int wfd)
{
	struct copy_report rep = {0};
	struct copy_conn c[8];
	uv_thread_t th[8];
	int nth = 0, fd = memfd_create("tern-bench-dst", MFD_CLOEXEC);
	uint8_t *dst = MAP_FAILED;
	struct rusage ru0, ru1;
	double t0 = bench_now();

	if (!ready)
		getrusage(RUSAGE_SELF, &ru0);
	if (fd < 0 || ftruncate(fd, (off_t)size) != 0 || fallocate(fd, 0, 0, (off_t)size) != 0) {
		rep.err = -errno;
		goto out;
	}
	dst = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (dst == MAP_FAILED || madvise(dst, size, MADV_POPULATE_WRITE) != 0) {
		rep.err = -errno;
		goto out;
	}
	/* Ready: a first write by the kernel through the mapping (the memfd's
	 * bytes copied onto themselves), as tern_guest_prepare does. */
	for (uint64_t off = 0; ready && off < size; off += 2u << 20) {
		uint64_t n = size - off < (2u << 20) ? size - off : (2u << 20);
		if (pread(fd, dst + off, n, (off_t)off) != (ssize_t)n) {
			rep.err = -EIO;
			goto out;
		}
	}
	if (ready)
		getrusage(RUSAGE_SELF, &ru0);
	double t1 = bench_now();
	rep.populate_s = t1 - t0;
	for (int i = 0; i < p; i++) {
		uint32_t idx;
		int cfd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		if (cfd < 0 || recv(cfd, &idx, sizeof(idx), MSG_WAITALL) != sizeof(idx) ||
		    idx >= (uint32_t)p) {
			rep.err = cfd < 0 ? -errno : -EPROTO;
			if (cfd >= 0)
				close(cfd);
			break;
		}
		uint64_t off, len;
		bench_copy_slice(size, p, (int)idx, &off, &len);
		c[nth] = (struct copy_conn){.fd = cfd, .base = dst + off, .len = len};
		if (uv_thread_create(&th[nth], bench_copy_recv_thread, &c[nth]) != 0) {
			rep.err = -EAGAIN;
			close(cfd);
			break;
		}
		nth++;
	}
	for (int i = 0; i < nth; i++) {
		uv_thread_join(&th[i]);
		close(c[i].fd);
		if (c[i].err != 0 && rep.err == 0)
			rep.err = c[i].err;
	}
	rep.transfer_s = bench_now() - t1;
	getrusage(RUSAGE_SELF, &ru1);
	rep.user_s = copy_tv(ru1.ru_utime) - copy_tv(ru0.ru_utime);
	rep.sys_s = copy_tv(ru1.ru_stime) - copy_tv(ru0.ru_stime);
	if (rep.err == 0)
		rep.sig = bench_copy_sig(dst, size);
out:
	if (write(wfd, &rep, sizeof(rep)) != sizeof(rep))
		_exit(1);
	_exit(0);
}

/* The kernel reads the source once before the clock (into a small scratch
 * memfd, over and over): its first read of a user-filled page costs a fault
 * here (kvm/guest_ready.h), and the copy's send() should run at its best.
 * tern's source pays this in the migration, or copies through a buffer. */
static void
copy_kernel_read(const uint8_t *src, uint64_t size)
{
	int fd = memfd_create("tern-bench-scratch", MFD_CLOEXEC);
	if (fd < 0)
		return;
	for (uint64_t off = 0; off < size; off += 2u << 20) {
		size_t n = size - off < (2u << 20) ? size - off : (2u << 20);
		if (pwrite(fd, src + off, n, 0) != (ssize_t)n)
			break;
	}
	close(fd);
}

void
bench_copy_once(const uint8_t *src, uint64_t size, uint64_t sig, int p, int ready,
                struct bench_copy *cr)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t alen = sizeof(a);
	struct copy_conn c[8];
	uv_thread_t th[8];
	int nth = 0, pfd[2] = {-1, -1}, lfd = -1, rc = 0;
	struct copy_report rep = {.err = -EPIPE};
	pid_t pid = -1;

	memset(cr, 0, sizeof(*cr));
	cr->warm_ms = bench_warm(2 * size);
	copy_kernel_read(src, size);
	double t0 = bench_now();
	lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(lfd, 64) != 0 ||
	    getsockname(lfd, (struct sockaddr *)&a, &alen) != 0 || pipe2(pfd, O_CLOEXEC) != 0) {
		rc = -errno;
		goto out;
	}
	pid = fork();
	if (pid < 0) {
		rc = -errno;
		goto out;
	}
	if (pid == 0) {
		close(pfd[0]);
		bench_copy_receiver(lfd, size, p, ready, pfd[1]);
	}
	bench_track(pid);
	close(pfd[1]);
	pfd[1] = -1;
	for (int i = 0; i < p; i++) {
		uint64_t off, len;
		uint32_t idx = (uint32_t)i;
		int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
		    send(fd, &idx, sizeof(idx), 0) != sizeof(idx)) {
			rc = -errno;
			if (fd >= 0)
				close(fd);
			break;
		}
		bench_copy_slice(size, p, i, &off, &len);
		c[nth] = (struct copy_conn){.fd = fd, .base = (uint8_t *)src + off, .len = len};
		if (uv_thread_create(&th[nth], bench_copy_send_thread, &c[nth]) != 0) {
			rc = -EAGAIN;
			close(fd);
			break;
		}
		nth++;
	}
	for (int i = 0; i < nth; i++) {
		uv_thread_join(&th[i]);
		if (c[i].err != 0 && rc == 0)
			rc = c[i].err;
		cr->src_user_s += c[i].user_s;
		cr->src_sys_s += c[i].sys_s;
	}
	/* A sender that failed closes its socket: the receiver then fails too. */
	for (int i = 0; i < nth; i++)
		close(c[i].fd);
	if (read(pfd[0], &rep, sizeof(rep)) != sizeof(rep))
		rep.err = -EPIPE;
	cr->total_s = bench_now() - t0;
out:
	if (pid > 0) {
		int st;
		if (rc != 0)
			kill(pid, SIGKILL);
		waitpid(pid, &st, 0);
		bench_untrack(pid);
	}
	if (lfd >= 0)
		close(lfd);
	if (pfd[0] >= 0)
		close(pfd[0]);
	if (pfd[1] >= 0)
		close(pfd[1]);
	if (rc == 0)
		rc = rep.err;
	if (rc != 0) {
		snprintf(cr->why, sizeof(cr->why), "%s", strerror(-rc));
		return;
	}
	if (rep.sig != sig) {
		snprintf(cr->why, sizeof(cr->why), "received data differs from the source");
		return;
	}
	cr->ok = 1;
	cr->populate_s = rep.populate_s;
	cr->transfer_s = rep.transfer_s;
	cr->dst_user_s = rep.user_s;
	cr->dst_sys_s = rep.sys_s;
}

/* A memfd of size random bytes (xorshift), populated, for the copy baseline. */
uint8_t *
bench_random_memfd(uint64_t size)
{
	int fd = memfd_create("tern-bench-src", MFD_CLOEXEC);
	uint8_t *p = MAP_FAILED;
	if (fd >= 0 && ftruncate(fd, (off_t)size) == 0 && fallocate(fd, 0, 0, (off_t)size) == 0)
		p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (fd >= 0)
		close(fd); /* the mapping keeps the memory */
	if (p == MAP_FAILED)
		return NULL;
	madvise(p, size, MADV_POPULATE_WRITE);
	uint64_t x = 0x9e3779b97f4a7c15ull, *q = (uint64_t *)p;
	for (uint64_t i = 0; i < size / 8; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		q[i] = x;
	}
	return p;
}
