"""Scheduler sequences with IPVS semantics."""

from __future__ import annotations

from collections import Counter

import pytest

from xdplb import schedule

pytestmark = [pytest.mark.datapath, pytest.mark.unit]


def test_rr_skips_quiescent():
    assert schedule.rr([1, 0, 7, 1]) == [0, 2, 3]
    assert schedule.rr([0, 0]) == []


@pytest.mark.parametrize(("weights", "expected"), [
    ([4, 3, 2], [0, 0, 1, 0, 1, 2, 0, 1, 2]),   # ip_vs_wrr's interleaving
    ([1, 1, 1], [0, 1, 2]),
    ([2, 0, 1], [0, 0, 2]),
    ([6, 4], [0, 0, 1, 0, 1]),                  # gcd 2: one period is 3 + 2
    ([0, 0], []),
])
def test_wrr_sequence(weights, expected):
    assert schedule.wrr(weights, 4096) == expected


def test_wrr_scaled_to_fit_keeps_every_backend_and_ratio():
    weights = [60000, 30000, 1]
    seq = schedule.wrr(weights, 4096)
    counts = Counter(seq)
    assert len(seq) <= 4096
    assert set(counts) == {0, 1, 2}
    assert abs(counts[0] / counts[1] - 2) < 0.01


def test_wrr_too_many_backends():
    with pytest.raises(ValueError, match="do not fit"):
        schedule.wrr([1] * 10, 8)


def test_sh_buckets_follow_weights_like_ipvs():
    table = schedule.sh([3, 2, 0, 1])
    assert len(table) == schedule.SH_BUCKETS
    assert table[:12] == [0, 0, 0, 1, 1, 3, 0, 0, 0, 1, 1, 3]
    counts = Counter(table)
    assert 2 not in counts
    assert counts[0] == 129 and counts[1] == 85 and counts[3] == 42
    assert schedule.sh([0]) == []
