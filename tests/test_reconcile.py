"""The reconciler against a real data plane: it writes only what differs, removes what is no longer
desired, and a service the data plane refuses is reported while the others apply."""

from __future__ import annotations

import pytest

from tests import packets as pk
from xdplb.model import Timeouts
from xdplb.net import Nexthop
from xdplb.reconcile import Reconciler

pytestmark = pytest.mark.datapath


@pytest.fixture
def rec(dp):
    hops, original = pk.nexthops(pk.backends(4)), dp._resolver
    dp._resolver = lambda addr: hops[addr]  # the tests' explicit next hops, through the resolver
    yield Reconciler(dp)
    dp._resolver = original


def desired(weights=(1, 1, 1), udp=True):
    bes = pk.backends(len(weights), weights=list(weights))
    services = [pk.service(scheduler="mh", backends=bes)]
    if udp:
        services.append(pk.service("udp", 53, scheduler="rr", backends=bes))
    return services


def test_a_second_pass_writes_nothing(rec):
    first = rec.apply(desired(), Timeouts())
    assert first.ok and first.services == 2 and first.written["rings"] > 0
    again = rec.apply(desired(), Timeouts())
    assert again.ok and sum(again.written.values()) == 0


def test_a_weight_change_writes_its_rows_only(rec):
    rec.apply(desired(), Timeouts())
    changed = rec.apply(desired((1, 1, 5)), Timeouts())
    assert changed.written["backends"] == 2  # the changed backend, in each of the two services
    assert 0 < changed.written["rings"] < 4099
    assert rec.dp.simulate(pk.udp()).verdict == "TX"


def test_services_no_longer_desired_are_removed(rec):
    rec.apply(desired(), Timeouts())
    out = rec.apply(desired(udp=False), Timeouts(udp=30))
    assert [k[0].value for k in out.removed] == ["udp"]
    assert rec.dp.simulate(pk.udp()).verdict == "PASS"
    assert rec.dp.timeouts.udp == 30


def test_a_refused_service_is_reported_and_the_others_apply(rec):
    bad = pk.service(port=81, backends=pk.backends(1))
    rec.dp._resolver = lambda addr: Nexthop(999999, pk.LB_MAC, pk.backend_mac(0))  # no such interface
    out = rec.apply([bad], Timeouts())
    assert not out.ok and "next hop" in out.refused[bad.key]
    hops = pk.nexthops(pk.backends(4))
    rec.dp._resolver = lambda addr: hops[addr]
    out = rec.apply([*desired(), bad], Timeouts())
    assert out.services == 3 and out.ok
