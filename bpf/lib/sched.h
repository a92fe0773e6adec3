/* Schedulers for a new flow (IPVS semantics): rr and wrr walk the service's sequence with a per-CPU
 * cursor, sh looks the source up in its bucket table, mh in its weighted Maglev ring; lc, wlc, sed,
 * nq and fo scan the service's backends for the least loaded (or heaviest). A TCP flow met
 * mid-stream (no SYN, no entry: the director restarted or the flow came from a peer) is placed by a
 * consistent hash, so every director that sees it agrees without state: the Maglev ring for every
 * scheduler but sh, sh's own table (already a pure function of the source) for sh.
 * Backends above their upper connection threshold are skipped, as IPVS skips overloaded ones. */
#ifndef XDPLB_SCHED_H
#define XDPLB_SCHED_H

/* BCC rewrites map.lookup() per map, so each table has its own picker. */
static __always_inline int ring_pick(__u32 svc_id, struct service *svc, __u32 h, __u32 *backend)
{
	__u32 idx, *be;

	if (!svc->ring_size)
		return CNT_DROP_NO_BACKEND;
	idx = svc_id * XDPLB_RING_MAX + h % svc->ring_size;
	be = rings.lookup(&idx);
	if (!be)
		return CNT_DROP_NO_BACKEND;
	*backend = *be;
	return 0;
}

static __always_inline int seq_pick(__u32 svc_id, struct service *svc, __u32 pos, __u32 *backend)
{
	__u32 idx, *be;

	if (!svc->seq_size)
		return CNT_DROP_NO_BACKEND;
	idx = svc_id * XDPLB_SEQ_MAX + pos % svc->seq_size;
	be = seqs.lookup(&idx);
	if (!be)
		return CNT_DROP_NO_BACKEND;
	*backend = *be;
	return 0;
}

#ifndef XDPLB_OVERLOAD_TRIES
#define XDPLB_OVERLOAD_TRIES 16
#endif

/* Clamps a count at zero without a branch: the sweeper's correction can briefly overshoot. */
static __always_inline __u64 nonneg(__s64 x)
{
	return x & ~(x >> 63);
}

/* A backend's connections: the data plane's counts plus the sweeper's correction. */
static __always_inline int backend_load(__u32 id, struct conn_counts *out, struct be_load **load)
{
	struct be_load *l = be_load.lookup(&id);
	struct conn_counts *f = be_fix.lookup(&id);

	if (!l || !f)
		return -1;
	out->active = l->n.active + f->active;
	out->inactive = l->n.inactive + f->inactive;
	*load = l;
	return 0;
}

/* IPVS's overload with hysteresis: marked at u_threshold connections, usable again below
 * l_threshold (or below 3/4 of u_threshold when l_threshold is 0). A simulation reads the mark only. */
static __always_inline int overloaded(struct backend *be, struct be_load *l, struct conn_counts *n, int sim)
{
	__u64 total = nonneg(n->active) + nonneg(n->inactive);
	__u64 lower = be->l_threshold;

	if (!be->u_threshold)
		return 0;
	if (l->overloaded) {
		if (lower ? total >= lower : total * 4 >= (__u64)be->u_threshold * 3)
			return 1;
		if (!sim)
			l->overloaded = 0;
		return 0;
	}
	if (total < be->u_threshold)
		return 0;
	if (!sim)
		l->overloaded = 1;
	return 1;
}

static __always_inline int backend_overloaded(__u32 id, int sim)
{
	struct backend *be = backends.lookup(&id);
	struct conn_counts n;
	struct be_load *l;

	if (!be || backend_load(id, &n, &l))
		return 0;
	return overloaded(be, l, &n, sim);
}

/* rr/wrr: the cursor's position plus skip; the cursor moves past it (a simulation leaves it). */
static __always_inline int cursor_pick(__u32 svc_id, struct service *svc, int sim, __u32 skip, __u32 *backend)
{
	__u32 *cur = rr_cursor.lookup(&svc_id);
	__u32 pos;

	if (!cur || !svc->seq_size)
		return CNT_DROP_NO_BACKEND;
	pos = *cur + skip;
	if (pos >= svc->seq_size)
		pos %= svc->seq_size;
	if (!sim)
		*cur = pos + 1;
	return seq_pick(svc_id, svc, pos, backend);
}

/* The hashes a table scheduler needs, computed by the balancer (the scanner has no parsed packet). */
struct flow_hashes {
	__u32 source;             /* the client (and its port with sh-port/mh-port) */
	__u32 flow;               /* the whole flow */
};

/* The table schedulers; skip > 0 asks for the next candidate after an overloaded one. */
static __always_inline int table_pick(__u32 svc_id, struct service *svc, struct flow_hashes *h, int midstream,
				      int sim, __u32 skip, __u32 *backend)
{
	switch (svc->sched) {
	case LB_SCHED_MH:
		return ring_pick(svc_id, svc, h->source + skip, backend);
	case LB_SCHED_SH:
		return seq_pick(svc_id, svc, h->source + skip, backend);
	case LB_SCHED_RR:
	case LB_SCHED_WRR:
		if (!midstream)
			return cursor_pick(svc_id, svc, sim, skip, backend);
	}
	return ring_pick(svc_id, svc, h->flow + skip, backend);
}

/* A table scheduler past overloaded backends: the next candidates in its order, a few at most. */
static __always_inline int probe_pick(__u32 svc_id, struct service *svc, struct flow_hashes *h, int midstream,
				      int sim, __u32 *backend)
{
	__u32 skip;
	int r;

	for (skip = 0; skip < XDPLB_OVERLOAD_TRIES; skip++) {
		r = table_pick(svc_id, svc, h, midstream, sim, skip, backend);
		if (r)
			return r;
		if (!backend_overloaded(*backend, sim))
			return 0;
	}
	return CNT_DROP_OVERLOADED;
}

