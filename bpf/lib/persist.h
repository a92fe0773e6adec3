/* Persistence templates (ipvsadm -p timeout -M netmask): a new connection from a client network
 * that a live template names goes to the template's backend, whatever the scheduler would say. */
#ifndef XDPLB_PERSIST_H
#define XDPLB_PERSIST_H

static __always_inline void persist_key_of(__u32 svc_id, struct service *svc, struct pkt *p,
					   struct persist_key *k)
{
	k->service = svc_id;
	k->family = p->key.family;
	k->saddr[0] = p->key.saddr[0] & svc->persist_mask[0];
	k->saddr[1] = p->key.saddr[1] & svc->persist_mask[1];
	k->saddr[2] = p->key.saddr[2] & svc->persist_mask[2];
	k->saddr[3] = p->key.saddr[3] & svc->persist_mask[3];
}

/* The template's backend when the template is live and its backend still the one it named.
 * A backend of weight 0 still takes its persistent clients, as in IPVS. */
static __always_inline int persist_pick(__u32 svc_id, struct service *svc, struct pkt *p, __u64 now, int sim,
					__u32 *backend)
{
	struct persist_key k = {};
	struct persist *t;
	struct backend *be;
	__u32 id;

	persist_key_of(svc_id, svc, p, &k);
	t = persist.lookup(&k);
	if (!t || (__s64)(now - t->last_seen) > (__s64)svc->persist_timeout)
		return 0;
	id = t->backend;
	be = backends.lookup(&id);
	if (!be || !(be->flags & BE_F_ACTIVE) || be->gen != t->be_gen || be->service != svc_id)
		return 0;
	if (!sim && t->last_seen != now)
		t->last_seen = now;
	*backend = id;
	return 1;
}

static __always_inline void persist_save(__u32 svc_id, struct service *svc, struct pkt *p, __u64 now,
					 __u32 be_id, __u16 be_gen)
{
	struct persist_key k = {};
	struct persist t = { .last_seen = now, .backend = be_id, .be_gen = be_gen };

	persist_key_of(svc_id, svc, p, &k);
	if (persist.update(&k, &t) == 0)
		count(CNT_PERSIST_INSERTED);
}

#endif
