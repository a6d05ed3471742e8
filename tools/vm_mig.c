/*
 * `tern vm`'s migrations (vm.h): starting one either way, following a
 * running one on the loop (QMP status, MIGRATION_PASS, MIGRATION_STALL,
 * STOP/RESUME around the switchover), and settling the guest at its end.
 * The migration's callbacks run on libtern's thread: they only record and
 * wake the loop.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tools/vm.h"

void
vm_log(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "tern vm: ");
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

/* The QMP MigrationStatus changes: recorded, and a MIGRATION event. */
void
vm_mig_status(struct vm *vm, const char *status)
{
	/* An outgoing migration goes setup, active, device, completed: the
	 * loop may sample past one (a switchover of a few milliseconds), but
	 * every one happened, and a manager waits for each. */
	static const char *const forward[] = {"setup", "active", "device", "completed", NULL};
	int from = -1, to = -1;
	for (int i = 0; forward[i] != NULL; i++) {
		if (strcmp(vm->mig.status, forward[i]) == 0)
			from = i;
		if (strcmp(status, forward[i]) == 0)
			to = i;
	}
	if (vm->mig.outgoing && from >= 0 && to > from + 1)
		vm_mig_status(vm, forward[to - 1]);
	if (strcmp(vm->mig.status, status) == 0)
		return;
	snprintf(vm->mig.status, sizeof(vm->mig.status), "%s", status);
	qmp_server_event(vm->qmp, "MIGRATION", json_pack("{s:s}", "status", status));
}

/* ---- the guest ---- */

int
vm_guest_create(struct vm *vm, int role, char *err, size_t errlen)
{
	int rc = tern_simvm_provider_create(&vm->guest, &vm->cfg, role, err, errlen);
	if (rc == 0)
		vm->mig.total_bytes = vm->cfg.mem_size;
	return rc;
}

void
vm_guest_destroy(struct vm *vm)
{
	if (vm->guest.guest != NULL)
		tern_simvm_provider_destroy(&vm->guest);
}

/* ---- the migration's callbacks (libtern's thread) ---- */

static const char *vm_phase_status(const char *state);

/* Every progress sample passes here, so the transitions are counted where
 * none can be missed (the loop only sees the latest sample): the first
 * pass's time, and each pause for a switchover and each resume after one.
 * Relaxed: the loop reads counters, and the async send orders its wake-up
 * after them. */
static void
vm_cb_progress(struct tern_migration *h, const struct tern_progress *p)
{
	struct vm *vm = tern_migration_data(h);
	struct vm_mig *m = &vm->mig;
	const char *st = vm_phase_status(p->state != NULL ? p->state : "");
	if (st != NULL && strcmp(st, "setup") != 0 &&
	    atomic_load_explicit(&m->first_pass_ns, memory_order_relaxed) == 0)
		atomic_store_explicit(&m->first_pass_ns, tern_now_ns(), memory_order_relaxed);
	bool device = st != NULL && strcmp(st, "device") == 0;
	if (device && !m->cb_in_device)
		atomic_fetch_add_explicit(&m->stops, 1, memory_order_relaxed);
	else if (st != NULL && strcmp(st, "active") == 0 && m->cb_in_device)
		atomic_fetch_add_explicit(&m->resumes, 1, memory_order_relaxed);
	if (st != NULL)
		m->cb_in_device = device;
	bool pc_paused = st != NULL && strcmp(st, "postcopy-paused") == 0;
	if (pc_paused && !m->cb_in_pc_paused)
		atomic_fetch_add_explicit(&m->pc_pauses, 1, memory_order_relaxed);
	m->cb_in_pc_paused = pc_paused;
	uv_async_send(&vm->wake);
}

static void
vm_cb_done(struct tern_migration *h, int result, const char *err)
{
	struct vm *vm = tern_migration_data(h);
	vm->mig.result = result;
	snprintf(vm->mig.err, sizeof(vm->mig.err), "%s", err);
	/* Release: result and err are seen by the loop that sees done. */
	atomic_store_explicit(&vm->mig.done, 1, memory_order_release);
	uv_async_send(&vm->wake);
}

