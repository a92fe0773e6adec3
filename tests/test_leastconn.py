"""The least-connection family (lc, wlc, sed, nq, fo) against IPVS's own rules, step by step:
every new connection must go where IPVS would send it given the counts at that moment. Plus the
upper/lower thresholds (ipvsadm -x/-y) and the sweeper that recounts from the tables."""

from __future__ import annotations

import pytest

from tests import packets as pk
from xdplb.datapath import ConfigError
from xdplb.sizes import LC_MAX_LOADABLE

pytestmark = pytest.mark.datapath


def ipvs_pick(sched: str, weights: list[int], active: list[int], inactive: list[int]) -> int:
    """IPVS's choice (ip_vs_lc.c, ip_vs_wlc.c, ip_vs_sed.c, ip_vs_nq.c, ip_vs_fo.c): the first
    backend with the least overhead, compared by cross-multiplying with the weights."""
    best = None
    for i, w in enumerate(weights):
        if w == 0:
            continue
        if sched == "fo":
            if best is None or w > weights[best]:
                best = i
            continue
        if sched == "nq" and active[i] == 0:
            return i
        oh = active[i] * 256 + inactive[i] if sched in ("lc", "wlc") else active[i] + 1
        if best is None:
            best, best_oh = i, oh
        elif sched == "lc":
            if oh < best_oh:
                best, best_oh = i, oh
        elif best_oh * w > oh * weights[best]:
            best, best_oh = i, oh
    return best


def configure(dp, sched, weights, **backend_kw):
    bes = tuple(b.model_copy(update=backend_kw) for b in pk.backends(len(weights), weights=weights))
    svc = pk.service(scheduler=sched, backends=bes)
    dp.set_service(svc, pk.nexthops(bes))
    return svc, [b.address for b in bes]


def counts(dp, svc, addrs):
    c = dp.backend_counts(svc.key)
    return [c[a][0] for a in addrs], [c[a][1] for a in addrs]


@pytest.mark.parametrize("sched", ["lc", "wlc", "sed", "nq", "fo"])
@pytest.mark.parametrize("weights", [[1, 1, 1], [1, 2, 3], [5, 1, 0, 2]])
def test_each_new_connection_goes_where_ipvs_would(dp, sched, weights):
    svc, addrs = configure(dp, sched, weights)
    for i in range(40):
        active, inactive = counts(dp, svc, addrs)
        want = ipvs_pick(sched, weights, active, inactive)
        got = dp.run(pk.tcp(sport=10000 + i)).frame
        assert pk.backend_of(got) == pk.backend_mac(want), (i, active, inactive)
        if i % 4 != 3:  # most complete the handshake (active); some stay half-open (inactive)
            dp.run(pk.tcp(sport=10000 + i, flags="A"))
        if i % 7 == 6:  # and some close again
            dp.run(pk.tcp(sport=10000 + i, flags="FA"))


def test_wlc_shares_in_proportion_to_weights(dp):
    svc, addrs = configure(dp, "wlc", [1, 2, 3])
    for i in range(120):
        dp.run(pk.tcp(sport=11000 + i))
        dp.run(pk.tcp(sport=11000 + i, flags="A"))
    assert counts(dp, svc, addrs) == ([20, 40, 60], [0, 0, 0])


def test_nq_takes_an_idle_backend_outright(dp):
    configure(dp, "nq", [100, 1])
    dp.run(pk.tcp(sport=12000))
    dp.run(pk.tcp(sport=12000, flags="A"))   # backend 0 (sed rank 1/100) is now busy
    res = dp.run(pk.tcp(sport=12001))
    assert pk.backend_of(res.frame) == pk.backend_mac(1)


def test_lc_limit_is_enforced(dp):
    bes = pk.backends(2)
    svc = pk.service(scheduler="wlc", backends=bes)
    dp.set_service(svc, pk.nexthops(bes))
    assert dp.sizes.lc_max <= LC_MAX_LOADABLE
    many = pk.backends(dp.sizes.lc_max + 1)
    with pytest.raises(ConfigError, match="scans at most"):
        dp.set_service(svc.model_copy(update={"backends": many}), pk.nexthops(many))


