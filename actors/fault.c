/*
 * Fault injection at named events (grammar in actors/fault.h).
 *
 * The list is parsed once, on first use, under a mutex; afterwards checks
 * read it without locking (it never changes until tern_fault_reset, which
 * tests call only while no actor runs).  Counts are atomics because events
 * of one trigger may come from several threads (instances of one name).
 */
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <uv.h>

#include "actors/fault.h"
#include "messages/trace.h"

#define FAULT_MAX 16
#define FAULT_NAME 48
#define FAULT_NAMES 32

struct fault_trigger {
	char spec[128]; /* as written, for the report */
	char who[FAULT_NAME];
	int64_t instance; /* -1: any */
	char kind[16];
	char arg[FAULT_NAME]; /* "" : none */
	uint64_t nth;
	atomic_uint_fast64_t seen;
};

static uv_once_t fault_once = UV_ONCE_INIT;
static uv_mutex_t fault_mtx;
/* Written under fault_mtx before fault_ready is set (release), read after
 * observing it (acquire). */
static atomic_bool fault_ready;
static struct fault_trigger fault_list[FAULT_MAX];
static unsigned fault_count;

/* Spawn counts per actor name, for instance numbers. */
static struct {
	char name[FAULT_NAME];
	uint32_t next;
} fault_names[FAULT_NAMES];

static void
fault_init_mutex(void)
{
	(void)uv_mutex_init(&fault_mtx);
}

/* fault_parse_one fills t from the text [p, end); 0 or -1. */
static int
fault_parse_one(const char *p, const char *end, struct fault_trigger *t)
{
	char buf[128];
	size_t len = (size_t)(end - p);
	if (len == 0 || len >= sizeof(buf))
		return -1;
	memcpy(buf, p, len);
	buf[len] = '\0';
	memset(t, 0, sizeof(*t));
	snprintf(t->spec, sizeof(t->spec), "%s", buf);
	t->instance = -1;
	t->nth = 1;

	char *at = strchr(buf, '@');
	if (at == NULL || at == buf)
		return -1;
	*at = '\0';
	char *hash = strchr(buf, '#');
	if (hash != NULL) {
		char *e;
		*hash = '\0';
		t->instance = strtol(hash + 1, &e, 10);
		if (e == hash + 1 || *e != '\0' || t->instance < 0)
			return -1;
	}
	if (strlen(buf) >= sizeof(t->who) || buf[0] == '\0')
		return -1;
	strcpy(t->who, buf);

	char *ev = at + 1;
	hash = strrchr(ev, '#');
	if (hash != NULL) {
		char *e;
		*hash = '\0';
		long n = strtol(hash + 1, &e, 10);
		if (e == hash + 1 || *e != '\0' || n < 1)
			return -1;
		t->nth = (uint64_t)n;
	}
	char *colon = strchr(ev, ':');
	if (colon != NULL)
		*colon = '\0';
	if (ev[0] == '\0' || strlen(ev) >= sizeof(t->kind))
		return -1;
	strcpy(t->kind, ev);
	if (colon != NULL) {
		char *arg = colon + 1;
		if (arg[0] == '\0' || strlen(arg) >= sizeof(t->arg))
			return -1;
		/* "chunk:3" is "chunk#3". */
		if (strcmp(t->kind, "chunk") == 0 || strcmp(t->kind, "iteration") == 0 ||
		    strcmp(t->kind, "fault") == 0) {
			char *e;
			long n = strtol(arg, &e, 10);
			if (e == arg || *e != '\0' || n < 1 || hash != NULL)
				return -1;
			t->nth = (uint64_t)n;
		} else {
			strcpy(t->arg, arg);
		}
	}
	static const char *kinds[] = {"recv",    "send",   "state", "chunk", "iteration",
	                              "pause",   "resume", "save",  "load",  "dirty_start",
	                              "harvest", "fault",  NULL};
	bool known = false;
	for (int i = 0; kinds[i] != NULL; i++)
		known = known || strcmp(kinds[i], t->kind) == 0;
	bool needs_arg = strcmp(t->kind, "recv") == 0 || strcmp(t->kind, "send") == 0 ||
	                 strcmp(t->kind, "state") == 0;
	if (!known || needs_arg != (t->arg[0] != '\0'))
		return -1;
	atomic_init(&t->seen, 0);
	return 0;
}

static void
fault_parse_env(void)
{
	const char *env = getenv("TERN_FAULT");
	if (env == NULL || env[0] == '\0')
		return;
	unsigned n = 0;
	const char *p = env;
	for (;;) {
		const char *end = strchr(p, ',');
		if (end == NULL)
			end = p + strlen(p);
		if (n == FAULT_MAX || fault_parse_one(p, end, &fault_list[n]) != 0) {
			fprintf(stderr,
			        "tern: TERN_FAULT: cannot parse \"%.*s\" (see docs/faults.md); "
			        "no fault will fire\n",
			        (int)(end - p), p);
			fault_count = 0;
			return;
		}
		n++;
		if (*end == '\0')
			break;
		p = end + 1;
	}
	fault_count = n;
}

