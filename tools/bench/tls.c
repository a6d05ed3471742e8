/*
 * `tls`: what TLS costs.  An idle guest of --size random bytes migrated in
 * plain TCP and under TLS 1.3 (a pre-shared key, so AES-128-GCM; x509
 * negotiates AES-256-GCM, a little dearer), over each --streams count, runs
 * in A B B A order so that a drift of the machine hits both alike.  Per set:
 * every run, medians and spread (bench_mset), and TLS over plain for the
 * transfer rate and each side's CPU time.
 */
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "tools/bench/bench.h"

/* tls_psk_file writes a fresh 256-bit key, mode 600, into path. */
static int
tls_psk_file(const char *path)
{
	unsigned char key[32];
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;

	if (f == NULL || RAND_bytes(key, sizeof(key)) != 1) {
		if (f != NULL)
			fclose(f);
		else if (fd >= 0)
			close(fd);
		return -1;
	}
	fprintf(f, "tern-bench:");
	for (size_t i = 0; i < sizeof(key); i++)
		fprintf(f, "%02x", key[i]);
	fprintf(f, "\n");
	return fclose(f) == 0 ? 0 : -1;
}

/* TLS's median over plain's, for one field of the runs. */
#define TLS_RATIO(o, name, plain, tls, n, field)                                                   \
	do {                                                                                       \
		double a_[BENCH_MAX_RUNS], b_[BENCH_MAX_RUNS];                                     \
		BENCH_FIELD(plain, n, field, a_);                                                  \
		BENCH_FIELD(tls, n, field, b_);                                                    \
		bench_set_num(o, name, bench_median(b_, n) / bench_median(a_, n), 3);              \
	} while (0)

static void
tls_set_json(json_t *sets, const char *guest, int streams, const struct bench_result *plain,
             const struct bench_result *tls, int n)
{
	double rp[BENCH_MAX_RUNS], rt[BENCH_MAX_RUNS];
	json_t *s = bench_push_obj(sets);

	bench_set_int(s, "connections", streams);
	bench_set(s, "plain", bench_mset(guest, "", plain, n));
	bench_set(s, "tls", bench_mset(guest, "--tls-psk-file (both sides)", tls, n));
	bench_rates(plain, n, BENCH_RATE_TRANSFER, rp);
	bench_rates(tls, n, BENCH_RATE_TRANSFER, rt);
	bench_set_num(s, "plain_transfer_bytes_per_s", bench_median(rp, n), 0);
	bench_set_num(s, "tls_transfer_bytes_per_s", bench_median(rt, n), 0);
	bench_set_num(s, "tls_vs_plain_transfer_rate", bench_median(rt, n) / bench_median(rp, n),
	              3);
	TLS_RATIO(s, "tls_vs_plain_total_ms", plain, tls, n, total_ms);
	TLS_RATIO(s, "tls_vs_plain_source_cpu_user", plain, tls, n, src_user_ms);
	TLS_RATIO(s, "tls_vs_plain_source_cpu_sys", plain, tls, n, src_sys_ms);
	TLS_RATIO(s, "tls_vs_plain_destination_cpu_user", plain, tls, n, dst_user_ms);
	TLS_RATIO(s, "tls_vs_plain_destination_cpu_sys", plain, tls, n, dst_sys_ms);
}

int
bench_tls(const struct bench_cfg *x, json_t *report)
{
	char sz[32], guest[128], psk[64], conns[16];
	int n = x->runs, ns = x->nstreams, rc = 0;
	struct bench_result *res = calloc((size_t)(2 * n * ns), sizeof(*res));
	struct bench_opts o;

	if (res == NULL)
		return -1;
	snprintf(psk, sizeof(psk), "/tmp/tern-bench-%d.psk", (int)getpid());
	if (tls_psk_file(psk) != 0) {
		free(res);
		return -1;
	}
	snprintf(guest, sizeof(guest), "simvm:mem=%s,vcpus=1,fill=random",
	         terni_format_size(x->size, sz, sizeof(sz)));
	const char *tx[3] = {"--tls-psk-file", psk, NULL};
	bench_opts_from(&o, x);
	for (int s = 0; s < ns; s++) {
		snprintf(conns, sizeof(conns), "%d", x->streams[s]);
		o.connections = conns;
		/* A B B A: run i is plain first when i is even. */
		for (int i = 0; i < n; i++)
			for (int k = 0; k < 2; k++) {
				int t = (i % 2) ^ k;
				o.send_extra = o.recv_extra = t ? tx : NULL;
				bench_mrun(&o, t ? "tls: TLS 1.3" : "tls: plain", guest, 1,
				           &res[(s * 2 + t) * n + i]);
			}
	}
	unlink(psk);
	bench_set_str(report, "guest", guest);
	bench_set_str(report, "order", "A B B A (plain, TLS, TLS, plain, ...)");
	json_t *sets = bench_set_arr(report, "sets");
	for (int s = 0; s < ns; s++)
		tls_set_json(sets, guest, x->streams[s], &res[s * 2 * n], &res[(s * 2 + 1) * n], n);
	for (int i = 0; i < 2 * n * ns; i++)
		rc |= res[i].ok ? 0 : -1;
	bench_results_free(res, 2 * n * ns);
	free(res);
	return rc;
}
