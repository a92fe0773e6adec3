/* Packet parsing: Ethernet (one 802.1Q/802.1ad tag), IPv4 (options skipped), IPv6 (a bounded chain of
 * extension headers), TCP and UDP, and ICMP errors by the flow they quote. Every parser has one shape, parse_x(cursor, end, out) -> 0 or the
 * enum xdplb_counter reason the frame goes to the kernel, and checks bounds before each access.
 * The rule: the balancer forwards only frames it parsed completely; everything else passes to the
 * kernel untouched (its stack validates and drops what is malformed), counted by reason. Headers are
 * bounded by the IP length as well as by the frame, so Ethernet padding is never read as a header. */
#ifndef XDPLB_PARSE_H
#define XDPLB_PARSE_H

#ifndef XDPLB_MAX_EXTHDR
#define XDPLB_MAX_EXTHDR 4
#endif

#define IP_DF 0x4000
#define IP_MF 0x2000
#define IP_OFFSET 0x1fff
#define TCP_FLAG_FIN 0x01
#define TCP_FLAG_SYN 0x02
#define TCP_FLAG_RST 0x04
#define TCP_FLAG_ACK 0x10

struct cursor {
	void *pos;
};

struct vlan_hdr {
	__be16 tci;
	__be16 encap_proto;
};

/* What the pipeline needs of a frame. */
struct pkt {
	struct conn_key key;      /* the flow; for an ICMP error, the client's flow it quotes */
	__u32 len;                /* IP length (header and payload), for byte counters like IPVS */
	__u32 l4_len;             /* bytes the IP length leaves for L4: Ethernet padding is not payload */
	__u16 l3_off;             /* where the IP header starts in the frame (after Ethernet and a tag) */
	__u16 l4_off;             /* where the L4 header starts */
	__u8 tcp_flags;
	__u8 ip_proto;            /* the L4 protocol of the frame itself (ICMP for an ICMP error) */
	__u8 tos;                 /* IPv4 TOS or IPv6 traffic class, copied to an outer header */
	__u8 df;                  /* IPv4 don't-fragment; always 1 for IPv6 (routers never fragment it) */
	__u8 icmp;                /* an ICMP error about key, sent on to that flow's backend */
	__u8 no_l4_csum;          /* an IPv4 UDP datagram without checksum (0): GUE over IPv6 cannot derive one */
	__be16 vlan_proto;        /* the tag's TPID (802.1Q/802.1ad), 0 without a tag */
	__be16 vlan_tci;          /* kept on a frame rebuilt for TUN or ICMP */
};

static __always_inline int is_vlan(__be16 proto)
{
	return proto == bpf_htons(ETH_P_8021Q) || proto == bpf_htons(ETH_P_8021AD);
}

static __always_inline int parse_eth(struct cursor *c, void *end, __be16 *l3proto, struct pkt *p)
{
	struct ethhdr *eth = c->pos;
	struct vlan_hdr *vh;
	__be16 proto;

	if ((void *)(eth + 1) > end)
		return CNT_PASS_TRUNC_L2;
	proto = eth->h_proto;
	c->pos = eth + 1;
	if (is_vlan(proto)) {
		vh = c->pos;
		if ((void *)(vh + 1) > end)
			return CNT_PASS_TRUNC_L2;
		p->vlan_proto = proto;
		p->vlan_tci = vh->tci;
		proto = vh->encap_proto;
		c->pos = vh + 1;
		if (is_vlan(proto))
			return CNT_PASS_VLAN_STACKED;
	}
	*l3proto = proto;
	return 0;
}

static __always_inline int parse_ipv4(struct cursor *c, void *end, struct pkt *p)
{
	struct iphdr *iph = c->pos;
	__u32 hlen, tot;

	if ((void *)(iph + 1) > end)
		return CNT_PASS_MALFORMED_L3;
	if (iph->version != 4 || iph->ihl < 5)
		return CNT_PASS_MALFORMED_L3;
	hlen = iph->ihl * 4;
	tot = bpf_ntohs(iph->tot_len);
	if (tot < hlen || c->pos + tot > end)
		return CNT_PASS_MALFORMED_L3;
	if (c->pos + hlen > end)
		return CNT_PASS_MALFORMED_L3;
	if (iph->frag_off & bpf_htons(IP_MF | IP_OFFSET))
		return CNT_PASS_FRAGMENT;
	p->key.family = FAMILY_IPV4;
	p->key.proto = iph->protocol;
	p->ip_proto = iph->protocol;
	p->tos = iph->tos;
	p->df = !!(iph->frag_off & bpf_htons(IP_DF));
	p->key.saddr[0] = iph->saddr;
	p->key.daddr[0] = iph->daddr;
	p->len = tot;
	p->l4_len = tot - hlen;
	c->pos += hlen;
	return 0;
}

