"""Changes the data plane cannot take are refused before any map is written, and the state Python
keeps always matches the maps."""

from __future__ import annotations

import pytest

from tests import packets as pk
from tests.conftest import SMALL, map_rows, maps_snapshot
from xdplb.datapath import ConfigError
from xdplb.net import Nexthop, NexthopError

pytestmark = pytest.mark.datapath


def test_refused_changes_write_nothing(dp):
    bes = pk.backends(2)
    svc = pk.service(backends=bes)
    dp.set_service(svc, pk.nexthops(bes))
    before = maps_snapshot(dp)
    too_big_ring = pk.service(port=81, ring_size=65537, backends=bes)
    with pytest.raises(ConfigError, match="ring_size"):
        dp.set_service(too_big_ring, pk.nexthops(bes))
    many = pk.backends(SMALL.seq_max + 1)
    with pytest.raises(ConfigError, match="per-service maximum"):
        dp.set_service(pk.service(port=82, backends=many), pk.nexthops(many))
    with pytest.raises(NexthopError):  # the session's resolver refuses: like an unanswered ARP
        dp.set_service(pk.service(port=83, backends=pk.backends(3)))
    with pytest.raises(ConfigError, match="not a MAC"):
        dp.set_service(pk.service(port=84, backends=bes), {bes[0].address: Nexthop(1, "02:00", "zz"),
                                                            bes[1].address: pk.nexthops(bes)[bes[1].address]})
    with pytest.raises(ConfigError, match="next hop"):  # no such interface
        dp.set_service(svc, {bes[0].address: Nexthop(999999, pk.LB_MAC, pk.backend_mac(0))})
    assert maps_snapshot(dp) == before
    assert dp.services == [svc]


def test_service_limit(dp):
    bes = pk.backends(1)
    for port in range(SMALL.max_services):
        dp.set_service(pk.service(port=1000 + port, backends=bes), pk.nexthops(bes))
    with pytest.raises(ConfigError, match="service limit"):
        dp.set_service(pk.service(port=2000, backends=bes), pk.nexthops(bes))
    dp.remove_service(pk.service(port=1000).key)
    dp.set_service(pk.service(port=2000, backends=bes), pk.nexthops(bes))
    assert dp.simulate(pk.tcp(dport=2000)).verdict == "TX"
    assert dp.simulate(pk.tcp(dport=1000)).reason == "pass_not_vip"


def test_unchanged_service_writes_nothing_and_weight_change_writes_little(dp):
    bes = pk.backends(5)
    svc = pk.service(scheduler="mh", backends=bes)
    assert dp.set_service(svc, pk.nexthops(bes)) == {"backends": 5, "rings": 4099, "seqs": 0}
    before = maps_snapshot(dp)
    rings_before = map_rows(dp.maps["rings"])
    assert dp.set_service(svc) == {"backends": 0, "rings": 0, "seqs": 0}
    assert maps_snapshot(dp) == before
    heavier = tuple(b.model_copy(update={"weight": 2}) if i == 0 else b for i, b in enumerate(bes))
    written = dp.set_service(svc.model_copy(update={"backends": heavier}))
    assert written["backends"] == 1
    assert 0 < written["rings"] < 4099 // 2
    after = dict(map_rows(dp.maps["rings"]))
    changed = sum(after[k] != v for k, v in rings_before)
    assert changed == written["rings"]
    # ...and the heavier backend now takes about 2/6 of new clients
    clients = [f"10.{i // 250}.{i % 250}.1" for i in range(3000)]
    share = sum(dp.simulate(pk.tcp(src=c)).backend == bes[0].address for c in clients) / len(clients)
    assert abs(share - 2 / 6) < 0.04


def test_xdp_md_matches_the_kernel_header():
    """testrun.XdpMd is the kernel's UAPI struct, written by hand: BCC's view of it must agree."""
    import ctypes

    from bcc import BPF

    from xdplb.testrun import XdpMd

    b = BPF(text=b"BPF_ARRAY(layout, struct xdp_md, 1);")
    try:
        leaf = b[b"layout"].Leaf
        assert [n for n, _ in leaf._fields_] == [n for n, _ in XdpMd._fields_][:len(leaf._fields_)]
        assert ctypes.sizeof(leaf) == ctypes.sizeof(XdpMd)
    finally:
        b.cleanup()
