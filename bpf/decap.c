/* xdp_decap: the real server's side of TUN mode. The pipeline:
 *   Ethernet -> outer IPv4/IPv6 -> IPIP (protocol 4: inner IPv4, 41: inner IPv6) or GUE variant 1
 *   (UDP to the GUE port, the payload an IPv4/IPv6 packet) -> the outer destination is one of this
 *   host's addresses -> the inner packet is whole -> the outer bytes go (bpf_xdp_adjust_head) and the
 *   Ethernet header is written again in front of the inner packet (same MACs, the inner ethertype)
 *   -> XDP_PASS: the kernel receives the inner packet, addressed to a VIP held on loopback.
 * Everything else passes untouched, counted by reason, through one exit. The rules: a tagged frame
 * (802.1Q/802.1ad) is never decapsulated; outer IPv4 options are skipped, an outer IPv6 extension
 * header makes the packet not ours; an outer IPv4 fragment is left to the kernel; outer checksums are
 * not verified (the kernel verifies the inner packet's own; GUE's UDP checksum may be 0). */
#include <uapi/linux/bpf.h>
/* The UAPI headers only: the kernel's own (linux/ip.h...) cost BCC 2 s more per compile. */
#include <uapi/linux/in.h>
#include <uapi/linux/in6.h>
#include <uapi/linux/if_ether.h>
#include <uapi/linux/ip.h>
#include <uapi/linux/ipv6.h>
#include <uapi/linux/udp.h>

#include "lib/decap.h"

#ifndef DECAP_MAX_ADDRS
#define DECAP_MAX_ADDRS 64
#endif

#define IP_MF 0x2000
#define IP_OFFSET 0x1fff

/* struct in6_addr (an address of this host, network byte order; IPv4 as ::ffff:a.b.c.d) -> 1.
 * Written by the loader when it attaches (xdplb/decap.py): only tunnels to these are decapsulated. */
BPF_HASH(decap_addrs, struct in6_addr, u8, DECAP_MAX_ADDRS);

/* [0] -> GUE's UDP destination port, host byte order; 0 = IPIP only. Written by the loader. */
BPF_ARRAY(decap_gue_port, u32, 1);

/* enum decap_counter -> frames. This program, per CPU (Python sums the CPUs). */
BPF_PERCPU_ARRAY(decap_counters, u64, DECAP_MAX);

struct cursor {
	void *pos;
};

/* What the outer headers say. */
struct outer {
	struct in6_addr daddr;    /* outer destination, as decap_addrs keys it */
	void *inner;              /* first byte of the inner packet */
	__u32 inner_len;          /* bytes the outer headers give it (trailing padding is not inner) */
	__u32 strip;              /* outer bytes to remove after Ethernet: IP header, and UDP for GUE */
	__u8 proto;               /* outer IP protocol */
	__u8 inner_version;       /* 4 or 6, as the encapsulation announces it */
};

static __always_inline int parse_eth(struct cursor *c, void *end, __be16 *proto)
{
	struct ethhdr *eth = c->pos;

	if ((void *)(eth + 1) > end)
		return DECAP_PASS_NOT_IP;
	*proto = eth->h_proto;
	c->pos = eth + 1;
	if (*proto == bpf_htons(ETH_P_8021Q) || *proto == bpf_htons(ETH_P_8021AD))
		return DECAP_PASS_VLAN;
	if (*proto != bpf_htons(ETH_P_IP) && *proto != bpf_htons(ETH_P_IPV6))
		return DECAP_PASS_NOT_IP;
	return 0;
}

static __always_inline int parse_outer4(struct cursor *c, void *end, struct outer *o)
{
	struct iphdr *iph = c->pos;
	__u32 hlen, tot;

	if ((void *)(iph + 1) > end)
		return DECAP_PASS_MALFORMED;
	if (iph->version != 4 || iph->ihl < 5)
		return DECAP_PASS_MALFORMED;
	hlen = iph->ihl * 4;
	tot = bpf_ntohs(iph->tot_len);
	if (tot < hlen || c->pos + tot > end || c->pos + hlen > end)
		return DECAP_PASS_MALFORMED;
	if (iph->frag_off & bpf_htons(IP_MF | IP_OFFSET))
		return DECAP_PASS_FRAGMENT;
	o->daddr.in6_u.u6_addr32[2] = bpf_htonl(0xffff);
	o->daddr.in6_u.u6_addr32[3] = iph->daddr;
	o->proto = iph->protocol;
	o->inner = c->pos + hlen;
	o->inner_len = tot - hlen;
	o->strip = hlen;
	return 0;
}

static __always_inline int parse_outer6(struct cursor *c, void *end, struct outer *o)
{
	struct ipv6hdr *ip6h = c->pos;
	__u32 len;

	if ((void *)(ip6h + 1) > end || ip6h->version != 6)
		return DECAP_PASS_MALFORMED;
	len = bpf_ntohs(ip6h->payload_len);
	if ((void *)(ip6h + 1) + len > end)
		return DECAP_PASS_MALFORMED;
	__builtin_memcpy(&o->daddr, &ip6h->daddr, sizeof(o->daddr));
	o->proto = ip6h->nexthdr;
	o->inner = ip6h + 1;
	o->inner_len = len;
	o->strip = sizeof(*ip6h);
	return 0;
}

