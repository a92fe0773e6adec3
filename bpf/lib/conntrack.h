/* The connection tables: idle timeouts, TCP state moves that count each connection exactly once on
 * its backend (IPVS ActiveConn/InActConn), the half-open table and the ACK that promotes an entry
 * out of it, and inserts that settle a race between two CPUs (the first insert wins). */
#ifndef XDPLB_CONNTRACK_H
#define XDPLB_CONNTRACK_H

enum ct_table {
	CT_TABLE_MAIN = 0,        /* conntrack */
	CT_TABLE_SYN = 1,         /* conn_syn */
};

enum ct_class {
	CT_CLASS_NONE = 0,
	CT_CLASS_ACTIVE = 1,
	CT_CLASS_INACTIVE = 2,
};

static __always_inline int ct_class(__u64 state, __u8 proto)
{
	if (state == CT_RETIRED)
		return CT_CLASS_NONE;
	if (state == CT_ESTABLISHED && proto == IPPROTO_TCP)
		return CT_CLASS_ACTIVE;
	return CT_CLASS_INACTIVE;
}

static __always_inline void load_add(__u32 be_id, __u64 state, __u8 proto, __s64 delta)
{
	int class = ct_class(state, proto);
	struct be_load *l;

	if (class == CT_CLASS_NONE)
		return;
	l = be_load.lookup(&be_id);
	if (!l)
		return;
	if (class == CT_CLASS_ACTIVE)
		__sync_fetch_and_add(&l->n.active, delta);
	else
		__sync_fetch_and_add(&l->n.inactive, delta);
}

/* Moves an entry from one state to another. Only the CPU whose compare-and-swap wins moves the
 * counts: off the old state (when the entry's backend is still the one it was counted on) and onto
 * the new one. Returns whether this CPU moved it. */
static __always_inline int ct_move(struct conn *ct, __u64 from, __u64 to, __u8 proto, int counted)
{
	if (from == to)
		return 1;
	if (__sync_val_compare_and_swap(&ct->state, from, to) != from)
		return 0;
	if (counted)
		load_add(ct->backend, from, proto, -1);
	load_add(ct->backend, to, proto, 1);
	return 1;
}

static __always_inline int ct_expired(struct conn *ct, struct settings *s, __u8 proto, __u64 now)
{
	__u64 state = ct->state;
	__u32 i = TO_TCP;

	if (state == CT_RETIRED)
		return 1;
	if (proto != IPPROTO_TCP)
		i = TO_UDP;
	else if (state == CT_NEW)
		i = TO_SYN;
	else if (state == CT_CLOSING)
		i = TO_TCPFIN;
	if (i >= TO_MAX)
		return 1;
	return (__s64)(now - ct->last_seen) > (__s64)s->timeout[i];
}

static __always_inline __u64 ct_initial_state(struct pkt *p)
{
	if (p->key.proto != IPPROTO_TCP)
		return CT_ESTABLISHED;
	if (p->tcp_flags & (TCP_FLAG_FIN | TCP_FLAG_RST))
		return CT_CLOSING;
	if (p->tcp_flags & TCP_FLAG_SYN)
		return CT_NEW;
	return CT_ESTABLISHED;
}

static __always_inline __u64 ct_next_state(__u64 state, struct pkt *p)
{
	if (p->key.proto != IPPROTO_TCP)
		return state;
	if (p->tcp_flags & (TCP_FLAG_FIN | TCP_FLAG_RST))
		return CT_CLOSING;
	if (state == CT_NEW && !(p->tcp_flags & TCP_FLAG_SYN) && (p->tcp_flags & TCP_FLAG_ACK))
		return CT_ESTABLISHED;
	return state;
}

/* A packet of a known, live connection. Writes only what changed: most packets touch nothing. */
static __always_inline void ct_refresh(struct conn *ct, struct pkt *p, __u64 now)
{
	__u64 state = ct->state;

	if (ct->last_seen != now)
		ct->last_seen = now;
	ct_move(ct, state, ct_next_state(state, p), p->key.proto, 1);
}

/* Inserts a newly placed flow into one table. Returns NULL when it went in (its counts added), else
 * the entry another CPU inserted for the same flow in the meantime. A table that cannot take it
 * returns NULL too (counted): the flow is still forwarded, its next packet tries again. */
static __always_inline struct conn *ct_insert(int table, struct pkt *p, struct conn *ct)
{
	struct conn *old;
	int r;

	if (table == CT_TABLE_SYN)
		r = conn_syn.insert(&p->key, ct);
	else
		r = conntrack.insert(&p->key, ct);
	if (r == 0) {
		count(table == CT_TABLE_SYN ? CNT_HALFOPEN_INSERTED : CNT_CONN_INSERTED);
		load_add(ct->backend, ct->state, p->key.proto, 1);
		return NULL;
	}
	old = table == CT_TABLE_SYN ? conn_syn.lookup(&p->key) : conntrack.lookup(&p->key);
	if (!old)
		count(CNT_CONN_INSERT_FAIL);
	return old;
}

/* The client's ACK completes the handshake: the entry moves from the half-open table to the
 * connection table. A CPU that loses the race for it forwards the packet and changes nothing. */
static __always_inline void ct_promote(struct conn *syn, struct pkt *p, __u64 now)
{
	struct conn ct = *syn;

	if (!ct_move(syn, CT_NEW, CT_RETIRED, p->key.proto, 1))
		return;
	ct.state = CT_ESTABLISHED;
	ct.last_seen = now;
	ct_insert(CT_TABLE_MAIN, p, &ct);
	if (conn_syn.delete(&p->key) == 0)
		count(CNT_HALFOPEN_PROMOTED);
}

/* A packet of a live entry: the client's ACK promotes a half-open one, any other packet refreshes it. */
static __always_inline void ct_seen(struct conn *ct, int table, struct pkt *p, __u64 now)
{
	if (table == CT_TABLE_SYN && ct->state == CT_NEW && ct_next_state(CT_NEW, p) == CT_ESTABLISHED)
		ct_promote(ct, p, now);
	else
		ct_refresh(ct, p, now);
}

/* Points a connection-table entry at a newly placed backend (its old one is gone, it expired, or a
 * closed flow's port is reused). counted: the old backend is still the one it was counted on. */
static __always_inline void ct_reassign(struct conn *ct, struct pkt *p, __u32 be_id, __u16 be_gen, __u64 now,
					int counted)
{
	__u8 proto = p->key.proto;

	if (!ct_move(ct, ct->state, CT_RETIRED, proto, counted))
		return;  /* another CPU is placing it */
	ct->backend = be_id;
	ct->be_gen = be_gen;
	ct->last_seen = now;
	ct_move(ct, CT_RETIRED, ct_initial_state(p), proto, 0);
}

/* Takes a stale half-open entry out of the way: the flow is placed as if it were new. */
static __always_inline void ct_drop_syn(struct conn *syn, struct pkt *p, int counted)
{
	if (ct_move(syn, syn->state, CT_RETIRED, p->key.proto, counted) && conn_syn.delete(&p->key) == 0)
		count(CNT_HALFOPEN_RETIRED);
}

#endif
