"""Pinned maps: what a restarted control plane checks before it trusts the maps it finds.

BCC opens a pinned map that already exists whatever its shape: a connection table pinned by a build
with other sizes would be taken silently. So every pinned map's shape as the kernel has it (type, key
size, value size, entries, flags) is compared with what the freshly compiled program declares, and
the schema version kept in `pin_meta` with the program's. A mismatch is refused with the names of the
maps and what differs; nothing is attached. Works on BCC table objects (xdplb/datapath.py is the only
module that imports BCC).
"""

from __future__ import annotations

import ctypes
import dataclasses
import re
from dataclasses import astuple, dataclass
from pathlib import Path

from xdplb import bpfobj

MAPS_H = Path(__file__).resolve().parent.parent / "bpf" / "lib" / "maps.h"
# The maps declared with PINNED(type, name) in maps.h: read from there, never listed twice.
PINNED_MAPS = tuple(re.findall(r'PINNED\("[a-z_]+",\s*(\w+)\)', MAPS_H.read_text()))


class PinnedMapError(RuntimeError):
    """Pinned maps that this build cannot use as they are. sizes_only: they differ in their number of
    entries alone, which a migration (xdplb/migrate.py) can move them to."""

    def __init__(self, message: str, sizes_only: bool = False) -> None:
        super().__init__(message)
        self.sizes_only = sizes_only


@dataclass(frozen=True)
class Shape:
    type: int
    key_size: int
    value_size: int
    max_entries: int
    flags: int

    def differences(self, other: Shape) -> list[str]:
        names = ("type", "key size", "value size", "max entries", "flags")
        return [f"{n} {a} pinned, {b} expected" for n, a, b in zip(names, astuple(self), astuple(other), strict=True)
                if a != b]


# Flags the kernel or the loader set on its own: a devmap is read-only to programs (BPF_F_RDONLY_PROG).
_IMPLIED_FLAGS = {14: 0x80}  # BPF_MAP_TYPE_DEVMAP


def declared(table: object) -> Shape:
    """What the compiled program declares for a map (BCC's view of its declaration; a per-CPU
    table's Leaf is every CPU's value, sLeaf one)."""
    leaf = getattr(table, "sLeaf", table.Leaf)
    return Shape(table.ttype, ctypes.sizeof(table.Key), ctypes.sizeof(leaf), table.max_entries, table.flags)


def in_kernel(fd: int) -> Shape:
    info = bpfobj.map_info(fd)
    flags = info.map_flags & ~_IMPLIED_FLAGS.get(info.type, 0)
    return Shape(info.type, info.key_size, info.value_size, info.max_entries, flags)


def check_shapes(tables: dict[str, object]) -> None:
    """Raises PinnedMapError naming every map whose kernel shape differs from its declaration."""
    problems, sizes_only = [], True
    for name, table in tables.items():
        pinned, expected = in_kernel(table.map_fd), declared(table)
        diff = pinned.differences(expected)
        if diff:
            problems.append(f"{name}: {', '.join(diff)}")
            sizes_only &= dataclasses.replace(pinned, max_entries=expected.max_entries) == expected
    if problems:
        raise PinnedMapError("pinned maps do not match this build (other sizes or layout): " + "; ".join(problems),
                             sizes_only)


def check_schema(meta: object, version: int) -> bool:
    """Compares the schema version kept with the maps to this build's; a map set just created gets
    it. Returns whether the maps existed before (so their contents are to be adopted)."""
    key = ctypes.c_uint32(0)
    found = meta[key].schema_version
    if found == 0:
        meta[key] = meta.Leaf(schema_version=version)
        return False
    if found != version:
        raise PinnedMapError(f"pinned maps have schema version {found}, this build {version}")
    return True


def unpin(pin_dir: Path) -> list[str]:
    """Removes the pinned maps of a directory (the maps live on while a program uses them)."""
    gone = []
    for name in PINNED_MAPS:
        path = pin_dir / name
        if path.exists():
            path.unlink()
            gone.append(name)
    prune(pin_dir)
    return gone


def prune(pin_dir: Path) -> None:
    """Removes a pin directory and then its parent (the director's root, which `mkdir(parents=True)`
    made) when they are left empty; never the bpffs mount itself."""
    for path in (pin_dir, pin_dir.parent):
        if path.parent == path or path.is_mount():
            return
        if path.is_dir():
            if any(path.iterdir()):
                return
            path.rmdir()
