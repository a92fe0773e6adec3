/* The real-server decapsulator (bpf/decap.c): its counters, shared with Python (xdplb/decap.py parses
 * the enum from this file), and its defaults. */
#ifndef XDPLB_DECAP_H
#define XDPLB_DECAP_H

/* The UDP port of GUE (variant 1: an IP packet right after the UDP header), as Katran and fou use it.
 * xdplb/decap.py writes it into decap_gue_port unless told another; the director must use the same. */
#define DECAP_GUE_PORT 6080

/* decap_counters index: every frame adds one, the reason it left (per-CPU array, index = value).
 * The parsers answer 0 to go on: DECAP_IPIP is never a reason to pass a frame. */
enum decap_counter {
	DECAP_IPIP = 0,              /* decapsulated: IP protocol 4 (inner IPv4) or 41 (inner IPv6) */
	DECAP_GUE,                   /* decapsulated: UDP to the GUE port carrying an IPv4/IPv6 packet */
	DECAP_PASS_NOT_IP,           /* not IPv4/IPv6 (ARP, ...), or shorter than an Ethernet header */
	DECAP_PASS_VLAN,             /* 802.1Q/802.1ad tagged: passed untouched, never decapsulated */
	DECAP_PASS_NOT_TUNNEL,       /* plain traffic: not IPIP, not UDP to the GUE port, IPv6 extension
	                              * headers */
	DECAP_PASS_NOT_LOCAL,        /* a tunnel packet for an address not in decap_addrs (transit) */
	DECAP_PASS_FRAGMENT,         /* an IPv4 fragment: the kernel reassembles (and does not decapsulate) */
	DECAP_PASS_MALFORMED,        /* outer header cut, bad version/IHL/length, UDP length out of bounds */
	DECAP_PASS_MALFORMED_INNER,  /* inner packet cut, bad header or length, or not the IP version its
	                              * encapsulation announces (GUE: first nibble neither 4 nor 6) */
	DECAP_PASS_ADJUST_FAILED,    /* bpf_xdp_adjust_head refused: passed untouched */
	DECAP_ABORTED,               /* cannot happen: no room for the Ethernet header after the strip */
	DECAP_MAX,
};

#endif
