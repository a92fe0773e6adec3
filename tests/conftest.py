"""Shared fixtures. The balancer is compiled once per session with small tables (fast to load and
to snapshot); each test gets it with no services, no connections and counters read as deltas."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests import packets
from xdplb.datapath import Datapath, Sizes
from xdplb.net import NexthopError

SMALL = Sizes(max_services=8, max_vips=32, max_backends=256, ring_max=4099, seq_max=256,
              conn_max=65536, max_tx_ports=8)


def _no_resolver(addr):
    raise NexthopError(f"tests give next hops explicitly ({addr})")


@pytest.fixture(scope="session")
def datapath() -> Iterator[Datapath]:
    if os.geteuid() != 0:
        pytest.skip("the data plane needs root")
    dp = Datapath(SMALL, resolver=_no_resolver)
    yield dp
    dp.close()


@pytest.fixture
def dp(datapath: Datapath) -> Iterator[Datapath]:
    yield datapath
    for svc in datapath.services:
        datapath.remove_service(svc.key)
    datapath.flush_connections()


@pytest.fixture
def pk():
    return packets


def maps_snapshot(dp: Datapath) -> dict[str, list[tuple[bytes, bytes]]]:
    """Every entry of every map, to prove an operation wrote nothing."""
    return {name: sorted((bytes(k), bytes(v)) for k, v in table.items()) for name, table in dp.maps.items()}


@pytest.fixture
def one_cpu() -> Iterator[int]:
    """Pin the test to one CPU: rr/wrr cursors are per CPU, so exact sequences need one of them."""
    before = os.sched_getaffinity(0)
    cpu = min(before)
    os.sched_setaffinity(0, {cpu})
    yield cpu
    os.sched_setaffinity(0, before)


@pytest.fixture
def netns_veth() -> Iterator[tuple]:
    """A namespace holding a veth pair (a, b); the test runs inside it and it is removed after."""
    from xdplb.net import add_veth, create_netns, in_netns, remove_netns

    name = f"xdplbt-{os.getpid()}"
    remove_netns(name)
    create_netns(name)
    try:
        with in_netns(name):
            yield add_veth("xt-a", "xt-b")
    finally:
        remove_netns(name)


@pytest.fixture(scope="session")
def lab() -> Iterator:
    """The namespace lab, brought up once per run (its own prefix, so a user's lab is untouched)
    and torn down at the end even when tests fail."""
    from xdplb.lab import Lab, exit_on_signals

    if os.geteuid() != 0:
        pytest.skip("the lab needs root")
    exit_on_signals()  # a killed run still takes its lab down
    the_lab = Lab(prefix=f"xt{os.getpid()}")
    the_lab.up(os.environ.get("XDPLB_LAB_XDP", "native"))
    try:
        yield the_lab
    finally:
        the_lab.down()


@pytest.fixture(scope="session")
def lb1(lab) -> Iterator:
    """lb1's daemon, started once: it compiles the balancer and attaches it to lb1's front interface in
    the lab's XDP mode; stopped, detached and unpinned at the end even when tests fail."""
    from xdplb.lab import Director

    director = Director(lab, "lb1")
    try:
        director.attach()
        yield director
    finally:
        director.close()


@pytest.fixture
def lb(lb1) -> Iterator:
    """lb1 with no services after the test (its daemon restarted if a test left it stopped). The
    connections stay: the daemon has no flush, and a connection whose backend is gone is placed
    afresh by its next packet."""
    yield lb1
    if not lb1.running:
        lb1.start()
    lb1.reset()
