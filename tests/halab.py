"""What the HA lab tests share (tests/test_e2e_ha.py, tests/test_e2e_keepalived_ha.py): a lab where no
director holds the VIPs statically, and waiting for its speakers. How a test looks at who holds the
VIPs (vrrp_state, holds_vip, router_mac_for_vip, mac) and keepalived are in xdplb.labha, shared with
bench/failover.py."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator

import pytest

from xdplb.lab import Lab
from xdplb.labclients import UdpProbe

INTERVAL = 0.1            # the lab's advertisement interval: master down after 3 x 0.1 s + skew
TAKEOVER_DEADLINE = 2.0   # generous: the behaviour, not the speed (bench/failover.py measures that)
SERVERS = {"rs1", "rs2", "rs3"}


@contextlib.contextmanager
def lab_without_vips(prefix: str) -> Iterator[Lab]:
    """A lab of its own (PREFIX<pid>), in which the directors' VRRP speakers move the VIPs; down at
    the end whatever happened."""
    if os.geteuid() != 0:
        pytest.skip("the lab needs root")
    lab = Lab(prefix=f"{prefix}{os.getpid()}")
    try:
        lab.up(os.environ.get("XDPLB_LAB_XDP", "native"), ha=True)
        yield lab
    finally:
        lab.down()


def wait_for(what: str, done: Callable[[], bool], timeout: float = 10.0) -> float:
    """Seconds until `done()`; fails the test with `what` after `timeout`."""
    start = time.monotonic()
    while not done():
        if time.monotonic() - start > timeout:
            pytest.fail(f"not within {timeout} s: {what}")
        time.sleep(0.01)
    return time.monotonic() - start


def through(probe: UdpProbe, where: str = "") -> dict:
    """The probe's result, once it is sure the traffic came back (`where`: through which director)."""
    r = probe.result
    assert r["answered"] > 0 and r["last"] >= r["sent"] - 100, f"traffic did not come back{where}: {r}"
    return r
