/* Every struct and enum shared between the XDP programs and the Python control plane.
 * Python never restates these: it takes map key/value types from BCC's generated ctypes and parses
 * the enums below from this file (xdplb/cenum.py). Addresses are in network byte order; an IPv4
 * address sits in addr[0] with addr[1..3] zero. Bump XDPLB_SCHEMA_VERSION when a layout changes. */
#ifndef XDPLB_STRUCTS_H
#define XDPLB_STRUCTS_H

#define XDPLB_SCHEMA_VERSION 3

/* Magic in struct sim_meta: a frame carrying it in its XDP metadata is simulated (no side effects). */
#define XDPLB_SIM_MAGIC 0x53494d31 /* "SIM1" */

enum xdplb_family {
	FAMILY_IPV4 = 4,
	FAMILY_IPV6 = 6,
};

/* IPVS scheduler names, lower-cased, are the Python names. */
enum xdplb_sched {
	LB_SCHED_RR = 0,
	LB_SCHED_WRR = 1,
	LB_SCHED_SH = 2,
	LB_SCHED_MH = 3,
	LB_SCHED_LC = 4,
	LB_SCHED_WLC = 5,
	LB_SCHED_SED = 6,
	LB_SCHED_NQ = 7,
	LB_SCHED_FO = 8,
};

enum xdplb_method {
	LB_METHOD_DR = 0,
	LB_METHOD_TUN = 1,
	LB_METHOD_NAT = 2,
};

/* struct backend.encap: how TUN carries a packet to this backend */
enum xdplb_encap {
	ENCAP_NONE = 0,           /* DR: the frame itself, MACs rewritten */
	ENCAP_IPIP = 1,           /* IPIP: 4in4, 6in6, 4in6 by the inner and the backend's family */
	ENCAP_GUE = 2,            /* GUE variant 1 (direct IP in UDP) to backend.gue_port */
};

/* struct service.flags */
enum xdplb_svc_flag {
	SVC_F_HASH_SPORT = 1,     /* sh/mh hash the source port too (IPVS sh-port, mh-port) */
	SVC_F_PERSISTENT = 2,     /* persistence templates (ipvsadm -p) */
	SVC_F_EXPIRE_NODEST = 4,  /* reschedule a connection whose backend is gone, else drop its packets */
	SVC_F_THRESHOLDS = 8,     /* some backend has an upper connection threshold: check overload */
};

/* struct backend.flags */
enum xdplb_backend_flag {
	BE_F_ACTIVE = 1,          /* slot in use; a connection to an inactive slot is rescheduled */
};

/* struct conn.state. IPVS's counting: a backend's ActiveConn are its TCP connections in
 * CT_ESTABLISHED; InActConn are the others (CT_NEW, CT_CLOSING, every UDP flow) until they expire. */
enum xdplb_conn_state {
	CT_NEW = 0,               /* SYN seen (lives in the half-open table until the client's ACK) */
	CT_ESTABLISHED = 1,       /* TCP past the handshake (or met mid-stream); every UDP flow */
	CT_CLOSING = 2,           /* FIN or RST seen: a new SYN on it opens a new connection */
	CT_RETIRED = 3,           /* counted nowhere: expired, promoted, or being placed again */
};

/* struct settings.timeout index: IPVS's idle timeouts (ipvsadm --set tcp tcpfin udp) */
enum xdplb_timeout {
	TO_SYN = 0,               /* CT_NEW (IPVS SYN_RECV) */
	TO_TCP = 1,               /* CT_ESTABLISHED */
	TO_TCPFIN = 2,            /* CT_CLOSING */
	TO_UDP = 3,               /* any UDP state */
	TO_MAX,
};

