"""TUN with real frames through BPF_PROG_TEST_RUN: the encapsulated output checked field by field,
checksums recomputed by scapy, for every combination; ICMP fragmentation-needed / packet-too-big
when a packet would not fit; ICMP errors about a flow sent on to that flow's backend."""

from __future__ import annotations

import ipaddress

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPerror, TCPerror
from scapy.layers.inet6 import ICMPv6PacketTooBig, IPerror6, IPv6
from scapy.layers.l2 import Dot1Q, Ether

from tests import packets as pk

pytestmark = pytest.mark.datapath

COMBOS = [  # (VIP family, backend family, encapsulation)
    (4, 4, "ipip"), (6, 6, "ipip"), (4, 6, "ipip"),
    (4, 4, "gue"), (6, 6, "gue"), (4, 6, "gue"),
]


def tun_backends(n: int, version: int) -> tuple:
    return pk.backends(n, version)


def configure(dp, vip_version, be_version, encap, mtu=0, **tunnel):
    bes = tun_backends(3, be_version)
    svc = pk.service(version=vip_version, scheduler="mh", method="tun", backends=bes,
                     tunnel={"encap": encap, **tunnel})
    dp.set_service(svc, pk.nexthops(bes, mtu=mtu))
    return svc, bes


def outer_of(frame: bytes):
    eth = Ether(frame)
    return eth, eth.payload


def inner_bytes(outer) -> bytes:
    return bytes(outer.payload.payload) if isinstance(outer.payload, UDP) else bytes(outer.payload)


def checksums_valid(pkt) -> bool:
    """Scapy recomputes every checksum of the frame; the bytes must not change. (A zero UDP checksum
    over IPv4 means none, which GUE over IPv4 sends.)"""
    copy = pkt.copy()
    for layer in (IP, UDP, TCP, ICMP):
        for found in [copy.getlayer(layer, i) for i in range(1, 4)]:
            if found is not None and not (isinstance(found, UDP) and found.chksum == 0):
                del found.chksum
    return bytes(Ether(bytes(copy))) == bytes(pkt)


@pytest.mark.parametrize(("vip", "be", "encap"), COMBOS)
@pytest.mark.parametrize("proto", ["tcp", "udp"])
def test_encapsulation_field_by_field(dp, vip, be, encap, proto):
    svc, bes = configure(dp, vip, be, encap)
    if proto == "udp":
        udp_svc = type(svc).model_validate({**svc.model_dump(), "protocol": "udp", "port": 53})
        dp.set_service(udp_svc, pk.nexthops(bes))
        frame = pk.udp(version=vip, payload=b"query" * 20)
    else:
        frame = pk.tcp(version=vip, flags="PA", payload=b"GET / HTTP/1.1\r\n\r\n")
    original = Ether(frame).payload
    res = dp.run(frame)
    assert res.verdict == "TX"
    eth, outer = outer_of(res.frame)
    backend = res_backend = dp.simulate(frame).backend
    assert eth.src == pk.LB_MAC and eth.dst == pk.backend_mac([b.address for b in bes].index(res_backend))
    assert outer.version == be
    assert ipaddress.ip_address(outer.dst) == backend
    assert outer.src == (pk.LB4 if be == 4 else pk.LB6)
    if be == 4:
        assert eth.type == 0x0800 and outer.ttl == 64
        assert (original.flags.DF if vip == 4 else True) == outer.flags.DF
        assert outer.proto == (17 if encap == "gue" else (4 if vip == 4 else 41))
        assert outer.len == len(bytes(original)) + (28 if encap == "gue" else 20)
    else:
        assert eth.type == 0x86DD and outer.hlim == 64
        assert outer.nh == (17 if encap == "gue" else (4 if vip == 4 else 41))
        assert outer.plen == len(bytes(original)) + (8 if encap == "gue" else 0)
    if encap == "gue":
        udp = outer.payload
        assert udp.dport == 6080 and udp.sport >= 0xC000 and udp.len == len(bytes(original)) + 8
        if be == 6:
            assert udp.chksum != 0
    assert inner_bytes(outer) == bytes(original)
    assert checksums_valid(Ether(res.frame))


def test_gue_port_and_tunnel_per_backend(dp):
    bes = pk.backends(2)
    bes = (bes[0], type(bes[1]).model_validate({**bes[1].model_dump(), "tunnel": {"encap": "gue", "gue_port": 7777}}))
    svc = pk.service(scheduler="rr", method="tun", backends=bes)
    dp.set_service(svc, pk.nexthops(bes))
    kinds = set()
    for i in range(4):
        _, outer = outer_of(dp.run(pk.tcp(sport=31000 + i)).frame)
        kinds.add((outer.proto, outer.payload.dport if outer.proto == 17 else None))
    assert kinds == {(4, None), (17, 7777)}


