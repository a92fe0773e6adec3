"""The namespace lab itself: the topology of DESIGN.md, reachable hosts, and a clean teardown."""

from __future__ import annotations

import pytest

from xdplb import net
from xdplb.lab import HOSTS, Lab

pytestmark = pytest.mark.lab


def test_topology_and_addresses(lab):
    rows = {r["host"]: r for r in lab.status()}
    assert set(rows) == {h.name for h in HOSTS}
    for host in HOSTS:
        assert rows[host.name]["up"]
        for segment in host.segments:
            addrs = rows[host.name]["interfaces"][segment]["addresses"]
            assert f"{host.address(segment, 4)}/24" in addrs
            assert f"{host.address(segment, 6)}/64" in addrs
    # NAT real servers are on the back segment only
    assert set(rows["rs4"]["interfaces"]) == {"back"}


@pytest.mark.parametrize("target", ["10.100.0.11", "[fd00:100::12]"])
def test_client_reaches_a_real_server_through_the_router(lab, target):
    res = lab.exec("client", ["curl", "-gs", "-m", "3", f"http://{target}/"], check=True)
    assert res.stdout.strip() in {"rs1", "rs2"}


def test_up_twice_then_down_leaves_nothing():
    lab = Lab(prefix="xlu")
    try:
        lab.up("generic")
        lab.up("generic")  # idempotent: rebuilt, not doubled
        assert sum(n.startswith("xlu-") for n in net.list_netns()) == len(HOSTS) + 1
        assert net.namespace_pids(lab.ns("rs1"))  # nginx and the echo service run there
    finally:
        lab.down()
    assert not [n for n in net.list_netns() if n.startswith("xlu-")]
    assert not lab.state_dir.exists()