static void
vm_recv_log(const char *line, void *arg)
{
	struct vm *vm = arg;
	vm_log("%s", line);
	/* The receiver's notes say where it stands: the source connected,
	 * postcopy paused on a lost link, the source back. */
	int now = strncmp(line, "receiving migration", 19) == 0  ? VM_RECV_ACTIVE
	          : strncmp(line, "postcopy paused", 15) == 0    ? VM_RECV_PC_PAUSED
	          : strncmp(line, "resuming migration", 18) == 0 ? VM_RECV_ACTIVE
	                                                         : -1;
	if (now == VM_RECV_PC_PAUSED)
		atomic_fetch_add_explicit(&vm->mig.pc_pauses, 1, memory_order_relaxed);
	if (now >= 0) {
		atomic_store_explicit(&vm->mig.receiving, now, memory_order_relaxed);
		uv_async_send(&vm->wake);
	}
}

static const struct tern_migration_cb vm_callbacks = {
    .progress = vm_cb_progress,
    .done = vm_cb_done,
};

/* ---- following a running migration (on the loop) ---- */

/* The QMP status a source phase stands for. */
static const char *
vm_phase_status(const char *state)
{
	static const char *const device[] = {"switchover", "state", "verify", "handoff", NULL};
	for (int i = 0; device[i] != NULL; i++)
		if (strcmp(state, device[i]) == 0)
			return "device";
	if (strcmp(state, "setup") == 0)
		return "setup";
	/* QEMU's names: the link lost (dialing again), reconnected. */
	if (strncmp(state, "postcopy-paused", 15) == 0)
		return "postcopy-paused";
	if (strcmp(state, "postcopy-recover") == 0)
		return "postcopy-recover";
	if (strncmp(state, "postcopy", 8) == 0)
		return "postcopy-active"; /* QEMU's name */
	if (strcmp(state, "completed") == 0 || strncmp(state, "abort", 5) == 0)
		return NULL; /* the end settles it */
	return "active";
}

/* Each postcopy pause is said, also one the link came back from before
 * the loop looked (either side). */
static void
vm_mig_pc_pauses(struct vm *vm)
{
	struct vm_mig *m = &vm->mig;
	uint32_t pc_pauses = atomic_load_explicit(&m->pc_pauses, memory_order_relaxed);
	while (m->pc_pauses_sent < pc_pauses) {
		m->pc_pauses_sent++;
		vm_mig_status(vm, "postcopy-paused");
	}
}

void
vm_follow_outgoing(struct vm *vm)
{
	struct vm_mig *m = &vm->mig;
	struct tern_progress p;
	char state[64] = "";
	if (tern_migration_progress(m->h, &p, state, sizeof(state)) != 0)
		return;
	uint64_t first = atomic_load_explicit(&m->first_pass_ns, memory_order_relaxed);
	if (m->setup_ms == 0 && first != 0)
		m->setup_ms = (first - m->start_ns) / 1000000 + 1;
	/* Active before its first pass is announced, as QEMU orders them. */
	if (first != 0 && !m->cancel_requested && strcmp(m->status, "setup") == 0)
		vm_mig_status(vm, "active");
	/* Pass 1 is the bulk copy (iteration 0), as QEMU counts: one event each. */
	uint32_t passes = first != 0 ? p.iteration + 1 : 0;
	while (m->pass < passes)
		qmp_server_event(vm->qmp, "MIGRATION_PASS",
		                 json_pack("{s:i}", "pass", (int)++m->pass));
	if (strncmp(state, "stalled: ", 9) == 0 && strcmp(m->stall, state + 9) != 0) {
		snprintf(m->stall, sizeof(m->stall), "%s", state + 9);
		qmp_server_event(vm->qmp, "MIGRATION_STALL",
		                 json_pack("{s:s}", "reason", m->stall));
	}
	/* The source guest is paused for the switchover, and runs again if a
	 * strict switchover goes back to iterating: a STOP and a RESUME for
	 * each, however short. */
	uint32_t stops = atomic_load_explicit(&m->stops, memory_order_relaxed);
	uint32_t resumes = atomic_load_explicit(&m->resumes, memory_order_relaxed);
	while (m->stops_sent < stops || m->resumes_sent < resumes) {
		if (!m->guest_stopped && m->stops_sent < stops) {
			m->stops_sent++;
			m->guest_stopped = true;
			vm_set_status(vm, "finish-migrate");
			qmp_server_event(vm->qmp, "STOP", NULL);
		} else if (m->guest_stopped && m->resumes_sent < resumes) {
			m->resumes_sent++;
			m->guest_stopped = false;
			vm_set_status(vm, "running");
			qmp_server_event(vm->qmp, "RESUME", NULL);
		} else {
			break;
		}
	}
	vm_mig_pc_pauses(vm);
	const char *st = m->cancel_requested ? "cancelling" : vm_phase_status(state);
	if (st != NULL)
		vm_mig_status(vm, st);
}

