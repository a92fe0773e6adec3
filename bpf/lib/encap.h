/* TUN: the inner packet goes to the backend inside an outer IPv4 or IPv6 header (IPIP: 4in4, 6in6,
 * 4in6, 6in4) or inside UDP (GUE variant 1: the IP packet directly after the UDP header, as Katran
 * and Linux's fou in gue mode send it). The frame grows at its head; the Ethernet header (and a VLAN
 * tag) is written afresh towards the backend's next hop. Receive-side scaling at the backend: the
 * outer flow label (IPv6), the GUE source port and, when asked, bits of the outer source address
 * carry the flow's hash. */
#ifndef XDPLB_ENCAP_H
#define XDPLB_ENCAP_H

#define ENCAP_TTL 64
#define GUE_SPORT_BASE 0xc000     /* GUE source ports from the ephemeral range 49152-65535 */

static __always_inline __u32 encap_overhead(struct backend *be)
{
	__u32 n = be->family == FAMILY_IPV6 ? sizeof(struct ipv6hdr) : sizeof(struct iphdr);

	return be->encap == ENCAP_GUE ? n + sizeof(struct udphdr) : n;
}

/* The outer header's protocol: UDP for GUE, else what the inner packet is. */
static __always_inline __u8 encap_proto(struct backend *be, struct pkt *p)
{
	if (be->encap == ENCAP_GUE)
		return IPPROTO_UDP;
	return p->key.family == FAMILY_IPV6 ? IPPROTO_IPV6 : IPPROTO_IPIP;
}

/* The flow's hash goes into an IPv6 flow label, a GUE source port or varied source bits; plain
 * IPIP over IPv4 from one source needs none. */
static __always_inline int encap_wants_hash(struct backend *be)
{
	return be->family == FAMILY_IPV6 || be->encap == ENCAP_GUE ||
	       (be->src_hash_mask[0] | be->src_hash_mask[1] | be->src_hash_mask[2] | be->src_hash_mask[3]);
}

static __always_inline __u32 outer_src_word(struct backend *be, int i, __u32 hash)
{
	return (be->outer_src[i] & ~be->src_hash_mask[i]) | (hash & be->src_hash_mask[i]);
}

/* Writes the Ethernet header (and the tag the frame came with) towards the backend. */
static __always_inline void *write_l2(void *data, void *end, struct pkt *p, struct backend *be, __be16 proto)
{
	struct ethhdr *eth = data;
	struct vlan_hdr *vh;

	if ((void *)(eth + 1) + sizeof(*vh) > end)
		return NULL;
	__builtin_memcpy(eth->h_dest, be->dmac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, be->smac, ETH_ALEN);
	if (!p->vlan_proto) {
		eth->h_proto = proto;
		return eth + 1;
	}
	eth->h_proto = p->vlan_proto;
	vh = (void *)(eth + 1);
	vh->tci = p->vlan_tci;
	vh->encap_proto = proto;
	return vh + 1;
}

static __always_inline void write_outer4(struct iphdr *o, struct pkt *p, struct backend *be, __u32 hash)
{
	o->version = 4;
	o->ihl = 5;
	o->tos = p->tos;
	o->tot_len = bpf_htons(p->len + encap_overhead(be));
	o->id = 0;
	o->frag_off = p->df ? bpf_htons(IP_DF) : 0;
	o->ttl = ENCAP_TTL;
	o->protocol = encap_proto(be, p);
	o->saddr = outer_src_word(be, 0, hash);
	o->daddr = be->addr[0];
	/* summed from the values just written, not read back from the packet */
	o->check = lb_csum_fold((__u64)bpf_htons(0x4500 | o->tos) + o->tot_len + o->frag_off +
				bpf_htons((ENCAP_TTL << 8) | o->protocol) + (o->saddr >> 16) + (o->saddr & 0xffff) +
				(o->daddr >> 16) + (o->daddr & 0xffff));
}