/* The lc family scans the service's list of usable backends (seqs, weight > 0), keeping the first
 * with the smallest rank (IPVS's overheads: lc (active << 8) + inactive, wlc that over the weight,
 * sed and nq (active + 1) over the weight, fo 1 over the weight); nq takes the first idle one
 * outright. The verifier walks every turn of this loop, so the body avoids what would split its
 * state: the rank is arithmetic on numbers from struct service rather than a switch, the running
 * best lives in a per-CPU scratch entry, counts are clamped without a branch. That lets the loop
 * reach XDPLB_LC_MAX backends, checked by the control plane. */
static __always_inline int lc_pick(__u32 svc_id, struct service *svc, int sim, __u32 *backend)
{
	__u32 n = svc->seq_size, best = 0, idx, id, zero = 0, *slot;
	struct lc_scan *sc = lc_scratch.lookup(&zero);
	__u64 active, inactive, num, den;
	struct conn_counts load;
	struct backend *be;
	struct be_load *l;

	if (!sc)
		return CNT_DROP_NO_BACKEND;
	sc->num = 1;
	sc->den = 0;
	for (__u64 i = 0; i < XDPLB_LC_MAX; i++) {
		/* Keeps the verifier's bound: without it LLVM folds the two exits into one 32-bit
		 * countdown whose limit the verifier cannot see. */
		asm volatile("" : "+r"(i));
		if (i >= n)
			break;
		idx = svc_id * XDPLB_SEQ_MAX + i;
		slot = seqs.lookup(&idx);
		if (!slot)
			break;
		id = *slot;
		be = backends.lookup(&id);
		if (!be || backend_load(id, &load, &l))
			continue;
		if ((svc->flags & SVC_F_THRESHOLDS) && overloaded(be, l, &load, sim))
			continue;
		active = nonneg(load.active);
		inactive = nonneg(load.inactive);
		if (svc->rank_idle_first && !active) {
			best = id;
			sc->den = 1;
			break;
		}
		num = active * svc->rank_active + inactive * svc->rank_inactive + svc->rank_plus;
		den = svc->rank_weighted ? be->weight : 1;
		if (num * sc->den < sc->num * den) {
			best = id;
			sc->num = num;
			sc->den = den;
		}
	}
	if (!sc->den)
		return (svc->flags & SVC_F_THRESHOLDS) ? CNT_DROP_OVERLOADED : CNT_DROP_NO_BACKEND;
	*backend = best;
	return 0;
}

enum lc_prog {
	LC_PROG_SCAN = 0,
	LC_PROG_MAIN = 1,
};

/* What the scanner program (xdplb_lc) runs: an lc-family scan, or a table scheduler that has to
 * look past overloaded backends. Both are loops, kept out of the balancer (see scan_request). */
static __always_inline int scan_pick(__u32 svc_id, struct service *svc, struct lc_scan *sc, __u32 *backend)
{
	struct flow_hashes h = { .source = sc->source, .flow = sc->flow };

	if (!sc->midstream && svc->sched >= LB_SCHED_LC)
		return lc_pick(svc_id, svc, sc->sim, backend);
	return probe_pick(svc_id, svc, &h, sc->midstream, sc->sim, backend);
}

/* The balancer's side of a scan. Inlined here, the verifier would walk the scan's loop once for
 * every path that leads to it, so it runs in its own program: the first pass asks (a tail call to
 * the scanner, which tail-calls the balancer back) and the second pass, on the same frame, takes
 * the answer. Nothing before this point writes state, so running it twice changes nothing.
 * Without the scanner the flow is placed by the consistent hash. */
static __always_inline int scan_request(struct xdp_md *ctx, __u32 svc_id, struct service *svc,
					struct flow_hashes *h, int midstream, int sim, __u32 *backend)
{
	struct lc_scan *sc;
	__u32 zero = 0;

	sc = lc_scratch.lookup(&zero);
	if (!sc)
		return CNT_DROP_NO_BACKEND;
	if (sc->ready && sc->svc == svc_id && sc->flow == h->flow && sc->source == h->source) {
		sc->ready = 0;
		*backend = sc->best;
		return sc->reason;
	}
	sc->svc = svc_id;
	sc->flow = h->flow;
	sc->source = h->source;
	sc->midstream = midstream;
	sc->sim = sim;
	sc->ready = 0;
	lc_progs.call(ctx, LC_PROG_SCAN);
	return ring_pick(svc_id, svc, h->flow, backend);
}

static __always_inline int sched_pick(struct xdp_md *ctx, __u32 svc_id, struct service *svc, struct pkt *p,
				      int midstream, int sim, __u32 *backend)
{
	int by_source = svc->sched == LB_SCHED_MH || svc->sched == LB_SCHED_SH;
	int scan = (!midstream && svc->sched >= LB_SCHED_LC) || (svc->flags & SVC_F_THRESHOLDS);
	struct flow_hashes h = {};

	/* Only what the pick reads: mh and sh the source, the others and a scan the flow. */
	if (by_source)
		h.source = hash_source(&p->key, svc->flags & SVC_F_HASH_SPORT);
	if (scan || !by_source)
		h.flow = hash_flow(&p->key);
	if (scan)
		return scan_request(ctx, svc_id, svc, &h, midstream, sim, backend);
	return table_pick(svc_id, svc, &h, midstream, sim, 0, backend);
}

#endif
