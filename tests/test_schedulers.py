"""Each scheduler over many new flows, with real frames through the program: distributions follow
the weights, sh is stable per source, mh moves few flows when a backend goes, quiescent backends
take no new flows, and known flows stay on their backend whatever the backend set does."""

from __future__ import annotations

import ipaddress
import random
from collections import Counter

import pytest
from scapy.layers.l2 import Ether

from tests import packets as pk

pytestmark = pytest.mark.datapath


def backend_of(frame: bytes) -> str:
    return Ether(frame).dst


def mac_index(mac: str) -> int:
    return int(mac.split(":")[-1], 16)


def spread(dp, frames) -> Counter:
    """Backend index -> flows, running each frame for real (connections are inserted)."""
    out = Counter()
    for f in frames:
        res = dp.run(f)
        assert res.verdict == "TX"
        out[mac_index(backend_of(res.frame))] += 1
    return out


def sources(n: int, seed: int = 1, version: int = 4) -> list[str]:
    rnd = random.Random(seed)
    if version == 4:
        return [str(ipaddress.IPv4Address(rnd.getrandbits(32) | 0x01000000)) for _ in range(n)]
    return [str(ipaddress.IPv6Address((0x2001 << 112) | rnd.getrandbits(64))) for _ in range(n)]


def configure(dp, scheduler, weights, version=4, **kw):
    bes = pk.backends(len(weights), version, weights)
    svc = pk.service(version=version, scheduler=scheduler, backends=bes, **kw)
    dp.set_service(svc, pk.nexthops(bes))
    return svc


def test_rr_cycles_through_backends(dp, one_cpu):
    configure(dp, "rr", [1, 5, 1])  # rr ignores weights
    order = [mac_index(backend_of(dp.run(pk.tcp(sport=2000 + i)).frame)) for i in range(9)]
    assert sorted(Counter(order).values()) == [3, 3, 3]
    assert order[:3] == order[3:6] == order[6:]


def test_wrr_follows_ipvs_sequence(dp, one_cpu):
    configure(dp, "wrr", [4, 3, 2])
    order = [mac_index(backend_of(dp.run(pk.tcp(sport=2000 + i)).frame)) for i in range(18)]
    assert order == [0, 0, 1, 0, 1, 2, 0, 1, 2] * 2


@pytest.mark.parametrize("version", [4, 6])
def test_wrr_distribution_exact_per_period(dp, one_cpu, version):
    configure(dp, "wrr", [3, 2, 1], version=version)
    got = spread(dp, (pk.tcp(sport=1024 + i, version=version) for i in range(600)))
    assert got == {0: 300, 1: 200, 2: 100}


def test_sh_stable_per_source_and_weighted(dp):
    configure(dp, "sh", [3, 2, 1])
    clients = sources(3000)
    first = {}
    for i, src in enumerate(clients):
        res = dp.simulate(pk.tcp(src=src, sport=1024 + i % 50000))
        first[src] = res.backend
    for i, src in enumerate(clients[:300]):
        for port in (3000, 4000, 5000):
            assert dp.simulate(pk.tcp(src=src, sport=port + i)).backend == first[src]
    share = Counter(first.values())
    total = sum(share.values())
    # 256 buckets split 3:2:1 (128/86/42); sources hash evenly over the buckets.
    expected = {0: 128 / 256, 1: 86 / 256, 2: 42 / 256}
    for i, b in enumerate(pk.backends(3)):
        assert abs(share[b.address] / total - expected[i]) < 0.04


def test_mh_weighted_distribution(dp):
    configure(dp, "mh", [3, 2, 1])
    share = Counter(dp.simulate(pk.tcp(src=s)).backend for s in sources(6000))
    bes = pk.backends(3)
    for b, want in zip(bes, (3 / 6, 2 / 6, 1 / 6), strict=True):
        assert abs(share[b.address] / 6000 - want) < 0.03


def test_mh_hashes_source_only_unless_mh_port(dp):
    configure(dp, "mh", [1, 1, 1, 1])
    one_source = {dp.simulate(pk.tcp(sport=p)).backend for p in range(1000, 1100)}
    assert len(one_source) == 1
    configure(dp, "mh", [1, 1, 1, 1], sched_flags={"mh-port"})
    with_port = Counter(dp.simulate(pk.tcp(sport=p)).backend for p in range(1000, 1400))
    assert len(with_port) == 4 and min(with_port.values()) > 50


