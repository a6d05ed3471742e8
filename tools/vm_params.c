/*
 * Migration parameters of `tern vm`: one table gives each parameter its QMP
 * name (QEMU's where QEMU has one, "tern-..." for tern's own), its type and
 * bounds, and where it lives, so that migrate-set-parameters,
 * query-migrate-parameters and migrate's own arguments cannot disagree.
 */
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "tools/vm.h"

enum vp_type { VP_U32, VP_U64, VP_BOOL, VP_ENUM };

struct vp_def {
	const char *name;
	enum vp_type type;
	size_t off;
	uint64_t min, max;
	const char *const *names; /* VP_ENUM: value i is names[i] */
	/* The same parameter in struct tern_send_opts (same name, same size,
	 * checked at compile time) that vm_params_to_send fills... */
	size_t send_off;
	/* ...or, for a VP_ENUM the library takes by name, its const char *. */
	bool send_name;
};

static const char *const vp_converge[] = {"off", "step", "qemu", "rate", NULL};
static const char *const vp_dirty_log[] = {"bitmap", "ring", NULL};
static const char *const vp_zero[] = {"detect", "skip-unpopulated", "off", NULL};
static const char *const vp_switchover[] = {"strict", "loose", NULL};

/* offsetof in tern_send_opts; does not compile if the sizes differ. */
#define VP_SEND(f)                                                                                 \
	(offsetof(struct tern_send_opts, f) +                                                      \
	 0 * sizeof(char[sizeof(((struct vm_params *)0)->f) ==                                     \
	                         sizeof(((struct tern_send_opts *)0)->f)                           \
	                     ? 1                                                                   \
	                     : -1]))
#define VP(n, t, f, lo, hi)                                                                        \
	{                                                                                          \
		n, t, offsetof(struct vm_params, f), lo, hi, NULL, VP_SEND(f), false               \
	}
#define VP_E(n, f, names)                                                                          \
	{                                                                                          \
		n, VP_ENUM, offsetof(struct vm_params, f), 0, 0, names, VP_SEND(f), false          \
	}
/* An enum the library takes as its name ("bitmap", "ring"). */
#define VP_N(n, f, names)                                                                          \
	{                                                                                          \
		n, VP_ENUM, offsetof(struct vm_params, f), 0, 0, names,                            \
		    offsetof(struct tern_send_opts, f), true                                       \
	}

static const struct vp_def vp_table[] = {
    VP("downtime-limit", VP_U32, downtime_limit_ms, 1, 2000000000),
    VP("max-bandwidth", VP_U64, max_bandwidth, 0, UINT64_MAX >> 1),
    VP("multifd-channels", VP_U32, connections, 1, TERN_MAX_CONNECTIONS),
    VP("cpu-throttle-initial", VP_U32, throttle_initial, 0, 99),
    VP("cpu-throttle-increment", VP_U32, throttle_increment, 1, 99),
    VP("max-cpu-throttle", VP_U32, throttle_max, 1, 99),
    VP_E("tern-auto-converge", auto_converge, vp_converge),
    VP("tern-verify", VP_BOOL, verify, 0, 1),
    VP_N("tern-dirty-log", dirty_log, vp_dirty_log),
    VP("tern-ring-size", VP_U32, ring_size, 64, 1u << 20),
    VP("tern-ring-only", VP_BOOL, ring_only, 0, 1),
    VP_E("tern-zero-pages", zero_pages, vp_zero),
    VP_E("tern-switchover", switchover_loose, vp_switchover),
    VP("tern-timeout", VP_U64, timeout_ms, 0, UINT64_MAX >> 1),
    VP("tern-stall-window", VP_U32, stall_window_ms, 1, 2000000000),
    VP("tern-connections-min", VP_U32, connections_min, 0, TERN_MAX_CONNECTIONS),
    VP("tern-chunk-size", VP_U64, chunk_size, 4096, 1ull << 30),
    VP("tern-recover-timeout", VP_U32, recover_timeout_ms, 1, 86400000),
};
#define VP_COUNT (sizeof(vp_table) / sizeof(vp_table[0]))

void
vm_params_defaults(struct vm_params *p)
{
	*p = (struct vm_params){
	    .downtime_limit_ms = 300,
	    .max_bandwidth = 0,
	    .connections = 1,
	    .throttle_initial = 0, /* the auto-converge mode's own */
	    .throttle_increment = 10,
	    .throttle_max = 99,
	    .ring_size = 4096,
	    .timeout_ms = 0,
	    .stall_window_ms = 5000,
	    .chunk_size = 1u << 20,
	    .recover_timeout_ms = TERN_RECOVER_TIMEOUT_MS,
	};
}

