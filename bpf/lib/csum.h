/* Internet checksums (RFC 1071): 16-bit words summed in a 64-bit accumulator, folded at the end.
 * Words are summed as loaded from the packet (network order), which is byte-order neutral, so
 * constants added to a sum go in network order too. */
#ifndef XDPLB_CSUM_H
#define XDPLB_CSUM_H

static __always_inline __u16 lb_csum_fold(__u64 sum)
{
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return ~sum;
}

/* The sum of n 16-bit words (n known at compile time: the loop unrolls). */
static __always_inline __u64 lb_csum_words(const void *p, int n)
{
	const __u16 *w = p;
	__u64 sum = 0;
	int i;

#pragma unroll
	for (i = 0; i < n; i++)
		sum += w[i];
	return sum;
}

/* An IPv4 header without options, its checksum field zero. */
static __always_inline __u16 ipv4_header_csum(struct iphdr *iph)
{
	return lb_csum_fold(lb_csum_words(iph, sizeof(*iph) / 2));
}

/* The pseudo-header sums TCP, UDP and ICMPv6 checksums start from. */
static __always_inline __u64 pseudo4_sum(__be32 saddr, __be32 daddr, __u8 proto, __u32 len)
{
	return lb_csum_words(&saddr, 2) + lb_csum_words(&daddr, 2) + bpf_htons(proto) + bpf_htons(len);
}

static __always_inline __u64 pseudo6_sum(const void *saddr, const void *daddr, __u8 proto, __u32 len)
{
	return lb_csum_words(saddr, 8) + lb_csum_words(daddr, 8) + bpf_htons(len >> 16) + bpf_htons(len & 0xffff) +
	       bpf_htons(proto);
}

#endif
