/*
 * The destination's accept stage (accept.h).
 *
 * One loop on the caller's thread owns the listener, the slots and every
 * decision; a slot's thread only runs the handshake's blocking part (TLS and
 * reading the hello, bounded by the slot's deadline), then says so through a
 * pipe.  The loop answers each hello itself, so what is accepted, refused or
 * held is decided in one place, in order.  To cut a handshake short the loop
 * shuts its socket down (the one thing another thread may do to a link),
 * and it joins every thread it started.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include <arpa/inet.h>

#include <openssl/crypto.h>

#include "actors/accept.h"
#include "net/hello.h"
#include "net/net.h"
#include "net/wire.h"
#include "tern/error.h"

/* After connection 0, the others have this long to arrive. */
#define ACC_CONNS_MS 10000
/* The loop looks at the stop flag at least this often. */
#define ACC_SLICE_MS 200
#define ACC_CUT_OFF "cut off: more handshakes at once than this destination takes"

enum acc_state { ACC_FREE, ACC_RUNNING, ACC_HELD };

struct acc;

struct acc_slot {
	enum acc_state state;
	struct acc *acc;
	struct tern_link link;
	uv_thread_t thread;
	uint64_t started_ns, deadline_ns;
	int evicted;     /* cut off by the loop to make room */
	int can_answer;  /* TLS (if any) is up: a refusal can be said */
	int rc;          /* the thread's result ... */
	atomic_int done; /* ... published by this (release) */
	char peer[64];
	char why[TERN_STR_MAX];
	struct tern_msg_w_hello hello;
};

struct acc {
	const struct tern_recv_opts *opts;
	struct tern_tls *tls;
	struct tern_receiver_args *a;
	int wake[2]; /* a finished handshake writes a byte */
	struct acc_slot slot[TERN_ACCEPT_SLOTS];
	/* The migration, once connection 0 is in. */
	int have_mig;
	char migration[TERN_STR_MAX];
	uint8_t key[TERN_WIRE_KEY_LEN];
	uint32_t have, want, asked, refused, max;
	uint64_t conns_deadline_ns;
	/* Postcopy recovery: only the paused migration's own source (its id,
	 * key and count, kept in a) is taken, until resume_deadline_ns. */
	int resume;
	uint64_t resume_deadline_ns;
};

void
terni_recv_log(const struct tern_recv_opts *opts, const char *fmt, ...)
{
	char line[512];
	va_list ap;

	if (opts->log == NULL)
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	opts->log(line, opts->log_arg);
}

static void
acc_peer_name(int fd, char *buf, size_t len)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char host[INET6_ADDRSTRLEN] = "?";
	unsigned port = 0;

	snprintf(buf, len, "a given socket");
	if (getpeername(fd, (struct sockaddr *)&ss, &sl) != 0)
		return;
	if (ss.ss_family == AF_INET) {
		struct sockaddr_in *in = (struct sockaddr_in *)&ss;
		inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
		port = ntohs(in->sin_port);
	} else if (ss.ss_family == AF_INET6) {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
		inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
		port = ntohs(in6->sin6_port);
	} else {
		return;
	}
	snprintf(buf, len, "%s:%u", host, port);
}

static void
acc_handshake(void *arg)
{
	struct acc_slot *s = arg;
	struct acc *c = s->acc;
	int rc = 0;

	if (c->tls != NULL) {
		struct tern_link l;

		rc = tern_tls_handshake(c->tls, s->link.fd, NULL, s->deadline_ns, &l, s->why,
		                        sizeof(s->why));
		if (rc == 0)
			s->link = l;
	}
	if (rc == 0) {
		s->can_answer = 1;
		rc = tern_wire_read_hello(&s->link, s->deadline_ns, &s->hello, s->why,
		                          sizeof(s->why));
	}
	s->rc = rc;
	atomic_store_explicit(&s->done, 1, memory_order_release);
	char b = 0;
	(void)!write(c->wake[1], &b, 1);
}

