"""DR forwarding, field by field: only the MAC addresses change; XDP_TX back out of the receiving
interface, XDP_REDIRECT through the devmap to another one; drops are counted by reason."""

from __future__ import annotations

import pytest
from scapy.layers.l2 import Dot1Q, Ether

from tests import packets as pk
from xdplb.datapath import ConfigError
from xdplb.model import Backend
from xdplb.net import Nexthop

pytestmark = pytest.mark.datapath

CASES = [
    ("tcp4", dict(proto="tcp", port=80, version=4), pk.tcp(payload=b"GET / HTTP/1.0\r\n\r\n")),
    ("udp4", dict(proto="udp", port=53, version=4), pk.udp()),
    ("tcp6", dict(proto="tcp", port=80, version=6), pk.tcp(version=6)),
    ("udp6", dict(proto="udp", port=53, version=6), pk.udp(version=6)),
    ("tcp4 in 802.1Q", dict(proto="tcp", port=80, version=4), pk.tcp(vlan=42)),
]


@pytest.mark.parametrize(("desc", "svc", "frame"), CASES, ids=[c[0] for c in CASES])
def test_dr_rewrites_only_macs(dp, desc, svc, frame):
    bes = pk.backends(1, svc["version"])
    dp.set_service(pk.service(svc["proto"], svc["port"], svc["version"], backends=bes), pk.nexthops(bes))
    res = dp.run(frame)
    assert res.verdict == "TX"
    out, sent = Ether(res.frame), Ether(frame)
    assert out.dst == pk.backend_mac(0)
    assert out.src == pk.LB_MAC
    assert out.type == sent.type
    if Dot1Q in sent:
        assert out[Dot1Q].vlan == sent[Dot1Q].vlan
    # L3 and up are byte for byte what the client sent: DR keeps the VIP as destination, the TTL
    # and the checksums, so the backend answers the client directly from the VIP.
    assert res.frame[12:] == frame[12:]
    assert len(res.frame) == len(frame)


def test_redirect_to_another_interface(dp, netns_veth, one_cpu):
    a, b = netns_veth
    bes = pk.backends(2)
    hops = {bes[0].address: Nexthop(a.ifindex, a.mac, pk.backend_mac(0)),
            bes[1].address: Nexthop(b.ifindex, b.mac, pk.backend_mac(1))}
    dp.set_service(pk.service(backends=bes, scheduler="rr"), hops)
    seen = {}
    for sport in range(1000, 1010):
        res = dp.run(pk.tcp(sport=sport), ingress_ifindex=a.ifindex)
        out = Ether(res.frame)
        seen[out.dst] = (res.verdict, out.src)
    assert seen == {pk.backend_mac(0): ("TX", a.mac), pk.backend_mac(1): ("REDIRECT", b.mac)}


def test_unknown_egress_interface_is_refused(dp):
    bes = pk.backends(1)
    with pytest.raises(ConfigError):
        dp.set_service(pk.service(backends=bes), {bes[0].address: Nexthop(999999, pk.LB_MAC, pk.backend_mac(0))})
    assert dp.services == []


def test_backend_with_unresolved_next_hop_takes_no_new_flows(dp):
    bes = pk.backends(2)
    hops = {bes[0].address: Nexthop(0, pk.LB_MAC, pk.backend_mac(0)), bes[1].address: pk.nexthops(bes)[bes[1].address]}
    dp.set_service(pk.service(scheduler="mh", backends=bes), hops)
    for sport in range(100):
        assert Ether(dp.run(pk.tcp(src=f"10.99.1.{sport}")).frame).dst == pk.backend_mac(1)
    dp.set_service(pk.service(scheduler="mh", backends=bes[:1]), hops)
    before = dp.counters()
    assert dp.run(pk.tcp(sport=1)).verdict == "DROP"
    after = dp.counters()
    assert after["drop_no_backend"] - before["drop_no_backend"] == 1
    assert after["verdict_drop"] - before["verdict_drop"] == 1
    assert len(list(dp.connections())) == 100


@pytest.mark.parametrize("weights", [[], [0, 0]], ids=["no backends", "all quiescent"])
def test_service_without_usable_backend_drops(dp, weights):
    bes = pk.backends(len(weights), weights=weights or None) if weights else ()
    dp.set_service(pk.service(backends=bes), pk.nexthops(bes))
    before = dp.counters()
    for frame in (pk.tcp(), pk.tcp(flags="A")):
        assert dp.run(frame).verdict == "DROP"
    assert dp.counters()["drop_no_backend"] - before["drop_no_backend"] == 2
    assert list(dp.connections()) == []


def test_backend_of_wrong_family_is_refused():
    with pytest.raises(ValueError, match="IPv6"):
        pk.service(backends=(Backend(address="fd00:100::11"),))
