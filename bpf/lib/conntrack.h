/* The connection table: lookup, state and last-seen refresh, and the insert that settles a race
 * between two CPUs creating the same flow (the first insert wins, the other follows it). */
#ifndef XDPLB_CONNTRACK_H
#define XDPLB_CONNTRACK_H

static __always_inline __u8 ct_initial_state(struct pkt *p)
{
	if (p->key.proto != IPPROTO_TCP)
		return CT_ESTABLISHED;
	if (p->tcp_flags & (TCP_FLAG_FIN | TCP_FLAG_RST))
		return CT_CLOSING;
	if (p->tcp_flags & TCP_FLAG_SYN)
		return CT_NEW;
	return CT_ESTABLISHED;
}

static __always_inline __u8 ct_next_state(__u8 state, struct pkt *p)
{
	if (p->key.proto != IPPROTO_TCP)
		return state;
	if (p->tcp_flags & (TCP_FLAG_FIN | TCP_FLAG_RST))
		return CT_CLOSING;
	if (state == CT_NEW && (p->tcp_flags & TCP_FLAG_ACK))
		return CT_ESTABLISHED;
	return state;
}

/* Writes only what changed: most packets of an established flow touch nothing. */
static __always_inline void ct_refresh(struct conn *ct, struct pkt *p, __u64 now)
{
	__u8 state = ct_next_state(ct->state, p);

	if (ct->last_seen != now)
		ct->last_seen = now;
	if (ct->state != state)
		ct->state = state;
}

/* Inserts the entry of a newly placed flow. Returns NULL when it went in, else the entry another CPU
 * inserted for the same flow in the meantime (the first one wins). A table that cannot take it
 * returns NULL too (counted): the flow is still forwarded, its next packet tries again. The lookup
 * comes first on purpose: a failed insert into a full LRU has already evicted an entry. */
static __always_inline struct conn *ct_insert(struct pkt *p, __u32 svc_id, __u32 be_id, __u16 be_gen, __u64 now)
{
	struct conn ct = {
		.last_seen = now,
		.backend = be_id,
		.service = svc_id,
		.be_gen = be_gen,
		.state = ct_initial_state(p),
	};
	struct conn *old;

	if (conntrack.insert(&p->key, &ct) == 0)
		return NULL;
	old = conntrack.lookup(&p->key);
	if (!old)
		count(CNT_CONN_INSERT_FAIL);
	return old;
}

/* Points an existing entry at a newly placed backend (its old one is gone, or the port is reused). */
static __always_inline void ct_reassign(struct conn *ct, struct pkt *p, __u32 be_id, __u16 be_gen, __u64 now)
{
	ct->backend = be_id;
	ct->be_gen = be_gen;
	ct->last_seen = now;
	ct->state = ct_initial_state(p);
}

#endif
