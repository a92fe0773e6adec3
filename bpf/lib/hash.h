/* Flow hashes for the schedulers: cheap multiply-rotate mixing with a murmur3 finaliser. */
#ifndef XDPLB_HASH_H
#define XDPLB_HASH_H

#define XDPLB_HASH_SEED 0x2b7e1516

static __always_inline __u32 rotl32(__u32 x, int r)
{
	return (x << r) | (x >> (32 - r));
}

static __always_inline __u32 hash_step(__u32 h, __u32 w)
{
	h ^= w * 0xcc9e2d51;
	return rotl32(h, 13) * 5 + 0xe6546b64;
}

static __always_inline __u32 hash_final(__u32 h)
{
	h ^= h >> 16;
	h *= 0x85ebca6b;
	h ^= h >> 13;
	h *= 0xc2b2ae35;
	h ^= h >> 16;
	return h;
}

/* Source address, and the source port when with_port (IPVS sh-port / mh-port). */
static __always_inline __u32 hash_source(const struct conn_key *k, int with_port)
{
	__u32 h = XDPLB_HASH_SEED;

	h = hash_step(h, k->saddr[0]);
	h = hash_step(h, k->saddr[1]);
	h = hash_step(h, k->saddr[2]);
	h = hash_step(h, k->saddr[3]);
	if (with_port)
		h = hash_step(h, k->sport);
	return hash_final(h);
}

/* The whole flow as the client sent it (the service fixes the destination address). */
static __always_inline __u32 hash_flow(const struct conn_key *k)
{
	__u32 h = XDPLB_HASH_SEED;

	h = hash_step(h, k->saddr[0]);
	h = hash_step(h, k->saddr[1]);
	h = hash_step(h, k->saddr[2]);
	h = hash_step(h, k->saddr[3]);
	h = hash_step(h, ((__u32)k->sport << 16) | k->dport);
	h = hash_step(h, k->proto);
	return hash_final(h);
}

#endif
