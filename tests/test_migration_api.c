/*
 * The migration handle (tern.h), both sides in one process: start returns at
 * once, progress and done come by callback, statistics are readable while
 * it runs, cancel (from a callback, at an event) ends it with the source
 * running, a bad start calls nothing back, close waits and frees.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tern/tern.h"

/* Dirties fast enough (the projected backlog alone is ~12 MB) that a 1 ms
 * limit can never be met. */
#define GUEST "simvm:mem=128M,vcpus=2,fill=random,workload=memtouch:ws=32M,rate=400M,pattern=random"

struct side {
	atomic_int progress;
	atomic_int done;
	atomic_int result;
	atomic_int cancel_at_iterate;
	atomic_int relax_at_iterate; /* raise the downtime limit instead */
};

static void
on_progress(struct tern_migration *m, const struct tern_progress *p)
{
	struct side *s = tern_migration_data(m);
	atomic_fetch_add(&s->progress, 1);
	if (p->state == NULL || strcmp(p->state, "iterate") != 0)
		return;
	if (atomic_load(&s->cancel_at_iterate))
		tern_migration_cancel(m);
	if (atomic_exchange(&s->relax_at_iterate, 0)) {
		cr_assert_eq(tern_migration_set_downtime_limit(m, 60000), 0);
		cr_assert_eq(tern_migration_set_max_bandwidth(m, 0), 0);
	}
}

static void
on_done(struct tern_migration *m, int result, const char *err)
{
	struct side *s = tern_migration_data(m);
	cr_assert_not_null(err);
	atomic_store(&s->result, result);
	atomic_fetch_add(&s->done, 1);
}

static const struct tern_migration_cb cbs = {.progress = on_progress, .done = on_done};

/* Starts a destination handle on a free port; returns "127.0.0.1:PORT". */
static struct tern_migration *
start_destination(struct side *d, char *to, size_t tolen)
{
	int fds[2];
	cr_assert_eq(pipe(fds), 0);
	struct tern_recv_opts ro;
	tern_recv_opts_init(&ro);
	ro.listen = "127.0.0.1:0";
	ro.ready_fd = fds[1];
	ro.exit_after_handoff = 1;
	ro.accept_timeout_ms = 60000;
	struct tern_migration *m = NULL;
	cr_assert_eq(tern_migration_receive(&m, &ro, &cbs, d), 0);
	struct pollfd pf = {fds[0], POLLIN, 0};
	cr_assert_eq(poll(&pf, 1, 60000), 1, "the destination never listened");
	char line[32] = "";
	cr_assert_gt(read(fds[0], line, sizeof(line) - 1), 0);
	close(fds[0]);
	close(fds[1]);
	snprintf(to, tolen, "127.0.0.1:%d", atoi(line));
	return m;
}

/* Starts a source handle sending GUEST to `to` with a downtime limit. */
static struct tern_migration *
start_source(struct side *src, const char *to, uint32_t limit_ms, int verify)
{
	struct tern_send_opts so;
	tern_send_opts_init(&so);
	so.to = to;
	so.guest = GUEST;
	so.downtime_limit_ms = limit_ms;
	so.verify = verify;
	so.timeout_ms = 600000;
	struct tern_migration *m = NULL;
	cr_assert_eq(tern_migration_send(&m, &so, &cbs, src), 0);
	return m;
}

/* A destination handle and a source handle sending GUEST to it. */
struct pair {
	struct side src, dst;
	char to[64];
	struct tern_migration *d, *m;
};

/* pair_start starts both sides (with the sides' flags as the test set them). */
static void
pair_start(struct pair *p, uint32_t limit_ms, int verify)
{
	p->d = start_destination(&p->dst, p->to, sizeof(p->to));
	p->m = start_source(&p->src, p->to, limit_ms, verify);
}

Test(migration_api, both_sides_by_handle, .timeout = 300)
{
	struct pair p = {0};
	pair_start(&p, 0, 1);
	struct tern_stats st;
	/* Readable at any time; "active" until the end. */
	cr_assert_eq(tern_migration_stats(p.m, &st), 0);
	cr_assert(strcmp(st.outcome, "active") == 0 || strcmp(st.outcome, "completed") == 0, "%s",
	          st.outcome);
	char err[512] = "";
	int rc = tern_migration_wait(p.m, -1, err, sizeof(err));
	cr_assert_eq(rc, 0, "send: %s", err);
	cr_assert_eq(atomic_load(&p.src.done), 1, "done must come exactly once");
	cr_assert_geq(atomic_load(&p.src.progress), 1);
	cr_assert_eq(tern_migration_stats(p.m, &st), 0);
	cr_assert_str_eq(st.outcome, "completed");
	cr_assert_eq(st.verified, 1);
	cr_assert_eq(tern_migration_close(p.m), 0);
	cr_assert_eq(tern_migration_close(p.d), 0);
	cr_assert_eq(atomic_load(&p.dst.done), 1);
	cr_assert_eq(atomic_load(&p.dst.result), 0);
}

