/* Forwarding methods. DR: rewrite the MACs to the backend's resolved next hop. TUN: put the outer
 * headers in front (encap.h), or answer with ICMP when the result would not fit the path (icmp.h).
 * Then out: XDP_TX on the interface the frame came in on, XDP_REDIRECT through the devmap for another. */
#ifndef XDPLB_FORWARD_H
#define XDPLB_FORWARD_H

static __always_inline int xmit(struct xdp_md *ctx, struct backend *be, __u32 *reason)
{
	int act;

	if (be->ifindex == ctx->ingress_ifindex)
		return XDP_TX;
	act = tx_ports.redirect_map(be->tx_slot, XDP_DROP);
	if (act != XDP_REDIRECT)
		*reason = CNT_DROP_REDIRECT;
	return act;
}

static __always_inline int forward_dr(struct xdp_md *ctx, struct backend *be, __u32 *reason)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;

	if ((void *)(eth + 1) > end)
		return XDP_PASS;
	__builtin_memcpy(eth->h_dest, be->dmac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, be->smac, ETH_ALEN);
	return xmit(ctx, be, reason);
}

static __always_inline int forward_tun(struct xdp_md *ctx, struct pkt *p, struct backend *be, __u32 *reason)
{
	__u32 over = encap_overhead(be), hash = 0;

	if (be->mtu && p->len + over > be->mtu)
		return too_big(ctx, p, be->mtu - over, reason);
	if (encap_wants_hash(be))
		hash = hash_flow(&p->key);
	if (encap(ctx, p, be, hash)) {
		*reason = CNT_DROP_ENCAP;
		return XDP_DROP;
	}
	return xmit(ctx, be, reason);
}

/* The backend's method: its encapsulation says TUN (a hit never reads the service). */
static __always_inline int forward(struct xdp_md *ctx, struct pkt *p, struct backend *be, __u32 *reason)
{
	if (!be->ifindex) {
		*reason = CNT_DROP_NO_NEXTHOP;
		return XDP_DROP;
	}
	if (be->encap != ENCAP_NONE)
		return forward_tun(ctx, p, be, reason);
	return forward_dr(ctx, be, reason);
}

#endif
