/* Baselines for bench/datapath.py: the floor (pass everything) and a trivial XDP_TX (MAC swap). */
#include <uapi/linux/bpf.h>
#include <linux/if_ether.h>

int xdp_pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}

int xdp_tx_swap(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	unsigned char tmp[ETH_ALEN];

	if ((void *)(eth + 1) > end)
		return XDP_PASS;
	__builtin_memcpy(tmp, eth->h_dest, ETH_ALEN);
	__builtin_memcpy(eth->h_dest, eth->h_source, ETH_ALEN);
	__builtin_memcpy(eth->h_source, tmp, ETH_ALEN);
	return XDP_TX;
}

/* The kernel's own cost of a new connection: one insert into an LRU hash shaped like conntrack,
 * keyed by 40 bytes of the frame. What tcp_syn_dr costs above this is the balancer's. */
#ifndef XDPLB_CONN_MAX
#define XDPLB_CONN_MAX 1048576
#endif
struct flow40 {
	__u32 w[10];
};
struct entry24 {
	__u64 a;
	__u64 b;
	__u64 c;
};
BPF_TABLE("lru_hash", struct flow40, struct entry24, lru_floor, XDPLB_CONN_MAX);

int xdp_lru_insert(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct flow40 key = {};
	struct entry24 val = {};

	if (data + ETH_HLEN + sizeof(key) > end)
		return XDP_PASS;
	__builtin_memcpy(&key, data + ETH_HLEN, sizeof(key));
	lru_floor.insert(&key, &val);
	return XDP_TX;
}
