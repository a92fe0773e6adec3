"""The parser's rules, packet by packet: what is balanced, and what goes to the kernel untouched
(counted by reason). A frame is never forwarded half-parsed: truncated anywhere, it passes."""

from __future__ import annotations

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPOption_RR
from scapy.layers.inet6 import IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrFragment, IPv6ExtHdrHopByHop
from scapy.layers.l2 import ARP, Dot1Q, Ether
from scapy.packet import Raw

from tests import packets as pk

pytestmark = pytest.mark.datapath

E = Ether(src=pk.ROUTER_MAC, dst=pk.LB_MAC)
E4 = Ether(src=pk.ROUTER_MAC, dst=pk.LB_MAC, type=0x0800)
E6 = Ether(src=pk.ROUTER_MAC, dst=pk.LB_MAC, type=0x86DD)
V4 = IP(src=pk.CLIENT4, dst=pk.VIP4)
V6 = IPv6(src=pk.CLIENT6, dst=pk.VIP6)
SYN = TCP(sport=40000, dport=80, flags="S")
TCP_HDR = bytes(SYN)

PASSED = [
    ("ARP", bytes(E / ARP(pdst=pk.VIP4)), "pass_not_ip"),
    ("VLAN tag cut", bytes(Ether(src=pk.ROUTER_MAC, dst=pk.LB_MAC, type=0x8100)) + b"\x00\x05", "pass_trunc_l2"),
    ("two VLAN tags", bytes(E / Dot1Q(vlan=5) / Dot1Q(vlan=6) / V4 / SYN), "pass_vlan_stacked"),
    ("IPv4 version 5", bytes(E4) + bytes([0x55]) + bytes(V4 / SYN)[1:], "pass_malformed_l3"),
    ("IPv4 IHL 4", bytes(E4) + bytes([0x44]) + bytes(V4 / SYN)[1:], "pass_malformed_l3"),
    ("IPv4 total length beyond frame", bytes(E / V4 / SYN)[:-1], "pass_malformed_l3"),
    ("IPv4 total length under header", bytes(E / IP(src=pk.CLIENT4, dst=pk.VIP4, len=12) / SYN), "pass_malformed_l3"),
    ("IPv4 first fragment", bytes(E / IP(src=pk.CLIENT4, dst=pk.VIP4, flags="MF") / SYN), "pass_fragment"),
    ("IPv4 later fragment", bytes(E / IP(src=pk.CLIENT4, dst=pk.VIP4, frag=8, proto=6) / Raw(b"x" * 20)),
     "pass_fragment"),
    ("IPv6 version 4 in header", bytes(E6) + bytes([0x40]) + bytes(V6 / SYN)[1:], "pass_malformed_l3"),
    ("IPv6 payload beyond frame", bytes(E / V6 / SYN)[:-1], "pass_malformed_l3"),
    ("IPv6 fragment header", bytes(E / V6 / IPv6ExtHdrFragment(m=1) / SYN), "pass_fragment"),
    ("IPv6 five extension headers", bytes(E / V6 / (IPv6ExtHdrDestOpt() / IPv6ExtHdrDestOpt() / IPv6ExtHdrDestOpt()
                                                    / IPv6ExtHdrDestOpt() / IPv6ExtHdrDestOpt()) / SYN),
     "pass_ipv6_exthdr"),
    ("IPv6 extension header cut", bytes(E / IPv6(src=pk.CLIENT6, dst=pk.VIP6, nh=60, plen=0)), "pass_malformed_l3"),
    ("ICMP echo", bytes(E / V4 / ICMP()), "pass_icmp"),
    ("GRE", bytes(E / IP(src="10.99.0.10", dst="10.100.0.100", proto=47) / (b"\0" * 8)), "pass_not_l4"),
    ("TCP data offset 4", bytes(E / V4 / TCP(sport=40000, dport=80, dataofs=4)), "pass_malformed_l4"),
    ("TCP data offset beyond frame", bytes(E / V4 / TCP(sport=40000, dport=80, dataofs=15)), "pass_malformed_l4"),
    ("not a VIP", pk.tcp(dst="10.100.0.200"), "pass_not_vip"),
    ("VIP, other port", pk.tcp(dport=81), "pass_not_vip"),
    ("VIP, other protocol", pk.udp(dport=80), "pass_not_vip"),
    # headers are bounded by the IP length, not only by the frame: padding is not a header
    ("IPv4 TCP header only in the padding", bytes(E / IP(src=pk.CLIENT4, dst=pk.VIP4, proto=6)) + TCP_HDR,
     "pass_malformed_l4"),
    ("IPv4 UDP header only in the padding", bytes(E / IP(src=pk.CLIENT4, dst=pk.VIP4, proto=17)) + bytes(UDP()),
     "pass_malformed_l4"),
    ("IPv6 payload length 0, TCP after it", bytes(E / IPv6(src=pk.CLIENT6, dst=pk.VIP6, nh=6, plen=0)) + TCP_HDR,
     "pass_malformed_l4"),
    ("TCP options beyond the IP length", bytes(E / IP(src=pk.CLIENT4, dst=pk.VIP4, proto=6) /
                                               Raw(bytes(TCP(dport=80, dataofs=6))[:20])) + b"\0" * 4,
     "pass_malformed_l4"),
    ("IPv6 extension header beyond the payload length",
     bytes(E / IPv6(src=pk.CLIENT6, dst=pk.VIP6, nh=60, plen=8) / Raw(bytes([6, 1]) + bytes(6))) + bytes(40),
     "pass_malformed_l3"),
    ("IPv6 fragment after 4 extension headers",
     bytes(E / V6 / IPv6ExtHdrDestOpt() / IPv6ExtHdrDestOpt() / IPv6ExtHdrDestOpt() / IPv6ExtHdrDestOpt()
           / IPv6ExtHdrFragment(m=1) / SYN), "pass_fragment"),
] + [
    (f"TCP header cut at {n} bytes", bytes(E / IP(src=pk.CLIENT4, dst=pk.VIP4, proto=6) / Raw(TCP_HDR[:n])),
     "pass_malformed_l4") for n in range(20)
] + [
    (f"UDP header cut at {n} bytes", bytes(E / IP(src=pk.CLIENT4, dst=pk.VIP4, proto=17) / Raw(bytes(UDP())[:n])),
     "pass_malformed_l4") for n in range(8)
] + [
    (f"IPv6 TCP header cut at {n} bytes", bytes(E / IPv6(src=pk.CLIENT6, dst=pk.VIP6, nh=6) / Raw(TCP_HDR[:n])),
     "pass_malformed_l4") for n in range(0, 20, 3)
]

