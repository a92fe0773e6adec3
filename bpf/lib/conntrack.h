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
	if (p->tcp_flags & TCP_FLAG_SYN)
		return state == CT_CLOSING ? CT_NEW : state;
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

/* Inserts a new entry; returns the backend the flow ends up on (ours, or the racing CPU's). */
static __always_inline __u32 ct_create(struct pkt *p, __u32 svc_id, __u32 be_id, __u16 be_gen, __u64 now,
				       __u32 *reason)
{
	struct conn ct = {
		.last_seen = now,
		.backend = be_id,
		.service = svc_id,
		.be_gen = be_gen,
		.state = ct_initial_state(p),
	};
	struct conn *won;

	if (conntrack.insert(&p->key, &ct) == 0)
		return be_id;
	won = conntrack.lookup(&p->key);
	if (!won) {
		*reason = CNT_CONN_INSERT_FAIL;
		return be_id;
	}
	*reason = CNT_CONN_RACE;
	return won->backend;
}

#endif