static const struct vp_def *
vp_find(const char *name, bool migrate_args)
{
	char alias[96];
	if (migrate_args && strcmp(name, "connections") == 0)
		name = "multifd-channels";
	for (int pass = 0; pass < (migrate_args ? 2 : 1); pass++) {
		if (pass == 1) {
			snprintf(alias, sizeof(alias), "tern-%.80s", name);
			name = alias;
		}
		for (size_t i = 0; i < VP_COUNT; i++)
			if (strcmp(vp_table[i].name, name) == 0)
				return &vp_table[i];
	}
	return NULL;
}

static int
vp_apply(const struct vp_def *d, struct vm_params *p, json_t *v, struct qmp_error *err)
{
	char *at = (char *)p + d->off;
	switch (d->type) {
	case VP_BOOL:
		if (!json_is_boolean(v))
			goto type;
		*(int *)at = json_is_true(v);
		return 0;
	case VP_ENUM:
		if (json_is_string(v))
			for (int i = 0; d->names[i] != NULL; i++)
				if (strcmp(d->names[i], json_string_value(v)) == 0) {
					*(int *)at = i;
					return 0;
				}
		qmp_errorf(err, QMP_GENERIC_ERROR, "Parameter '%s' expects one of:", d->name);
		for (int i = 0; d->names[i] != NULL; i++) {
			size_t n = strlen(err->desc);
			snprintf(err->desc + n, sizeof(err->desc) - n, "%s %s", i ? "," : "",
			         d->names[i]);
		}
		return -1;
	case VP_U32:
	case VP_U64: {
		if (!json_is_integer(v))
			goto type;
		json_int_t x = json_integer_value(v);
		if (x < 0 || (uint64_t)x < d->min || (uint64_t)x > d->max) {
			qmp_errorf(err, QMP_GENERIC_ERROR,
			           "Parameter '%s' expects a value in %llu..%llu", d->name,
			           (unsigned long long)d->min, (unsigned long long)d->max);
			return -1;
		}
		if (d->type == VP_U32)
			*(uint32_t *)at = (uint32_t)x;
		else
			*(uint64_t *)at = (uint64_t)x;
		return 0;
	}
	}
type:
	qmp_errorf(err, QMP_GENERIC_ERROR, "Invalid parameter type for '%s', expected: %s", d->name,
	           d->type == VP_BOOL ? "boolean" : "integer");
	return -1;
}

/* QEMU's migrate arguments tern takes and ignores (always detached). */
static bool
vp_migrate_flag(const char *key)
{
	return strcmp(key, "uri") == 0 || strcmp(key, "detach") == 0 || strcmp(key, "blk") == 0 ||
	       strcmp(key, "inc") == 0 || strcmp(key, "resume") == 0;
}

int
vm_params_set(struct vm_params *p, json_t *args, bool migrate_args, struct qmp_error *err)
{
	struct vm_params next = *p;
	const char *key;
	json_t *v;
	json_object_foreach(args, key, v)
	{
		if (migrate_args && vp_migrate_flag(key))
			continue;
		const struct vp_def *d = vp_find(key, migrate_args);
		if (d == NULL) {
			qmp_errorf(err, QMP_GENERIC_ERROR, "Parameter '%.64s' is unexpected", key);
			return -1;
		}
		if (vp_apply(d, &next, v, err) != 0)
			return -1;
	}
	if (next.ring_only && next.dirty_log != 1) {
		qmp_errorf(err, QMP_GENERIC_ERROR, "%s",
		           "tern-ring-only needs tern-dirty-log ring");
		return -1;
	}
	*p = next;
	return 0;
}

json_t *
vm_params_json(const struct vm_params *p)
{
	json_t *o = json_object();
	for (size_t i = 0; i < VP_COUNT; i++) {
		const struct vp_def *d = &vp_table[i];
		const char *at = (const char *)p + d->off;
		json_t *v = NULL;
		switch (d->type) {
		case VP_BOOL:
			v = json_boolean(*(const int *)at);
			break;
		case VP_ENUM:
			v = json_string(d->names[*(const int *)at]);
			break;
		case VP_U32:
			v = json_integer(*(const uint32_t *)at);
			break;
		case VP_U64:
			v = json_integer((json_int_t) * (const uint64_t *)at);
			break;
		}
		json_object_set_new(o, d->name, v);
	}
	return o;
}

/* vp_size is how many bytes a parameter of type t takes in both structs. */
static size_t
vp_size(enum vp_type t)
{
	switch (t) {
	case VP_U32:
		return sizeof(uint32_t);
	case VP_U64:
		return sizeof(uint64_t);
	case VP_BOOL:
	case VP_ENUM:
		break;
	}
	return sizeof(int);
}

void
vm_params_to_send(const struct vm_params *p, struct tern_send_opts *o)
{
	for (size_t i = 0; i < VP_COUNT; i++) {
		const struct vp_def *d = &vp_table[i];
		const char *from = (const char *)p + d->off;
		char *to = (char *)o + d->send_off;
		if (d->send_name) {
			const char *name = d->names[*(const int *)from];
			memcpy(to, &name, sizeof(name));
		} else {
			memcpy(to, from, vp_size(d->type));
		}
	}
}
