"""The connection lifecycle with real frames: TCP states and the tables they live in, idle
timeouts (time moved with the data plane's clock offset), expire_nodest, and each backend's
ActiveConn/InActConn counted exactly once through open, close, expiry and reuse."""

from __future__ import annotations

import pytest

from tests import packets as pk
from xdplb.model import Timeouts

pytestmark = pytest.mark.datapath


def setup(dp, n=2, **kw):
    bes = pk.backends(n)
    svc = pk.service(scheduler=kw.pop("scheduler", "mh"), backends=bes, **kw)
    dp.set_service(svc, pk.nexthops(bes))
    return svc


def table_of(dp, sport: int) -> str | None:
    for name in ("conntrack", "conn_syn"):
        for k, _ in dp.maps[name].items_lookup_batch():
            if k.sport == pk.htons(sport):
                return name
    return None


def state_of(dp, sport: int) -> str:
    return next(c.state for c in dp.connections() if c.client[1] == sport)


def total_counts(dp, svc) -> tuple[int, int]:
    counts = dp.backend_counts(svc.key).values()
    return sum(a for a, _ in counts), sum(i for _, i in counts)


@pytest.mark.parametrize(("steps", "table", "state", "counts"), [
    (["S"], "conn_syn", "NEW", (0, 1)),
    (["S", "S"], "conn_syn", "NEW", (0, 1)),
    (["S", "A"], "conntrack", "ESTABLISHED", (1, 0)),
    (["S", "A", "PA"], "conntrack", "ESTABLISHED", (1, 0)),
    (["S", "A", "FA"], "conntrack", "CLOSING", (0, 1)),
    (["S", "A", "R"], "conntrack", "CLOSING", (0, 1)),
    (["S", "R"], "conn_syn", "CLOSING", (0, 1)),
    (["A"], "conntrack", "ESTABLISHED", (1, 0)),          # met mid-stream
    (["S", "A", "FA", "S"], "conntrack", "NEW", (0, 1)),  # a closed flow's port reused
    (["S", "A", "FA", "A", "FA"], "conntrack", "CLOSING", (0, 1)),
])
def test_tcp_states_tables_and_counts(dp, steps, table, state, counts):
    svc = setup(dp)
    for flags in steps:
        assert dp.run(pk.tcp(sport=5000, flags=flags)).verdict == "TX"
    assert table_of(dp, 5000) == table
    assert state_of(dp, 5000) == state
    assert total_counts(dp, svc) == counts


def test_stray_fin_makes_no_entry_and_no_count(dp):
    svc = setup(dp)
    assert dp.run(pk.tcp(sport=5001, flags="FA")).verdict == "TX"
    assert table_of(dp, 5001) is None
    assert total_counts(dp, svc) == (0, 0)


def test_udp_flows_count_as_inactive_like_ipvs(dp):
    bes = pk.backends(2)
    svc = pk.service(proto="udp", port=53, scheduler="mh", backends=bes)
    dp.set_service(svc, pk.nexthops(bes))
    for i in range(5):
        dp.run(pk.udp(sport=6000 + i))
        dp.run(pk.udp(sport=6000 + i))
    assert total_counts(dp, svc) == (0, 5)


def test_promotion_keeps_the_backend_the_syn_chose(dp, one_cpu):
    svc = setup(dp, n=3, scheduler="rr")
    chosen = {}
    for i in range(6):
        chosen[i] = pk.backend_of(dp.run(pk.tcp(sport=7000 + i)).frame)
    for i in range(6):
        assert pk.backend_of(dp.run(pk.tcp(sport=7000 + i, flags="A")).frame) == chosen[i]
    assert {c.state for c in dp.connections()} == {"ESTABLISHED"}
    assert total_counts(dp, svc) == (6, 0)


@pytest.mark.parametrize(("proto", "first", "timeout"), [
    ("tcp", ["S", "A"], "tcp"),
    ("tcp", ["S"], "syn"),
    ("tcp", ["S", "A", "FA"], "tcpfin"),
    ("udp", [None], "udp"),
])
def test_idle_entries_expire_after_their_timeout(dp, proto, first, timeout):
    """Just inside its timeout an entry holds; just past it, the flow is scheduled afresh."""
    dp.set_timeouts(Timeouts(tcp=50, tcpfin=20, udp=30, syn=10))
    try:
        bes = pk.backends(2)
        svc = pk.service(proto=proto, port=53 if proto == "udp" else 80, scheduler="rr", backends=bes)
        dp.set_service(svc, pk.nexthops(bes))

        def send(flags):
            frame = pk.udp(sport=8000) if proto == "udp" else pk.tcp(sport=8000, flags=flags)
            return dp.run(frame)

        for flags in first:
            send(flags)
        before = dp.counters()
        seconds = getattr(dp.timeouts, timeout)
        dp.shift_clock(seconds - 1)
        nxt = "S" if timeout == "syn" else "A"  # a packet that keeps the state
        send(nxt)
        assert dp.counters()["conn_hit"] == before["conn_hit"] + 1
        dp.shift_clock(seconds + 1)
        send(nxt)
        after = dp.counters()
        assert after["conn_expired"] == before["conn_expired"] + 1
        assert after["conn_hit"] == before["conn_hit"] + 1
    finally:
        dp.set_timeouts(Timeouts())


def test_expiry_moves_the_counts(dp):
    """An expired established connection hit again is counted off its old backend and onto the new one."""
    svc = setup(dp, n=1)
    dp.run(pk.tcp(sport=8100))
    dp.run(pk.tcp(sport=8100, flags="A"))
    assert total_counts(dp, svc) == (1, 0)
    dp.shift_clock(dp.timeouts.tcp + 5)
    dp.run(pk.tcp(sport=8100, flags="A"))     # met again mid-stream: a new established connection
    assert total_counts(dp, svc) == (1, 0)


@pytest.mark.parametrize("expire_nodest", [True, False])
def test_connection_of_a_removed_backend(dp, expire_nodest):
    bes = pk.backends(2)
    svc = pk.service(scheduler="rr", backends=bes, expire_nodest=expire_nodest)
    hops = pk.nexthops(bes)
    dp.set_service(svc, hops)
    flows = [9000 + i for i in range(40)]
    gone = bes[0].address
    on_gone = []
    for sport in flows:
        dp.run(pk.tcp(sport=sport))
        dp.run(pk.tcp(sport=sport, flags="A"))
        if dp.simulate(pk.tcp(sport=sport, flags="A")).backend == gone:
            on_gone.append(sport)
    assert on_gone
    dp.set_service(svc.model_copy(update={"backends": bes[1:]}), hops)
    before = dp.counters()
    for sport in on_gone:
        res = dp.run(pk.tcp(sport=sport, flags="PA"))
        assert res.verdict == ("TX" if expire_nodest else "DROP")
    after = dp.counters()
    if expire_nodest:
        assert after["conn_rescheduled"] - before["conn_rescheduled"] == len(on_gone)
    else:
        assert after["drop_nodest"] - before["drop_nodest"] == len(on_gone)
