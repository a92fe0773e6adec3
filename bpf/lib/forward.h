/* Forwarding methods. DR: rewrite the MACs to the backend's resolved next hop and send the frame out,
 * XDP_TX on the interface it came in on, XDP_REDIRECT through the devmap for another one. */
#ifndef XDPLB_FORWARD_H
#define XDPLB_FORWARD_H

static __always_inline int forward_dr(struct xdp_md *ctx, struct backend *be, __u32 *reason)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	int act;

	if ((void *)(eth + 1) > end)
		return XDP_PASS;
	if (!be->ifindex) {
		*reason = CNT_DROP_NO_NEXTHOP;
		return XDP_DROP;
	}
	__builtin_memcpy(eth->h_dest, be->dmac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, be->smac, ETH_ALEN);
	if (be->ifindex == ctx->ingress_ifindex)
		return XDP_TX;
	act = tx_ports.redirect_map(be->tx_slot, XDP_DROP);
	if (act != XDP_REDIRECT)
		*reason = CNT_DROP_REDIRECT;
	return act;
}

#endif