/* Global counters: one per verdict and one per pass/drop reason (per-CPU array, index = value). */
enum xdplb_counter {
	CNT_VERDICT_PASS = 0,
	CNT_VERDICT_DROP,
	CNT_VERDICT_TX,
	CNT_VERDICT_REDIRECT,
	CNT_PASS_NOT_IP,          /* not IPv4/IPv6 (ARP, LLDP, ...) */
	CNT_PASS_VLAN_STACKED,    /* more than one VLAN tag */
	CNT_PASS_TRUNC_L2,        /* frame shorter than its Ethernet/VLAN header */
	CNT_PASS_MALFORMED_L3,    /* truncated IP header, bad version/IHL/length */
	CNT_PASS_FRAGMENT,        /* IPv4 or IPv6 fragment: the kernel reassembles */
	CNT_PASS_IPV6_EXTHDR,     /* more extension headers than XDPLB_MAX_EXTHDR */
	CNT_PASS_NOT_L4,          /* not TCP/UDP/ICMP (ESP, AH, GRE, an unknown extension header...) */
	CNT_PASS_MALFORMED_L4,    /* TCP/UDP header cut by the frame or the IP length, data offset < 5 */
	CNT_PASS_NOT_VIP,         /* no virtual service for (daddr, dport, proto) */
	CNT_DROP_NO_BACKEND,      /* a service with no usable backend */
	CNT_DROP_NO_NEXTHOP,      /* a backend whose next hop is not resolved */
	CNT_DROP_REDIRECT,        /* the egress port is not in the devmap */
	CNT_CONN_NEW,             /* connections scheduled by the scheduler */
	CNT_CONN_HIT,             /* packets of a known connection */
	CNT_CONN_MIDSTREAM,       /* TCP non-SYN without an entry: placed by the consistent hash
	                           * (an entry is made, except for a FIN or RST) */
	CNT_CONN_RESCHEDULED,     /* known connection whose backend went away (expire_nodest) */
	CNT_CONN_INSERT_FAIL,     /* the table could not take a new entry */
	CNT_CONN_EXPIRED,         /* a known connection idle past its timeout: scheduled afresh */
	CNT_CONN_INSERTED,        /* entries inserted into the connection table */
	CNT_HALFOPEN_INSERTED,    /* entries inserted into the half-open table (a SYN) */
	CNT_HALFOPEN_PROMOTED,    /* half-open entries moved to the connection table (the client's ACK) */
	CNT_HALFOPEN_RETIRED,     /* stale half-open entries deleted to place their flow again */
	CNT_PERSIST_HIT,          /* new connections placed by a persistence template */
	CNT_PERSIST_INSERTED,     /* templates inserted */
	CNT_DROP_NODEST,          /* a connection whose backend is gone, on a service without expire_nodest */
	CNT_DROP_OVERLOADED,      /* every backend the scheduler may use is above its upper threshold */
	CNT_PASS_ICMP,            /* ICMP that is not an error about a flow (echo to a VIP included) */
	CNT_PASS_ICMP_NO_CONN,    /* an ICMP error quoting a flow no connection holds */
	CNT_ICMP_FORWARDED,       /* an ICMP error sent on to the backend of the flow it quotes */
	CNT_ICMP_TOO_BIG_SENT,    /* fragmentation-needed / packet-too-big sent back to the client */
	CNT_DROP_TOO_BIG,         /* IPv4 without DF that does not fit once encapsulated: XDP cannot fragment */
	CNT_DROP_ENCAP,           /* the frame could not grow for the outer header */
	CNT_MAX,
};

/* services: key -> service id. port 0 matches every port of (addr, proto). A multi-port service
 * (LVS's firewall-mark service) has several keys with one id. */
struct vip_key {
	__u32 addr[4];
	__u16 port;               /* network byte order */
	__u8 proto;               /* IPPROTO_TCP / IPPROTO_UDP */
	__u8 family;              /* enum xdplb_family */
};

/* service_conf[id]: what a virtual service does. Written by the reconciler. */
struct service {
	__u32 flags;              /* enum xdplb_svc_flag */
	__u8 sched;               /* enum xdplb_sched */
	__u8 method;              /* enum xdplb_method */
	__u16 nat_port;           /* later: NAT port mapping, network byte order, 0 = keep */
	__u32 ring_size;          /* Maglev table length M (prime); 0 = no usable backend */
	__u32 seq_size;           /* scheduler sequence length (rr and lc-family list, wrr sequence, sh
	                           * buckets) */
	__u32 persist_timeout;    /* jiffies a template outlives its last connection (ipvsadm -p) */
	__u32 persist_mask[4];    /* client netmask (ipvsadm -M), network byte order, one word per addr word */
	__u32 backend_count;      /* backends configured (diagnostics) */
	__u32 gen;                /* bumped on each table rewrite (diagnostics) */
	/* The lc family's rank of a backend, as numbers rather than a scheduler switch (sched.h):
	 * (active * rank_active + inactive * rank_inactive + rank_plus) / (rank_weighted ? weight : 1) */
	__u16 rank_active;
	__u8 rank_inactive;
	__u8 rank_plus;
	__u8 rank_weighted;
	__u8 rank_idle_first;     /* nq: the first backend with no active connection wins outright */
	__u16 pad;
};

/* settings[0]: the idle timeouts and the clock. Reconciler. */
struct settings {
	__u64 clock_offset;       /* jiffies added to bpf_jiffies64(): 0 in service, tests move time */
	__u32 timeout[TO_MAX];    /* jiffies, enum xdplb_timeout */
};

