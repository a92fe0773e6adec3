"""BPF objects through libbpf, for what BCC does not reach: a loaded program's maps by id, a pinned
map by path, and each map's shape (type, key and value size, entries, flags) as the kernel has it.

The structs are the heads of the kernel's uapi struct bpf_prog_info and bpf_map_info (the kernel fills
as much as it is given): ABI, not xdplb layouts.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

libbpf = ctypes.CDLL(ctypes.util.find_library("bpf") or "libbpf.so.1", use_errno=True)
libbpf.bpf_obj_get.argtypes = [ctypes.c_char_p]
_u32 = ctypes.c_uint32
_PERCPU_TYPES = {5, 6, 10}  # BPF_MAP_TYPE_PERCPU_HASH, _PERCPU_ARRAY, _LRU_PERCPU_HASH
_MAX_MAPS = 32


class ProgInfo(ctypes.Structure):
    _fields_ = [("type", _u32), ("id", _u32), ("tag", ctypes.c_uint8 * 8), ("jited_prog_len", _u32),
                ("xlated_prog_len", _u32), ("jited_prog_insns", ctypes.c_uint64),
                ("xlated_prog_insns", ctypes.c_uint64), ("load_time", ctypes.c_uint64), ("created_by_uid", _u32),
                ("nr_map_ids", _u32), ("map_ids", ctypes.c_uint64), ("name", ctypes.c_char * 16)]


class MapInfo(ctypes.Structure):
    _fields_ = [("type", _u32), ("id", _u32), ("key_size", _u32), ("value_size", _u32), ("max_entries", _u32),
                ("map_flags", _u32), ("name", ctypes.c_char * 16)]


def ok(ret: int, what: str) -> int:
    """libbpf answers a negative errno on failure."""
    if ret < 0:
        raise OSError(-ret, f"{what}: {os.strerror(-ret)}")
    return ret


def info(fd: int, out: ctypes.Structure) -> None:
    size = _u32(ctypes.sizeof(out))
    ok(libbpf.bpf_obj_get_info_by_fd(fd, ctypes.byref(out), ctypes.byref(size)), "BPF object info")


def map_info(fd: int) -> MapInfo:
    out = MapInfo()
    info(fd, out)
    return out


def obj_get(path: str) -> int:
    """An fd for a pinned object (the caller closes it)."""
    return ok(libbpf.bpf_obj_get(path.encode()), f"pinned object {path}")


class RawMap:
    """One map, by its own fd: keys and values as bytes (a per-CPU value: every CPU's, 8-byte aligned)."""

    def __init__(self, fd: int, minfo: MapInfo) -> None:
        self.fd, self.info, self.key_size, self.max_entries = fd, minfo, minfo.key_size, minfo.max_entries
        percpu = minfo.type in _PERCPU_TYPES
        self.cpus = ok(libbpf.libbpf_num_possible_cpus(), "possible CPUs") if percpu else 1
        self.slot = (minfo.value_size + 7) // 8 * 8 if percpu else minfo.value_size

    def get(self, key: bytes) -> bytes | None:
        buf = ctypes.create_string_buffer(self.slot * self.cpus)
        if libbpf.bpf_map_lookup_elem(self.fd, key, buf) < 0:
            return None
        return buf.raw

    def put(self, key: bytes, value: bytes) -> None:
        ok(libbpf.bpf_map_update_elem(self.fd, key, value, ctypes.c_uint64(0)), "map update")

    def delete(self, key: bytes) -> None:
        ok(libbpf.bpf_map_delete_elem(self.fd, key), "map delete")

    def __iter__(self) -> Iterator[bytes]:
        """The keys (read ahead of the caller, so it may delete as it goes)."""
        keys: list[bytes] = []
        nxt = ctypes.create_string_buffer(self.key_size)
        while libbpf.bpf_map_get_next_key(self.fd, keys[-1] if keys else None, nxt) == 0:
            keys.append(nxt.raw)
        return iter(keys)


@contextmanager
def pinned(path: str | Path) -> Iterator[RawMap]:
    """A pinned map, opened for the block (its fd closed after)."""
    fd = obj_get(str(path))
    try:
        yield RawMap(fd, map_info(fd))
    finally:
        os.close(fd)


class ProgramMaps:
    """The maps of a loaded program, by name, opened through the program's fd."""

    def __init__(self, prog_fd: int) -> None:
        ids = (_u32 * _MAX_MAPS)()
        pinfo = ProgInfo(nr_map_ids=_MAX_MAPS, map_ids=ctypes.addressof(ids))
        info(prog_fd, pinfo)
        self.name = pinfo.name.decode()
        self.maps: dict[str, RawMap] = {}
        try:
            for map_id in ids[:min(pinfo.nr_map_ids, _MAX_MAPS)]:
                fd = ok(libbpf.bpf_map_get_fd_by_id(map_id), f"map {map_id}")
                minfo = map_info(fd)
                self.maps[minfo.name.decode()] = RawMap(fd, minfo)
        except BaseException:
            self.close()
            raise

    def __getitem__(self, name: str) -> RawMap:
        return self.maps[name]

    def close(self) -> None:
        for m in self.maps.values():
            os.close(m.fd)
        self.maps.clear()