@pytest.mark.parametrize("be", [4, 6])
def test_outer_source_varies_per_flow_when_asked(dp, be):
    configure(dp, be, be, "ipip", vary_source_bits=8)
    sources = {}
    for i in range(32):
        frame = pk.tcp(version=be, sport=32000 + i)
        sources[i] = outer_of(dp.run(frame).frame)[1].src
        assert outer_of(dp.run(frame).frame)[1].src == sources[i]  # one flow, one source
    prefix = ipaddress.ip_network(f"{pk.LB4 if be == 4 else pk.LB6}/{24 if be == 4 else 120}", strict=False)
    assert all(ipaddress.ip_address(s) in prefix for s in sources.values())
    assert len(set(sources.values())) > 8


def test_vlan_tag_is_kept(dp):
    configure(dp, 4, 4, "ipip")
    eth, _ = outer_of(dp.run(pk.tcp(vlan=42)).frame)
    assert eth.type == 0x8100 and eth[Dot1Q].vlan == 42 and eth[Dot1Q].type == 0x0800
    assert eth[Dot1Q].payload.dst in {str(b.address) for b in pk.backends(3)}


def big_tcp(version: int, size: int, df: bool = True) -> bytes:
    ip = IP(src=pk.CLIENT4, dst=pk.VIP4, flags="DF" if df else 0) if version == 4 else IPv6(src=pk.CLIENT6, dst=pk.VIP6)
    return bytes(pk.eth() / ip / TCP(sport=33000, dport=80, flags="PA") / (b"x" * size))


@pytest.mark.parametrize(("version", "encap", "mtu", "want"), [
    (4, "ipip", 1000, 980), (4, "gue", 1000, 972), (6, "ipip", 1500, 1460), (6, "gue", 1500, 1452),
    (6, "ipip", 1300, 1280),  # never below IPv6's minimum MTU
])
def test_too_big_gets_icmp_back_to_the_client(dp, version, encap, mtu, want):
    configure(dp, version, version, encap, mtu=mtu)
    frame = big_tcp(version, mtu)
    before = dp.counters()
    res = dp.run(frame)
    assert res.verdict == "TX"
    reply = Ether(res.frame)
    assert (reply.dst, reply.src) == (pk.ROUTER_MAC, pk.LB_MAC)
    sent = Ether(frame).payload
    if version == 4:
        ip = reply[IP]
        assert (ip.src, ip.dst, ip.proto) == (pk.VIP4, pk.CLIENT4, 1)
        icmp = reply[ICMP]
        assert (icmp.type, icmp.code, icmp.nexthopmtu) == (3, 4, want)
        assert bytes(icmp.payload) == bytes(sent)[:128]
        assert reply[IPerror].src == pk.CLIENT4 and reply[TCPerror].sport == 33000  # the client's own packet
    else:
        ip = reply[IPv6]
        assert (ip.src, ip.dst, ip.nh) == (pk.VIP6, pk.CLIENT6, 58)
        ptb = reply[ICMPv6PacketTooBig]
        assert ptb.mtu == want
        assert bytes(ptb.payload) == bytes(sent)[:256]
        assert reply[IPerror6].src == pk.CLIENT6 and reply[IPerror6].payload.sport == 33000
        copy = Ether(res.frame)
        del copy[ICMPv6PacketTooBig].cksum
        assert bytes(Ether(bytes(copy))) == res.frame
    assert checksums_valid(reply) if version == 4 else True
    assert dp.counters()["icmp_too_big_sent"] == before["icmp_too_big_sent"] + 1


def test_too_big_without_df_is_dropped_and_counted(dp):
    configure(dp, 4, 4, "ipip", mtu=1000)
    before = dp.counters()["drop_too_big"]
    assert dp.run(big_tcp(4, 1000, df=False)).verdict == "DROP"
    assert dp.counters()["drop_too_big"] == before + 1


def test_what_fits_is_forwarded(dp):
    configure(dp, 4, 4, "ipip", mtu=1000)
    assert dp.run(big_tcp(4, 1000 - 20 - 20 - 20)).verdict == "TX"  # 980 bytes of IP: exactly fits


