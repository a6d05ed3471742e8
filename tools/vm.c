/*
 * `tern vm` (vm.h): one process, one guest, a QMP control socket.  The
 * guest is a simvm the process owns through the public provider ops, handed
 * to one migration after another exactly as a VMM would.  Everything runs on
 * one libuv loop.  This file: the commands, quit and signals, start-up;
 * vm_mig.c: the migrations.
 *
 * Run states (QEMU's names): running, paused, inmigrate (waiting for or
 * receiving a guest), finish-migrate (outgoing switchover), postmigrate
 * (the guest has left; the process is empty and can take migrate-incoming).
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tools/vm.h"

/* ---- commands ---- */

static bool
vm_busy(const struct vm *vm)
{
	return vm->mig.h != NULL;
}

static json_t *
cmd_query_status(void *ctx, json_t *args, struct qmp_error *err)
{
	struct vm *vm = ctx;
	bool running = strcmp(vm->status, "running") == 0;
	json_t *r =
	    json_pack("{s:b,s:b,s:s}", "running", running, "singlestep", 0, "status", vm->status);
	json_t *g = json_pack("{s:s,s:b}", "spec", vm->spec, "present", vm->guest.guest != NULL);
	/* The workload's invariant, checked now (not while a migration owns
	 * the guest's pauses). */
	if (vm->guest.guest != NULL && !vm_busy(vm) && vm->cfg.workload == TERN_WORKLOAD_MEMTOUCH) {
		uint64_t progress = 0;
		char why[256] = "";
		int rc = tern_guest_check(tern_simvm_provider_guest(&vm->guest), &progress, why,
		                          sizeof(why));
		json_object_set_new(g, "workload-progress", json_integer((json_int_t)progress));
		json_object_set_new(g, "workload-ok", json_boolean(rc == 0));
		if (rc != 0)
			json_object_set_new(g, "workload-error", json_string(why));
	}
	json_object_set_new(r, "tern-guest", g);
	(void)args;
	(void)err;
	return r;
}

/* QEMU's recovery of a paused postcopy: migrate-recover on the destination
 * (listen at uri), then migrate with resume on the source (dial uri).  tern
 * does both by itself as soon as the link is lost (the destination listens
 * again where the migration came in, the source dials that again), so
 * these only confirm it, for the address the migration already uses. */
static json_t *
vm_resume_paused(struct vm *vm, json_t *args, bool outgoing, struct qmp_error *err)
{
	char addr[256];
	const char *cmd = outgoing ? "migrate resume" : "migrate-recover";
	if (vm_parse_uri(args, addr, sizeof(addr), err) != 0)
		return NULL;
	if (vm->mig.h == NULL || vm->mig.outgoing != outgoing ||
	    strcmp(vm->mig.status, "postcopy-paused") != 0)
		return qmp_errorf(err, QMP_GENERIC_ERROR,
		                  "%s: no %s postcopy migration is paused here (status %s)", cmd,
		                  outgoing ? "outgoing" : "incoming", vm->mig.status);
	char *colon = strrchr(addr, ':');
	bool same = outgoing ? strcmp(addr, vm->mig.addr) == 0
	                     : colon != NULL && atoi(colon + 1) == vm->mig.port;
	char where[280];
	if (outgoing)
		snprintf(where, sizeof(where), "tcp:%s", vm->mig.addr);
	else
		snprintf(where, sizeof(where), "port %d", vm->mig.port);
	if (!same)
		return qmp_errorf(err, QMP_GENERIC_ERROR,
		                  "%s: tern recovers on the address the migration uses (%s), "
		                  "not another",
		                  cmd, where);
	return json_object(); /* already under way */
}

static json_t *
cmd_migrate_recover(void *ctx, json_t *args, struct qmp_error *err)
{
	return vm_resume_paused(ctx, args, false, err);
}

