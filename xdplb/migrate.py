"""Moving a balancer's pinned maps to other sizes (an upgrade or a rollback that changes Sizes).

The maps of the running balancer are moved aside (`<pin_dir>-old`), a new map set of the new sizes is
created and pinned in their place, and every entry that is state is copied over: connections,
half-open entries, templates, counts and their corrections, counters and stats, and the configuration
the new control plane adopts (services, service ids, backends, settings, egress ports). The tables
whose layout the sizes define (Maglev rings and sequences) are not copied: the reconciler rewrites
them before the new program is attached. Rows a smaller array cannot hold must be empty, or the move
is refused and undone. The old maps live on while the running program uses them; the new program
takes over at its attach, so only connections made during the move itself can be missed.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Iterable
from pathlib import Path

from xdplb import bpfobj

log = logging.getLogger(__name__)

# Laid out by the sizes (rewritten by the reconciler), the schema (written anew), the tail-call table
# (filled by the loader) and the per-CPU rr cursors (a cursor starting again at 0 harms nobody).
NOT_COPIED = {"rings", "seqs", "pin_meta", "lc_progs", "rr_cursor"}
ARRAYS = {2, 6}  # BPF_MAP_TYPE_ARRAY, _PERCPU_ARRAY


class MigrationError(RuntimeError):
    """State that the new sizes cannot hold; nothing changed."""


def old_dir(pin_dir: Path) -> Path:
    return pin_dir.with_name(pin_dir.name + "-old")  # bpffs refuses names with a dot


def set_aside(pin_dir: Path) -> Path:
    """Moves the running maps aside, so a new map set can be pinned in their place."""
    aside = old_dir(pin_dir)
    os.rename(pin_dir, aside)
    pin_dir.mkdir()
    return aside


def recover(pin_dir: Path) -> bool:
    """After a move that did not finish (a crash): the maps set aside are the good ones again."""
    aside = old_dir(pin_dir)
    if not aside.exists():
        return False
    if pin_dir.exists():
        shutil.rmtree(pin_dir)  # unpins the partial new set: no program uses it yet
    os.rename(aside, pin_dir)
    log.warning("an unfinished map migration in %s was undone", pin_dir)
    return True


def copy_state(aside: Path, pin_dir: Path, names: Iterable[str]) -> dict[str, int]:
    """Copies every entry of the maps set aside into the new ones; returns entries copied per map."""
    copied = {}
    for name in names:
        if name in NOT_COPIED:
            continue
        with bpfobj.pinned(aside / name) as old, bpfobj.pinned(pin_dir / name) as new:
            copied[name] = _copy(name, old, new)
    return copied


def _copy(name: str, old: bpfobj.RawMap, new: bpfobj.RawMap) -> int:
    old_info, new_info = old.info, new.info
    n = 0
    for key in old:
        value = old.get(key)
        if value is None:
            continue  # gone since the keys were read (an LRU entry evicted or deleted)
        if old_info.type in ARRAYS and int.from_bytes(key, "little") >= new_info.max_entries:
            if any(value):
                raise MigrationError(f"{name}: entry {int.from_bytes(key, 'little')} is in use and the new size "
                                     f"holds {new_info.max_entries}")
            continue
        if old_info.type in ARRAYS and not any(value):
            continue  # the new array starts zeroed
        new.put(key, value)
        n += 1
    return n
