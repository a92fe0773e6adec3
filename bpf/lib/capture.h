/* Packet capture: the frames of one service or flow, copied into capture_ring as received (with the
 * verdict and its reason) and, when forwarded, as sent, at most at the capture's rate.
 *   capture_armed()     at the start: one array read, the whole cost while no capture runs (and two
 *                       bit tests on the frame's flags later);
 *   capture_received()  right before forwarding first rewrites the frame: match, rate, copy;
 *   capture_exit()      at the one exit: a frame forwarding never saw is decided as it is; then the
 *                       received record with the verdict and reason, and the sent one.
 * The decision for the frame waits in the per-CPU scratch entry, set and cleared within one pass of
 * the program: the first pass of a frame that asks the least-connection scanner (a tail call) never
 * reaches forwarding or the exit, so a frame is decided and recorded once, by its last pass. */
#ifndef XDPLB_CAPTURE_H
#define XDPLB_CAPTURE_H

/* struct capture_rec.state */
enum cap_state {
	CAP_UNDECIDED = 0,
	CAP_HELD = 1,             /* matched and within the rate: its received bytes are in the scratch */
	CAP_SKIP = 2,             /* not matched, or over the rate */
};

static __always_inline void capture_count(__u32 idx)
{
	__u64 *v = capture_stats.lookup(&idx);

	if (v)
		*v += 1;
}

/* The frame's capture flags (enum xdplb_capture_on): 0 without a capture, and for a simulation. */
static __always_inline __u32 capture_armed(int sim)
{
	__u32 zero = 0;
	struct capture_conf *c = capture_conf.lookup(&zero);

	if (!c || sim)
		return 0;
	return c->on;
}

static __always_inline int capture_match(struct capture_conf *c, struct pkt *p, __u32 service)
{
	__u32 m = c->match;

	if ((m & CAP_M_SERVICE) && c->service != service)
		return 0;
	if ((m & CAP_M_PROTO) && c->proto != p->key.proto)
		return 0;
	if ((m & CAP_M_PORT) && c->client_port != p->key.sport)
		return 0;
	if ((m & CAP_M_CLIENT) &&
	    (c->family != p->key.family || ((c->client[0] ^ p->key.saddr[0]) | (c->client[1] ^ p->key.saddr[1]) |
					    (c->client[2] ^ p->key.saddr[2]) | (c->client[3] ^ p->key.saddr[3]))))
		return 0;
	return 1;
}

/* The rate as GCRA over one shared word: a frame conforms while the theoretical arrival time of
 * the next one is at most `tolerance` ahead of now, and moves it one interval on. An idle bucket is
 * brought to now first. CPUs racing may each move it once more than the bound allows. */
static __always_inline int capture_take(struct capture_conf *c, __u64 now)
{
	struct capture_bucket *b;
	__u32 zero = 0;
	__u64 tat;

	b = capture_bucket.lookup(&zero);
	if (!b)
		return 0;
	tat = b->tat;
	if (tat < now) {
		__sync_val_compare_and_swap(&b->tat, tat, now);
		tat = now;
	}
	if (tat > now + c->tolerance)
		return 0;
	tat = __sync_fetch_and_add(&b->tat, c->interval);
	return tat <= now + c->tolerance;
}

/* Copies the frame as it is now into the record: at most snaplen bytes. */
static __always_inline void capture_copy(struct xdp_md *ctx, struct capture_rec *r, __u32 snaplen, __u64 now)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	__u32 len = end - data;
	__u64 n = len < snaplen ? len : snaplen;

	r->hdr.timestamp = now;
	r->hdr.length = len;
	r->hdr.caplen = 0;
	/* The verifier wants the size in [1, SNAP_MAX] in the register the helper gets: one 64-bit
	 * register, checked once (LLVM would otherwise check a zero-extended copy). */
	asm volatile("" : "+r"(n));
	if (n - 1 >= XDPLB_CAPTURE_SNAP_MAX)
		return;
	if (!bpf_xdp_load_bytes(ctx, 0, r->data, n))
		r->hdr.caplen = n;
}