/* acc_start runs a handshake on fd in slot s. */
static int
acc_start(struct acc *c, struct acc_slot *s, int fd)
{
	memset(s, 0, sizeof(*s));
	s->acc = c;
	tern_link_plain(&s->link, fd);
	acc_peer_name(fd, s->peer, sizeof(s->peer));
	s->started_ns = tern_now_ns();
	s->deadline_ns = s->started_ns + TERN_HANDSHAKE_MS * 1000000ull;
	atomic_init(&s->done, 0);
	s->state = ACC_RUNNING;
	if (uv_thread_create(&s->thread, acc_handshake, s) != 0) {
		tern_link_close(&s->link);
		s->state = ACC_FREE;
		return TERN_ENOMEM;
	}
	return 0;
}

/* acc_drop ends a slot's connection, saying why when it still can. */
static void
acc_drop(struct acc *c, struct acc_slot *s, int status, const char *why)
{
	if (s->can_answer && status != 0)
		(void)tern_wire_answer_hello(&s->link, status, why, 1000);
	terni_recv_log(c->opts, "refused a connection from %s: %s", s->peer, why);
	tern_link_close(&s->link);
	s->state = ACC_FREE;
}

/* acc_take makes s connection i of the migration. */
static void
acc_take(struct acc *c, struct acc_slot *s, uint32_t i)
{
	int rc = tern_wire_answer_hello(&s->link, 0, "", 1000);

	if (rc != 0) {
		s->can_answer = 0;
		acc_drop(c, s, rc, "the hello could not be answered");
		return;
	}
	if (i >= c->max) {
		/* Over this destination's limit: say so, the source carries on
		 * with fewer if it may (--connections-min). */
		struct tern_msg ab;

		tern_msg_init(&ab, TERN_MSG_W_ABORT);
		ab.u.w_abort.code = TERN_EPEER;
		snprintf(ab.u.w_abort.why, sizeof(ab.u.w_abort.why),
		         "this destination accepts at most %u connections", c->max);
		(void)tern_wire_send(&s->link, &ab, NULL, 0, NULL);
		tern_link_close(&s->link);
		s->state = ACC_FREE;
		c->refused++;
		return;
	}
	(void)tern_net_tune(s->link.fd);
	c->a->conns[i].link = s->link;
	c->have++;
	s->state = ACC_FREE;
}

static void acc_decide(struct acc *c, struct acc_slot *s);

/* acc_first takes connection 0 and the migration it brings. */
static void
acc_first(struct acc *c, struct acc_slot *s)
{
	const struct tern_msg_w_hello *h = &s->hello;
	char why[TERN_STR_MAX];

	if (c->have_mig) {
		snprintf(why, sizeof(why), "migration %.100s is being received here; not another",
		         c->migration);
		acc_drop(c, s, TERN_EPEER, why);
		return;
	}
	if (h->nconns > TERN_MAX_CONNECTIONS) {
		snprintf(why, sizeof(why), "%u connections asked, at most %u", h->nconns,
		         TERN_MAX_CONNECTIONS);
		acc_drop(c, s, TERN_EPROTO, why);
		return;
	}
	if (tern_wire_hello_key(h, c->key) != 0) {
		acc_drop(c, s, TERN_EAUTH,
		         "authentication failed: connection 0 carries no migration key");
		return;
	}
	if (c->resume && (strcmp(h->migration, c->a->migration) != 0 || h->nconns != c->a->asked ||
	                  CRYPTO_memcmp(c->key, c->a->key, sizeof(c->key)) != 0)) {
		snprintf(why, sizeof(why),
		         "postcopy migration %.100s is paused here, waiting for its own source",
		         c->a->migration);
		acc_drop(c, s, TERN_EPEER, why);
		return;
	}
	if (tern_wire_check_binding(&s->link, h, c->key, why, sizeof(why)) != 0) {
		acc_drop(c, s, TERN_EAUTH, why);
		return;
	}
	c->have_mig = 1;
	snprintf(c->migration, sizeof(c->migration), "%s", h->migration);
	c->asked = h->nconns;
	c->want = h->nconns < c->max ? h->nconns : c->max;
	c->conns_deadline_ns = tern_now_ns() + ACC_CONNS_MS * 1000000ull;
	acc_take(c, s, 0);
	/* Data connections that came first were waiting for this. */
	for (int i = 0; i < TERN_ACCEPT_SLOTS; i++)
		if (c->slot[i].state == ACC_HELD)
			acc_decide(c, &c->slot[i]);
}

