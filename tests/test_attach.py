"""Attaching the balancer to real interfaces (a veth pair in a namespace of the test's own), and
the attached program balancing a frame that really arrives on the interface."""

from __future__ import annotations

import time

import pytest
from scapy.arch.linux import L2Socket

from tests import packets as pk
from xdplb.net import Nexthop, xdp_mode

pytestmark = pytest.mark.datapath


@pytest.mark.parametrize("mode", ["native", "generic", "auto"])
def test_attach_and_detach(dp, netns_veth, mode):
    _, b = netns_veth
    got = dp.attach(b.name, mode)
    try:
        assert got == ("native" if mode == "auto" else mode)
        assert xdp_mode(b.name) == got
    finally:
        dp.detach(b.name)
    assert xdp_mode(b.name) is None


@pytest.mark.parametrize("mode", ["native", "generic"])
def test_attached_program_balances_real_frames(dp, netns_veth, mode):
    a, b = netns_veth
    bes = pk.backends(2)
    dp.set_service(pk.service(backends=bes), {x.address: Nexthop(b.ifindex, b.mac, pk.backend_mac(i))
                                              for i, x in enumerate(bes)})
    dp.attach(b.name, mode)
    try:
        before = dp.counters()
        with L2Socket(iface=a.name) as sock:
            for sport in range(50000, 50010):
                sock.send(pk.tcp(sport=sport))
        deadline = time.monotonic() + 2
        while dp.counters()["verdict_tx"] - before["verdict_tx"] < 10 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        dp.detach(b.name)
    after = dp.counters()
    assert after["verdict_tx"] - before["verdict_tx"] == 10
    assert after["conn_new"] - before["conn_new"] == 10
    assert len(list(dp.connections())) == 10
