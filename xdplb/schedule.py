"""Scheduler sequences with IPVS semantics, as tables the data plane walks or indexes.

rr: the backends in order. wrr: ip_vs_wrr's interleaved sequence (current weight stepping down by
the gcd), one period long. sh: ip_vs_sh's 256 buckets, each backend taking `weight` consecutive
buckets in turn. Backends of weight 0 are quiescent and appear in none of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import reduce
from math import gcd

SH_BUCKETS = 256  # IP_VS_SH_TAB_SIZE


def rr(weights: Sequence[int]) -> list[int]:
    return [i for i, w in enumerate(weights) if w > 0]


def _wrr_period(weights: Sequence[int]) -> list[int]:
    live = [w for w in weights if w > 0]
    if not live:
        return []
    step = reduce(gcd, live)
    top = max(live)
    seq: list[int] = []
    i, cw = -1, 0
    for _ in range(sum(live) // step):
        while True:
            i = (i + 1) % len(weights)
            if i == 0:
                cw -= step
                if cw <= 0:
                    cw = top
            if weights[i] >= cw > 0:
                seq.append(i)
                break
    return seq


def wrr(weights: Sequence[int], limit: int) -> list[int]:
    """One period of IPVS wrr; weights are scaled down (keeping every live backend) to fit `limit`."""
    total = sum(w for w in weights if w > 0)
    if len(rr(weights)) > limit:
        raise ValueError(f"{len(rr(weights))} live backends do not fit a sequence of {limit}")
    scaled = list(weights)
    if total > limit:
        factor = limit / total
        scaled = [max(1, int(w * factor)) if w > 0 else 0 for w in weights]
        while sum(scaled) > limit:
            scaled = [max(1, w - 1) if w > 1 else w for w in scaled]
    return _wrr_period(scaled)


def sh(weights: Sequence[int], buckets: int = SH_BUCKETS) -> list[int]:
    live = rr(weights)
    if not live:
        return []
    table: list[int] = []
    pos = taken = 0
    while len(table) < buckets:
        b = live[pos]
        table.append(b)
        taken += 1
        if taken >= weights[b]:
            pos = (pos + 1) % len(live)
            taken = 0
    return table