/* acc_decide answers a hello read in full. */
static void
acc_decide(struct acc *c, struct acc_slot *s)
{
	const struct tern_msg_w_hello *h = &s->hello;
	char why[TERN_STR_MAX];

	/* A source waits for the answer before anything else: bytes already
	 * read behind the hello (TLS reads ahead) would be frames nobody
	 * polled for once the connection moves to its actor. */
	if (tern_link_pending(&s->link)) {
		acc_drop(c, s, TERN_EPROTO, "frames sent before the hello was answered");
		return;
	}
	if (h->conn == 0) {
		acc_first(c, s);
		return;
	}
	if (!c->have_mig) {
		s->state = ACC_HELD; /* until connection 0, or its deadline */
		return;
	}
	if (strcmp(h->migration, c->migration) != 0 || h->nconns != c->asked) {
		snprintf(why, sizeof(why), "connection %u of %u is not of migration %.100s",
		         h->conn, h->nconns, c->migration);
		acc_drop(c, s, TERN_EPEER, why);
	} else if (tern_wire_check_binding(&s->link, h, c->key, why, sizeof(why)) != 0) {
		acc_drop(c, s, TERN_EAUTH, why);
	} else if (h->conn < c->max && c->a->conns[h->conn].link.fd >= 0) {
		snprintf(why, sizeof(why), "connection %u is here already", h->conn);
		acc_drop(c, s, TERN_EPEER, why);
	} else {
		acc_take(c, s, h->conn);
	}
}

/* acc_reap joins the handshakes that ended and decides on them. */
static void
acc_reap(struct acc *c)
{
	char b[64];

	while (read(c->wake[0], b, sizeof(b)) > 0)
		;
	for (int i = 0; i < TERN_ACCEPT_SLOTS; i++) {
		struct acc_slot *s = &c->slot[i];

		if (s->state != ACC_RUNNING ||
		    !atomic_load_explicit(&s->done, memory_order_acquire))
			continue;
		(void)uv_thread_join(&s->thread);
		if (s->rc == 0)
			acc_decide(c, s);
		else if (s->evicted)
			acc_drop(c, s, 0, ACC_CUT_OFF);
		else
			acc_drop(c, s, s->rc, s->why);
	}
}

static struct acc_slot *
acc_find_free(struct acc *c)
{
	for (int i = 0; i < TERN_ACCEPT_SLOTS; i++)
		if (c->slot[i].state == ACC_FREE)
			return &c->slot[i];
	return NULL;
}

/* acc_make_room returns a free slot, or NULL after cutting off the oldest
 * handshake (its slot frees when its thread ends): a flood of idle
 * connections pushes out the oldest, never the one just come. */
static struct acc_slot *
acc_make_room(struct acc *c)
{
	struct acc_slot *oldest = NULL;

	if ((oldest = acc_find_free(c)) != NULL)
		return oldest;
	for (int i = 0; i < TERN_ACCEPT_SLOTS; i++) {
		struct acc_slot *s = &c->slot[i];

		if (!s->evicted && (oldest == NULL || s->started_ns < oldest->started_ns))
			oldest = s;
	}
	if (oldest != NULL && oldest->state == ACC_HELD) {
		acc_drop(c, oldest, 0, ACC_CUT_OFF);
		return oldest;
	}
	if (oldest != NULL) {
		oldest->evicted = 1;
		(void)shutdown(oldest->link.fd, SHUT_RDWR);
	}
	return NULL;
}