static __always_inline void write_outer6(struct ipv6hdr *o, struct pkt *p, struct backend *be, __u32 hash)
{
	__u32 *src = (__u32 *)&o->saddr;

	o->version = 6;
	o->priority = p->tos >> 4;
	o->flow_lbl[0] = ((p->tos & 0xf) << 4) | ((hash >> 16) & 0xf);
	o->flow_lbl[1] = hash >> 8;
	o->flow_lbl[2] = hash;
	o->payload_len = bpf_htons(p->len + encap_overhead(be) - sizeof(*o));
	o->nexthdr = encap_proto(be, p);
	o->hop_limit = ENCAP_TTL;
	src[0] = outer_src_word(be, 0, hash);
	src[1] = outer_src_word(be, 1, hash);
	src[2] = outer_src_word(be, 2, hash);
	src[3] = outer_src_word(be, 3, hash);
	__builtin_memcpy(&o->daddr, be->addr, 16);
}

/* The inner packet's own sum, without reading its payload: a packet whose L4 checksum is right sums,
 * from its L4 header on, to the complement of its pseudo-header (the kernel's local checksum offload
 * rule); a right IPv4 header sums to zero. Returns -1 when the inner packet carries no such checksum
 * (IPv4 UDP without one) or its headers are not summed here (IPv6 extension headers). */
static __always_inline __s64 inner_sum(void *inner, void *end, struct pkt *p)
{
	struct ipv6hdr *i6 = inner;
	struct iphdr *i4 = inner;

	if (p->no_l4_csum)
		return -1;
	if (p->key.family == FAMILY_IPV4) {
		if ((void *)(i4 + 1) > end)
			return -1;
		if (p->ip_proto == IPPROTO_ICMP)
			return 0;
		return lb_csum_fold(pseudo4_sum(i4->saddr, i4->daddr, p->ip_proto, p->l4_len));
	}
	if ((void *)(i6 + 1) > end || p->l4_off - p->l3_off != sizeof(*i6))
		return -1;
	return lb_csum_words(i6, sizeof(*i6) / 2) + lb_csum_fold(pseudo6_sum(&i6->saddr, &i6->daddr, p->ip_proto, p->l4_len));
}

/* GUE's UDP header. Over IPv6 its checksum is required (RFC 8200): derived from the inner packet's
 * own, never summed over the payload; a packet whose inner sum is unknown goes with checksum 0, the
 * tunnel exemption of RFC 6935 (xdplb's decapsulator takes it; Linux's needs udp6zerocsumrx). */
static __always_inline void write_gue(struct udphdr *u, void *end, struct pkt *p, struct backend *be, __u32 hash,
				      struct ipv6hdr *o6)
{
	__s64 inner;

	u->source = bpf_htons(GUE_SPORT_BASE | (hash & 0x3fff));
	u->dest = be->gue_port;
	u->len = bpf_htons(p->len + sizeof(*u));
	u->check = 0;
	if (!o6)
		return;
	inner = inner_sum(u + 1, end, p);
	if (inner < 0)
		return;
	u->check = lb_csum_fold(pseudo6_sum(&o6->saddr, &o6->daddr, IPPROTO_UDP, p->len + sizeof(*u)) +
			     lb_csum_words(u, sizeof(*u) / 2) + inner);
	if (!u->check)
		u->check = 0xffff;
}

/* Puts the outer headers in front of the packet. 0, or -1 when the frame cannot grow. */
static __always_inline int encap(struct xdp_md *ctx, struct pkt *p, struct backend *be, __u32 hash)
{
	__u32 over = encap_overhead(be);
	__be16 proto = be->family == FAMILY_IPV6 ? bpf_htons(ETH_P_IPV6) : bpf_htons(ETH_P_IP);
	struct ipv6hdr *o6 = NULL;
	void *data, *end, *outer;
	struct udphdr *u;

	if (bpf_xdp_adjust_head(ctx, -(int)over))
		return -1;
	data = (void *)(long)ctx->data;
	end = (void *)(long)ctx->data_end;
	outer = write_l2(data, end, p, be, proto);
	if (!outer)
		return -1;
	if (be->family == FAMILY_IPV6) {
		o6 = outer;
		if ((void *)(o6 + 1) + sizeof(*u) > end)
			return -1;
		write_outer6(o6, p, be, hash);
		u = (void *)(o6 + 1);
	} else {
		struct iphdr *o4 = outer;

		if ((void *)(o4 + 1) + sizeof(*u) > end)
			return -1;
		write_outer4(o4, p, be, hash);
		u = (void *)(o4 + 1);
	}
	if (be->encap == ENCAP_GUE)
		write_gue(u, end, p, be, hash, o6);
	return 0;
}

#endif