@pytest.mark.parametrize("sched", ["rr", "wlc", "mh"])
def test_upper_and_lower_threshold_with_hysteresis(dp, one_cpu, sched):
    """Backend 0 takes at most 3 connections; once full it gets none until it is below 1."""
    bes = (pk.backends(2)[0].model_copy(update={"upper_threshold": 3, "lower_threshold": 1}),
           pk.backends(2)[1])
    svc = pk.service(scheduler=sched, backends=bes)
    dp.set_service(svc, pk.nexthops(bes))
    mine = pk.backend_mac(0)

    def open_flow(sport):
        res = dp.run(pk.tcp(sport=sport, src=f"10.99.{sport % 200}.{sport % 250 + 1}"))
        dp.run(pk.tcp(sport=sport, src=f"10.99.{sport % 200}.{sport % 250 + 1}", flags="A"))
        return pk.backend_of(res.frame) == mine

    on_zero = [s for s in range(13000, 13060) if open_flow(s)]
    assert len(on_zero) == 3
    for i, sport in enumerate(on_zero[:2]):  # 3 -> 1: not below the lower threshold yet
        dp.run(pk.tcp(sport=sport, src=f"10.99.{sport % 200}.{sport % 250 + 1}", flags="R"))
        dp.sweep()  # a closed connection stays inactive until it expires: IPVS counts it too
        assert not any(open_flow(s) for s in range(13100 + 20 * i, 13120 + 20 * i))
    dp.flush_connections()  # 0 connections: below the lower threshold
    assert any(open_flow(s) for s in range(13200, 13240))


def test_all_backends_overloaded_drops_and_counts(dp):
    bes = tuple(b.model_copy(update={"upper_threshold": 1}) for b in pk.backends(2))
    svc = pk.service(scheduler="wlc", backends=bes)
    dp.set_service(svc, pk.nexthops(bes))
    for i in range(2):
        assert dp.run(pk.tcp(sport=14000 + i)).verdict == "TX"
    before = dp.counters()["drop_overloaded"]
    assert dp.run(pk.tcp(sport=14002)).verdict == "DROP"
    assert dp.counters()["drop_overloaded"] == before + 1


def test_sweeper_recounts_after_close_expiry_and_eviction(dp):
    """Expiry and LRU eviction have no hook: the data plane's counts drift until the sweeper
    recounts them from the tables."""
    svc, addrs = configure(dp, "wlc", [1, 1])
    for i in range(10):
        dp.run(pk.tcp(sport=15000 + i))
        dp.run(pk.tcp(sport=15000 + i, flags="A"))
    for i in range(4):
        dp.run(pk.tcp(sport=15000 + i, flags="FA"))
    assert counts(dp, svc, addrs) == ([3, 3], [2, 2])
    dp.sweep()
    assert counts(dp, svc, addrs) == ([3, 3], [2, 2])  # nothing to correct
    # Expiry: the closing ones go after tcpfin, the established ones after tcp.
    dp.shift_clock(dp.timeouts.tcpfin + 1)
    assert counts(dp, svc, addrs) == ([3, 3], [2, 2])
    report = dp.sweep()
    assert report.expired == 4
    assert counts(dp, svc, addrs) == ([3, 3], [0, 0])
    # Eviction: more flows met mid-stream than the table holds.
    size = dp.sizes.conn_max
    for frame in pk.flows(pk.tcp(flags="A"), size + size // 4):
        dp.run(frame)
    drifted = sum(counts(dp, svc, addrs)[0])
    present = sum(1 for _ in dp.maps["conntrack"].items_lookup_batch())
    assert drifted > present
    report = dp.sweep()
    assert report.evicted["conntrack"] > 0
    assert sum(counts(dp, svc, addrs)[0]) == present


def test_sweeper_does_not_count_a_previous_backends_entries_on_a_reused_slot(dp):
    """A removed service's connections stay in the table until they expire; the backend that reuses
    their slot (a new generation) must not inherit them as its own."""
    old, addrs = configure(dp, "wlc", [1, 1])
    for i in range(6):
        dp.run(pk.tcp(sport=16000 + i))
        dp.run(pk.tcp(sport=16000 + i, flags="A"))
    dp.remove_service(old.key)
    new = pk.service(port=81, scheduler="wlc", backends=pk.backends(2))
    dp.set_service(new, pk.nexthops(pk.backends(2)))  # takes the freed slots again
    dp.sweep()
    assert dp.backend_counts(new.key) == {a: (0, 0) for a in addrs}
