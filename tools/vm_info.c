/*
 * query-migrate's answer in QEMU's layout (qapi/migration.json MigrationInfo),
 * with tern's own figures under "tern".  While a migration runs the live
 * figures come from its last progress sample; once it has ended, from its
 * final statistics.  A figure tern does not know yet is left out rather
 * than reported as zero.
 */
#include <string.h>
#include <sys/socket.h>

#include "net/net.h"
#include "tools/vm.h"

#define VI_PAGE 4096u

/* QEMU's socket-address: where the destination really listens (port 0
 * asked), the host as tern_net_parse_addr reads the listen address (the
 * parser the listener itself used), in numeric form as QEMU reports it.
 * NULL (left out) if it cannot be read back. */
static json_t *
vi_socket_address(const struct vm_mig *m)
{
	struct sockaddr_storage ss;
	socklen_t sslen;
	char host[64], port[16], why[256];
	int rc;

	if (tern_net_parse_addr(m->addr, &ss, &sslen, why, sizeof(why)) != 0)
		return NULL;
	if (ss.ss_family == AF_INET6)
		rc = uv_ip6_name((const struct sockaddr_in6 *)&ss, host, sizeof(host));
	else if (ss.ss_family == AF_INET)
		rc = uv_ip4_name((const struct sockaddr_in *)&ss, host, sizeof(host));
	else
		rc = UV_EAFNOSUPPORT;
	if (rc != 0)
		return NULL;
	snprintf(port, sizeof(port), "%d", m->port);
	return json_pack("[{s:s,s:s,s:s}]", "type", "inet", "host", host, "port", port);
}

static json_t *
vi_conns(const struct tern_stats *st)
{
	json_t *a = json_array();
	for (uint32_t i = 0; i < st->connections && i < TERN_MAX_CONNECTIONS; i++) {
		const struct tern_conn_stats *c = &st->conn[i];
		json_array_append_new(a, json_pack("{s:I,s:I,s:I,s:I,s:b}", "bytes",
		                                   (json_int_t)c->bytes, "payload-bytes",
		                                   (json_int_t)c->payload, "chunks",
		                                   (json_int_t)c->chunks, "active-ms",
		                                   (json_int_t)c->active_ms, "lost", c->lost));
	}
	return a;
}

/* The final figures of an ended migration. */
static void
vi_final(struct vm *vm, json_t *o, json_t *ram, json_t *t)
{
	const struct vm_mig *m = &vm->mig;
	const struct tern_stats *st = &m->final;
	uint64_t downtime_bytes = st->final_pages * VI_PAGE;
	json_object_set_new(o, "total-time", json_integer((json_int_t)st->total_ms));
	if (strcmp(m->status, "completed") == 0)
		json_object_set_new(o, "downtime", json_integer((json_int_t)st->downtime_ms));
	json_object_set_new(o, "expected-downtime",
	                    json_integer((json_int_t)st->expected_downtime_ms));
	json_object_set_new(ram, "transferred", json_integer((json_int_t)st->bytes_sent));
	json_object_set_new(ram, "remaining", json_integer(0));
	json_object_set_new(ram, "duplicate",
	                    json_integer((json_int_t)(st->pages_zero + st->pages_skipped)));
	json_object_set_new(ram, "normal", json_integer((json_int_t)st->pages_sent));
	json_object_set_new(ram, "normal-bytes",
	                    json_integer((json_int_t)(st->pages_sent * VI_PAGE)));
	json_object_set_new(ram, "dirty-pages-rate", json_integer((json_int_t)st->dirty_rate_pps));
	json_object_set_new(ram, "mbps", json_real((double)st->bandwidth_bps * 8 / 1e6));
	json_object_set_new(ram, "dirty-sync-count", json_integer((json_int_t)st->iterations));
	json_object_set_new(ram, "precopy-bytes",
	                    json_integer((json_int_t)(st->payload_bytes > downtime_bytes
	                                                  ? st->payload_bytes - downtime_bytes
	                                                  : 0)));
	json_object_set_new(ram, "downtime-bytes", json_integer((json_int_t)downtime_bytes));
	json_object_set_new(ram, "pages-per-second",
	                    json_integer((json_int_t)(st->bandwidth_bps / VI_PAGE)));
	if (st->throttle_max_pct > 0)
		json_object_set_new(o, "cpu-throttle-percentage", json_integer(st->throttle_pct));
	if (m->result != 0)
		json_object_set_new(o, "error-desc", json_string(m->err));

	json_object_set_new(t, "outcome", json_string(st->outcome));
	json_object_set_new(t, "achieved-downtime", json_integer((json_int_t)st->downtime_ms));
	json_object_set_new(t, "expected-downtime",
	                    json_integer((json_int_t)st->expected_downtime_ms));
	json_object_set_new(t, "downtime-limit", json_integer(st->downtime_limit_ms));
	json_object_set_new(t, "iterations", json_integer((json_int_t)st->iterations));
	json_object_set_new(t, "payload-bytes", json_integer((json_int_t)st->payload_bytes));
	json_object_set_new(t, "pages-zero", json_integer((json_int_t)st->pages_zero));
	json_object_set_new(t, "pages-skipped", json_integer((json_int_t)st->pages_skipped));
	json_object_set_new(t, "final-pages", json_integer((json_int_t)st->final_pages));
	json_object_set_new(t, "throttle-max", json_integer(st->throttle_max_pct));
	json_object_set_new(t, "switchover-retries", json_integer(st->switchover_retries));
	json_object_set_new(t, "stalled", json_boolean(st->stalled));
	json_object_set_new(t, "stall-reason", json_string(st->stall_reason));
	json_object_set_new(t, "verified", json_boolean(st->verified));
	json_object_set_new(t, "handoff-unknown", json_boolean(st->handoff_unknown));
	json_object_set_new(t, "source-resume-failed", json_boolean(st->source_resume_failed));
	json_object_set_new(t, "guest-build-ms", json_integer((json_int_t)st->guest_build_ms));
	json_object_set_new(t, "populate-ms", json_integer((json_int_t)st->populate_ms));
	json_object_set_new(t, "connections-lost", json_integer(st->connections_lost));
	json_object_set_new(t, "connections", vi_conns(st));
	json_object_set_new(t, "postcopy", json_boolean(st->postcopy));
	if (st->postcopy) {
		/* QEMU's postcopy figures: requests, and the vCPUs' wait for them. */
		json_object_set_new(ram, "postcopy-requests",
		                    json_integer((json_int_t)st->postcopy_requests));
		json_object_set_new(t, "postcopy-reason", json_string(st->postcopy_reason));
		json_object_set_new(t, "postcopy-pages",
		                    json_integer((json_int_t)st->postcopy_pages));
		json_object_set_new(t, "postcopy-urgent-pages",
		                    json_integer((json_int_t)st->postcopy_urgent_pages));
		json_object_set_new(t, "postcopy-fault-p50-us",
		                    json_integer((json_int_t)st->postcopy_fault_p50_us));
		json_object_set_new(t, "postcopy-fault-p99-us",
		                    json_integer((json_int_t)st->postcopy_fault_p99_us));
		json_object_set_new(t, "postcopy-pauses",
		                    json_integer((json_int_t)st->postcopy_pauses));
		json_object_set_new(t, "postcopy-recover-ms",
		                    json_integer((json_int_t)st->postcopy_recover_ms));
	}
}