/* The migration has ended: its handle goes, the guest is where the
 * outcome says, and the manager hears it. */
static void
vm_mig_ended(struct vm *vm)
{
	struct vm_mig *m = &vm->mig;
	if (m->outgoing)
		vm_follow_outgoing(vm); /* the last transitions, before the end */
	(void)tern_migration_stats(m->h, &m->final);
	(void)tern_migration_close(m->h);
	m->h = NULL;
	m->ended = true;
	vm_close_ready(vm);
	const char *end = m->result == 0                ? "completed"
	                  : m->result == TERN_ECANCELED ? "cancelled"
	                                                : "failed";
	if (m->outgoing) {
		if (m->result == 0) {
			/* The guest runs on the destination: this copy is gone. */
			vm_guest_destroy(vm);
			vm_set_status(vm, "postmigrate");
			vm_log("migrated to %s in %" PRIu64 " ms, downtime %" PRIu64 " ms", m->addr,
			       m->final.total_ms, m->final.downtime_ms);
		} else if (m->final.handoff_unknown || m->final.source_resume_failed) {
			/* Never both running: the operator decides (cont). */
			vm_set_status(vm, "paused");
			vm_log("migration %s, guest left PAUSED: %s", end, m->err);
		} else {
			vm_set_status(vm, "running");
			if (m->guest_stopped)
				qmp_server_event(vm->qmp, "RESUME", NULL);
			vm_log("migration %s, guest running here: %s", end, m->err);
		}
		m->guest_stopped = false;
		vm_mig_status(vm, end);
		return;
	}
	if (m->result == 0) {
		vm_set_status(vm, "running");
		vm_log("guest arrived from %s and runs",
		       m->final.connections == 1 ? "the source" : "the source");
		vm_mig_status(vm, end);
		qmp_server_event(vm->qmp, "RESUME", NULL);
		return;
	}
	/* Nothing arrived whole: the empty guest goes, the process waits for
	 * the next migrate-incoming. */
	vm_guest_destroy(vm);
	vm_set_status(vm, "inmigrate");
	vm_log("incoming migration %s: %s", end, m->err);
	vm_mig_status(vm, end);
}

void
vm_on_wake(uv_async_t *a)
{
	struct vm *vm = a->data;
	struct vm_mig *m = &vm->mig;
	if (m->h == NULL)
		return;
	/* Acquire: pairs with vm_cb_done's release. */
	if (atomic_load_explicit(&m->done, memory_order_acquire)) {
		vm_mig_ended(vm);
		if (vm->quitting)
			uv_stop(&vm->loop);
		return;
	}
	if (m->outgoing) {
		vm_follow_outgoing(vm);
	} else if (atomic_load_explicit(&m->receiving, memory_order_relaxed)) {
		if (m->setup_ms == 0)
			m->setup_ms = (tern_now_ns() - m->start_ns) / 1000000 + 1;
		vm_mig_pc_pauses(vm);
		vm_mig_status(vm, m->cancel_requested ? "cancelling"
		                  : atomic_load_explicit(&m->receiving, memory_order_relaxed) ==
		                          VM_RECV_PC_PAUSED
		                      ? "postcopy-paused"
		                      : "active");
	}
}

/* ---- destination: the port it listens on ---- */

void
vm_close_ready(struct vm *vm)
{
	struct vm_mig *m = &vm->mig;
	vm_mig_port(m);
	if (m->ready_rfd >= 0)
		close(m->ready_rfd);
	if (m->ready_wfd >= 0)
		close(m->ready_wfd);
	m->ready_rfd = m->ready_wfd = -1;
}

void
vm_mig_port(struct vm_mig *m)
{
	char line[32] = "";
	if (m->port > 0 || m->ready_rfd < 0)
		return;
	/* One short write by libtern ("PORT\n"): whole or not yet there. */
	ssize_t n = read(m->ready_rfd, line, sizeof(line) - 1);
	if (n > 0 && (m->port = atoi(line)) > 0)
		vm_log("listening for the guest on port %d", m->port);
}