@pytest.mark.parametrize("n", [3, 5, 10])
def test_mh_removing_one_backend_moves_at_most_1_over_n_plus_2pc(dp, n):
    svc = configure(dp, "mh", [1] * n, ring_size=4099)
    clients = sources(4000, seed=n)
    before = {s: dp.simulate(pk.tcp(src=s)).backend for s in clients}
    gone = svc.backends[n // 2]
    dp.set_service(svc.model_copy(update={"backends": tuple(b for b in svc.backends if b != gone)}))
    after = {s: dp.simulate(pk.tcp(src=s)).backend for s in clients}
    moved = sum(before[s] != after[s] for s in clients) / len(clients)
    assert moved <= 1 / n + 0.02
    assert gone.address not in after.values()


def open_flows(dp, n: int, seed: int) -> dict[bytes, str]:
    """n connections opened for real (SYN): each flow's SYN -> its backend's MAC."""
    flows = [pk.tcp(src=s, sport=5000 + i) for i, s in enumerate(sources(n, seed=seed))]
    return {f: backend_of(dp.run(f).frame) for f in flows}


@pytest.mark.parametrize("scheduler", ["rr", "wrr", "sh", "mh"])
def test_quiescent_backend_keeps_its_connections_and_gets_no_new_ones(dp, scheduler):
    svc = configure(dp, scheduler, [1, 1, 1])
    placed = open_flows(dp, 60, seed=7)
    assert pk.backend_mac(0) in placed.values()
    weights = tuple(b.model_copy(update={"weight": 0}) if i == 0 else b for i, b in enumerate(svc.backends))
    dp.set_service(svc.model_copy(update={"backends": weights}))
    for f, mac in placed.items():
        assert backend_of(dp.run(_as_ack(f)).frame) == mac  # established flows stay, the quiescent one too
    new = spread(dp, (pk.tcp(src=s, sport=9000 + i) for i, s in enumerate(sources(60, seed=8))))
    assert 0 not in new
    # every backend quiescent: no new flow anywhere, but a retransmitted SYN of an open one still goes
    dp.set_service(svc.model_copy(update={"backends": tuple(b.model_copy(update={"weight": 0})
                                                            for b in svc.backends)}))
    assert dp.run(pk.tcp(sport=12345)).verdict == "DROP"
    syn, mac = next(iter(placed.items()))
    assert backend_of(dp.run(syn).frame) == mac
    assert dp.simulate(syn).reason == "conn_hit"


def test_syn_on_a_closed_connection_is_scheduled_afresh(dp, one_cpu):
    """IPVS conn_reuse_mode: a client reusing its port after a close is a new connection, so a
    quiescent backend really drains."""
    svc = configure(dp, "rr", [1, 1])
    syn = pk.tcp(sport=7777)
    first = backend_of(dp.run(syn).frame)
    dp.run(pk.tcp(sport=7777, flags="FA"))
    drained = tuple(b.model_copy(update={"weight": 0}) if pk.backend_mac(i) == first else b
                    for i, b in enumerate(svc.backends))
    dp.set_service(svc.model_copy(update={"backends": drained}))
    assert backend_of(dp.run(syn).frame) != first
    assert [c.state for c in dp.connections()] == ["NEW"]


def test_fin_or_rst_of_an_unknown_flow_is_forwarded_without_an_entry(dp):
    configure(dp, "rr", [1, 1])
    for flags in ("R", "FA", "RA"):
        res = dp.run(pk.tcp(sport=8888, flags=flags))
        assert res.verdict == "TX"
    assert list(dp.connections()) == []


def _as_ack(syn: bytes) -> bytes:
    pkt = Ether(syn)
    pkt["TCP"].flags = "A"
    return bytes(pkt)


@pytest.mark.parametrize("scheduler", ["rr", "wrr", "sh", "mh"])
def test_flows_stick_when_backends_are_added_and_removed(dp, scheduler):
    svc = configure(dp, scheduler, [1, 1, 1])
    placed = open_flows(dp, 90, seed=3)
    bigger = pk.backends(6)
    dp.set_service(svc.model_copy(update={"backends": bigger}), pk.nexthops(bigger))
    for f, mac in placed.items():
        assert backend_of(dp.run(_as_ack(f)).frame) == mac
    # Removing backend 2: its flows are rescheduled (the slot is gone), every other flow stays.
    fewer = tuple(b for i, b in enumerate(bigger) if i != 2)
    before = dp.counters()["conn_rescheduled"]
    dp.set_service(svc.model_copy(update={"backends": fewer}))
    for f, mac in placed.items():
        now = backend_of(dp.run(_as_ack(f)).frame)
        assert now != pk.backend_mac(2)
        if mac != pk.backend_mac(2):
            assert now == mac
    assert dp.counters()["conn_rescheduled"] - before == sum(m == pk.backend_mac(2) for m in placed.values())


def test_unknown_established_flow_uses_consistent_hash_not_rr(dp, one_cpu):
    configure(dp, "rr", [1, 1, 1, 1, 1])
    acks = [pk.tcp(src=s, flags="A") for s in sources(40, seed=5)]
    first = [dp.simulate(a) for a in acks]
    assert {r.reason for r in first} == {"conn_midstream"}
    for i in range(7):  # move the rr cursor
        dp.run(pk.tcp(sport=30000 + i))
    again = [dp.simulate(a).backend for a in acks]
    assert again == [r.backend for r in first]
    assert len(set(again)) > 1
    res = dp.run(acks[0])
    assert Ether(res.frame).dst == pk.backend_mac(
        [b.address for b in pk.backends(5)].index(first[0].backend))
    assert dp.simulate(acks[0]).reason == "conn_hit"


def test_port_zero_service_takes_every_port_exact_wins(dp):
    wild = pk.backends(1)
    dp.set_service(pk.service(port=0, backends=wild), pk.nexthops(wild))
    exact = (pk.backends(2)[1],)
    dp.set_service(pk.service(port=443, backends=exact), pk.nexthops(exact))
    for port in (22, 80, 8080):
        assert dp.simulate(pk.tcp(dport=port)).backend == wild[0].address
    assert dp.simulate(pk.tcp(dport=443)).backend == exact[0].address


def test_udp_flows_are_tracked(dp, one_cpu):
    configure(dp, "rr", [1, 1], proto="udp", port=53)
    first = backend_of(dp.run(pk.udp(sport=7000)).frame)
    for _ in range(5):
        assert backend_of(dp.run(pk.udp(sport=7000)).frame) == first
    assert backend_of(dp.run(pk.udp(sport=7001)).frame) != first
