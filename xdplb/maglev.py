"""Weighted Maglev lookup tables (Eisenbud et al., NSDI 2016).

Each backend walks its own permutation of the table (offset + j*skip mod M, M prime) and claims the
first free slot; heavier backends take turns more often, in proportion to their weight. Removing
one backend only frees its own slots, which keeps most flows where they were. The permutation
depends only on the backend's name, so the table does not depend on the order backends are given.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

DEFAULT_SIZE = 65537


def is_prime(n: int) -> bool:
    if n < 2:
        return False
    if n % 2 == 0:
        return n == 2
    f = 3
    while f * f <= n:
        if n % f == 0:
            return False
        f += 2
    return True


def _permutation(name: str, size: int) -> tuple[int, int]:
    digest = hashlib.blake2b(name.encode(), digest_size=16).digest()
    offset = int.from_bytes(digest[:8], "little") % size
    skip = int.from_bytes(digest[8:], "little") % (size - 1) + 1
    return offset, skip


def build(backends: Sequence[tuple[str, int]], size: int = DEFAULT_SIZE) -> np.ndarray:
    """Table of `size` entries, each an index into `backends` ((name, weight) pairs).

    Backends with weight 0 get no entry. An empty array means no backend can take a flow.
    """
    if not is_prime(size):
        raise ValueError(f"Maglev table size must be prime, got {size}")
    live = sorted((name, w, i) for i, (name, w) in enumerate(backends) if w > 0)
    if not live:
        return np.empty(0, dtype=np.uint32)
    perms = [_permutation(name, size) for name, _, _ in live]
    top = max(w for _, w, _ in live)
    shares = [w / top for _, w, _ in live]
    table = [-1] * size
    step = [0] * len(live)
    credit = [0.0] * len(live)
    filled = 0
    while True:
        for n, (offset, skip) in enumerate(perms):
            credit[n] += shares[n]
            while credit[n] >= 1.0:
                credit[n] -= 1.0
                slot = (offset + step[n] * skip) % size
                while table[slot] >= 0:
                    step[n] += 1
                    slot = (offset + step[n] * skip) % size
                table[slot] = live[n][2]
                step[n] += 1
                filled += 1
                if filled == size:
                    return np.asarray(table, dtype=np.uint32)