/* backends[id]: one real server of one service. */
struct backend {
	__u32 addr[4];
	__u8 family;              /* enum xdplb_family */
	__u8 flags;               /* enum xdplb_backend_flag */
	__u16 weight;             /* 0 = quiescent: no new connections */
	__u32 service;            /* owning service id */
	__u32 ifindex;            /* egress interface of the next hop */
	__u32 tx_slot;            /* devmap slot of ifindex, used when ifindex != ingress */
	__u8 dmac[6];             /* next-hop MAC (resolved by the control plane) */
	__u8 smac[6];             /* our MAC on ifindex */
	__u16 gen;                /* bumped when the slot is reused; a connection remembers it */
	__u16 port;               /* later: NAT real port, network byte order */
	__u8 encap;               /* enum xdplb_encap: ENCAP_NONE for DR */
	__u8 pad;
	__u16 gue_port;           /* GUE destination port, network byte order */
	__u16 mtu;                /* egress MTU: a TUN packet that would not fit gets ICMP (0: no check) */
	__u16 pad2;
	__u32 u_threshold;        /* upper connection threshold (ipvsadm -x), 0 = none */
	__u32 l_threshold;        /* lower threshold (ipvsadm -y): overloaded until below it */
	__u32 outer_src[4];       /* TUN: the outer source address (the director's), network byte order */
	__u32 src_hash_mask[4];   /* TUN: bits of outer_src taken from the flow hash instead (receive-side
	                           * scaling at the backend); 0 = one fixed source */
};

/* One scan (lc family, or a table scheduler past overloaded backends), handed between the
 * balancer and the scanner program (sched.h). */
struct lc_scan {
	__u64 num;                /* lc: the best rank so far is num/den (den 0: none yet) */
	__u64 den;
	__u32 best;               /* the answer: backend id, */
	__u32 reason;             /* or else the enum xdplb_counter why there is none */
	__u32 svc;                /* the question: service id, */
	__u32 flow;               /* the flow's hashes, */
	__u32 source;
	__u32 midstream;          /* a TCP flow met without its SYN, */
	__u32 sim;                /* and whether it is simulated (no overload mark written) */
	__u32 ready;              /* 1 once the scanner answered */
};

/* A backend's connection counts (IPVS ActiveConn / InActConn). */
struct conn_counts {
	__s64 active;
	__s64 inactive;
};

/* be_load[id]: the data plane's counts, moved by atomic adds, and the overload mark. */
struct be_load {
	struct conn_counts n;
	__u64 overloaded;         /* set at u_threshold, cleared below l_threshold (hysteresis) */
};

/* conntrack: one global LRU hash; key is the flow as the client sent it. */
struct conn_key {
	__u32 saddr[4];
	__u32 daddr[4];
	__u16 sport;              /* network byte order */
	__u16 dport;
	__u8 proto;
	__u8 family;
	__u16 pad;
};

struct conn {
	__u64 last_seen;          /* jiffies of the last packet (refreshed at most once per jiffy) */
	__u64 state;              /* enum xdplb_conn_state. 64 bits because it changes by compare-and-swap
	                           * (LLVM 14 has no 32-bit BPF atomics): the CPU that wins the swap moves
	                           * the backend's counts, so each connection is counted exactly once */
	__u32 backend;            /* backend id */
	__u32 service;            /* service id */
	__u16 be_gen;             /* backend.gen when scheduled */
	__u8 flags;               /* later: synced, ... */
	__u8 pad[5];
};

/* persist: a persistence template, (service, masked client address) -> backend */
struct persist_key {
	__u32 saddr[4];           /* the client address and persist_mask */
	__u32 service;
	__u8 family;
	__u8 pad[3];
};

struct persist {
	__u64 last_seen;          /* jiffies of the last connection it placed (or the sweeper saw live) */
	__u32 backend;
	__u16 be_gen;
	__u16 pad;
};

/* later: reverse NAT, the backend's reply flow -> the original client flow */
struct nat_rev_value {
	struct conn_key orig;
};

/* later: ring buffer of connection events for state sync */
enum xdplb_event_kind {
	EV_CONN_NEW = 1,
	EV_CONN_CLOSED = 2,
};

struct conn_event {
	struct conn_key key;
	struct conn conn;
	__u32 kind;               /* enum xdplb_event_kind */
	__u32 pad;
};

/* Per-service and per-backend counters (per-CPU arrays, summed by Python). IPVS --stats words. */
struct stats {
	__u64 conns;
	__u64 in_pkts;
	__u64 in_bytes;
	__u64 out_pkts;           /* later: NAT replies */
	__u64 out_bytes;
};

/* pin_meta[0]: what the pinned maps are. A control plane that finds other values refuses them. */
struct pin_meta {
	__u32 schema_version;     /* XDPLB_SCHEMA_VERSION of the program that created the maps */
	__u32 pad;
};

