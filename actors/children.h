/*
 * A supervisor's table of children: {desc, args, actor, on-exit policy}.
 * Routing a SYS_EXIT is a lookup by actor id; what the exit means is the
 * child's policy, decided once at spawn.  Children stop in the reverse of
 * their spawn order (as an Erlang supervisor stops them), each bounded by
 * tern_actor_stop_join.
 */
#ifndef TERN_ACTORS_CHILDREN_H
#define TERN_ACTORS_CHILDREN_H

#include "actors/actor.h"

#define TERN_CHILDREN_MAX 96

enum tern_child_policy {
	TERN_CHILD_FATAL,    /* its exit ends the supervisor's work */
	TERN_CHILD_DATA,     /* one of several interchangeable workers */
	TERN_CHILD_OPTIONAL, /* the supervisor carries on without it */
};

struct tern_child {
	const struct tern_actor_desc *desc;
	void *args;
	struct tern_actor *actor; /* NULL once joined */
	enum tern_child_policy on_exit;
	uint32_t index; /* among the children of its kind (a connection's number) */
	bool exited;    /* its SYS_EXIT was routed */
};

struct tern_children {
	struct tern_child c[TERN_CHILDREN_MAX];
	uint32_t n;
};

/* tern_children_spawn spawns desc(args) supervised by self and records it.
 * On failure nothing is recorded and *why says why (tern_spawn). */
int tern_children_spawn(struct tern_actor *self, struct tern_children *k,
                        const struct tern_actor_desc *desc, void *args,
                        enum tern_child_policy on_exit, uint32_t index, struct tern_child **out,
                        struct tern_exit *why);

/* tern_children_exit routes a SYS_EXIT: the child whose actor exited,
 * marked exited, or NULL when it is none of them (or was routed before). */
struct tern_child *tern_children_exit(struct tern_children *k, const struct tern_msg_sys_exit *e);

/* tern_children_id returns child's actor id (0 once joined). */
uint32_t tern_children_id(const struct tern_child *child);

/* tern_children_stop asks every child still running to stop (after the
 * messages already in its mailbox), last spawned first.  Non-blocking. */
void tern_children_stop(struct tern_children *k);

/* tern_children_running counts the children whose exit was not routed. */
uint32_t tern_children_running(const struct tern_children *k);

/* tern_children_stop_all stops and joins every child, last spawned first,
 * each within timeout_ms (then killed). */
void tern_children_stop_all(struct tern_children *k, int timeout_ms);

#endif /* TERN_ACTORS_CHILDREN_H */
