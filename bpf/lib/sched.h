/* Schedulers for a new flow (IPVS semantics): rr and wrr walk the service's sequence with a per-CPU
 * cursor, sh looks the source up in its bucket table, mh in its weighted Maglev ring. A TCP flow met
 * mid-stream (no SYN, no entry: the director restarted or the flow came from a peer) is placed by a
 * consistent hash, so every director that sees it agrees without state: the Maglev ring for rr, wrr
 * and mh, sh's own table (already a pure function of the source) for sh. */
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

/* rr/wrr: the next position of this CPU's cursor; a simulation reads it without moving it. */
static __always_inline int cursor_pick(__u32 svc_id, struct service *svc, int sim, __u32 *backend)
{
	__u32 *cur = rr_cursor.lookup(&svc_id);
	__u32 pos;

	if (!cur || !svc->seq_size)
		return CNT_DROP_NO_BACKEND;
	pos = *cur;
	if (pos >= svc->seq_size)
		pos = 0;
	if (!sim)
		*cur = pos + 1;
	return seq_pick(svc_id, svc, pos, backend);
}

static __always_inline int sched_pick(__u32 svc_id, struct service *svc, struct pkt *p, int midstream,
				    int sim, __u32 *backend)
{
	int with_port = svc->flags & SVC_F_HASH_SPORT;

	switch (svc->sched) {
	case LB_SCHED_MH:
		return ring_pick(svc_id, svc, hash_source(&p->key, with_port), backend);
	case LB_SCHED_SH:
		return seq_pick(svc_id, svc, hash_source(&p->key, with_port), backend);
	case LB_SCHED_RR:
	case LB_SCHED_WRR:
		if (midstream)
			return ring_pick(svc_id, svc, hash_flow(&p->key), backend);
		return cursor_pick(svc_id, svc, sim, backend);
	default:
		return ring_pick(svc_id, svc, hash_flow(&p->key), backend);
	}
}

#endif
