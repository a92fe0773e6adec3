"""Weighted Maglev lookup tables (Eisenbud et al., NSDI 2016).

Each backend walks its own permutation of the table (offset + j*skip mod M, M prime) and claims the
first free slot; heavier backends take turns more often, in proportion to their weight. Removing
one backend only frees its own slots, which keeps most flows where they were. The permutation
depends only on the backend's name, so the table does not depend on the order backends are given.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # numpy is imported by build(): the models import this module, the CLI starts faster
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
    import numpy as np

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
    owners = [i for _, _, i in live]
    skips = [skip for _, skip in perms]
    pos = [offset for offset, _ in perms]  # each backend's next candidate slot in its permutation
    table = [-1] * size
    credit = [0.0] * len(live)
    filled = 0
    # The hot loop walks each permutation by adding skip (mod size by one subtraction), not by
    # recomputing offset + j*skip: a table of 65537 entries is some 10^5 steps in Python.
    while True:
        for n in range(len(live)):
            credit[n] += shares[n]
            while credit[n] >= 1.0:
                credit[n] -= 1.0
                slot, skip = pos[n], skips[n]
                while table[slot] >= 0:
                    slot += skip
                    if slot >= size:
                        slot -= size
                table[slot] = owners[n]
                slot += skip
                pos[n] = slot - size if slot >= size else slot
                filled += 1
                if filled == size:
                    return np.asarray(table, dtype=np.uint32)
