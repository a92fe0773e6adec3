"""simulate() runs the real program and has no side effect: no connection, no cursor move, no
counter or stat, in any map; and it predicts what the real run then does."""

from __future__ import annotations

import pytest
from scapy.layers.l2 import Ether

from tests import packets as pk
from tests.conftest import maps_snapshot

pytestmark = pytest.mark.datapath


FRAMES = [
    pk.tcp(sport=41000),                 # new flow
    pk.tcp(sport=41001, flags="A"),      # mid-stream flow
    pk.tcp(sport=40000, flags="A"),      # known flow (inserted below)
    pk.tcp(sport=40000, flags="F"),      # known flow closing
    pk.tcp(sport=40000),                 # retransmitted SYN of a known flow
    pk.udp(dport=53),
    pk.tcp(version=6, sport=41002),
    pk.tcp(dst="10.100.0.200"),          # not a VIP
    pk.tcp()[:30],                       # malformed
]


def test_simulate_changes_no_map(dp, one_cpu):
    for proto, port in (("tcp", 80), ("udp", 53)):
        bes = pk.backends(3)
        dp.set_service(pk.service(proto, port, scheduler="rr", backends=bes), pk.nexthops(bes))
    bes6 = pk.backends(2, 6)
    dp.set_service(pk.service(version=6, scheduler="wrr", backends=bes6), pk.nexthops(bes6))
    dp.run(pk.tcp(sport=40000))
    dp.run(pk.tcp(sport=40000, flags="A"))
    dp.run(pk.udp(dport=53, sport=40001))
    dp.set_service(pk.service("udp", 53, scheduler="rr", backends=pk.backends(3)[1:]))  # 40001's backend goes
    assert [c.backend for c in dp.connections() if c.client[1] == 40001] == [None]
    before = maps_snapshot(dp)
    results = [dp.simulate(f) for f in FRAMES * 3]
    assert maps_snapshot(dp) == before
    assert [r.verdict for r in results[:len(FRAMES)]] == ["TX"] * 7 + ["PASS", "PASS"]
    assert [r.reason for r in results[:len(FRAMES)]] == [
        "conn_new", "conn_midstream", "conn_hit", "conn_hit", "conn_hit", "conn_new", "conn_new",
        "pass_not_vip", "pass_malformed_l3"]
    assert dp.simulate(pk.udp(dport=53, sport=40001)).verdict == "TX"


@pytest.mark.parametrize("sched", ["wlc", "nq", "rr"])
def test_simulate_of_scans_persistence_and_thresholds_changes_no_map(dp, one_cpu, sched):
    """The scanner program (lc family, thresholds) and persistence templates write nothing either;
    only the per-CPU scratch entry the two programs hand a question over in changes."""
    bes = tuple(b.model_copy(update={"upper_threshold": 2}) for b in pk.backends(3))
    svc = pk.service(scheduler=sched, backends=bes, persistence={"timeout": 60, "netmask": 24})
    dp.set_service(svc, pk.nexthops(bes))
    for i in range(4):  # the first backend reaches its threshold
        dp.run(pk.tcp(src=f"10.99.{i}.1", sport=43000 + i))
    dp.shift_clock(61)  # every template has expired: a simulation would rewrite them
    before = maps_snapshot(dp)
    results = [dp.simulate(pk.tcp(src=f"10.99.{i}.1", sport=43100 + i)) for i in range(8)]
    after = maps_snapshot(dp)
    assert {k: v for k, v in after.items() if k != "lc_scratch"} == \
        {k: v for k, v in before.items() if k != "lc_scratch"}
    assert all(r.verdict == "TX" for r in results)
    assert all(r.backend == results[0].backend for r in results)  # nothing moved between them


def test_simulate_predicts_the_real_run(dp, one_cpu):
    bes = pk.backends(4)
    dp.set_service(pk.service(scheduler="rr", backends=bes), pk.nexthops(bes))
    for sport in list(range(42000, 42006)) * 2:  # new flows, then each again (retransmitted SYNs)
        frame = pk.tcp(sport=sport)
        predicted = dp.simulate(frame)
        real = dp.run(frame)
        assert predicted.frame == real.frame
        assert predicted.verdict == real.verdict
        assert Ether(real.frame).dst == pk.backend_mac([b.address for b in bes].index(predicted.backend))
