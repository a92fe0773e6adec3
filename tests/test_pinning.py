"""Pinned maps and a control-plane restart through BPF_PROG_TEST_RUN: a second Datapath on the same
bpffs directory takes the maps over (connections keep their backends, counters go on, the first
set_service writes only what differs), and maps of another shape or schema are refused."""

from __future__ import annotations

import ctypes
import dataclasses
import os
from pathlib import Path

import pytest

from tests import packets as pk
from tests.conftest import SMALL, _no_resolver
from xdplb import pinning
from xdplb.datapath import Datapath
from xdplb.pinning import PinnedMapError

pytestmark = pytest.mark.datapath


@pytest.fixture
def pin_dir(request):
    path = Path(f"/sys/fs/bpf/xdplb-test-{os.getpid()}-{request.node.name[:20]}")
    yield path
    pinning.unpin(path)
    assert not path.exists()


def open_dp(pin_dir: Path, migrate: bool = False, **sizes) -> Datapath:
    return Datapath(dataclasses.replace(SMALL, **sizes), resolver=_no_resolver, pin_dir=pin_dir, migrate=migrate)


def establish(dp: Datapath, first_port: int) -> tuple:
    """An rr service over 3 backends and 6 connections through it: (service, backends, where each went)."""
    bes = pk.backends(3)
    svc = pk.service(scheduler="rr", backends=bes)
    dp.set_service(svc, pk.nexthops(bes))
    placed = {}
    for i in range(6):
        dp.run(pk.tcp(sport=first_port + i))
        placed[i] = pk.backend_of(dp.run(pk.tcp(sport=first_port + i, flags="A")).frame)
    return svc, bes, placed


def test_a_restarted_control_plane_takes_the_maps_over(pin_dir):
    with open_dp(pin_dir) as first:
        svc, bes, placed = establish(first, 50000)
        before = first.counters()
    assert sorted(p.name for p in pin_dir.iterdir()) == sorted(pinning.PINNED_MAPS)
    with open_dp(pin_dir) as second:
        assert second.counters() == before
        assert {c.state for c in second.connections()} == {"ESTABLISHED"}
        for i in range(6):  # before any set_service: the pinned configuration is still in force
            assert pk.backend_of(second.run(pk.tcp(sport=50000 + i, flags="A")).frame) == placed[i]
        written = second.set_service(svc, pk.nexthops(bes))
        assert written["rings"] == written["seqs"] == 0
        for i in range(6):
            assert pk.backend_of(second.run(pk.tcp(sport=50000 + i, flags="A")).frame) == placed[i]
        assert second.counters()["conn_hit"] == before["conn_hit"] + 12
        assert second.release_unclaimed() == []


def test_services_the_new_desired_state_drops_are_released(pin_dir):
    bes = pk.backends(2)
    web, dns = pk.service(backends=bes), pk.service("udp", 53, backends=bes)
    with open_dp(pin_dir) as first:
        first.set_service(web, pk.nexthops(bes))
        first.set_service(dns, pk.nexthops(bes))
    with open_dp(pin_dir) as second:
        second.set_service(web, pk.nexthops(bes))
        assert second.simulate(pk.udp()).verdict == "TX"
        assert len(second.release_unclaimed()) == 1
        assert second.simulate(pk.udp()).verdict == "PASS"
        assert second.simulate(pk.tcp()).verdict == "TX"


def test_maps_of_another_shape_are_refused(pin_dir):
    with open_dp(pin_dir, conn_max=4096):
        pass
    with pytest.raises(PinnedMapError, match="conntrack: max entries 4096 pinned, 8192 expected"):
        open_dp(pin_dir, conn_max=8192)
    with open_dp(pin_dir, conn_max=4096) as again:  # refused means untouched: the right build still fits
        assert again.counters()


def test_another_schema_is_refused(pin_dir):
    with open_dp(pin_dir) as first:
        meta = first.maps["pin_meta"]
        meta[ctypes.c_uint32(0)] = meta.Leaf(schema_version=999)
    with pytest.raises(PinnedMapError, match="schema version 999"):
        open_dp(pin_dir)