static __always_inline int parse_ipv6(struct cursor *c, void *end, struct pkt *p)
{
	struct ipv6hdr *ip6h = c->pos;
	struct ipv6_opt_hdr *opt;
	__u32 left, skip;
	__u8 nexthdr;
	int i;

	if ((void *)(ip6h + 1) > end)
		return CNT_PASS_MALFORMED_L3;
	if (ip6h->version != 6)
		return CNT_PASS_MALFORMED_L3;
	left = bpf_ntohs(ip6h->payload_len);
	if (c->pos + sizeof(*ip6h) + left > end)
		return CNT_PASS_MALFORMED_L3;
	__builtin_memcpy(p->key.saddr, &ip6h->saddr, 16);
	__builtin_memcpy(p->key.daddr, &ip6h->daddr, 16);
	p->key.family = FAMILY_IPV6;
	p->tos = (ip6h->priority << 4) | (ip6h->flow_lbl[0] >> 4);
	p->df = 1;
	p->len = sizeof(*ip6h) + left;
	nexthdr = ip6h->nexthdr;
	c->pos = ip6h + 1;

	/* One more round than headers skipped, so the header after the last one is classified too. */
#pragma unroll
	for (i = 0; i <= XDPLB_MAX_EXTHDR; i++) {
		if (nexthdr == IPPROTO_FRAGMENT)
			return CNT_PASS_FRAGMENT;
		if (nexthdr != IPPROTO_HOPOPTS && nexthdr != IPPROTO_ROUTING && nexthdr != IPPROTO_DSTOPTS) {
			p->key.proto = nexthdr;
			p->ip_proto = nexthdr;
			p->l4_len = left;
			return 0;
		}
		if (i == XDPLB_MAX_EXTHDR)
			break;
		opt = c->pos;
		if ((void *)(opt + 1) > end || left < sizeof(*opt))
			return CNT_PASS_MALFORMED_L3;
		skip = (opt->hdrlen + 1) * 8;
		if (skip > left)
			return CNT_PASS_MALFORMED_L3;
		left -= skip;
		nexthdr = opt->nexthdr;
		c->pos += skip;
	}
	return CNT_PASS_IPV6_EXTHDR;
}

/* The flow an ICMP error quotes: the packet that caused it went from a VIP to a client, so the
 * client's flow is the quote reversed. Only errors a backend must see are taken (IPv4 destination
 * unreachable, fragmentation needed included; IPv6 destination unreachable and packet too big), and
 * only when the error is addressed to the address the quote came from. Echo requests and the rest go
 * to the kernel, which answers a ping when the director holds the VIP. */
static __always_inline int parse_icmp4(struct cursor *c, void *end, struct pkt *p)
{
	struct icmphdr *ic = c->pos;
	struct iphdr *q;
	__be16 *ports;
	__u32 hlen;

	if ((void *)(ic + 1) > end || p->l4_len < sizeof(*ic))
		return CNT_PASS_MALFORMED_L4;
	if (ic->type != ICMP_DEST_UNREACH)
		return CNT_PASS_ICMP;
	q = (void *)(ic + 1);
	if ((void *)(q + 1) > end || q->version != 4 || q->ihl < 5 || q->daddr == 0)
		return CNT_PASS_MALFORMED_L4;
	hlen = q->ihl * 4;
	ports = (void *)q + hlen;
	if ((void *)(ports + 2) > end || sizeof(*ic) + hlen + 4 > p->l4_len)
		return CNT_PASS_MALFORMED_L4;
	if ((q->protocol != IPPROTO_TCP && q->protocol != IPPROTO_UDP) || q->saddr != p->key.daddr[0])
		return CNT_PASS_ICMP;
	p->key.proto = q->protocol;
	p->key.saddr[0] = q->daddr;
	p->key.daddr[0] = q->saddr;
	p->key.sport = ports[1];
	p->key.dport = ports[0];
	p->icmp = 1;
	return 0;
}

