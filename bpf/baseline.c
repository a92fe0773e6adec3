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