def test_two_directors_never_share_a_map(pin_dir):
    other = Path(f"{pin_dir}-other")
    try:
        with open_dp(pin_dir) as a, open_dp(other) as b:
            assert a.maps["conntrack"].map_fd != b.maps["conntrack"].map_fd
            a.run(pk.tcp())
            assert a.counters() != b.counters()
    finally:
        pinning.unpin(other)


def test_an_observer_reads_without_writing(pin_dir):
    with pytest.raises(PinnedMapError, match="nothing to observe"):
        Datapath(SMALL, resolver=_no_resolver, pin_dir=pin_dir, observe=True)
    assert not pin_dir.exists()
    bes = pk.backends(2)
    with open_dp(pin_dir) as owner:
        owner.set_service(pk.service(backends=bes), pk.nexthops(bes))
        owner.run(pk.tcp())
        with Datapath(SMALL, resolver=_no_resolver, pin_dir=pin_dir, observe=True) as observer:
            assert observer.counters() == owner.counters()
            assert len(list(observer.connections())) == 1
        assert owner.run(pk.tcp(sport=40001)).verdict == "TX"  # the owner's tail calls and maps intact


def test_upgrade_and_rollback_to_other_sizes_keep_the_connections(pin_dir):
    """Bigger tables, then back: connections, counters and ids move with the maps; the first
    set_service rewrites the Maglev rows the new sizes lay out differently."""
    with open_dp(pin_dir) as first:
        svc, bes, placed = establish(first, 51000)
        hits = first.counters()["conn_hit"]
    for sizes in (dict(conn_max=1 << 17, ring_max=8191), {}):  # the upgrade, then the rollback
        with open_dp(pin_dir, migrate=True, **sizes) as moved:
            assert moved.counters()["conn_hit"] == hits
            written = moved.set_service(svc, pk.nexthops(bes))
            assert written["rings"] > 0  # laid out by ring_max: written anew
            for i in range(6):
                assert pk.backend_of(moved.run(pk.tcp(sport=51000 + i, flags="A")).frame) == placed[i]
            hits = moved.counters()["conn_hit"]
            assert moved.maps["conntrack"].max_entries == dataclasses.replace(SMALL, **sizes).conn_max
    assert not Path(f"{pin_dir}-old").exists()


def test_a_move_that_cannot_fit_is_refused_and_undone(pin_dir):
    bes = pk.backends(2)
    with open_dp(pin_dir) as first:
        first.set_service(pk.service(backends=bes), pk.nexthops(bes))
        for i in range(20):  # take backend ids up to 39 (each service update takes new ones)
            first.set_service(pk.service(backends=pk.backends(2 + i)), pk.nexthops(pk.backends(2 + i)))
    from xdplb.migrate import MigrationError
    with pytest.raises(MigrationError, match="in use"):
        open_dp(pin_dir, migrate=True, max_backends=8)
    with open_dp(pin_dir) as again:  # undone: the original maps, untouched
        assert again.simulate(pk.tcp()).verdict == "TX"
    assert not Path(f"{pin_dir}-old").exists()


@pytest.mark.unit
def test_prune_removes_the_directors_root_with_its_last_pin_directory(tmp_path):
    root = tmp_path / "xdplb"
    for name in ("lb1", "lb2"):
        (root / name).mkdir(parents=True)
    pinning.prune(root / "lb1")
    assert not (root / "lb1").exists() and root.exists()  # lb2's pins are still there
    (root / "lb2" / "conntrack").touch()
    pinning.prune(root / "lb2")
    assert (root / "lb2").exists()  # not empty: left alone
    (root / "lb2" / "conntrack").unlink()
    pinning.prune(root / "lb2")
    assert not root.exists() and tmp_path.exists()
    pinning.prune(Path("/sys/fs/bpf/xdplb-none"))  # the bpffs mount itself is never removed
    assert Path("/sys/fs/bpf").is_dir()