static json_t *
cmd_migrate(void *ctx, json_t *args, struct qmp_error *err)
{
	struct vm *vm = ctx;
	struct vm_params p = vm->params;
	char addr[256];
	if (json_is_true(json_object_get(args, "resume")))
		return vm_resume_paused(vm, args, true, err);
	if (vm_busy(vm))
		return qmp_errorf(err, QMP_GENERIC_ERROR,
		                  "There's a migration process in progress");
	if (vm->guest.guest == NULL)
		return qmp_errorf(err, QMP_GENERIC_ERROR, "this process holds no guest (%s)",
		                  vm->status);
	if (strcmp(vm->status, "running") != 0)
		return qmp_errorf(err, QMP_GENERIC_ERROR,
		                  "the guest is %s: cont it before migrating", vm->status);
	json_t *fl = json_object_get(args, "blk"), *inc = json_object_get(args, "inc");
	if (json_is_true(fl) || json_is_true(inc))
		return qmp_errorf(err, QMP_GENERIC_ERROR,
		                  "tern migrates memory and state only (no blk, inc)");
	if (vm_parse_uri(args, addr, sizeof(addr), err) != 0 ||
	    vm_params_set(&p, args, true, err) != 0)
		return NULL;
	char why[512] = "";
	if (vm_start_outgoing(vm, addr, &p, why, sizeof(why)) != 0)
		return qmp_errorf(err, QMP_GENERIC_ERROR, "%s", why);
	return json_object();
}

static json_t *
cmd_migrate_incoming(void *ctx, json_t *args, struct qmp_error *err)
{
	struct vm *vm = ctx;
	char addr[256], why[512] = "";
	if (vm_busy(vm))
		return qmp_errorf(err, QMP_GENERIC_ERROR,
		                  "There's a migration process in progress");
	if (vm->guest.guest != NULL)
		return qmp_errorf(err, QMP_GENERIC_ERROR,
		                  "this process already holds a guest (%s): migrate-incoming "
		                  "takes a guest into an empty process",
		                  vm->status);
	if (vm_parse_uri(args, addr, sizeof(addr), err) != 0)
		return NULL;
	if (vm_start_incoming(vm, addr, why, sizeof(why)) != 0)
		return qmp_errorf(err, QMP_GENERIC_ERROR, "%s", why);
	return json_object();
}

static json_t *
cmd_query_migrate(void *ctx, json_t *args, struct qmp_error *err)
{
	struct vm *vm = ctx;
	/* The latest figures, not the last wake's. */
	if (vm->mig.h != NULL && vm->mig.outgoing)
		vm_follow_outgoing(vm);
	vm_mig_port(&vm->mig);
	(void)args;
	(void)err;
	return vm_migrate_info(vm);
}

static json_t *
cmd_migrate_cancel(void *ctx, json_t *args, struct qmp_error *err)
{
	struct vm *vm = ctx;
	if (vm->mig.h != NULL && !vm->mig.cancel_requested) {
		vm->mig.cancel_requested = true;
		tern_migration_cancel(vm->mig.h);
		vm_mig_status(vm, "cancelling");
	}
	(void)args;
	(void)err;
	return json_object();
}

/* The downtime limit, the bandwidth cap and auto-converge with its throttle
 * settings apply to a running migration at once; the rest to the next. */
static void
vm_params_live(struct vm *vm, const struct vm_params *p)
{
	const struct vm_params *o = &vm->params;
	if (vm->mig.h == NULL || !vm->mig.outgoing)
		return;
	if (p->downtime_limit_ms != o->downtime_limit_ms)
		(void)tern_migration_set_downtime_limit(vm->mig.h, p->downtime_limit_ms);
	if (p->max_bandwidth != o->max_bandwidth)
		(void)tern_migration_set_max_bandwidth(vm->mig.h, p->max_bandwidth);
	if (p->auto_converge != o->auto_converge || p->throttle_initial != o->throttle_initial ||
	    p->throttle_increment != o->throttle_increment || p->throttle_max != o->throttle_max)
		(void)tern_migration_set_auto_converge(vm->mig.h, p->auto_converge,
		                                       p->throttle_initial, p->throttle_increment,
		                                       p->throttle_max);
}

static json_t *
cmd_set_parameters(void *ctx, json_t *args, struct qmp_error *err)
{
	struct vm *vm = ctx;
	struct vm_params p = vm->params;
	if (vm_params_set(&p, args, false, err) != 0)
		return NULL;
	vm_params_live(vm, &p);
	vm->params = p;
	return json_object();
}