/* Frame metadata in front of a simulated frame: Python writes magic, the program writes the rest. */
struct sim_meta {
	__u32 magic;              /* XDPLB_SIM_MAGIC */
	__u32 service;            /* service id, or ~0 */
	__u32 backend;            /* chosen backend id, or ~0 */
	__u32 reason;             /* enum xdplb_counter of the decisive step */
};

/* Packet capture (bpf/lib/capture.h, xdplb/capture.py): the frames of one service or flow, copied
 * into a ring buffer as received and as sent, at a bounded rate. None of these maps is pinned (a
 * capture belongs to the process that runs the program), so their layouts are not in the schema. */
#define XDPLB_CAPTURE_SNAP_MAX 2048   /* bytes of a frame a record can hold */

/* struct capture_conf.on: Python sets both or neither. Two flags rather than one so the verifier,
 * which learns the first on the branch before forwarding, does not know the second at the exit: it
 * walks forwarding once, not once with a capture and once without (capture.h). */
enum xdplb_capture_on {
	CAP_ON_RECEIVED = 1,      /* take a frame's received copy before forwarding rewrites it */
	CAP_ON_EXIT = 2,          /* emit at the exit (and decide the frames forwarding never saw) */
};

/* struct capture_conf.match: which fields of the filter a frame must equal (none: every frame) */
enum xdplb_capture_match {
	CAP_M_SERVICE = 1,        /* the service id */
	CAP_M_CLIENT = 2,         /* the client's address (and family) */
	CAP_M_PORT = 4,           /* the client's port */
	CAP_M_PROTO = 8,          /* the L4 protocol */
};

/* struct capture_hdr.direction */
enum xdplb_capture_dir {
	CAP_DIR_RECEIVED = 0,     /* as it came in, with the verdict the balancer gave it */
	CAP_DIR_SENT = 1,         /* as it went out (XDP_TX / XDP_REDIRECT): rewritten, encapsulated, or our ICMP */
};

/* capture_stats index: what the capture did, per CPU. */
enum xdplb_capture_stat {
	CAP_STAT_MATCHED = 0,     /* frames that matched the filter */
	CAP_STAT_EMITTED,         /* records written to the ring (a forwarded frame writes two) */
	CAP_STAT_OVER_RATE,       /* matched frames over the rate: no record */
	CAP_STAT_LOST,            /* records the ring had no room for */
	CAP_STAT_MAX,
};

/* capture_conf[0]: the capture running, written by Python; on = 0 (the rest ignored): none. */
struct capture_conf {
	__u32 on;                 /* enum xdplb_capture_on: both, or 0 */
	__u32 match;              /* enum xdplb_capture_match */
	__u32 service;            /* service id */
	__u32 client[4];          /* client address, network byte order */
	__be16 client_port;       /* network byte order */
	__u8 proto;               /* IPPROTO_TCP / IPPROTO_UDP */
	__u8 family;              /* enum xdplb_family of client */
	__u32 snaplen;            /* bytes copied per frame, 1..XDPLB_CAPTURE_SNAP_MAX */
	__u32 session;            /* copied into every record: Python drops a previous capture's */
	__u64 interval;           /* the rate: nanoseconds per frame */
	__u64 tolerance;          /* the burst: (burst - 1) * interval nanoseconds */
};

/* capture_bucket[0]: the rate's token bucket as GCRA, one for every CPU: the theoretical arrival
 * time of the next frame (bpf_ktime_get_ns), moved by atomics. Python zeroes it at each start. */
struct capture_bucket {
	__u64 tat;
};

/* One record in capture_ring: this header, then caplen bytes of the frame. */
struct capture_hdr {
	__u64 timestamp;          /* bpf_ktime_get_ns (CLOCK_MONOTONIC) when the bytes were copied */
	__u32 direction;          /* enum xdplb_capture_dir */
	__u32 verdict;            /* XDP action (XDP_DROP, XDP_PASS, XDP_TX, XDP_REDIRECT) */
	__u32 reason;             /* enum xdplb_counter: why it passed or dropped, how it was placed or sent */
	__u32 ingress_ifindex;
	__u32 egress_ifindex;     /* sent: the interface it left on; 0 for a received record */
	__u32 length;             /* the frame's length */
	__u32 caplen;             /* bytes of it that follow */
	__u32 service;            /* service id, or ~0 */
	__u32 backend;            /* backend id, or ~0 */
	__u32 session;            /* capture_conf.session */
};

/* capture_scratch[0], per CPU: the record being built (the received bytes wait here for the verdict). */
struct capture_rec {
	__u32 state;              /* this frame: 0 undecided, else held or skipped (capture.h, enum cap_state) */
	__u32 pad;
	struct capture_hdr hdr;
	__u8 data[XDPLB_CAPTURE_SNAP_MAX];
};

#endif
