/* Per-CPU counters: verdicts and reasons (enum xdplb_counter), per-service and per-backend stats. */
#ifndef XDPLB_STATS_H
#define XDPLB_STATS_H

static __always_inline void count(__u32 idx)
{
	__u64 *v = counters.lookup(&idx);

	if (v)
		*v += 1;
}

static __always_inline void stats_add(struct stats *s, __u32 len, int new_conn)
{
	if (!s)
		return;
	s->in_pkts += 1;
	s->in_bytes += len;
	if (new_conn)
		s->conns += 1;
}

static __always_inline __u32 verdict_counter(int act)
{
	switch (act) {
	case XDP_TX:
		return CNT_VERDICT_TX;
	case XDP_REDIRECT:
		return CNT_VERDICT_REDIRECT;
	case XDP_DROP:
		return CNT_VERDICT_DROP;
	default:
		return CNT_VERDICT_PASS;
	}
}

#endif
