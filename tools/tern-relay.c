/*
 * tern-relay: a TCP relay that adds latency, for tests and benchmarks on
 * loopback (this machine has no netem).  Every byte is held for --delay in
 * each direction, so the round-trip time grows by twice the delay; a bounded
 * buffer per direction keeps TCP's backpressure end to end.
 *
 *   tern-relay --listen 127.0.0.1:0 --to 127.0.0.1:4444 --delay 500us [--ready-fd 3]
 *
 * Runs until killed.  Each accepted connection gets two forwarding threads.
 */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "messages/msg.h"
#include "net/net.h"

#define RELAY_SLOT 65536
#define RELAY_SLOTS 256 /* 16 MiB in flight per direction */

struct relay_slot {
	uint64_t due_ns;
	size_t len;
	char data[RELAY_SLOT];
};

struct relay_dir {
	int from, to;
	uint64_t delay_ns;
	struct relay_slot *slots;
	size_t head, tail; /* head: next to write out; tail: next to fill */
	int eof;
	pthread_mutex_t mtx;
	pthread_cond_t cond;
};

static void
relay_sleep_until(uint64_t t)
{
	struct timespec ts = {(time_t)(t / 1000000000ull), (long)(t % 1000000000ull)};
	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
		;
}

/* Reader: stamps each read with its due time and queues it. */
static void *
relay_reader(void *arg)
{
	struct relay_dir *d = arg;
	for (;;) {
		pthread_mutex_lock(&d->mtx);
		while (d->tail - d->head == RELAY_SLOTS)
			pthread_cond_wait(&d->cond, &d->mtx);
		struct relay_slot *s = &d->slots[d->tail % RELAY_SLOTS];
		pthread_mutex_unlock(&d->mtx);
		ssize_t n = recv(d->from, s->data, RELAY_SLOT, 0);
		if (n < 0 && errno == EINTR)
			continue;
		pthread_mutex_lock(&d->mtx);
		if (n <= 0) {
			d->eof = 1;
		} else {
			s->len = (size_t)n;
			s->due_ns = tern_now_ns() + d->delay_ns;
			d->tail++;
		}
		pthread_cond_broadcast(&d->cond);
		pthread_mutex_unlock(&d->mtx);
		if (n <= 0)
			return NULL;
	}
}

/* Writer: sends each queued read once it is due. */
static void *
relay_writer(void *arg)
{
	struct relay_dir *d = arg;
	for (;;) {
		pthread_mutex_lock(&d->mtx);
		while (d->head == d->tail && !d->eof)
			pthread_cond_wait(&d->cond, &d->mtx);
		if (d->head == d->tail) {
			pthread_mutex_unlock(&d->mtx);
			shutdown(d->to, SHUT_WR);
			return NULL;
		}
		struct relay_slot *s = &d->slots[d->head % RELAY_SLOTS];
		pthread_mutex_unlock(&d->mtx);
		relay_sleep_until(s->due_ns);
		size_t off = 0;
		while (off < s->len) {
			ssize_t n = send(d->to, s->data + off, s->len - off, MSG_NOSIGNAL);
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0) {
				shutdown(d->from, SHUT_RD);
				return NULL;
			}
			off += (size_t)n;
		}
		pthread_mutex_lock(&d->mtx);
		d->head++;
		pthread_cond_broadcast(&d->cond);
		pthread_mutex_unlock(&d->mtx);
	}
}

static int
relay_dir_start(struct relay_dir *d, int from, int to, uint64_t delay_ns, pthread_t th[2])
{
	d->from = from;
	d->to = to;
	d->delay_ns = delay_ns;
	d->slots = malloc(sizeof(struct relay_slot) * RELAY_SLOTS);
	if (d->slots == NULL)
		return -1;
	pthread_mutex_init(&d->mtx, NULL);
	pthread_cond_init(&d->cond, NULL);
	if (pthread_create(&th[0], NULL, relay_reader, d) != 0)
		return -1;
	if (pthread_create(&th[1], NULL, relay_writer, d) != 0)
		return -1;
	return 0;
}

static int
parse_delay_ns(const char *s, uint64_t *out)
{
	char *end;
	double v = strtod(s, &end);
	if (end == s || v < 0)
		return -1;
	if (strcmp(end, "us") == 0)
		*out = (uint64_t)(v * 1e3);
	else if (strcmp(end, "ms") == 0 || *end == '\0')
		*out = (uint64_t)(v * 1e6);
	else
		return -1;
	return 0;
}

int
main(int argc, char **argv)
{
	const char *listen_at = NULL, *to = NULL;
	uint64_t delay_ns = 0;
	int ready_fd = -1, opt;
	static const struct option lo[] = {
	    {"listen", required_argument, NULL, 'l'}, {"to", required_argument, NULL, 't'},
	    {"delay", required_argument, NULL, 'd'},  {"ready-fd", required_argument, NULL, 'r'},
	    {"help", no_argument, NULL, 'h'},         {NULL, 0, NULL, 0}};
	while ((opt = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		switch (opt) {
		case 'l':
			listen_at = optarg;
			break;
		case 't':
			to = optarg;
			break;
		case 'd':
			if (parse_delay_ns(optarg, &delay_ns) != 0) {
				fprintf(stderr, "tern-relay: bad --delay '%s' (e.g. 500us, 1ms)\n",
				        optarg);
				return 2;
			}
			break;
		case 'r':
			ready_fd = atoi(optarg);
			break;
		case 'h':
			printf("usage: tern-relay --listen HOST:PORT --to HOST:PORT --delay DUR "
			       "[--ready-fd FD]\n"
			       "Forwards TCP connections, holding every byte DUR (500us, 1ms) in "
			       "each\n"
			       "direction: the round trip grows by 2*DUR.  Runs until killed.\n");
			return 0;
		default:
			return 2;
		}
	}
	if (listen_at == NULL || to == NULL) {
		fprintf(stderr, "tern-relay: needs --listen and --to (see --help)\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	char err[256];
	int lfd;
	if (tern_net_listen(listen_at, &lfd, err, sizeof(err)) != 0) {
		fprintf(stderr, "tern-relay: %s\n", err);
		return 1;
	}
	if (ready_fd >= 0) {
		dprintf(ready_fd, "%d\n", tern_net_local_port(lfd));
		close(ready_fd);
	}
	for (;;) {
		int a, b;
		if (tern_net_accept(lfd, -1, &a) != 0)
			continue;
		if (tern_net_connect(to, 5000, &b, err, sizeof(err)) != 0) {
			fprintf(stderr, "tern-relay: %s\n", err);
			close(a);
			continue;
		}
		(void)tern_net_tune(a);
		(void)tern_net_tune(b);
		/* Per connection; freed at exit (a relay lives for one test). */
		struct relay_dir *d = calloc(2, sizeof(*d));
		pthread_t th[4];
		if (d == NULL || relay_dir_start(&d[0], a, b, delay_ns, th) != 0 ||
		    relay_dir_start(&d[1], b, a, delay_ns, th + 2) != 0) {
			fprintf(stderr, "tern-relay: out of resources\n");
			return 1;
		}
		for (int i = 0; i < 4; i++)
			pthread_detach(th[i]);
	}
}