/* ---- starting migrations ---- */

void
vm_mig_reset(struct vm *vm, bool outgoing, const char *addr)
{
	struct vm_mig *m = &vm->mig;
	*m = (struct vm_mig){.outgoing = outgoing,
	                     .ready_rfd = -1,
	                     .ready_wfd = -1,
	                     .start_ns = tern_now_ns(),
	                     .total_bytes = vm->cfg.mem_size};
	snprintf(m->addr, sizeof(m->addr), "%s", addr);
	snprintf(m->status, sizeof(m->status), "none");
}

/* "tcp:HOST:PORT" -> "HOST:PORT". */
int
vm_parse_uri(json_t *args, char *addr, size_t len, struct qmp_error *err)
{
	json_t *u = json_object_get(args, "uri");
	if (!json_is_string(u)) {
		qmp_errorf(err, QMP_GENERIC_ERROR, "%s",
		           u == NULL ? "Parameter 'uri' is missing"
		                     : "Invalid parameter type for 'uri', expected: string");
		return -1;
	}
	const char *s = json_string_value(u);
	if (strncmp(s, "tcp:", 4) != 0 || strchr(s + 4, ':') == NULL || strlen(s + 4) >= len) {
		qmp_errorf(err, QMP_GENERIC_ERROR,
		           "URI '%.200s' is not supported: tern migrates over tcp:HOST:PORT", s);
		return -1;
	}
	snprintf(addr, len, "%s", s + 4);
	return 0;
}

int
vm_start_incoming(struct vm *vm, const char *addr, char *err, size_t errlen)
{
	struct vm_mig *m = &vm->mig;
	int rc, pfd[2];
	vm_mig_reset(vm, false, addr);
	if ((rc = vm_guest_create(vm, TERN_GUEST_DESTINATION, err, errlen)) != 0)
		return rc;
	if (pipe2(pfd, O_CLOEXEC | O_NONBLOCK) != 0) {
		rc = -errno;
		snprintf(err, errlen, "pipe: %s", strerror(errno));
		vm_guest_destroy(vm);
		return rc;
	}
	m->ready_rfd = pfd[0];
	m->ready_wfd = pfd[1];
	tern_recv_opts_init(&m->recv);
	m->recv.listen = m->addr;
	m->recv.provider = &vm->guest;
	m->recv.prealloc = vm->prealloc;
	m->recv.tls_creds = vm->tls_creds;
	m->recv.tls_psk_file = vm->tls_psk_file;
	m->recv.insecure = vm->insecure;
	m->recv.ready_fd = m->ready_wfd;
	m->recv.exit_after_handoff = 1;
	m->recv.log = vm_recv_log;
	m->recv.log_arg = vm;
	m->recv.recover_timeout_ms = vm->params.recover_timeout_ms;
	if ((rc = tern_migration_receive(&m->h, &m->recv, &vm_callbacks, vm)) != 0) {
		snprintf(err, errlen, "cannot start the incoming migration: %s", tern_strerror(rc));
		vm_close_ready(vm);
		vm_guest_destroy(vm);
		return rc;
	}
	vm_set_status(vm, "inmigrate");
	vm_mig_status(vm, "setup");
	return 0;
}

int
vm_start_outgoing(struct vm *vm, const char *addr, const struct vm_params *p, char *err,
                  size_t errlen)
{
	struct vm_mig *m = &vm->mig;
	vm_mig_reset(vm, true, addr);
	tern_send_opts_init(&m->send);
	vm_params_to_send(p, &m->send);
	m->send.to = m->addr;
	m->send.tls_creds = vm->tls_creds;
	m->send.tls_psk_file = vm->tls_psk_file;
	m->send.tls_hostname = vm->tls_hostname;
	m->send.provider = &vm->guest;
	int rc = tern_migration_send(&m->h, &m->send, &vm_callbacks, vm);
	if (rc != 0) {
		snprintf(err, errlen, "cannot start the migration: %s", tern_strerror(rc));
		return rc;
	}
	vm_log("migrating to %s over %u connection(s)", addr, p->connections);
	vm_mig_status(vm, "setup");
	return 0;
}
