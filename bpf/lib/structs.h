/* Every struct and enum shared between the XDP programs and the Python control plane.
 * Python never restates these: it takes map key/value types from BCC's generated ctypes and parses
 * the enums below from this file (xdplb/cenum.py). Addresses are in network byte order; an IPv4
 * address sits in addr[0] with addr[1..3] zero. Bump XDPLB_SCHEMA_VERSION when a layout changes. */
#ifndef XDPLB_STRUCTS_H
#define XDPLB_STRUCTS_H

#define XDPLB_SCHEMA_VERSION 1

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
	/* next data-plane issue: least-connection family */
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

/* struct service.flags */
enum xdplb_svc_flag {
	SVC_F_HASH_SPORT = 1,     /* sh/mh hash the source port too (IPVS sh-port, mh-port) */
	SVC_F_PERSISTENT = 2,     /* persistence templates (later) */
	SVC_F_EXPIRE_NODEST = 4,  /* reschedule connections whose backend is gone (later: configurable) */
};

/* struct backend.flags */
enum xdplb_backend_flag {
	BE_F_ACTIVE = 1,          /* slot in use; a connection to an inactive slot is rescheduled */
};

/* struct conn.state */
enum xdplb_conn_state {
	CT_NEW = 0,               /* SYN seen */
	CT_ESTABLISHED = 1,       /* TCP past the handshake (or met mid-stream); every UDP flow */
	CT_CLOSING = 2,           /* FIN or RST seen: a new SYN on it opens a new connection */
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
	CNT_PASS_NOT_L4,          /* not TCP/UDP (ICMP, ESP, AH, an unknown extension header...) */
	CNT_PASS_MALFORMED_L4,    /* TCP/UDP header cut by the frame or the IP length, data offset < 5 */
	CNT_PASS_NOT_VIP,         /* no virtual service for (daddr, dport, proto) */
	CNT_DROP_NO_BACKEND,      /* a service with no usable backend */
	CNT_DROP_NO_NEXTHOP,      /* a backend whose next hop is not resolved */
	CNT_DROP_REDIRECT,        /* the egress port is not in the devmap */
	CNT_CONN_NEW,             /* connections scheduled by the scheduler */
	CNT_CONN_HIT,             /* packets of a known connection */
	CNT_CONN_MIDSTREAM,       /* TCP non-SYN without an entry: placed by the consistent hash
	                           * (an entry is made, except for a FIN or RST) */
	CNT_CONN_RESCHEDULED,     /* known connection whose backend slot went away */
	CNT_CONN_INSERT_FAIL,     /* the table could not take a new entry */
	CNT_MAX,
};

/* services: key -> service id. port 0 matches every port of (addr, proto). */
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
	__u32 seq_size;           /* scheduler sequence length (rr list, wrr sequence, sh buckets) */
	__u32 persist_timeout;    /* later: seconds, 0 = not persistent */
	__u32 persist_mask;       /* later: client netmask (IPv4) or prefix length (IPv6) */
	__u32 backend_count;      /* later: lc scan bound */
	__u32 gen;                /* bumped on each table rewrite (diagnostics) */
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
	__u32 tun_flags;          /* later: encapsulation kind and options */
	__u32 u_threshold;        /* later: upper connection threshold (ipvsadm -x), 0 = none */
	__u32 l_threshold;        /* later: lower connection threshold (ipvsadm -y) */
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
	__u64 last_seen;          /* bpf_jiffies64() of the last packet (refreshed at most once per jiffy) */
	__u32 backend;            /* backend id */
	__u32 service;            /* service id */
	__u16 be_gen;             /* backend.gen when scheduled */
	__u8 state;               /* enum xdplb_conn_state */
	__u8 flags;               /* later: synced, persistent-template, ... */
	__u32 pad;
};

/* later: persistence templates, (service, masked client) -> backend */
struct persist_key {
	__u32 saddr[4];
	__u32 service;
	__u8 family;
	__u8 pad[3];
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

/* Frame metadata in front of a simulated frame: Python writes magic, the program writes the rest. */
struct sim_meta {
	__u32 magic;              /* XDPLB_SIM_MAGIC */
	__u32 service;            /* service id, or ~0 */
	__u32 backend;            /* chosen backend id, or ~0 */
	__u32 reason;             /* enum xdplb_counter of the decisive step */
};

#endif