static __always_inline int parse_icmp6(struct cursor *c, void *end, struct pkt *p)
{
	struct icmp6hdr *ic = c->pos;
	struct ipv6hdr *q;
	__be16 *ports;
	__u32 *qs;

	if ((void *)(ic + 1) > end || p->l4_len < sizeof(*ic))
		return CNT_PASS_MALFORMED_L4;
	if (ic->icmp6_type != ICMPV6_DEST_UNREACH && ic->icmp6_type != ICMPV6_PKT_TOOBIG)
		return CNT_PASS_ICMP;
	q = (void *)(ic + 1);
	ports = (void *)(q + 1);
	if ((void *)(ports + 2) > end || sizeof(*ic) + sizeof(*q) + 4 > p->l4_len || q->version != 6)
		return CNT_PASS_MALFORMED_L4;
	if (q->nexthdr != IPPROTO_TCP && q->nexthdr != IPPROTO_UDP)
		return CNT_PASS_ICMP;  /* a quote with extension headers is not followed */
	qs = (__u32 *)&q->saddr;
	if ((qs[0] ^ p->key.daddr[0]) | (qs[1] ^ p->key.daddr[1]) | (qs[2] ^ p->key.daddr[2]) |
	    (qs[3] ^ p->key.daddr[3]))
		return CNT_PASS_ICMP;
	p->key.proto = q->nexthdr;
	__builtin_memcpy(p->key.saddr, &q->daddr, 16);
	__builtin_memcpy(p->key.daddr, &q->saddr, 16);
	p->key.sport = ports[1];
	p->key.dport = ports[0];
	p->icmp = 1;
	return 0;
}

static __always_inline int parse_l4(struct cursor *c, void *end, struct pkt *p)
{
	struct tcphdr *th;
	struct udphdr *uh;

	if (p->key.proto == IPPROTO_TCP) {
		th = c->pos;
		if ((void *)(th + 1) > end || p->l4_len < sizeof(*th))
			return CNT_PASS_MALFORMED_L4;
		if (th->doff < 5 || th->doff * 4 > p->l4_len)
			return CNT_PASS_MALFORMED_L4;
		p->key.sport = th->source;
		p->key.dport = th->dest;
		p->tcp_flags = ((__u8 *)th)[13];
		return 0;
	}
	if (p->key.proto == IPPROTO_UDP) {
		uh = c->pos;
		if ((void *)(uh + 1) > end || p->l4_len < sizeof(*uh))
			return CNT_PASS_MALFORMED_L4;
		p->key.sport = uh->source;
		p->key.dport = uh->dest;
		p->no_l4_csum = p->key.family == FAMILY_IPV4 && !uh->check;
		return 0;
	}
	if (p->key.proto == IPPROTO_ICMP && p->key.family == FAMILY_IPV4)
		return parse_icmp4(c, end, p);
	if (p->key.proto == IPPROTO_ICMPV6 && p->key.family == FAMILY_IPV6)
		return parse_icmp6(c, end, p);
	return CNT_PASS_NOT_L4;
}

/* The whole frame: 0 when p holds a TCP or UDP flow, else the reason it goes to the kernel. */
static __always_inline int parse_frame(void *data, void *end, struct pkt *p)
{
	struct cursor c = { .pos = data };
	__be16 l3proto = 0;
	int r;

	r = parse_eth(&c, end, &l3proto, p);
	if (r)
		return r;
	p->l3_off = c.pos - data;
	if (l3proto == bpf_htons(ETH_P_IP))
		r = parse_ipv4(&c, end, p);
	else if (l3proto == bpf_htons(ETH_P_IPV6))
		r = parse_ipv6(&c, end, p);
	else
		return CNT_PASS_NOT_IP;
	if (r)
		return r;
	p->l4_off = c.pos - data;
	return parse_l4(&c, end, p);
}

#endif