Test(migration_api, cancel_from_a_callback, .timeout = 300)
{
	struct pair p = {0};
	atomic_store(&p.src.cancel_at_iterate, 1);
	/* A 1 ms limit never converges: only the cancel ends it. */
	pair_start(&p, 1, 0);
	char err[512] = "";
	cr_assert_eq(tern_migration_wait(p.m, -1, err, sizeof(err)), TERN_ECANCELED, "%s", err);
	cr_assert_not_null(strstr(err, "cancelled"), "%s", err);
	struct tern_stats st;
	cr_assert_eq(tern_migration_stats(p.m, &st), 0);
	cr_assert_str_eq(st.outcome, "aborted");
	cr_assert_eq(st.workload_ok, 1, "the source guest does not run after the cancel");
	tern_migration_cancel(p.m); /* idempotent, also after the end */
	cr_assert_eq(tern_migration_close(p.m), TERN_ECANCELED);
	/* The destination was told and gave up its copy. */
	cr_assert_neq(tern_migration_close(p.d), 0);
	cr_assert_eq(atomic_load(&p.dst.done), 1);
}

Test(migration_api, a_bad_start_calls_nothing_back)
{
	struct side s = {0};
	struct tern_send_opts so;
	tern_send_opts_init(&so);
	so.guest = GUEST; /* no destination */
	struct tern_migration *m = (struct tern_migration *)&s;
	cr_assert_eq(tern_migration_send(&m, &so, &cbs, &s), TERN_EINVAL);
	cr_assert_null(m);
	usleep(100000);
	cr_assert_eq(atomic_load(&s.done), 0);
	cr_assert_eq(tern_migration_close(NULL), 0);
}

Test(migration_api, downtime_limit_changed_while_running, .timeout = 300)
{
	struct pair p = {0};
	atomic_store(&p.src.relax_at_iterate, 1);
	/* A 1 ms limit would never converge... */
	pair_start(&p, 1, 0);
	char err[512] = "";
	/* ...until the callback raises the limit: then it completes. */
	cr_assert_eq(tern_migration_wait(p.m, -1, err, sizeof(err)), 0, "%s", err);
	struct tern_stats st;
	cr_assert_eq(tern_migration_stats(p.m, &st), 0);
	cr_assert_str_eq(st.outcome, "completed");
	cr_assert_eq(st.downtime_limit_ms, 60000, "the new limit was not in force");
	cr_assert_eq(tern_migration_close(p.m), 0);
	/* A destination has no such parameters. */
	cr_assert_eq(tern_migration_set_downtime_limit(p.d, 5), TERN_ESTATE);
	cr_assert_eq(tern_migration_close(p.d), 0);
}

Test(migration_api, over_sockets_the_vmm_connected, .timeout = 300)
{
	/* Two connections over socket pairs the "VMM" made: nothing listens,
	 * nothing connects; libtern owns and closes all four ends. */
	int a[2], b[2];
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, a), 0);
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, b), 0);
	int src_fds[2] = {a[0], b[0]}, dst_fds[2] = {a[1], b[1]};
	struct side src = {0}, dst = {0};
	struct tern_recv_opts ro;
	tern_recv_opts_init(&ro);
	ro.fds = dst_fds;
	ro.nfds = 2;
	ro.exit_after_handoff = 1;
	struct tern_migration *d = NULL;
	cr_assert_eq(tern_migration_receive(&d, &ro, &cbs, &dst), 0);
	struct tern_send_opts so;
	tern_send_opts_init(&so);
	so.fds = src_fds;
	so.nfds = 2;
	so.guest = GUEST;
	so.verify = 1;
	so.timeout_ms = 120000;
	struct tern_migration *m = NULL;
	cr_assert_eq(tern_migration_send(&m, &so, &cbs, &src), 0);
	char err[512] = "";
	cr_assert_eq(tern_migration_wait(m, -1, err, sizeof(err)), 0, "%s", err);
	struct tern_stats st;
	cr_assert_eq(tern_migration_stats(m, &st), 0);
	cr_assert_eq(st.verified, 1);
	cr_assert_eq(st.connections, 2);
	cr_assert_eq(tern_migration_close(m), 0);
	cr_assert_eq(tern_migration_close(d), 0);
	for (int i = 0; i < 2; i++) {
		errno = 0;
		cr_assert(fcntl(src_fds[i], F_GETFD) == -1 && errno == EBADF,
		          "source socket %d left open", i);
		errno = 0;
		cr_assert(fcntl(dst_fds[i], F_GETFD) == -1 && errno == EBADF,
		          "destination socket %d left open", i);
	}
}
