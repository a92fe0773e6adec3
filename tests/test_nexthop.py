"""Next hops resolved through the kernel's routing and neighbour tables (ARP and ND answered by a
real peer in another namespace), and used by the data plane."""

from __future__ import annotations

import contextlib
import ipaddress
import os
from collections.abc import Iterator

import pytest
from scapy.layers.l2 import Ether

from tests import packets as pk
from xdplb.net import (
    NexthopError,
    add_route,
    add_veth,
    configure_link,
    create_netns,
    in_netns,
    move_link,
    remove_netns,
    resolve_nexthop,
)

pytestmark = pytest.mark.datapath


@pytest.fixture
def two_hosts() -> Iterator[tuple]:
    """A director namespace and a real-server namespace on one segment (10.100.0.0/24,
    fd00:100::/64); the director routes 10.200.0.0/24 through the real server."""
    lb, rs = f"xdplbt-lb-{os.getpid()}", f"xdplbt-rs-{os.getpid()}"
    for ns in (lb, rs):
        remove_netns(ns)
        create_netns(ns)
    try:
        with in_netns(lb):
            add_veth("xt-lb", "xt-rs")
            move_link("xt-rs", rs)
            lb_link = configure_link("xt-lb", "10.100.0.2/24", "fd00:100::2/64")
            add_route("10.200.0.0/24", "10.100.0.11")
        with in_netns(rs):
            rs_link = configure_link("xt-rs", "10.100.0.11/24", "fd00:100::11/64")
        yield lb, lb_link, rs_link
    finally:
        for ns in (lb, rs):
            remove_netns(ns)


@pytest.mark.parametrize(("backend", "via"), [
    ("10.100.0.11", "on link"), ("10.200.0.5", "via a gateway"), ("fd00:100::11", "IPv6 on link")])
def test_resolves_the_peer_mac(two_hosts, backend, via):
    ns, lb_link, rs_link = two_hosts
    with in_netns(ns):
        nh = resolve_nexthop(ipaddress.ip_address(backend), timeout=5)
    assert (nh.ifindex, nh.smac, nh.dmac) == (lb_link.ifindex, lb_link.mac, rs_link.mac), via


def test_no_route_or_no_answer_is_an_error(two_hosts):
    ns, _, _ = two_hosts
    with in_netns(ns):
        with pytest.raises(NexthopError, match="no route"):
            resolve_nexthop(ipaddress.ip_address("192.0.2.1"))
        with pytest.raises(NexthopError, match="did not answer"):
            resolve_nexthop(ipaddress.ip_address("10.100.0.99"), timeout=0.5)


def test_datapath_resolves_backends_itself(two_hosts):
    from tests.conftest import SMALL
    from xdplb.datapath import Datapath

    ns, lb_link, rs_link = two_hosts
    with in_netns(ns), Datapath(SMALL) as dp:
        bes = pk.backends(1)
        dp.set_service(pk.service(backends=bes))
        res = dp.simulate(pk.tcp(), ingress_ifindex=lb_link.ifindex)
        assert res.verdict == "TX"
        assert (Ether(res.frame).src, Ether(res.frame).dst) == (lb_link.mac, rs_link.mac)


def forget_neighbour(ifindex: int) -> None:
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError

    with IPRoute() as ipr, contextlib.suppress(NetlinkError):
        ipr.neigh("del", dst="10.100.0.11", ifindex=ifindex)


def test_refresh_follows_a_moved_next_hop_and_keeps_the_last_good_one(two_hosts):
    from pyroute2 import IPRoute

    from tests.conftest import SMALL
    from xdplb.datapath import Datapath

    ns, lb_link, _ = two_hosts
    rs_ns = ns.replace("-lb-", "-rs-")
    new_mac = "02:00:00:00:99:11"
    with in_netns(ns), Datapath(SMALL) as dp:
        bes = pk.backends(1)
        dp.set_service(pk.service(backends=bes))
        with in_netns(rs_ns), IPRoute() as ipr:  # the real server's NIC is replaced
            ipr.link("set", index=ipr.link_lookup(ifname="xt-rs")[0], address=new_mac)
        forget_neighbour(lb_link.ifindex)  # as its expiry would
        assert dp.refresh_nexthops() == {}
        assert Ether(dp.simulate(pk.tcp(), ingress_ifindex=lb_link.ifindex).frame).dst == new_mac
        with in_netns(rs_ns), IPRoute() as ipr:  # now it stops answering: the last good hop stays
            ipr.link("set", index=ipr.link_lookup(ifname="xt-rs")[0], state="down")
        forget_neighbour(lb_link.ifindex)
        failed = dp.refresh_nexthops()
        assert list(failed) == [bes[0].address] and "did not answer" in failed[bes[0].address]
        assert Ether(dp.simulate(pk.tcp(), ingress_ifindex=lb_link.ifindex).frame).dst == new_mac