static json_t *
cmd_query_parameters(void *ctx, json_t *args, struct qmp_error *err)
{
	struct vm *vm = ctx;
	(void)args;
	(void)err;
	return vm_params_json(&vm->params);
}

static json_t *
cmd_set_capabilities(void *ctx, json_t *args, struct qmp_error *err)
{
	struct vm *vm = ctx;
	json_t *caps = json_object_get(args, "capabilities"), *c;
	size_t i;
	if (!json_is_array(caps))
		return qmp_errorf(err, QMP_GENERIC_ERROR, "Parameter 'capabilities' is missing");
	int converge = vm->params.auto_converge;
	json_array_foreach(caps, i, c)
	{
		const char *name = json_string_value(json_object_get(c, "capability"));
		json_t *state = json_object_get(c, "state");
		if (name == NULL || !json_is_boolean(state))
			return qmp_errorf(err, QMP_GENERIC_ERROR,
			                  "each capability needs 'capability' and 'state'");
		if (strcmp(name, "auto-converge") != 0)
			return qmp_errorf(err, QMP_GENERIC_ERROR,
			                  "Capability '%.64s' is not supported by tern", name);
		if (!json_is_true(state))
			converge = TERN_CONVERGE_OFF;
		else if (converge == TERN_CONVERGE_OFF)
			converge = TERN_CONVERGE_QEMU;
	}
	struct vm_params p = vm->params;
	p.auto_converge = converge;
	vm_params_live(vm, &p);
	vm->params = p;
	return json_object();
}

static json_t *
cmd_query_capabilities(void *ctx, json_t *args, struct qmp_error *err)
{
	struct vm *vm = ctx;
	(void)args;
	(void)err;
	return json_pack("[{s:s,s:b}]", "capability", "auto-converge", "state",
	                 vm->params.auto_converge != TERN_CONVERGE_OFF);
}

static json_t *
cmd_stop_cont(struct vm *vm, bool stop, struct qmp_error *err)
{
	if (vm_busy(vm))
		return qmp_errorf(err, QMP_GENERIC_ERROR,
		                  "a migration is running: it pauses and resumes the guest itself");
	if (vm->guest.guest == NULL)
		return qmp_errorf(err, QMP_GENERIC_ERROR, "this process holds no guest (%s)",
		                  vm->status);
	const struct tern_guest_ops *ops = vm->guest.ops;
	int rc = stop ? ops->pause(vm->guest.guest) : ops->resume(vm->guest.guest);
	if (rc != 0)
		return qmp_errorf(err, QMP_GENERIC_ERROR, "cannot %s the guest: %s",
		                  stop ? "pause" : "resume", tern_strerror(rc));
	const char *want = stop ? "paused" : "running";
	if (strcmp(vm->status, want) != 0) {
		vm_set_status(vm, want);
		qmp_server_event(vm->qmp, stop ? "STOP" : "RESUME", NULL);
	}
	return json_object();
}

static json_t *
cmd_stop(void *ctx, json_t *args, struct qmp_error *err)
{
	(void)args;
	return cmd_stop_cont(ctx, true, err);
}

static json_t *
cmd_cont(void *ctx, json_t *args, struct qmp_error *err)
{
	(void)args;
	return cmd_stop_cont(ctx, false, err);
}

/* quit and SIGTERM: a running migration is cancelled first (the source
 * guest runs again, the destination is told), then the process ends. */
static void
vm_quit(struct vm *vm, const char *reason)
{
	if (vm->quitting)
		return;
	vm->quitting = 1;
	qmp_server_event(vm->qmp, "SHUTDOWN", json_pack("{s:b,s:s}", "guest", 0, "reason", reason));
	if (vm->mig.h != NULL) {
		vm->mig.cancel_requested = true;
		tern_migration_cancel(vm->mig.h);
		return; /* the end of the migration stops the loop */
	}
	uv_stop(&vm->loop);
}

static json_t *
cmd_quit(void *ctx, json_t *args, struct qmp_error *err)
{
	(void)args;
	(void)err;
	vm_quit(ctx, "host-qmp-quit");
	return json_object();
}

