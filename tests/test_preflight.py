"""Datapath.preflight: what a whole desired set would meet in the data plane, found before anything
is written, along the reconciler's order (removed services first, then each in turn)."""

from __future__ import annotations

import ipaddress

import pytest

from tests import packets as pk
from tests.conftest import maps_snapshot
from xdplb.model import Backend

pytestmark = pytest.mark.datapath


def _service(port: int, n: int, first: str = "10.1.0.1", **kw):
    start = ipaddress.ip_address(first)
    return pk.service(port=port, backends=tuple(Backend(address=start + i) for i in range(n)), **kw)


def _hops(*services):
    return {b.address: h for s in services for b, h in zip(s.backends, pk.nexthops(s.backends).values(), strict=True)}


def test_the_totals_along_the_pass_are_checked_and_nothing_is_written(dp):
    a = _service(80, 200)
    dp.set_service(a, _hops(a))
    b = _service(81, 100, "10.2.0.1")
    before = maps_snapshot(dp)
    pre = dp.preflight([a, b])  # 300 backends: more than the 256 slots
    assert pre.problems == {b.key: "backend limit reached (256)"}
    assert maps_snapshot(dp) == before


def test_a_service_replaced_by_another_in_one_pass_fits(dp, monkeypatch):
    a = _service(80, 200)
    dp.set_service(a, _hops(a))
    b = _service(81, 200, "10.2.0.1")
    monkeypatch.setattr(dp, "_resolver", lambda addr: _hops(b)[addr])  # next hops given, as tests do
    pre = dp.preflight([b])  # a goes first and frees its 200 slots
    assert pre.problems == {} and set(pre.nexthops) == {x.address for x in b.backends}


def test_service_ids_endpoints_and_next_hops(dp, monkeypatch):
    services = [_service(80 + i, 1, f"10.3.{i}.1") for i in range(9)]  # one more than the 8 ids
    assert dp.preflight(services[:1]).problems[services[0].key].startswith("tests give next hops explicitly")
    monkeypatch.setattr(dp, "_resolver", lambda addr: _hops(*services)[addr])
    assert dp.preflight(services).problems == {services[8].key: "service limit reached (8)"}
    first = services[0]
    dp.set_service(first, _hops(first))
    # an endpoint moves from a service removed in the same pass to a new one: allowed
    mark = pk.service(port=90, fwmark=7, endpoints=[{"protocol": "tcp", "vip": pk.VIP4, "port": 80}],
                      backends=first.backends)
    assert dp.preflight([mark]).problems == {}
    # while the service holding it stays: refused, naming it
    assert "already belongs to service tcp:10.100.0.100:80" in dp.preflight([first, mark]).problems[mark.key]
