/* xdplb: the XDP balancer. This file is only the pipeline:
 *   parse -> connection lookup (a live entry goes straight to forwarding) -> service lookup (exact,
 *   then port 0) -> the half-open entry -> on a miss: persistence template, then the scheduler ->
 *   connection insert (a SYN into the half-open table) -> forward (DR, TUN) -> one counted exit.
 *   An ICMP error about a flow follows the flow to its backend.
 *   A running capture (capture.h) copies a frame as received right before forwarding rewrites it,
 *   and both copies at the exit.
 * A frame carrying struct sim_meta in its XDP metadata is simulated: it is parsed, looked up,
 * scheduled and rewritten like any other, but inserts no connection, moves no cursor and counts
 * nothing; the decision is written back into the metadata. */
#include <uapi/linux/bpf.h>
#include <uapi/linux/in.h>
#include <uapi/linux/if_ether.h>
#include <uapi/linux/ip.h>
#include <uapi/linux/ipv6.h>
#include <uapi/linux/tcp.h>
#include <uapi/linux/udp.h>
#include <uapi/linux/icmp.h>
#include <uapi/linux/icmpv6.h>

#include "lib/structs.h"
#include "lib/maps.h"
#include "lib/stats.h"
#include "lib/parse.h"
#include "lib/hash.h"
#include "lib/csum.h"
#include "lib/sched.h"
#include "lib/conntrack.h"
#include "lib/persist.h"
#include "lib/encap.h"
#include "lib/icmp.h"
#include "lib/forward.h"
#include "lib/capture.h"

struct verdict {
	__u32 reason;             /* enum xdplb_counter: why it passed/dropped, or how it was placed */
	__u32 service;
	__u32 backend;
	__u32 cap;                /* enum xdplb_capture_on: whether a capture sees this frame (capture.h) */
};

static __always_inline int simulated(struct xdp_md *ctx)
{
	void *meta = (void *)(long)ctx->data_meta;
	void *data = (void *)(long)ctx->data;
	struct sim_meta *sm = meta;

	if (meta + sizeof(*sm) > data)
		return 0;
	return sm->magic == XDPLB_SIM_MAGIC;
}

static __always_inline int lookup_service(struct pkt *p, __u32 *svc_id)
{
	struct vip_key k = {
		.port = p->key.dport,
		.proto = p->key.proto,
		.family = p->key.family,
	};
	__u32 *id;

	__builtin_memcpy(k.addr, p->key.daddr, sizeof(k.addr));
	id = services.lookup(&k);
	if (!id) {
		k.port = 0;
		id = services.lookup(&k);
	}
	if (!id)
		return CNT_PASS_NOT_VIP;
	*svc_id = *id;
	return 0;
}

/* The backend of a known connection, or NULL when its slot was removed or reused. */
static __always_inline struct backend *conn_backend(struct conn *ct)
{
	__u32 id = ct->backend;
	struct backend *be = backends.lookup(&id);

	if (!be || !(be->flags & BE_F_ACTIVE) || be->gen != ct->be_gen || be->service != ct->service)
		return NULL;
	return be;
}

/* Whether a packet opens a new connection on a closing entry (IPVS conn_reuse_mode: a client that
 * reuses its port after a close is scheduled afresh, so a quiescent backend really drains). */
static __always_inline int reopens(struct conn *ct, struct pkt *p)
{
	return (p->tcp_flags & TCP_FLAG_SYN) && ct->state == CT_CLOSING;
}

/* A known entry, from the connection table or else (TCP only) the half-open one. */
struct known {
	struct conn *ct;
	struct backend *be;       /* its backend while it is live, else NULL: the flow is placed again */
	int table;                /* enum ct_table */
	int counted;              /* its counts sit on the backend it names (that backend still exists) */
	int stale;                /* why a known entry is placed again: CNT_CONN_EXPIRED, _RESCHEDULED, or 0 */
};

/* The persistence template, else the scheduler; a persistent service remembers the choice. */
static __always_inline int choose(struct xdp_md *ctx, __u32 svc_id, struct service *svc, struct pkt *p,
				  int midstream, int sim, __u64 now, __u32 *be_id)
{
	int persistent = svc->flags & SVC_F_PERSISTENT;
	struct backend *be;
	int r;

	if (persistent && persist_pick(svc_id, svc, p, now, sim, be_id)) {
		if (!sim)
			count(CNT_PERSIST_HIT);
		return 0;
	}
	r = sched_pick(ctx, svc_id, svc, p, midstream, sim, be_id);
	if (r || !persistent || sim)
		return r;
	be = backends.lookup(be_id);
	if (be)
		persist_save(svc_id, svc, p, now, *be_id, be->gen);
	return 0;
}

