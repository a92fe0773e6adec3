"""The sweeper's arithmetic on dumped tables (xdplb/conntable.py), against the data plane's rules:
which entries are expired and how a backend's connections are counted."""

from __future__ import annotations

import numpy as np
import pytest

from xdplb import conntable
from xdplb.conntable import STATE, TCP, UDP

pytestmark = pytest.mark.unit

TIMEOUTS = np.zeros(len(conntable.TIMEOUT), np.int64)
for name, seconds in {"syn": 60, "tcp": 900, "tcpfin": 120, "udp": 300}.items():
    TIMEOUTS[conntable.TIMEOUT[name]] = seconds


@pytest.mark.parametrize(("state", "proto", "idle", "expired"), [
    ("new", TCP, 60, False), ("new", TCP, 61, True),
    ("established", TCP, 900, False), ("established", TCP, 901, True),
    ("closing", TCP, 120, False), ("closing", TCP, 121, True),
    ("established", UDP, 300, False), ("established", UDP, 301, True),
    ("retired", TCP, 0, True),
])
def test_expiry_follows_the_state_timeouts(state, proto, idle, expired):
    got = conntable.expired(np.array([1000 - idle]), np.array([STATE[state]]), np.array([proto]), 1000, TIMEOUTS)
    assert bool(got[0]) is expired


def test_counts_split_active_and_inactive_like_ipvs():
    backend = np.array([0, 0, 1, 1, 1, 2, 2])
    state = np.array([STATE[s] for s in ("established", "new", "established", "closing", "established",
                                         "established", "retired")])
    proto = np.array([TCP, TCP, TCP, TCP, UDP, TCP, TCP])
    active, inactive = conntable.counts(backend, state, proto, 4)
    assert active.tolist() == [1, 1, 1, 0]
    assert inactive.tolist() == [1, 2, 0, 0]