/* acc_expire drops held connections whose handshake deadline passed. */
static void
acc_expire(struct acc *c, uint64_t now)
{
	for (int i = 0; i < TERN_ACCEPT_SLOTS; i++) {
		struct acc_slot *s = &c->slot[i];

		if (s->state == ACC_HELD && now >= s->deadline_ns)
			acc_drop(c, s, TERN_EPEER, "its connection 0 never came");
	}
}

/* acc_cutting: a handshake was cut off and its thread has not ended yet. */
static int
acc_cutting(const struct acc *c)
{
	for (int i = 0; i < TERN_ACCEPT_SLOTS; i++)
		if (c->slot[i].state == ACC_RUNNING && c->slot[i].evicted)
			return 1;
	return 0;
}

static int
acc_running(const struct acc *c)
{
	for (int i = 0; i < TERN_ACCEPT_SLOTS; i++)
		if (c->slot[i].state == ACC_RUNNING)
			return 1;
	return 0;
}

/* acc_wait waits for the listener (when listen) or a finished handshake. */
static int
acc_wait(struct acc *c, int lfd, int listen, uint64_t deadline_ns, int *incoming)
{
	struct pollfd p[2] = {{.fd = c->wake[0], .events = POLLIN}, {.fd = lfd, .events = POLLIN}};
	uint64_t now = tern_now_ns();
	int ms = ACC_SLICE_MS;

	if (deadline_ns != 0 && deadline_ns - now < (uint64_t)ms * 1000000ull)
		ms = (int)((deadline_ns - now) / 1000000ull) + 1;
	*incoming = 0;
	int n = poll(p, listen ? 2 : 1, ms);
	if (n < 0 && errno != EINTR)
		return -errno;
	if (n > 0 && listen && (p[1].revents & POLLIN))
		*incoming = 1;
	return 0;
}

static void
acc_finish(struct acc *c)
{
	for (int i = 0; i < TERN_ACCEPT_SLOTS; i++) {
		struct acc_slot *s = &c->slot[i];

		if (s->state == ACC_RUNNING) {
			(void)shutdown(s->link.fd, SHUT_RDWR);
			(void)uv_thread_join(&s->thread);
		}
		if (s->state != ACC_FREE)
			tern_link_close(&s->link);
		s->state = ACC_FREE;
	}
	close(c->wake[0]);
	close(c->wake[1]);
}

static int
acc_loop(struct acc *c, int lfd, uint32_t *next_given, char *err, size_t errlen)
{
	const struct tern_recv_opts *o = c->opts;
	uint64_t first_deadline = c->resume ? c->resume_deadline_ns
	                          : o->accept_timeout_ms
	                              ? tern_now_ns() + o->accept_timeout_ms * 1000000ull
	                              : 0;

	for (;;) {
		if (c->have_mig && c->have + c->refused >= c->asked)
			return 0;
		if (atomic_load(&c->a->recover_cancel)) {
			snprintf(err, errlen, "the receiver is gone");
			return TERN_ECANCELED;
		}
		if (o->stop_flag != NULL && __atomic_load_n(o->stop_flag, __ATOMIC_RELAXED)) {
			snprintf(err, errlen, "stopped while waiting for %s",
			         c->have_mig ? "its connections" : "a migration");
			return TERN_ECANCELED;
		}
		uint64_t now = tern_now_ns();
		uint64_t deadline = c->have_mig ? c->conns_deadline_ns : first_deadline;
		if (deadline != 0 && now >= deadline) {
			if (c->have_mig)
				snprintf(err, errlen, "the source opened %u of %u connections: %s",
				         c->have, c->want, tern_strerror(TERN_ETIMEDOUT));
			else if (c->resume)
				snprintf(err, errlen, "the source did not come back: %s",
				         tern_strerror(TERN_ETIMEDOUT));
			else
				snprintf(err, errlen, "no migration arrived: %s",
				         tern_strerror(TERN_ETIMEDOUT));
			return TERN_ETIMEDOUT;
		}
		if (lfd < 0 && *next_given >= o->nfds && !acc_running(c) && !c->have_mig) {
			snprintf(err, errlen, "no migration arrived: %s",
			         tern_strerror(TERN_ECLOSED));
			return TERN_ECLOSED;
		}
		acc_expire(c, now);
		/* Given sockets start as slots free up. */
		struct acc_slot *free_slot = NULL;
		while (lfd < 0 && *next_given < o->nfds && (free_slot = acc_find_free(c)) != NULL) {
			int rc = acc_start(c, free_slot, o->fds[(*next_given)++]);
			if (rc != 0)
				return rc;
		}
		/* The listener is looked at unless a handshake is being cut off
		 * for a waiting connection (which then waits for that slot). */
		int incoming = 0, listen = lfd >= 0 && !acc_cutting(c);
		int rc = acc_wait(c, lfd, listen, deadline, &incoming);
		if (rc != 0)
			return rc;
		acc_reap(c);
		/* Only a connection that is there makes room: with every slot
		 * busy and nobody knocking, no handshake is cut short. */
		if (incoming && (free_slot = acc_make_room(c)) != NULL) {
			int fd = -1;
			rc = tern_net_accept(lfd, 0, &fd);
			if (rc == 0 && (rc = acc_start(c, free_slot, fd)) != 0)
				return rc;
		}
	}
}

