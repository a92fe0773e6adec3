"""The sweeper thread: passes run on their own, expired connections go, counts stay right, and it
stops cleanly."""

from __future__ import annotations

import time

import pytest

from tests import packets as pk
from xdplb.sweeper import Sweeper

pytestmark = pytest.mark.datapath


def wait_for(cond, deadline=5.0):
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.02)
    return cond()


def test_sweeper_thread_expires_and_recounts(dp):
    bes = pk.backends(2)
    svc = pk.service(scheduler="wlc", backends=bes)
    dp.set_service(svc, pk.nexthops(bes))
    for i in range(6):
        dp.run(pk.tcp(sport=30000 + i))
        dp.run(pk.tcp(sport=30000 + i, flags="A"))
    with Sweeper(dp, interval=0.05) as sweeper:
        assert wait_for(lambda: sweeper.passes >= 2)
        assert sum(a for a, _ in dp.backend_counts(svc.key).values()) == 6
        dp.shift_clock(dp.timeouts.tcp + 1)
        assert wait_for(lambda: not any(True for _ in dp.maps["conntrack"].items_lookup_batch()) and
                        dp.backend_counts(svc.key) == {b.address: (0, 0) for b in bes})
    passes = sweeper.passes
    time.sleep(0.2)
    assert sweeper.passes == passes  # stopped


def test_sweeper_refuses_a_bad_interval(dp):
    with pytest.raises(ValueError, match="positive"):
        Sweeper(dp, interval=0)
