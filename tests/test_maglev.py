"""Weighted Maglev tables: full, weighted, order independent, minimally disrupted."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from xdplb import maglev

pytestmark = [pytest.mark.datapath, pytest.mark.unit]

M = 65537


def names(n: int) -> list[str]:
    return [f"10.100.0.{11 + i}" for i in range(n)]


def test_prime_check():
    assert [n for n in range(30) if maglev.is_prime(n)] == [2, 3, 5, 7, 11, 13, 17, 19, 23, 29]
    assert maglev.is_prime(65537) and not maglev.is_prime(65535)
    with pytest.raises(ValueError, match="prime"):
        maglev.build([("a", 1)], 1000)


@pytest.mark.parametrize("n", [1, 3, 10, 100])
def test_every_slot_filled_evenly(n):
    table = maglev.build([(x, 1) for x in names(n)], M)
    assert len(table) == M and table.dtype == np.uint32
    counts = Counter(table.tolist())
    assert set(counts) == set(range(n))
    # the paper: about 1% imbalance when M > 100 N
    assert max(counts.values()) / (M / n) < 1.01 + (0.02 if n == 100 else 0)


def test_weights_are_followed():
    weights = [5, 3, 1, 1]
    counts = Counter(maglev.build(list(zip(names(4), weights, strict=True)), M).tolist())
    for i, w in enumerate(weights):
        assert abs(counts[i] / M - w / sum(weights)) < 0.005


def test_weight_zero_gets_nothing_and_empty_when_none_left():
    table = maglev.build([("a", 1), ("b", 0), ("c", 2)], 4099)
    assert 1 not in set(table.tolist())
    assert len(maglev.build([("a", 0)], 4099)) == 0
    assert len(maglev.build([], 4099)) == 0


def test_order_of_backends_does_not_matter():
    backends = [(x, 1 + i % 3) for i, x in enumerate(names(7))]
    a = maglev.build(backends, 4099)
    b = maglev.build(backends[::-1], 4099)
    # indexes differ (they point into the list), the names must not
    assert [backends[i][0] for i in a] == [backends[::-1][i][0] for i in b]


@pytest.mark.parametrize("n", [2, 5, 10, 50])
def test_removing_one_backend_moves_at_most_1_over_n_plus_2pc(n):
    full = names(n)
    before = [full[i] for i in maglev.build([(x, 1) for x in full], M)]
    gone = full[n // 3]
    rest = [x for x in full if x != gone]
    after = [rest[i] for i in maglev.build([(x, 1) for x in rest], M)]
    moved = sum(a != b for a, b in zip(before, after, strict=True)) / M
    assert moved <= 1 / n + 0.02


def test_adding_one_backend_moves_about_its_share():
    full = names(9)
    before = [full[i] for i in maglev.build([(x, 1) for x in full[:8]], M)]
    after = [full[i] for i in maglev.build([(x, 1) for x in full], M)]
    moved = sum(a != b for a, b in zip(before, after, strict=True)) / M
    assert moved <= 1 / 9 + 0.02
