/*
 * `tern vm`: a long-lived process hosting one guest, driven through a QMP
 * control socket (docs/control.md).  vm.c runs the process (loop, guest,
 * migrations, commands); vm_params.c holds the migration parameters table
 * (migrate-set-parameters, query-migrate-parameters, migrate's own
 * arguments); vm_info.c builds query-migrate's answer.
 */
#ifndef TERN_TOOLS_VM_H
#define TERN_TOOLS_VM_H

#include <jansson.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "kvm/guest.h"
#include "messages/msg.h"
#include "tern/tern.h"
#include "tools/qmp.h"

/* The parameters a migration starts with; downtime-limit and max-bandwidth
 * also change a running one. */
struct vm_params {
	uint32_t downtime_limit_ms;
	uint64_t max_bandwidth; /* bytes/s, 0: none */
	uint32_t connections;
	uint32_t connections_min;
	uint32_t throttle_initial, throttle_increment, throttle_max;
	int auto_converge; /* enum tern_converge_mode */
	int verify;
	int dirty_log; /* 0 bitmap, 1 ring */
	uint32_t ring_size;
	int ring_only;
	int zero_pages; /* enum tern_zero_mode */
	int switchover_loose;
	uint64_t timeout_ms;
	uint32_t stall_window_ms;
	uint64_t chunk_size;
	uint32_t recover_timeout_ms; /* postcopy: a lost link waited out (both sides) */
};

/* One migration, outgoing or incoming, and what remains of it once ended
 * (query-migrate reports the last one). */
/* Where an incoming migration stands (vm_mig.receiving), from the
 * receiver's notes. */
enum { VM_RECV_LISTENING, VM_RECV_ACTIVE, VM_RECV_PC_PAUSED };

struct vm_mig {
	struct tern_migration *h; /* NULL once ended */
	bool outgoing;
	bool cancel_requested;
	char status[16]; /* QMP MigrationStatus */
	uint64_t start_ns;
	uint64_t setup_ms;  /* start to the first pass (0: not yet) */
	uint32_t pass;      /* last MIGRATION_PASS sent */
	bool guest_stopped; /* STOP sent for the switchover, no RESUME yet */
	/* Counted by the progress callback (libtern's thread), sent by the
	 * loop: */
	atomic_uint_fast64_t first_pass_ns; /* the first sample past setup */
	atomic_uint stops, resumes;         /* entries into / out of a switchover */
	bool cb_in_device;                  /* the callback's own (one thread) */
	uint32_t stops_sent, resumes_sent;
	/* Postcopy: entries into postcopy-paused (a lost link), counted where
	 * none is missed, each announced even if the link came back since. */
	atomic_uint pc_pauses;
	bool cb_in_pc_paused;
	uint32_t pc_pauses_sent;
	char stall[160]; /* last MIGRATION_STALL reason sent */
	char addr[256];  /* HOST:PORT */
	struct tern_send_opts send;
	struct tern_recv_opts recv;
	/* Destination: libtern writes the port it listens on into ready_wfd;
	 * query-migrate reads it (socket-address) from ready_rfd. */
	int ready_rfd, ready_wfd;
	int port;             /* 0: not known yet */
	atomic_int done;      /* set by the done callback (release), read by the loop */
	atomic_int receiving; /* destination: VM_RECV_* (0: listening) */
	int result;
	char err[512];
	struct tern_stats final;
	bool ended;
	uint64_t total_bytes; /* guest memory */
};

struct vm {
	uv_loop_t loop;
	struct qmp_server *qmp;
	uv_async_t wake; /* migration callbacks -> the loop */
	uv_signal_t sigterm, sigint;
	const char *spec;
	struct tern_guest_config cfg;
	struct tern_guest_provider guest; /* .guest NULL: this process holds none */
	const char *status;               /* QMP RunState */
	int prealloc;
	/* TLS for every migration of this process (tern send/receive's). */
	const char *tls_creds, *tls_psk_file, *tls_hostname;
	int insecure;
	int quitting;
	struct vm_params params;
	struct vm_mig mig;
};

/* vm_main runs `tern vm` with argv[0] = "vm"; returns the exit status. */
int vm_main(int argc, char **argv);

/* ---- vm_mig.c ---- */

static inline void
vm_set_status(struct vm *vm, const char *status)
{
	vm->status = status; /* a QMP RunState name, static */
}

void vm_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* vm_mig_status records a new QMP MigrationStatus and sends MIGRATION. */
void vm_mig_status(struct vm *vm, const char *status);
/* vm_guest_create builds the guest from the spec in the role given;
 * vm_guest_destroy frees it (none held: nothing). */
int vm_guest_create(struct vm *vm, int role, char *err, size_t errlen);
void vm_guest_destroy(struct vm *vm);
/* vm_mig_reset starts a fresh record (status "none"). */
void vm_mig_reset(struct vm *vm, bool outgoing, const char *addr);
/* vm_parse_uri takes args' "tcp:HOST:PORT" uri into addr ("HOST:PORT"). */
int vm_parse_uri(json_t *args, char *addr, size_t len, struct qmp_error *err);
/* vm_start_outgoing / vm_start_incoming start a migration of this
 * process's guest / into a fresh guest of its spec (0, or a negative code
 * with err set and nothing started). */
int vm_start_outgoing(struct vm *vm, const char *addr, const struct vm_params *p, char *err,
                      size_t errlen);
int vm_start_incoming(struct vm *vm, const char *addr, char *err, size_t errlen);
/* vm_follow_outgoing reads the running source migration's progress and
 * sends what changed (status, passes, stalls, STOP/RESUME). */
void vm_follow_outgoing(struct vm *vm);
/* vm_on_wake: the loop's side of the migration callbacks. */
void vm_on_wake(uv_async_t *a);
/* vm_close_ready closes the destination's port pipe. */
void vm_close_ready(struct vm *vm);

/* ---- vm_params.c, vm_info.c ---- */

/* vm_params_defaults fills p with the defaults `tern send` has. */
void vm_params_defaults(struct vm_params *p);

/* vm_params_set applies every member of args to p.  migrate_args: the
 * members of a `migrate` command (parameters under their names with or
 * without "tern-", "connections" for multifd-channels; uri and QEMU's
 * migrate flags are skipped).  Returns 0, or -1 with err set (p is then
 * unchanged). */
int vm_params_set(struct vm_params *p, json_t *args, bool migrate_args, struct qmp_error *err);

/* vm_params_json: query-migrate-parameters' answer. */
json_t *vm_params_json(const struct vm_params *p);

/* vm_params_to_send fills the send options from p. */
void vm_params_to_send(const struct vm_params *p, struct tern_send_opts *o);

/* vm_mig_port reads the destination's listening port if it has arrived. */
void vm_mig_port(struct vm_mig *m);

/* vm_migrate_info: query-migrate's answer for the current or last migration. */
json_t *vm_migrate_info(struct vm *vm);

#endif /* TERN_TOOLS_VM_H */