def icmp_about(version: int, sport: int, kind: str = "frag") -> bytes:
    """An ICMP error a router on the return path sends to the VIP about the server's reply
    VIP:80 -> client:sport."""
    if version == 4:
        quote = IP(src=pk.VIP4, dst=pk.CLIENT4) / TCP(sport=80, dport=sport, flags="A")
        return bytes(pk.eth() / IP(src="10.99.0.1", dst=pk.VIP4) / ICMP(type=3, code=4, nexthopmtu=1400) /
                     bytes(quote)[:28])
    quote = IPv6(src=pk.VIP6, dst=pk.CLIENT6) / TCP(sport=80, dport=sport, flags="A")
    return bytes(pk.eth() / IPv6(src="fd00:99::1", dst=pk.VIP6) / ICMPv6PacketTooBig(mtu=1400) / bytes(quote)[:48])


@pytest.mark.parametrize("version", [4, 6])
@pytest.mark.parametrize("method", ["dr", "tun"])
def test_icmp_error_goes_to_the_backend_of_its_flow(dp, one_cpu, version, method):
    bes = pk.backends(3, version)
    svc = pk.service(version=version, scheduler="rr", method=method, backends=bes)
    dp.set_service(svc, pk.nexthops(bes))
    owners = {}
    for i in range(3):  # rr: each flow on its own backend
        sport = 34000 + i
        dp.run(pk.tcp(version=version, sport=sport))
        dp.run(pk.tcp(version=version, sport=sport, flags="A"))
        owners[sport] = next(c.backend for c in dp.connections() if c.client[1] == sport)
    assert len(set(owners.values())) == 3
    before = dp.counters()
    for sport, backend in owners.items():
        frame = icmp_about(version, sport)
        res = dp.run(frame)
        assert res.verdict == "TX"
        eth = Ether(res.frame)
        assert eth.dst == pk.backend_mac([b.address for b in bes].index(backend))
        if method == "tun":
            assert ipaddress.ip_address(eth.payload.dst) == backend
            assert bytes(eth.payload.payload) == bytes(Ether(frame).payload)
        else:
            assert bytes(eth.payload) == bytes(Ether(frame).payload)
    after = dp.counters()
    assert after["icmp_forwarded"] - before["icmp_forwarded"] == 3
    assert after["conn_new"] == before["conn_new"]  # no state made or changed
    assert {c.state for c in dp.connections()} == {"ESTABLISHED"}


@pytest.mark.parametrize("version", [4, 6])
def test_icmp_without_a_flow_and_echo_go_to_the_kernel(dp, version):
    bes = pk.backends(2, version)
    dp.set_service(pk.service(version=version, backends=bes), pk.nexthops(bes))
    res = dp.simulate(icmp_about(version, 45678))
    assert (res.verdict, res.reason) == ("PASS", "pass_icmp_no_conn")
    echo = pk.eth() / (IP(src=pk.CLIENT4, dst=pk.VIP4) / ICMP() if version == 4 else
                       IPv6(src=pk.CLIENT6, dst=pk.VIP6, nh=58) / bytes.fromhex("80000000000000000000"))
    res = dp.simulate(bytes(echo))
    assert (res.verdict, res.reason) == ("PASS", "pass_icmp")


def test_tun_configuration_errors_change_nothing(dp):
    bes = pk.backends(2)
    svc = pk.service(method="tun", backends=bes)
    hops = {b.address: h.__class__(h.ifindex, h.smac, h.dmac) for b, h in zip(bes, pk.nexthops(bes).values(),
                                                                                strict=True)}
    from xdplb.datapath import ConfigError
    with pytest.raises(ConfigError, match="no source address"):
        dp.set_service(svc, hops)
    assert dp.services == []
    with pytest.raises(ValueError, match="needs method tun"):
        pk.service(backends=({"address": bes[0].address, "tunnel": {"encap": "gue"}},))


@pytest.fixture(scope="module")
def decapsulator():
    from xdplb.decap import Decapsulator

    d = Decapsulator()
    d.set_addresses([b.address for v in (4, 6) for b in tun_backends(3, v)])
    yield d
    d.close()


@pytest.mark.parametrize(("vip", "be", "encap"), COMBOS)
def test_the_decapsulator_gives_back_the_original_packet(dp, decapsulator, vip, be, encap):
    """Director then real server: what reaches the real server's stack is what the client sent."""
    configure(dp, vip, be, encap)
    frame = pk.tcp(version=vip, flags="PA", payload=b"through the tunnel")
    res = decapsulator.run(dp.run(frame).frame)
    assert res.verdict == "PASS"
    assert Ether(res.frame).type == Ether(frame).type
    assert res.frame[14:] == frame[14:]
