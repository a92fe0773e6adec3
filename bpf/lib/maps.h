/* Every map of the balancer: key -> value, units, byte order, and who writes it. Sizes are
 * compile-time constants the Python loader passes with -D (xdplb/datapath.py, Sizes). */
#ifndef XDPLB_MAPS_H
#define XDPLB_MAPS_H

#ifndef XDPLB_MAX_SERVICES
#define XDPLB_MAX_SERVICES 64
#endif
#ifndef XDPLB_MAX_VIPS
#define XDPLB_MAX_VIPS 256
#endif
#ifndef XDPLB_MAX_BACKENDS
#define XDPLB_MAX_BACKENDS 4096
#endif
#ifndef XDPLB_RING_MAX
#define XDPLB_RING_MAX 65537
#endif
#ifndef XDPLB_SEQ_MAX
#define XDPLB_SEQ_MAX 4096
#endif
#ifndef XDPLB_CONN_MAX
#define XDPLB_CONN_MAX 1048576
#endif
#ifndef XDPLB_SYN_MAX
#define XDPLB_SYN_MAX 262144
#endif
#ifndef XDPLB_PERSIST_MAX
#define XDPLB_PERSIST_MAX 262144
#endif
#ifndef XDPLB_LC_MAX
#define XDPLB_LC_MAX 1024
#endif
#ifndef XDPLB_MAX_TX_PORTS
#define XDPLB_MAX_TX_PORTS 64
#endif

/* struct vip_key -> service id. Reconciler. A multi-port service has several keys. */
BPF_HASH(services, struct vip_key, u32, XDPLB_MAX_VIPS);

/* service id -> struct service. Reconciler. */
BPF_ARRAY(service_conf, struct service, XDPLB_MAX_SERVICES);

/* backend id -> struct backend (address, weight, resolved next hop). Reconciler. */
BPF_ARRAY(backends, struct backend, XDPLB_MAX_BACKENDS);

/* service id * XDPLB_RING_MAX + i -> backend id: the service's weighted Maglev table, i < ring_size.
 * Used by mh, and by rr/wrr for TCP flows met mid-stream. Reconciler. */
BPF_ARRAY(rings, u32, XDPLB_MAX_SERVICES * XDPLB_RING_MAX);

/* service id * XDPLB_SEQ_MAX + i -> backend id, i < seq_size: rr's backend list, wrr's interleaved
 * weighted sequence, sh's bucket table. Reconciler. */
BPF_ARRAY(seqs, u32, XDPLB_MAX_SERVICES * XDPLB_SEQ_MAX);

/* service id -> position in seqs for rr/wrr. Data plane, per CPU: no shared cache line, no lock. */
BPF_PERCPU_ARRAY(rr_cursor, u32, XDPLB_MAX_SERVICES);

/* struct conn_key (the client's flow) -> struct conn. Data plane inserts. One table and one LRU for
 * all CPUs, so a flow whose packets land on different CPUs keeps one backend. (The common LRU hands
 * each CPU free entries in batches; measured here, its insert is about 100 ns cheaper than
 * BPF_F_NO_COMMON_LRU's, which rotates its lists on every insert.) */
BPF_TABLE("lru_hash", struct conn_key, struct conn, conntrack, XDPLB_CONN_MAX);

/* struct conn_key -> struct conn for TCP flows that sent only a SYN so far. Data plane inserts; the
 * client's ACK moves the entry to conntrack. A flood of spoofed SYNs recycles this LRU only, never
 * an established connection. */
BPF_TABLE("lru_hash", struct conn_key, struct conn, conn_syn, XDPLB_SYN_MAX);

/* struct persist_key -> struct persist: persistence templates. Data plane inserts; the sweeper
 * refreshes those with live connections and deletes the expired. */
BPF_TABLE("lru_hash", struct persist_key, struct persist, persist, XDPLB_PERSIST_MAX);

/* backend id -> struct be_load: connection counts, moved by the data plane with atomic adds (one
 * shared entry, not per CPU: the lc family reads them on every new connection). */
BPF_ARRAY(be_load, struct be_load, XDPLB_MAX_BACKENDS);

/* backend id -> struct conn_counts: the sweeper's correction, added to be_load (LRU evictions and
 * idle expiry have no hook to count them down). Only the sweeper writes it. */
BPF_ARRAY(be_fix, struct conn_counts, XDPLB_MAX_BACKENDS);

/* 0 -> the lc-family scan in flight on this CPU (sched.h). Data plane, per CPU. */
BPF_PERCPU_ARRAY(lc_scratch, struct lc_scan, 1);

/* LC_PROG_SCAN -> xdplb_lc, LC_PROG_MAIN -> xdplb_main: the balancer tail-calls the scanner,
 * which answers and tail-calls the balancer again. Loader. */
BPF_PROG_ARRAY(lc_progs, 2);

/* 0 -> struct settings: timeouts and clock offset. Reconciler. */
BPF_ARRAY(settings, struct settings, 1);

/* devmap slot -> egress ifindex, for backends behind another interface. Reconciler. */
BPF_DEVMAP(tx_ports, XDPLB_MAX_TX_PORTS);

/* enum xdplb_counter -> packets, per CPU. Data plane. */
BPF_PERCPU_ARRAY(counters, u64, CNT_MAX);

/* service id / backend id -> struct stats, per CPU. Data plane; the reconciler zeroes a reused id. */
BPF_PERCPU_ARRAY(svc_stats, struct stats, XDPLB_MAX_SERVICES);
BPF_PERCPU_ARRAY(be_stats, struct stats, XDPLB_MAX_BACKENDS);

/* Never read or written by the program: it exists so Python gets BCC's generated type for the
 * simulation metadata, instead of a hand-written copy. */
BPF_ARRAY(sim_layout, struct sim_meta, 1);

#endif