static int
acc_run(const struct tern_recv_opts *opts, int lfd, struct tern_tls *tls,
        struct tern_receiver_args *a, uint32_t *next_given, uint64_t resume_deadline_ns, char *err,
        size_t errlen)
{
	struct acc *c = calloc(1, sizeof(*c));
	int rc;

	if (c == NULL)
		return TERN_ENOMEM;
	c->opts = opts;
	c->tls = tls;
	c->a = a;
	c->max = opts->max_connections ? opts->max_connections : TERN_MAX_CONNECTIONS;
	c->resume = resume_deadline_ns != 0;
	c->resume_deadline_ns = resume_deadline_ns;
	if (pipe2(c->wake, O_CLOEXEC | O_NONBLOCK) != 0) {
		rc = -errno;
		free(c);
		snprintf(err, errlen, "cannot accept: %s", tern_strerror(rc));
		return rc;
	}
	rc = acc_loop(c, lfd, next_given, err, errlen);
	acc_finish(c);
	if (rc == 0 && c->resume && c->want != a->nconns) {
		snprintf(err, errlen, "the source came back with %u connections, not %u", c->want,
		         a->nconns);
		rc = TERN_EPROTO;
	} else if (rc == 0) {
		/* Kept for a postcopy recovery: only this source may come back.
		 * (A resume leaves them: the receiver reads them meanwhile.) */
		if (!c->resume) {
			snprintf(a->migration, sizeof(a->migration), "%s", c->migration);
			memcpy(a->key, c->key, sizeof(a->key));
			a->asked = c->asked;
			a->nconns = c->want;
		}
		terni_recv_log(opts, "%s migration %s over %u connection(s)%s%s",
		               c->resume ? "resuming" : "receiving", c->migration, c->want,
		               tls != NULL ? ", " : ", plain TCP",
		               tls != NULL ? tern_tls_describe(tls) : "");
	}
	OPENSSL_cleanse(c->key, sizeof(c->key));
	free(c);
	return rc;
}

int
tern_accept_migration(const struct tern_recv_opts *opts, int lfd, struct tern_tls *tls,
                      struct tern_receiver_args *a, uint32_t *next_given, char *err, size_t errlen)
{
	return acc_run(opts, lfd, tls, a, next_given, 0, err, errlen);
}

int
tern_accept_resume(const struct tern_recv_opts *opts, int lfd, struct tern_tls *tls,
                   struct tern_receiver_args *a, uint64_t deadline_ns, char *err, size_t errlen)
{
	uint32_t none = opts->nfds;
	return acc_run(opts, lfd, tls, a, &none, deadline_ns ? deadline_ns : 1, err, errlen);
}