/* A new flow, or one whose entry is stale: schedule it and remember the choice. */
static __always_inline struct backend *place(struct xdp_md *ctx, __u32 svc_id, struct pkt *p, struct known *k,
					     int sim, __u64 now, struct verdict *v)
{
	int midstream = p->key.proto == IPPROTO_TCP && !(p->tcp_flags & TCP_FLAG_SYN);
	struct service *svc = service_conf.lookup(&svc_id);
	struct conn fresh = {}, *ct = k->ct;
	struct backend *be, *won;
	__u32 be_id = 0;
	int r;

	if (!svc) {
		v->reason = CNT_DROP_NO_BACKEND;
		return NULL;
	}
	r = choose(ctx, svc_id, svc, p, midstream, sim, now, &be_id);
	if (r) {
		v->reason = r;
		return NULL;
	}
	be = backends.lookup(&be_id);
	if (!be || !(be->flags & BE_F_ACTIVE)) {
		v->reason = CNT_DROP_NO_BACKEND;
		return NULL;
	}
	v->reason = midstream ? CNT_CONN_MIDSTREAM : CNT_CONN_NEW;
	v->backend = be_id;
	if (sim)
		return be;
	if (k->stale)
		count(k->stale);
	if (ct && k->table == CT_TABLE_SYN) {
		ct_drop_syn(ct, p, k->counted);
		ct = NULL;
	}
	if (ct) {
		ct_reassign(ct, p, be_id, be->gen, now, k->counted);
		return be;
	}
	/* A FIN or RST of a flow we never saw ends it: forward it, remember nothing. */
	if (midstream && (p->tcp_flags & (TCP_FLAG_FIN | TCP_FLAG_RST)))
		return be;
	fresh.last_seen = now;
	fresh.state = ct_initial_state(p);
	fresh.backend = be_id;
	fresh.service = svc_id;
	fresh.be_gen = be->gen;
	ct = ct_insert(fresh.state == CT_NEW ? CT_TABLE_SYN : CT_TABLE_MAIN, p, &fresh);
	if (!ct)
		return be;
	won = conn_backend(ct);
	if (!won)
		return be;
	v->reason = CNT_CONN_HIT;
	v->backend = ct->backend;
	return won;
}

/* Decides whether the flow's entry (else its half-open one) still holds: not expired, its backend
 * there (or else, without expire_nodest, its packets are dropped), not a closed flow opened again. */
static __always_inline int lookup_conn(__u32 svc_id, struct pkt *p, struct settings *s, __u64 now,
				       struct known *k)
{
	struct service *svc;
	struct conn *ct;

	ct = k->ct;  /* the connection table's entry, looked up by balance() */
	if (!ct && p->key.proto == IPPROTO_TCP) {
		k->table = CT_TABLE_SYN;
		ct = conn_syn.lookup(&p->key);
	}
	k->ct = ct;
	if (!ct)
		return 0;
	k->be = conn_backend(ct);
	k->counted = k->be != NULL;
	if (ct_expired(ct, s, p->key.proto, now)) {
		k->be = NULL;
		k->stale = CNT_CONN_EXPIRED;
		return 0;
	}
	if (!k->be) {
		svc = service_conf.lookup(&svc_id);
		if (svc && !(svc->flags & SVC_F_EXPIRE_NODEST))
			return CNT_DROP_NODEST;
		k->stale = CNT_CONN_RESCHEDULED;
		return 0;
	}
	if (reopens(ct, p))
		k->be = NULL;
	return 0;
}

/* An ICMP error about a flow goes where the flow goes, by the same method; it changes no state.
 * Its backend, or NULL: the kernel takes it. */
static __always_inline struct backend *icmp_backend(struct pkt *p, struct verdict *v)
{
	struct conn *ct = conntrack.lookup(&p->key);
	struct backend *be;

	if (!ct && p->key.proto == IPPROTO_TCP)
		ct = conn_syn.lookup(&p->key);
	be = ct ? conn_backend(ct) : NULL;
	if (!be) {
		v->reason = CNT_PASS_ICMP_NO_CONN;
		return NULL;
	}
	v->reason = CNT_ICMP_FORWARDED;
	v->backend = ct->backend;
	return be;
}

