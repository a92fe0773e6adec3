"""Shared fixtures. The balancer is compiled once per session with small tables (fast to load and
to snapshot); each test gets it with no services, no connections and counters read as deltas."""

from __future__ import annotations

import dataclasses
import hashlib
import ipaddress
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


def map_rows(table) -> list[tuple[bytes, bytes]]:
    """A map's entries, sorted; arrays through batch lookups (a Maglev table of 65537 rows per
    service is read in a fraction of a second)."""
    from bcc.table import Array

    # plain arrays only: BCC 0.26's batch loop over a hash map that holds entries never ends.
    # Batches hand scalar keys and values over as ints, which bytes() would take for a length.
    items = table.items_lookup_batch() if type(table) is Array else table.items()
    return sorted((_raw(k), _raw(v)) for k, v in items)


def _raw(x) -> bytes:
    return x.to_bytes(8, "little") if isinstance(x, int) else bytes(x)


def maps_snapshot(dp: Datapath) -> dict[str, str]:
    """A digest of every map's entries, to prove an operation wrote nothing."""
    return {name: hashlib.sha256(b"".join(k + v for k, v in map_rows(table))).hexdigest()
            for name, table in dp.maps.items()}


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


def lab_resolver(addr):
    """Next hops as the lab's director would resolve them (the backends on its inside link, lo
    standing in for it), given explicitly like the other tests'; 192.0.2.0/24 has no route."""
    from tests.packets import LB_MAC, LO_IFINDEX, backend_mac
    from xdplb.net import Nexthop

    if addr in ipaddress.ip_network("192.0.2.0/24"):
        raise NexthopError(f"no route to backend {addr}")
    src = "10.100.1.2" if addr.version == 4 else "2001:db8:1::2"
    return Nexthop(LO_IFINDEX, LB_MAC, backend_mac(int(addr) % 200), src, 1500)


@pytest.fixture(scope="session")
def api_datapath() -> Iterator[Datapath]:
    """A balancer of its own for the API tests: their backends resolve through lab_resolver."""
    if os.geteuid() != 0:
        pytest.skip("the data plane needs root")
    dp = Datapath(dataclasses.replace(SMALL, ring_max=65537), resolver=lab_resolver)  # the default ring fits
    yield dp
    dp.close()


@pytest.fixture
def manager(api_datapath: Datapath, tmp_path) -> Iterator:
    """A manager with an empty desired state saved under tmp_path, on a data plane with no services."""
    from xdplb.manager import Manager
    from xdplb.store import State, Store

    store = Store(tmp_path / "state")
    state = State()
    m = Manager(api_datapath, store, state.model_copy(update={"version": store.save(state)}))
    m.start()
    yield m
    for svc in api_datapath.services:
        api_datapath.remove_service(svc.key)
    api_datapath.flush_connections()


API_TOKEN = "test-token-0123456789abcdef"


@pytest.fixture
def api(manager) -> Iterator:
    """The API application on the manager, through Starlette's TestClient (real HTTP semantics, no
    socket); the client sends the token unless a test removes it."""
    from fastapi.testclient import TestClient

    from xdplb.api.context import ApiContext
    from xdplb.api.main import create_app

    app = create_app(ApiContext(manager, API_TOKEN))
    with TestClient(app, headers={"Authorization": f"Bearer {API_TOKEN}"}) as client:
        yield client
