/* Every map of the balancer: key -> value, units, byte order, and who writes it. Sizes are
 * compile-time constants the Python loader passes with -D (xdplb/datapath.py, Sizes).
 * With XDPLB_PIN_DIR (a quoted bpffs directory) every map holding state or configuration is pinned
 * there under its own name, so a restarted control plane opens the same maps and traffic never
 * notices (BCC opens a pinned map that exists, creates and pins one that does not; Python checks
 * each one's shape, xdplb/pinning.py). The scratch entries are not pinned. */
#ifndef XDPLB_MAPS_H
#define XDPLB_MAPS_H

#ifdef XDPLB_PIN_DIR
#define PINNED(type, name) type ":" XDPLB_PIN_DIR "/" #name
#else
#define PINNED(type, name) type
#endif

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
BPF_F_TABLE(PINNED("hash", services), struct vip_key, u32, services, XDPLB_MAX_VIPS, 0);

/* service id -> struct service. Reconciler. */
BPF_F_TABLE(PINNED("array", service_conf), u32, struct service, service_conf, XDPLB_MAX_SERVICES, 0);

/* backend id -> struct backend (address, weight, resolved next hop). Reconciler. */
BPF_F_TABLE(PINNED("array", backends), u32, struct backend, backends, XDPLB_MAX_BACKENDS, 0);

/* service id * XDPLB_RING_MAX + i -> backend id: the service's weighted Maglev table, i < ring_size.
 * Used by mh, and by rr/wrr for TCP flows met mid-stream. Reconciler. */
BPF_F_TABLE(PINNED("array", rings), u32, u32, rings, XDPLB_MAX_SERVICES * XDPLB_RING_MAX, 0);

/* service id * XDPLB_SEQ_MAX + i -> backend id, i < seq_size: rr's backend list, wrr's interleaved
 * weighted sequence, sh's bucket table. Reconciler. */
BPF_F_TABLE(PINNED("array", seqs), u32, u32, seqs, XDPLB_MAX_SERVICES * XDPLB_SEQ_MAX, 0);

/* service id -> position in seqs for rr/wrr. Data plane, per CPU: no shared cache line, no lock. */
BPF_F_TABLE(PINNED("percpu_array", rr_cursor), u32, u32, rr_cursor, XDPLB_MAX_SERVICES, 0);

/* struct conn_key (the client's flow) -> struct conn. Data plane inserts. One table and one LRU for
 * all CPUs, so a flow whose packets land on different CPUs keeps one backend. (The common LRU hands
 * each CPU free entries in batches; measured here, its insert is about 100 ns cheaper than
 * BPF_F_NO_COMMON_LRU's, which rotates its lists on every insert.) */
BPF_F_TABLE(PINNED("lru_hash", conntrack), struct conn_key, struct conn, conntrack, XDPLB_CONN_MAX, 0);

/* struct conn_key -> struct conn for TCP flows that sent only a SYN so far. Data plane inserts; the
 * client's ACK moves the entry to conntrack. A flood of spoofed SYNs recycles this LRU only, never
 * an established connection. */
BPF_F_TABLE(PINNED("lru_hash", conn_syn), struct conn_key, struct conn, conn_syn, XDPLB_SYN_MAX, 0);

/* struct persist_key -> struct persist: persistence templates. Data plane inserts; the sweeper
 * refreshes those with live connections and deletes the expired. */
BPF_F_TABLE(PINNED("lru_hash", persist), struct persist_key, struct persist, persist, XDPLB_PERSIST_MAX, 0);

/* backend id -> struct be_load: connection counts, moved by the data plane with atomic adds (one
 * shared entry, not per CPU: the lc family reads them on every new connection). */
BPF_F_TABLE(PINNED("array", be_load), u32, struct be_load, be_load, XDPLB_MAX_BACKENDS, 0);

/* backend id -> struct conn_counts: the sweeper's correction, added to be_load (LRU evictions and
 * idle expiry have no hook to count them down). Only the sweeper writes it. */
BPF_F_TABLE(PINNED("array", be_fix), u32, struct conn_counts, be_fix, XDPLB_MAX_BACKENDS, 0);

/* 0 -> the lc-family scan in flight on this CPU (sched.h). Data plane, per CPU. */
BPF_PERCPU_ARRAY(lc_scratch, struct lc_scan, 1);

/* LC_PROG_SCAN -> xdplb_lc, LC_PROG_MAIN -> xdplb_main: the balancer tail-calls the scanner,
 * which answers and tail-calls the balancer again. Loader. Pinned: the kernel empties a program
 * array when its last user reference goes, which would be the control plane's exit. */
BPF_F_TABLE(PINNED("prog", lc_progs), u32, u32, lc_progs, 2, 0);

/* 0 -> struct settings: timeouts and clock offset. Reconciler. */
BPF_F_TABLE(PINNED("array", settings), u32, struct settings, settings, 1, 0);

/* devmap slot -> egress ifindex, for backends behind another interface. Reconciler. */
BPF_XDP_REDIRECT_MAP(PINNED("devmap", tx_ports), int, tx_ports, XDPLB_MAX_TX_PORTS);

/* enum xdplb_counter -> packets, per CPU. Data plane. */
BPF_F_TABLE(PINNED("percpu_array", counters), u32, u64, counters, CNT_MAX, 0);

/* service id / backend id -> struct stats, per CPU. Data plane; the reconciler zeroes a reused id. */
BPF_F_TABLE(PINNED("percpu_array", svc_stats), u32, struct stats, svc_stats, XDPLB_MAX_SERVICES, 0);
BPF_F_TABLE(PINNED("percpu_array", be_stats), u32, struct stats, be_stats, XDPLB_MAX_BACKENDS, 0);

/* 0 -> struct pin_meta: the schema version of the pinned maps. Loader; checked on every reopen. */
BPF_F_TABLE(PINNED("array", pin_meta), u32, struct pin_meta, pin_meta, 1, 0);

/* Never read or written by the program: it exists so Python gets BCC's generated type for the
 * simulation metadata, instead of a hand-written copy. */
BPF_ARRAY(sim_layout, struct sim_meta, 1);

/* Packet capture (capture.h). Not pinned: a capture belongs to the process running the program, and
 * a restarted one starts with none. XDPLB_CAPTURE_PAGES: the ring's size in pages (a power of 2). */
#ifndef XDPLB_CAPTURE_PAGES
#define XDPLB_CAPTURE_PAGES 512
#endif

/* 0 -> struct capture_conf: the capture running, if any. Python (xdplb/capture.py); the one read
 * every frame pays while no capture runs. */
BPF_ARRAY(capture_conf, struct capture_conf, 1);

/* 0 -> struct capture_bucket: the capture's rate, shared by every CPU (atomics). Data plane; Python
 * zeroes it when a capture starts. Apart from capture_conf: no write near the line every frame reads. */
BPF_ARRAY(capture_bucket, struct capture_bucket, 1);

/* enum xdplb_capture_stat -> frames or records, per CPU. Data plane; Python zeroes them at a start. */
BPF_PERCPU_ARRAY(capture_stats, u64, CAP_STAT_MAX);

/* 0 -> struct capture_rec: the record this CPU is building. Data plane. */
BPF_PERCPU_ARRAY(capture_scratch, struct capture_rec, 1);

/* The records: struct capture_hdr, then hdr.caplen bytes of the frame. Data plane writes, Python reads. */
BPF_RINGBUF_OUTPUT(capture_ring, XDPLB_CAPTURE_PAGES);

#endif
