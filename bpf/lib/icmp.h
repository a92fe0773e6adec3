/* ICMP from the director: a packet that would not fit its backend's path once encapsulated gets
 * fragmentation-needed (IPv4, DF set) or packet-too-big (IPv6) back to the client, with the path MTU
 * it must use and the start of its own packet quoted (RFC 792 asks for the IP header and 8 bytes;
 * a fixed, longer quote keeps the checksum one helper call). The frame is rebuilt in place and sent
 * back out the interface it came in on. */
#ifndef XDPLB_ICMP_H
#define XDPLB_ICMP_H

#define ICMP4_QUOTE 128           /* bytes of the client's packet quoted (4-byte multiple, <= 512 - 8) */
#define ICMP6_QUOTE 256
#define ICMP_TTL 64
#define IPV6_MIN_MTU 1280

/* Swaps the frame's MACs: the reply goes back to whoever sent it (the router). */
static __always_inline int reverse_l2(void *data, void *end, struct pkt *p, __u8 *smac, __u8 *dmac, __be16 proto)
{
	struct ethhdr *eth = data;
	struct vlan_hdr *vh;

	if ((void *)(eth + 1) + sizeof(*vh) > end)
		return -1;
	__builtin_memcpy(eth->h_dest, smac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, dmac, ETH_ALEN);
	eth->h_proto = p->vlan_proto ? p->vlan_proto : proto;
	vh = (void *)(eth + 1);
	if (p->vlan_proto) {
		vh->tci = p->vlan_tci;
		vh->encap_proto = proto;
	}
	return 0;
}

/* Grows the head by `grow`, cuts the frame to its L2 header, `grow` and `quote` bytes of the original
 * IP packet, and writes the reversed L2 header. The new L3 header is at the returned offset. */
static __always_inline int reshape(struct xdp_md *ctx, struct pkt *p, __u32 grow, __u32 quote, __be16 proto)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	__u8 smac[ETH_ALEN], dmac[ETH_ALEN];
	__u32 len;

	if ((void *)(eth + 1) > end || p->len < quote)
		return -1;
	__builtin_memcpy(smac, eth->h_source, ETH_ALEN);
	__builtin_memcpy(dmac, eth->h_dest, ETH_ALEN);
	if (bpf_xdp_adjust_head(ctx, -(int)grow))
		return -1;
	data = (void *)(long)ctx->data;
	end = (void *)(long)ctx->data_end;
	len = end - data;
	if (bpf_xdp_adjust_tail(ctx, (int)(p->l3_off + grow + quote) - (int)len))
		return -1;
	data = (void *)(long)ctx->data;
	end = (void *)(long)ctx->data_end;
	return reverse_l2(data, end, p, smac, dmac, proto);
}

static __always_inline int too_big4(struct xdp_md *ctx, struct pkt *p, __u32 mtu)
{
	__u32 grow = sizeof(struct iphdr) + sizeof(struct icmphdr);
	struct icmphdr *ic;
	struct iphdr *ip;
	void *data, *end;

	if (reshape(ctx, p, grow, ICMP4_QUOTE, bpf_htons(ETH_P_IP)))
		return -1;
	data = (void *)(long)ctx->data;
	end = (void *)(long)ctx->data_end;
	ip = data + (p->vlan_proto ? ETH_HLEN + 4 : ETH_HLEN);
	ic = (void *)(ip + 1);
	if ((void *)(ic + 1) + ICMP4_QUOTE > end)
		return -1;
	ip->version = 4;
	ip->ihl = 5;
	ip->tos = 0;
	ip->tot_len = bpf_htons(grow + ICMP4_QUOTE);
	ip->id = 0;
	ip->frag_off = 0;
	ip->ttl = ICMP_TTL;
	ip->protocol = IPPROTO_ICMP;
	ip->check = 0;
	ip->saddr = p->key.daddr[0];     /* the VIP the client wrote to */
	ip->daddr = p->key.saddr[0];
	ip->check = ipv4_header_csum(ip);
	ic->type = ICMP_DEST_UNREACH;
	ic->code = ICMP_FRAG_NEEDED;
	ic->checksum = 0;
	ic->un.frag.__unused = 0;
	ic->un.frag.mtu = bpf_htons(mtu);
	ic->checksum = lb_csum_fold(bpf_csum_diff(NULL, 0, (void *)ic, sizeof(*ic) + ICMP4_QUOTE, 0));
	return 0;
}

static __always_inline int too_big6(struct xdp_md *ctx, struct pkt *p, __u32 mtu)
{
	__u32 grow = sizeof(struct ipv6hdr) + sizeof(struct icmp6hdr);
	struct icmp6hdr *ic;
	struct ipv6hdr *ip;
	void *data, *end;
	__u64 sum;

	if (reshape(ctx, p, grow, ICMP6_QUOTE, bpf_htons(ETH_P_IPV6)))
		return -1;
	data = (void *)(long)ctx->data;
	end = (void *)(long)ctx->data_end;
	ip = data + (p->vlan_proto ? ETH_HLEN + 4 : ETH_HLEN);
	ic = (void *)(ip + 1);
	if ((void *)(ic + 1) + ICMP6_QUOTE > end)
		return -1;
	ip->version = 6;
	ip->priority = 0;
	ip->flow_lbl[0] = ip->flow_lbl[1] = ip->flow_lbl[2] = 0;
	ip->payload_len = bpf_htons(sizeof(*ic) + ICMP6_QUOTE);
	ip->nexthdr = IPPROTO_ICMPV6;
	ip->hop_limit = ICMP_TTL;
	__builtin_memcpy(&ip->saddr, p->key.daddr, 16);
	__builtin_memcpy(&ip->daddr, p->key.saddr, 16);
	ic->icmp6_type = ICMPV6_PKT_TOOBIG;
	ic->icmp6_code = 0;
	ic->icmp6_cksum = 0;
	ic->icmp6_mtu = bpf_htonl(mtu < IPV6_MIN_MTU ? IPV6_MIN_MTU : mtu);
	sum = pseudo6_sum(&ip->saddr, &ip->daddr, IPPROTO_ICMPV6, sizeof(*ic) + ICMP6_QUOTE);
	ic->icmp6_cksum = lb_csum_fold(sum + (__u32)bpf_csum_diff(NULL, 0, (void *)ic, sizeof(*ic) + ICMP6_QUOTE, 0));
	return 0;
}

/* A packet too big for its backend's path once encapsulated: ICMP back to the client (XDP_TX), or,
 * for IPv4 without DF, a counted drop (XDP cannot fragment; clients doing path MTU discovery set DF). */
static __always_inline int too_big(struct xdp_md *ctx, struct pkt *p, __u32 mtu, __u32 *reason)
{
	int r;

	if (p->icmp || !p->df) {
		*reason = CNT_DROP_TOO_BIG;
		return XDP_DROP;
	}
	r = p->key.family == FAMILY_IPV6 ? too_big6(ctx, p, mtu) : too_big4(ctx, p, mtu);
	if (r) {
		*reason = CNT_DROP_TOO_BIG;
		return XDP_DROP;
	}
	*reason = CNT_ICMP_TOO_BIG_SENT;
	return XDP_TX;
}

#endif