static json_t *
cmd_start_postcopy(void *ctx, json_t *args, struct qmp_error *err)
{
	struct vm *vm = ctx;
	(void)args;
	if (vm->mig.h == NULL || !vm->mig.outgoing)
		return qmp_errorf(err, QMP_GENERIC_ERROR, "no outgoing migration is running");
	int rc = tern_migration_start_postcopy(vm->mig.h);
	if (rc != 0)
		return qmp_errorf(err, QMP_GENERIC_ERROR, "cannot start postcopy: %s",
		                  tern_strerror(rc));
	return json_object();
}

static const struct qmp_command vm_commands[] = {
    {"query-status", cmd_query_status},
    {"migrate", cmd_migrate},
    {"migrate-incoming", cmd_migrate_incoming},
    {"query-migrate", cmd_query_migrate},
    {"migrate_cancel", cmd_migrate_cancel},
    {"migrate-start-postcopy", cmd_start_postcopy},
    {"migrate-recover", cmd_migrate_recover},
    {"migrate-set-parameters", cmd_set_parameters},
    {"query-migrate-parameters", cmd_query_parameters},
    {"migrate-set-capabilities", cmd_set_capabilities},
    {"query-migrate-capabilities", cmd_query_capabilities},
    {"stop", cmd_stop},
    {"cont", cmd_cont},
    {"quit", cmd_quit},
    {NULL, NULL},
};

static void
vm_on_signal(uv_signal_t *s, int signum)
{
	(void)signum;
	vm_quit(s->data, "host-signal");
}

static void
vm_usage(FILE *f)
{
	fprintf(f,
	        "usage: tern vm --guest SPEC --control PATH [--incoming tcp:HOST:PORT|defer]\n"
	        "               [--prealloc] [--tls-creds DIR | --tls-psk-file FILE]\n"
	        "               [--tls-hostname NAME] [--insecure]\n"
	        "\n"
	        "Hosts one guest in a long-lived process driven through a QMP control socket\n"
	        "(docs/control.md): query-status, migrate, migrate-incoming, query-migrate,\n"
	        "migrate_cancel, migrate-set-parameters, query-migrate-parameters,\n"
	        "migrate-set-capabilities, stop, cont, quit.  After its guest has migrated away\n"
	        "the process stays, empty, and can take migrate-incoming again.\n"
	        "\n"
	        "  --guest SPEC        the guest (as for tern send); with --incoming, the layout\n"
	        "                      every arriving guest must have\n"
	        "  --control PATH      the QMP unix socket (mode 0600)\n"
	        "  --incoming URI      start empty and wait for a guest on tcp:HOST:PORT (port 0:\n"
	        "                      any; query-migrate's socket-address tells), or 'defer' for\n"
	        "                      a later migrate-incoming\n"
	        "  --prealloc          populate an arriving guest's memory before listening\n"
	        "  --tls-creds DIR     TLS 1.3 with x509 for every migration, in and out\n"
	        "                      (QEMU's layout: ca-cert.pem, server-*.pem, client-*.pem)\n"
	        "  --tls-psk-file FILE TLS 1.3 with a pre-shared key (identity:hexkey lines)\n"
	        "  --tls-hostname NAME the name a destination's certificate must carry\n"
	        "  --insecure          allow plain TCP incoming beyond loopback\n"
	        "\n"
	        "SIGTERM/SIGINT, like quit: a running migration is cancelled first (the source\n"
	        "guest keeps running), then the process exits.  Exit status 0, or 1 on a\n"
	        "start-up error, 2 on bad usage.\n");
}