BALANCED = [
    ("IPv4", pk.tcp()),
    ("IPv4 with options", bytes(E / IP(src=pk.CLIENT4, dst=pk.VIP4, options=[IPOption_RR()]) / SYN)),
    ("IPv4 with Ethernet padding", pk.tcp() + b"\0" * 6),
    ("IPv6 with 4 extension headers", bytes(E / V6 / IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt() / IPv6ExtHdrDestOpt()
                                            / IPv6ExtHdrDestOpt() / SYN)),
    ("802.1Q", pk.tcp(vlan=7)),
    ("802.1ad", bytes(Ether(src=pk.ROUTER_MAC, dst=pk.LB_MAC) / Dot1Q(vlan=7, type=0x0800) / V4 / SYN)
     .replace(b"\x81\x00", b"\x88\xa8", 1)),
    ("IPv6", pk.tcp(version=6)),
    ("IPv6 with hop-by-hop and destination options",
     bytes(E / V6 / IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt() / SYN)),
    ("UDP", pk.udp(dport=53)),
]


@pytest.fixture
def vip(dp):
    for version in (4, 6):
        for proto, port in (("tcp", 80), ("udp", 53)) if version == 4 else (("tcp", 80),):
            bes = pk.backends(2, version)
            dp.set_service(pk.service(proto, port, version, backends=bes), pk.nexthops(bes))
    return dp


@pytest.mark.parametrize(("desc", "frame", "reason"), PASSED, ids=[c[0] for c in PASSED])
def test_passes_to_kernel_untouched(vip, desc, frame, reason):
    before = vip.counters()
    res = vip.run(frame)
    after = vip.counters()
    assert res.verdict == "PASS", desc
    assert res.frame == frame
    assert after[reason] - before[reason] == 1
    assert after["verdict_pass"] - before["verdict_pass"] == 1
    assert list(vip.connections()) == []


@pytest.mark.parametrize(("desc", "frame"), BALANCED, ids=[c[0] for c in BALANCED])
def test_balanced(vip, desc, frame):
    res = vip.run(frame)
    assert res.verdict == "TX", desc
    assert res.frame[12:] == frame[12:]
    assert len(list(vip.connections())) == 1


@pytest.mark.parametrize("frame", [pk.tcp(), pk.tcp(version=6), pk.tcp(vlan=3), pk.udp(dport=53)],
                         ids=["tcp4", "tcp6", "vlan", "udp4"])
def test_never_forwarded_half_parsed(vip, frame):
    """Cut a balanced frame at every length: each shorter frame goes to the kernel untouched.
    (BPF_PROG_TEST_RUN refuses frames shorter than an Ethernet header, so cuts start there.)"""
    assert vip.run(frame).verdict == "TX"
    vip.flush_connections()
    for n in range(14, len(frame)):
        res = vip.run(frame[:n])
        assert (res.verdict, res.frame) == ("PASS", frame[:n]), f"cut at {n}"
    assert list(vip.connections()) == []