static __always_inline void capture_emit(struct capture_rec *r)
{
	__u32 n = r->hdr.caplen;

	if (n > XDPLB_CAPTURE_SNAP_MAX)
		n = XDPLB_CAPTURE_SNAP_MAX;
	if (capture_ring.ringbuf_output(&r->hdr, sizeof(r->hdr) + n, 0))
		capture_count(CAP_STAT_LOST);
	else
		capture_count(CAP_STAT_EMITTED);
}

/* Decides the frame: matched and within the rate, its bytes as they are now wait in the scratch
 * entry for the verdict (CAP_HELD); else CAP_SKIP. */
static __always_inline void capture_hold(struct xdp_md *ctx, struct capture_rec *r, struct pkt *p, __u32 service)
{
	struct capture_conf *c;
	__u32 zero = 0;
	__u64 now;

	r->state = CAP_SKIP;
	c = capture_conf.lookup(&zero);
	if (!c || !capture_match(c, p, service))
		return;
	capture_count(CAP_STAT_MATCHED);
	now = bpf_ktime_get_ns();
	if (!capture_take(c, now)) {
		capture_count(CAP_STAT_OVER_RATE);
		return;
	}
	r->state = CAP_HELD;
	r->hdr.session = c->session;
	capture_copy(ctx, r, c->snaplen, now);
}

/* Right before the frame is first rewritten. */
static __always_inline void capture_received(struct xdp_md *ctx, __u32 flags, struct pkt *p, __u32 service)
{
	struct capture_rec *r;
	__u32 zero = 0;

	if (!(flags & CAP_ON_RECEIVED))
		return;
	r = capture_scratch.lookup(&zero);
	if (r)
		capture_hold(ctx, r, p, service);
}

/* The interface a frame leaves on: the one it came in on (XDP_TX), or its backend's. */
static __always_inline __u32 capture_egress(int act, __u32 ingress, __u32 backend)
{
	struct backend *be;

	if (act == XDP_TX)
		return ingress;
	be = backends.lookup(&backend);
	return be ? be->ifindex : 0;
}

/* At the exit: the received record with the verdict and reason, then for a frame that leaves the
 * sent one. */
static __always_inline void capture_exit(struct xdp_md *ctx, __u32 flags, struct pkt *p, __u32 service,
					 __u32 backend, __u32 reason, int act)
{
	__u32 zero = 0, ingress = ctx->ingress_ifindex, state;
	struct capture_conf *c;
	struct capture_rec *r;

	if (!(flags & CAP_ON_EXIT))
		return;
	/* read once here: LLVM would keep ctx + offset for the reads below, which the verifier refuses */
	asm volatile("" : "+r"(ingress));
	r = capture_scratch.lookup(&zero);
	if (!r)
		return;
	if (r->state == CAP_UNDECIDED)  /* never forwarded: the frame is as it came */
		capture_hold(ctx, r, p, service);
	state = r->state;
	r->state = CAP_UNDECIDED;
	if (state != CAP_HELD)
		return;
	r->hdr.direction = CAP_DIR_RECEIVED;
	r->hdr.verdict = act;
	r->hdr.reason = reason;
	r->hdr.ingress_ifindex = ingress;
	r->hdr.egress_ifindex = 0;
	r->hdr.service = service;
	r->hdr.backend = backend;
	capture_emit(r);
	if (act != XDP_TX && act != XDP_REDIRECT)
		return;
	c = capture_conf.lookup(&zero);
	if (!c)
		return;
	capture_copy(ctx, r, c->snaplen, bpf_ktime_get_ns());
	r->hdr.direction = CAP_DIR_SENT;
	r->hdr.egress_ifindex = capture_egress(act, ingress, backend);
	capture_emit(r);
}

#endif