int
vm_main(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"guest", required_argument, NULL, 'g'},
	    {"control", required_argument, NULL, 'c'},
	    {"incoming", required_argument, NULL, 'i'},
	    {"prealloc", no_argument, NULL, 'p'},
	    {"tls-creds", required_argument, NULL, 'T'},
	    {"tls-psk-file", required_argument, NULL, 'P'},
	    {"tls-hostname", required_argument, NULL, 'H'},
	    {"insecure", no_argument, NULL, 'I'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	const char *control = NULL, *incoming = NULL;
	struct vm *vm = calloc(1, sizeof(*vm));
	char err[512] = "";
	int opt, rc = 1;

	if (vm == NULL)
		return 1;
	optind = 1;
	while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (opt) {
		case 'g':
			vm->spec = optarg;
			break;
		case 'c':
			control = optarg;
			break;
		case 'i':
			incoming = optarg;
			break;
		case 'p':
			vm->prealloc = 1;
			break;
		case 'T':
			vm->tls_creds = optarg;
			break;
		case 'P':
			vm->tls_psk_file = optarg;
			break;
		case 'H':
			vm->tls_hostname = optarg;
			break;
		case 'I':
			vm->insecure = 1;
			break;
		case 'h':
			vm_usage(stdout);
			free(vm);
			return 0;
		default:
			vm_usage(stderr);
			free(vm);
			return 2;
		}
	}
	if (optind < argc || vm->spec == NULL || control == NULL) {
		fprintf(stderr, "tern vm: %s\n",
		        optind < argc ? "unexpected argument"
		                      : "needs --guest SPEC and --control PATH");
		free(vm);
		return 2;
	}
	if (tern_guest_spec_parse(vm->spec, &vm->cfg, err, sizeof(err)) != 0) {
		fprintf(stderr, "tern vm: bad --guest: %s\n", err);
		free(vm);
		return 2;
	}
	char inc_addr[256] = "";
	if (incoming != NULL && strcmp(incoming, "defer") != 0) {
		struct qmp_error qe;
		json_t *a = json_pack("{s:s}", "uri", incoming);
		int bad = vm_parse_uri(a, inc_addr, sizeof(inc_addr), &qe);
		json_decref(a);
		if (bad) {
			fprintf(stderr, "tern vm: --incoming: %s\n", qe.desc);
			free(vm);
			return 2;
		}
	}
	vm_params_defaults(&vm->params);
	vm_mig_reset(vm, false, "");
	uv_loop_init(&vm->loop);
	uv_async_init(&vm->loop, &vm->wake, vm_on_wake);
	vm->wake.data = vm;
	uv_signal_init(&vm->loop, &vm->sigterm);
	uv_signal_init(&vm->loop, &vm->sigint);
	vm->sigterm.data = vm->sigint.data = vm;
	uv_signal_start(&vm->sigterm, vm_on_signal, SIGTERM);
	uv_signal_start(&vm->sigint, vm_on_signal, SIGINT);
	char product[64];
	snprintf(product, sizeof(product), "tern %s", tern_version());
	if ((rc = qmp_server_start(&vm->qmp, &vm->loop, control, vm_commands, vm, product, err,
	                           sizeof(err))) != 0) {
		fprintf(stderr, "tern vm: %s\n", err);
		rc = 1;
		goto out;
	}
	if (incoming == NULL) {
		if ((rc = vm_guest_create(vm, TERN_GUEST_SOURCE, err, sizeof(err))) != 0) {
			fprintf(stderr, "tern vm: cannot build the guest: %s\n", err);
			rc = 1;
			goto out;
		}
		vm_set_status(vm, "running");
	} else if (inc_addr[0] != '\0') {
		if (vm_start_incoming(vm, inc_addr, err, sizeof(err)) != 0) {
			fprintf(stderr, "tern vm: %s\n", err);
			rc = 1;
			goto out;
		}
	} else {
		vm_set_status(vm, "inmigrate");
	}
	vm_log("%s, control socket %s", vm->status, control);
	uv_run(&vm->loop, UV_RUN_DEFAULT);
	rc = 0;
out:
	/* A quit during a migration waits for its end (the loop stopped
	 * there); any other path still holds a handle only on errors. */
	if (vm->mig.h != NULL) {
		tern_migration_cancel(vm->mig.h);
		(void)tern_migration_close(vm->mig.h);
		vm->mig.h = NULL;
	}
	vm_close_ready(vm);
	qmp_server_close(vm->qmp);
	uv_close((uv_handle_t *)&vm->wake, NULL);
	uv_close((uv_handle_t *)&vm->sigterm, NULL);
	uv_close((uv_handle_t *)&vm->sigint, NULL);
	uv_run(&vm->loop, UV_RUN_DEFAULT);
	if (uv_loop_close(&vm->loop) != 0)
		vm_log("%s", "the event loop still had handles at exit");
	vm_guest_destroy(vm);
	free(vm);
	return rc;
}
