"""What the HA lab tests share (tests/test_e2e_ha.py, tests/test_e2e_keepalived_ha.py): a lab where no
director holds the VIPs statically, and how a test looks at who holds them."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator

import pytest

from xdplb import net
from xdplb.lab import BY_NAME, VIP4, Director, Lab
from xdplb.vrrp.control import SpeakerError

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


def state(director: Director) -> str | None:
    """Its VRRP state, None while no speaker answers (a dead host)."""
    try:
        return director.vrrp()["state"]
    except SpeakerError:
        return None


def holds_vip(lab: Lab, host: str) -> bool:
    with net.in_netns(lab.ns(host)):
        return f"{VIP4}/32" in net.addresses("front")


def router_mac_for_vip(lab: Lab) -> str | None:
    """The MAC the router sends the VIP's traffic to."""
    res = lab.exec("router", ["ip", "neigh", "show", VIP4, "dev", "front"])
    parts = res.stdout.split()
    return parts[parts.index("lladdr") + 1] if "lladdr" in parts else None


def mac(host: str) -> str:
    return BY_NAME[host].mac("front")
