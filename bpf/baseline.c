/* Baselines for bench/datapath.py: the floor (pass everything) and a trivial XDP_TX (MAC swap); the
 * live-frames generator, the reflector and the sinks of bench/e2e.py and the lab tests. */
#include <uapi/linux/bpf.h>
#include <uapi/linux/if_ether.h>
#include <uapi/linux/in.h>
#include <uapi/linux/ip.h>
#include <uapi/linux/udp.h>

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

/* The packet generator's program (live frames): transmit the frame as it is. */
int xdp_tx(struct xdp_md *ctx)
{
	return XDP_TX;
}

/* The reflector of the end-to-end benchmark: what any DR forwarding costs at least, a MAC rewrite
 * to a fixed next hop and XDP_TX, counted per CPU so its packet rate can be read. The MACs come
 * with -D from the lab's topology (bench/e2e.py). */
#ifndef REFLECT_DMAC
#define REFLECT_DMAC 0x02, 0, 0, 0, 0, 0x02
#endif
#ifndef REFLECT_SMAC
#define REFLECT_SMAC 0x02, 0, 0, 0, 0, 0x01
#endif
BPF_PERCPU_ARRAY(reflected, u64, 1);

int xdp_reflect(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	unsigned char dmac[ETH_ALEN] = { REFLECT_DMAC };
	unsigned char smac[ETH_ALEN] = { REFLECT_SMAC };
	int zero = 0;
	u64 *n;

	if ((void *)(eth + 1) > end)
		return XDP_PASS;
	__builtin_memcpy(eth->h_dest, dmac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, smac, ETH_ALEN);
	n = reflected.lookup(&zero);
	if (n)
		*n += 1;
	return XDP_TX;
}

/* The sink of the end-to-end benchmark: counts and drops what the director sends back. */
BPF_PERCPU_ARRAY(sunk, u64, 1);

int xdp_sink(struct xdp_md *ctx)
{
	int zero = 0;
	u64 *n = sunk.lookup(&zero);

	if (n)
		*n += 1;
	return XDP_DROP;
}

/* The restart test's sink (tests/test_e2e_restart.py): counts and drops the generated flow the
 * director sends back (untagged IPv4, UDP to SINK_PORT) and passes everything else, so the rest of
 * the traffic through the port goes on. */
#ifndef SINK_PORT
#define SINK_PORT 9
#endif

int xdp_sink_udp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);
	struct udphdr *udp;
	int zero = 0;
	u64 *n;

	if ((void *)(ip + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP) || ip->protocol != IPPROTO_UDP)
		return XDP_PASS;
	udp = (void *)ip + ip->ihl * 4;
	if ((void *)(udp + 1) > end || udp->dest != bpf_htons(SINK_PORT))
		return XDP_PASS;
	n = sunk.lookup(&zero);
	if (n)
		*n += 1;
	return XDP_DROP;
}
