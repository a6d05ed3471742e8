/*
 * A supervisor's table of children (see children.h).
 */
#include "actors/children.h"
#include "tern/error.h"

int
tern_children_spawn(struct tern_actor *self, struct tern_children *k,
                    const struct tern_actor_desc *desc, void *args, enum tern_child_policy on_exit,
                    uint32_t index, struct tern_child **out, struct tern_exit *why)
{
	/* A child joined after its exit leaves its slot to a new one (the
	 * connections a postcopy recovery dials again). */
	uint32_t at = k->n;
	for (uint32_t i = 0; i < k->n; i++)
		if (k->c[i].actor == NULL && k->c[i].exited) {
			at = i;
			break;
		}
	if (at == TERN_CHILDREN_MAX)
		return TERN_ENOMEM;
	struct tern_child *c = &k->c[at];
	*c = (struct tern_child){.desc = desc, .args = args, .on_exit = on_exit, .index = index};
	int rc = tern_spawn(tern_actor_rt(self), desc, args, tern_actor_id(self), &c->actor, why);
	if (rc != 0) {
		c->actor = NULL;
		return rc;
	}
	if (at == k->n)
		k->n++;
	if (out != NULL)
		*out = c;
	return 0;
}

struct tern_child *
tern_children_exit(struct tern_children *k, const struct tern_msg_sys_exit *e)
{
	for (uint32_t i = 0; i < k->n; i++) {
		struct tern_child *c = &k->c[i];
		if (c->actor != NULL && !c->exited && tern_actor_id(c->actor) == e->actor) {
			c->exited = true;
			return c;
		}
	}
	return NULL;
}

uint32_t
tern_children_id(const struct tern_child *child)
{
	return child != NULL && child->actor != NULL ? tern_actor_id(child->actor) : 0;
}

void
tern_children_stop(struct tern_children *k)
{
	for (uint32_t i = k->n; i-- > 0;)
		if (k->c[i].actor != NULL && !k->c[i].exited)
			tern_actor_stop(k->c[i].actor);
}

uint32_t
tern_children_running(const struct tern_children *k)
{
	uint32_t n = 0;
	for (uint32_t i = 0; i < k->n; i++)
		n += k->c[i].actor != NULL && !k->c[i].exited;
	return n;
}

void
tern_children_stop_all(struct tern_children *k, int timeout_ms)
{
	for (uint32_t i = k->n; i-- > 0;)
		tern_actor_stop_join(&k->c[i].actor, timeout_ms, NULL);
}