/* IPIP or GUE: the kind (DECAP_IPIP, DECAP_GUE) and the inner version it announces; a GUE packet's
 * inner packet starts after its UDP header, and its first nibble is the version. */
static __always_inline int parse_tunnel(void *end, struct outer *o, __u32 *kind)
{
	struct udphdr *uh = o->inner;
	__u32 zero = 0, ulen, *port;
	__u8 *first;

	*kind = DECAP_IPIP;
	if (o->proto == IPPROTO_IPIP) {
		o->inner_version = 4;
		return 0;
	}
	if (o->proto == IPPROTO_IPV6) {
		o->inner_version = 6;
		return 0;
	}
	if (o->proto != IPPROTO_UDP)
		return DECAP_PASS_NOT_TUNNEL;
	if ((void *)(uh + 1) > end || o->inner_len < sizeof(*uh))
		return DECAP_PASS_MALFORMED;
	port = decap_gue_port.lookup(&zero);
	if (!port || !*port || bpf_ntohs(uh->dest) != *port)
		return DECAP_PASS_NOT_TUNNEL;
	ulen = bpf_ntohs(uh->len);
	if (ulen < sizeof(*uh) || ulen > o->inner_len)
		return DECAP_PASS_MALFORMED;
	o->inner = uh + 1;
	o->inner_len = ulen - sizeof(*uh);
	o->strip += sizeof(*uh);
	first = o->inner;
	if ((void *)(first + 1) > end)
		return DECAP_PASS_MALFORMED_INNER;
	o->inner_version = *first >> 4;
	*kind = DECAP_GUE;
	return 0;
}

/* The inner packet is whole: its header fits, its version is the one announced, and the length it
 * claims fits in what the outer headers give it. Its ethertype, for the Ethernet header in front. */
static __always_inline int check_inner(void *end, struct outer *o, __be16 *eth_proto)
{
	struct ipv6hdr *ip6h = o->inner;
	struct iphdr *iph = o->inner;
	__u32 tot;

	if (o->inner_version == 4) {
		if ((void *)(iph + 1) > end || o->inner_len < sizeof(*iph))
			return DECAP_PASS_MALFORMED_INNER;
		tot = bpf_ntohs(iph->tot_len);
		if (iph->version != 4 || iph->ihl < 5 || tot < iph->ihl * 4 || tot > o->inner_len)
			return DECAP_PASS_MALFORMED_INNER;
		*eth_proto = bpf_htons(ETH_P_IP);
		return 0;
	}
	if (o->inner_version == 6) {
		if ((void *)(ip6h + 1) > end || o->inner_len < sizeof(*ip6h))
			return DECAP_PASS_MALFORMED_INNER;
		tot = sizeof(*ip6h) + bpf_ntohs(ip6h->payload_len);
		if (ip6h->version != 6 || tot > o->inner_len)
			return DECAP_PASS_MALFORMED_INNER;
		*eth_proto = bpf_htons(ETH_P_IPV6);
		return 0;
	}
	return DECAP_PASS_MALFORMED_INNER;
}

/* Removes the outer headers and writes the Ethernet header again in front of the inner packet. */
static __always_inline int strip(struct xdp_md *ctx, struct outer *o, __be16 eth_proto, __u32 kind, int *act)
{
	struct ethhdr *eth = (void *)(long)ctx->data;
	unsigned char macs[2 * ETH_ALEN];

	if ((void *)(eth + 1) > (void *)(long)ctx->data_end)
		return DECAP_PASS_NOT_IP;  /* parse_eth saw it: only for the verifier */
	__builtin_memcpy(macs, eth, sizeof(macs));
	if (bpf_xdp_adjust_head(ctx, o->strip))
		return DECAP_PASS_ADJUST_FAILED;
	eth = (void *)(long)ctx->data;
	if ((void *)(eth + 1) > (void *)(long)ctx->data_end) {
		*act = XDP_ABORTED;
		return DECAP_ABORTED;
	}
	__builtin_memcpy(eth, macs, sizeof(macs));
	eth->h_proto = eth_proto;
	return kind;
}

/* The reason the frame leaves: decapsulated (DECAP_IPIP, DECAP_GUE) or why it passes untouched. */
static __always_inline __u32 decap(struct xdp_md *ctx, int *act)
{
	void *end = (void *)(long)ctx->data_end;
	struct cursor c = { .pos = (void *)(long)ctx->data };
	struct outer o = {};
	__be16 proto = 0;
	__u32 kind = 0;
	int r;

	r = parse_eth(&c, end, &proto);
	if (r)
		return r;
	r = proto == bpf_htons(ETH_P_IP) ? parse_outer4(&c, end, &o) : parse_outer6(&c, end, &o);
	if (r)
		return r;
	r = parse_tunnel(end, &o, &kind);
	if (r)
		return r;
	if (!decap_addrs.lookup(&o.daddr))
		return DECAP_PASS_NOT_LOCAL;
	r = check_inner(end, &o, &proto);
	if (r)
		return r;
	return strip(ctx, &o, proto, kind, act);
}

/* The one exit: count the reason. */
int xdp_decap(struct xdp_md *ctx)
{
	int act = XDP_PASS;
	__u32 reason = decap(ctx, &act);
	__u64 *n = decap_counters.lookup(&reason);

	if (n)
		*n += 1;
	return act;
}