static void
fault_load(void)
{
	uv_once(&fault_once, fault_init_mutex);
	if (atomic_load_explicit(&fault_ready, memory_order_acquire))
		return;
	uv_mutex_lock(&fault_mtx);
	if (!atomic_load_explicit(&fault_ready, memory_order_relaxed)) {
		fault_parse_env();
		atomic_store_explicit(&fault_ready, true, memory_order_release);
	}
	uv_mutex_unlock(&fault_mtx);
}

bool
tern_fault_enabled(void)
{
	fault_load();
	return fault_count > 0;
}

uint32_t
tern_fault_instance(const char *name)
{
	uint32_t k = 0;

	fault_load();
	uv_mutex_lock(&fault_mtx);
	for (int i = 0; i < FAULT_NAMES; i++) {
		if (fault_names[i].name[0] == '\0') {
			snprintf(fault_names[i].name, sizeof(fault_names[i].name), "%s", name);
			fault_names[i].next = 1;
			break;
		}
		if (strcmp(fault_names[i].name, name) == 0) {
			k = fault_names[i].next++;
			break;
		}
	}
	uv_mutex_unlock(&fault_mtx);
	return k;
}

/* Message and frame names match with or without the frame's "W_" prefix. */
static bool
fault_arg_match(const char *want, const char *got)
{
	if (strcasecmp(want, got) == 0)
		return true;
	if (strncasecmp(got, "W_", 2) == 0 && strcasecmp(want, got + 2) == 0)
		return true;
	return false;
}

/* fault_matches: does event kind[:arg] on who#instance count for t? */
static bool
fault_matches(const struct fault_trigger *t, const char *who, uint32_t instance, const char *kind,
              const char *arg)
{
	bool process = strcmp(t->who, "process") == 0 || strcmp(t->who, "link") == 0;
	bool guest = strcmp(t->who, "guest") == 0;
	if (process)
		return strcmp(who, "guest") != 0 && strcmp(t->kind, kind) == 0 &&
		       (t->arg[0] == '\0' || (arg != NULL && fault_arg_match(t->arg, arg)));
	if (strcmp(t->who, who) != 0)
		return false;
	if (!guest && t->instance >= 0 && (uint32_t)t->instance != instance)
		return false;
	if (strcmp(t->kind, kind) != 0)
		return false;
	return t->arg[0] == '\0' || (arg != NULL && fault_arg_match(t->arg, arg));
}

static void
fault_report(const struct fault_trigger *t, const char *who, uint32_t instance, uint32_t id,
             struct tern_trace *trace)
{
	fprintf(stderr, "tern: fault fired: %s (%s#%u, id %u)\n", t->spec, who, instance, id);
	if (trace == NULL)
		return;
	struct tern_trace_record r;
	memset(&r, 0, sizeof(r));
	r.kind = TERN_TRACE_FAULT;
	r.actor = id;
	snprintf(r.actor_name, sizeof(r.actor_name), "%s", who);
	snprintf(r.text, sizeof(r.text), "%s", t->spec);
	(void)tern_trace_write(trace, &r);
}

enum tern_fault_action
tern_fault_check(const char *who, uint32_t instance, uint32_t id, const char *kind, const char *arg,
                 struct tern_trace *trace)
{
	enum tern_fault_action action = TERN_FAULT_NONE;

	if (!tern_fault_enabled() || who == NULL || kind == NULL)
		return TERN_FAULT_NONE;
	/* Every trigger counts every event it matches, so "x@e,x@e#2" fires at
	 * the 1st and the 2nd event, whatever fires in between. */
	for (unsigned i = 0; i < fault_count; i++) {
		struct fault_trigger *t = &fault_list[i];
		if (!fault_matches(t, who, instance, kind, arg))
			continue;
		/* Only the thread that brings the count to nth fires. */
		if (atomic_fetch_add_explicit(&t->seen, 1, memory_order_relaxed) + 1 != t->nth)
			continue;
		fault_report(t, who, instance, id, trace);
		if (strcmp(t->who, "process") == 0) {
			if (trace != NULL)
				(void)tern_trace_flush(trace);
			fflush(NULL);
			(void)kill(getpid(), SIGKILL);
			for (;;)
				pause();
		}
		action = strcmp(t->who, "guest") == 0  ? TERN_FAULT_FAIL
		         : strcmp(t->who, "link") == 0 ? TERN_FAULT_CUT
		                                       : TERN_FAULT_KILL;
	}
	return action;
}

void
tern_fault_reset(void)
{
	fault_load();
	uv_mutex_lock(&fault_mtx);
	memset(fault_names, 0, sizeof(fault_names));
	fault_parse_env();
	uv_mutex_unlock(&fault_mtx);
}