/* The common case, decided before the service lookup: a connection-table entry that is live. Its
 * service is the one it names (a removed service frees its backends, so its entries are not live). */
static __always_inline struct backend *live_conn(struct conn *ct, struct pkt *p, struct settings *s, __u64 now)
{
	struct backend *be = conn_backend(ct);

	if (!be || ct_expired(ct, s, p->key.proto, now) || reopens(ct, p))
		return NULL;
	return be;
}

static __always_inline int balance(struct xdp_md *ctx, struct pkt *p, int sim, struct verdict *v)
{
	struct known k = { .table = CT_TABLE_MAIN };
	struct backend *be = NULL;
	struct settings *s;
	__u32 svc_id = 0, zero = 0;
	__u64 now;
	int act, r;

	s = settings.lookup(&zero);
	if (!s)
		return XDP_PASS;
	now = bpf_jiffies64() + s->clock_offset;
	if (!p->icmp) {
		k.ct = conntrack.lookup(&p->key);
		if (k.ct)
			be = live_conn(k.ct, p, s, now);
	}
	if (be) {
		svc_id = k.ct->service;
	} else {
		r = lookup_service(p, &svc_id);
		if (r) {
			v->reason = r;
			return XDP_PASS;
		}
		if (p->icmp) {
			v->service = svc_id;
			be = icmp_backend(p, v);
			if (!be)
				return XDP_PASS;
			goto send;  /* one forward(), so one capture hook: each is inlined where it is called */
		}
		r = lookup_conn(svc_id, p, s, now, &k);
		if (r) {
			v->service = svc_id;
			v->reason = r;
			return XDP_DROP;
		}
		be = k.be;
	}
	v->service = svc_id;
	if (be) {
		v->reason = CNT_CONN_HIT;
		v->backend = k.ct->backend;
		if (!sim)
			ct_seen(k.ct, k.table, p, now);
	} else {
		be = place(ctx, svc_id, p, &k, sim, now, v);  /* the service's tables: only a miss needs them */
		if (!be)
			return XDP_DROP;
	}

send:
	capture_received(ctx, v->cap, p, v->service);
	act = forward(ctx, p, be, &v->reason);
	if (!sim && !p->icmp && (act == XDP_TX || act == XDP_REDIRECT)) {
		int new_conn = v->reason != CNT_CONN_HIT;
		__u32 be_id = v->backend;

		stats_add(svc_stats.lookup(&svc_id), p->len, new_conn);
		stats_add(be_stats.lookup(&be_id), p->len, new_conn);
	}
	return act;
}

/* The one exit: count the verdict and its reason, or report them to a simulation. */
static __always_inline int finish(struct xdp_md *ctx, int act, int sim, struct verdict *v)
{
	void *meta = (void *)(long)ctx->data_meta;
	void *data = (void *)(long)ctx->data;
	struct sim_meta *sm = meta;

	if (!sim) {
		count(verdict_counter(act));
		count(v->reason);
		return act;
	}
	if (meta + sizeof(*sm) <= data) {
		sm->service = v->service;
		sm->backend = v->backend;
		sm->reason = v->reason;
	}
	return act;
}

int xdplb_main(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct verdict v = { .reason = CNT_PASS_NOT_IP, .service = ~0U, .backend = ~0U };
	struct pkt p = {};
	int sim = simulated(ctx);
	int act = XDP_PASS;

	v.cap = capture_armed(sim);
	v.reason = parse_frame(data, end, &p);
	if (!v.reason)
		act = balance(ctx, &p, sim, &v);
	capture_exit(ctx, v.cap, &p, v.service, v.backend, v.reason, act);
	return finish(ctx, act, sim, &v);
}

/* The scanner (sched.h, scan_request): answers the balancer's question in the per-CPU
 * scratch entry and hands the frame back to it. */
int xdplb_lc(struct xdp_md *ctx)
{
	struct lc_scan *sc;
	struct service *svc;
	__u32 zero = 0, svc_id, best = 0;

	sc = lc_scratch.lookup(&zero);
	if (!sc)
		return XDP_PASS;
	svc_id = sc->svc;
	svc = service_conf.lookup(&svc_id);
	sc->reason = svc ? scan_pick(svc_id, svc, sc, &best) : CNT_DROP_NO_BACKEND;
	sc->best = best;
	sc->ready = 1;
	lc_progs.call(ctx, LC_PROG_MAIN);
	return XDP_PASS;  /* the balancer is not in the table: never happens once loaded */
}