/* The live figures of a running migration. */
static void
vi_live(struct vm *vm, json_t *o, json_t *ram, json_t *t)
{
	struct vm_mig *m = &vm->mig;
	struct tern_stats st;
	struct tern_progress p;
	char state[64] = "";
	(void)tern_migration_stats(m->h, &st);
	(void)tern_migration_progress(m->h, &p, state, sizeof(state));
	json_object_set_new(o, "total-time", json_integer((json_int_t)st.total_ms));
	if (!m->outgoing) {
		int r = atomic_load_explicit(&m->receiving, memory_order_relaxed);
		json_object_set_new(t, "phase",
		                    json_string(r == VM_RECV_PC_PAUSED ? "postcopy-paused"
		                                : r                    ? "receiving"
		                                                       : "listening"));
		return;
	}
	uint64_t bw = p.bandwidth_bps;
	if (bw > 0)
		json_object_set_new(o, "expected-downtime",
		                    json_integer((json_int_t)(p.remaining_bytes * 1000 / bw)));
	json_object_set_new(ram, "transferred", json_integer((json_int_t)p.transferred_bytes));
	json_object_set_new(ram, "remaining", json_integer((json_int_t)p.remaining_bytes));
	json_object_set_new(ram, "dirty-pages-rate", json_integer((json_int_t)p.dirty_rate_pps));
	json_object_set_new(ram, "mbps", json_real((double)bw * 8 / 1e6));
	json_object_set_new(ram, "dirty-sync-count", json_integer(p.iteration));
	json_object_set_new(ram, "pages-per-second", json_integer((json_int_t)(bw / VI_PAGE)));
	json_object_set_new(t, "phase", json_string(state));
	json_object_set_new(t, "iteration", json_integer(p.iteration));
	json_object_set_new(t, "eta-ms", json_integer((json_int_t)p.eta_ms));
	json_object_set_new(t, "downtime-limit", json_integer(vm->params.downtime_limit_ms));
	if (strncmp(state, "stalled: ", 9) == 0)
		json_object_set_new(t, "stall-reason", json_string(state + 9));
}

json_t *
vm_migrate_info(struct vm *vm)
{
	struct vm_mig *m = &vm->mig;
	json_t *o = json_pack("{s:s}", "status", m->status);
	if (strcmp(m->status, "none") == 0)
		return o;
	json_t *ram = json_object(), *t = json_object();
	if (m->setup_ms > 0)
		json_object_set_new(o, "setup-time", json_integer((json_int_t)m->setup_ms));
	if (m->h != NULL)
		vi_live(vm, o, ram, t);
	else
		vi_final(vm, o, ram, t);
	if (json_object_size(ram) > 0) {
		json_object_set_new(ram, "total", json_integer((json_int_t)m->total_bytes));
		json_object_set_new(o, "ram", ram);
	} else {
		json_decref(ram);
	}
	json_object_set_new(t, "direction", json_string(m->outgoing ? "outgoing" : "incoming"));
	json_object_set_new(o, "tern", t);
	if (!m->outgoing && m->port > 0) {
		json_t *sa = vi_socket_address(m);
		if (sa != NULL)
			json_object_set_new(o, "socket-address", sa);
	}
	return o;
}
