"""The real server's side of TUN mode: bpf/decap.c, an XDP program that strips the IPIP or GUE header
of tunnel packets addressed to this host, so the kernel (with no ipip or fou module) receives the inner
packet, addressed to a VIP the host holds on loopback.

An XDP program attached through netlink stays attached after its loader exits, so attaching is a
one-shot command. Any later process finds the program again by the id its interface reports, and its
maps by the program's map ids (libbpf), to read its counters or to detach it. The addresses the
program takes as this host's are those of the namespace at attach time: after adding one, attach again.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import ipaddress
import logging
import os
import re
import socket
import struct
from collections.abc import Iterable
from dataclasses import dataclass

from xdplb import net
from xdplb.bpfobj import ProgramMaps, libbpf, ok
from xdplb.cenum import enum_values
from xdplb.datapath import BPF_DIR, XDP_MODES, Program
from xdplb.model import IPAddress
from xdplb.testrun import RunResult

log = logging.getLogger(__name__)

DECAP_C = BPF_DIR / "decap.c"
DECAP_H = BPF_DIR / "lib" / "decap.h"
PROG_NAME = "xdp_decap"
MAPS = {"decap_addrs", "decap_gue_port", "decap_counters"}
COUNTERS = {k: v for k, v in enum_values(DECAP_H, "decap_counter", "DECAP_").items() if k != "max"}
GUE_PORT = int(re.search(r"#define DECAP_GUE_PORT (\d+)", DECAP_H.read_text()).group(1))
MODES = ("auto", "native", "generic")


class DecapError(RuntimeError):
    """The decapsulator cannot do what was asked (another program there, no such interface...)."""


# ---- a loaded program's maps: xdplb.bpfobj (libbpf). _XdpAttachOpts is libbpf's struct
# bpf_xdp_attach_opts: ABI, not an xdplb layout. The decapsulator's own maps need no struct: 16-byte
# address keys, u32 and per-CPU u64 values.


class _XdpAttachOpts(ctypes.Structure):
    _fields_ = [("sz", ctypes.c_size_t), ("old_prog_fd", ctypes.c_int)]


def _addr_key(addr: IPAddress) -> bytes:
    """decap_addrs' key: 16 bytes, an IPv4 address as ::ffff:a.b.c.d."""
    return (b"\0" * 10 + b"\xff\xff" + addr.packed) if addr.version == 4 else addr.packed


def _key_addr(key: bytes) -> IPAddress:
    v6 = ipaddress.IPv6Address(key)
    return v6.ipv4_mapped or v6


def _read_addresses(maps: ProgramMaps) -> list[IPAddress]:
    return sorted((_key_addr(k) for k in maps["decap_addrs"]), key=lambda a: (a.version, a))


def _read_counters(maps: ProgramMaps) -> dict[str, int]:
    table = maps["decap_counters"]
    out = {}
    for name, idx in COUNTERS.items():
        raw = table.get(struct.pack("=I", idx)) or b""
        out[name] = sum(v for (v,) in struct.iter_unpack("=Q", raw))
    return out


def _read_gue_port(maps: ProgramMaps) -> int:
    raw = maps["decap_gue_port"].get(struct.pack("=I", 0))
    return struct.unpack("=I", raw[:4])[0] if raw else 0


# ---- the decapsulator -----------------------------------------------------------------------------


class Decapsulator:
    """One loaded decapsulator (compiled by BCC through datapath.Program) and its maps."""

    def __init__(self, gue_port: int = GUE_PORT) -> None:
        self.program = Program(DECAP_C, PROG_NAME)
        self._maps = ProgramMaps(self.program.prog.fd)
        self.set_gue_port(gue_port)

    def set_gue_port(self, port: int) -> None:
        """The UDP destination port of GUE; 0 turns GUE off (IPIP only)."""
        if not 0 <= port <= 0xFFFF:
            raise DecapError(f"GUE port {port} is not a UDP port (0 turns GUE off)")
        self._maps["decap_gue_port"].put(struct.pack("=I", 0), struct.pack("=I", port))

    @property
    def gue_port(self) -> int:
        return _read_gue_port(self._maps)

    def set_addresses(self, addresses: Iterable[IPAddress]) -> None:
        """The outer destinations to decapsulate (this host's addresses), replacing the previous set."""
        table = self._maps["decap_addrs"]
        want = {_addr_key(a) for a in addresses}
        if len(want) > table.max_entries:
            raise DecapError(f"{len(want)} addresses: the decapsulator holds at most {table.max_entries}")
        for key in set(table) - want:
            table.delete(key)
        for key in want:
            table.put(key, b"\x01")

    @property
    def addresses(self) -> list[IPAddress]:
        return _read_addresses(self._maps)

    def attach(self, ifname: str, mode: str = "auto", addresses: Iterable[IPAddress] | None = None) -> str:
        """Attach to an interface of the current namespace, taking its addresses now (every global
        address of the namespace, unless given); returns the mode it got. A decapsulator already there
        is replaced; any other XDP program is refused."""
        if mode not in MODES:
            raise DecapError(f"mode must be one of {', '.join(MODES)}, not {mode}")
        current = attached(ifname)  # refuses a foreign program
        self.set_addresses(net.local_addresses() if addresses is None else addresses)
        if current and mode not in ("auto", current.mode):
            detach(ifname)  # the kernel keeps one mode per interface
        try:
            got = self.program.attach(ifname, current.mode if current and mode == "auto" else mode)
        except Exception as e:  # BCC raises a bare Exception
            raise DecapError(f"attaching to {ifname} ({mode}): {e}") from e
        log.info("decapsulator on %s (%s, GUE port %s) for %s", ifname, got, self.gue_port or "off",
                 ", ".join(map(str, self.addresses)))
        return got

    def run(self, frame: bytes) -> RunResult:
        """The program on one frame through BPF_PROG_TEST_RUN (it counts, like traffic)."""
        return self.program.runner.run(frame)

    def counters(self) -> dict[str, int]:
        return _read_counters(self._maps)

    def close(self) -> None:
        """Frees this process's hold on the program; an attachment stays (detach() removes it)."""
        self._maps.close()
        self.program.close()

    def __enter__(self) -> Decapsulator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---- an attached decapsulator, from any process ---------------------------------------------------


@dataclass(frozen=True)
class Attached:
    ifname: str
    mode: str                  # native or generic
    prog_id: int
    gue_port: int              # 0: IPIP only
    addresses: list[IPAddress]
    counters: dict[str, int]


def _ifindex(ifname: str) -> int:
    try:
        return socket.if_nametoindex(ifname)
    except OSError as e:
        raise DecapError(f"no interface {ifname} here") from e


def _program_id(ifindex: int) -> int:
    prog_id = ctypes.c_uint32(0)
    ok(libbpf.bpf_xdp_query_id(ifindex, 0, ctypes.byref(prog_id)), "XDP query")
    return prog_id.value


def _open_program(ifname: str) -> tuple[int, int, ProgramMaps] | None:
    """(program id, program fd, its maps) of the XDP program on an interface, or None; DecapError
    when that program is not the decapsulator."""
    prog_id = _program_id(_ifindex(ifname))
    if not prog_id:
        return None
    fd = ok(libbpf.bpf_prog_get_fd_by_id(prog_id), f"program {prog_id}")
    try:
        maps = ProgramMaps(fd)
    except BaseException:
        os.close(fd)
        raise
    if maps.name != PROG_NAME or not MAPS.issubset(maps.maps):
        maps.close()
        os.close(fd)
        raise DecapError(f"{ifname} runs another XDP program ({maps.name or 'unnamed'}, id {prog_id})")
    return prog_id, fd, maps


def attached(ifname: str) -> Attached | None:
    """The decapsulator on an interface of the current namespace, or None; DecapError when another
    XDP program runs there."""
    found = _open_program(ifname)
    if not found:
        return None
    prog_id, fd, maps = found
    try:
        return Attached(ifname, net.xdp_mode(ifname) or "", prog_id, _read_gue_port(maps), _read_addresses(maps),
                        _read_counters(maps))
    finally:
        maps.close()
        os.close(fd)


def status() -> list[Attached]:
    """Every interface of the current namespace running the decapsulator."""
    out = []
    for _, ifname in socket.if_nameindex():
        try:
            found = attached(ifname)
        except DecapError:
            continue  # another program (the balancer...)
        if found:
            out.append(found)
    return out


def detach(ifname: str) -> None:
    """Remove the decapsulator from an interface of the current namespace. Refuses any other XDP
    program, and removes only the very program it found (XDP_FLAGS_REPLACE)."""
    found = _open_program(ifname)
    if not found:
        raise DecapError(f"no decapsulator on {ifname}")
    _, fd, maps = found
    maps.close()
    try:
        mode = net.xdp_mode(ifname)
        opts = _XdpAttachOpts(sz=ctypes.sizeof(_XdpAttachOpts), old_prog_fd=fd)
        ok(libbpf.bpf_xdp_detach(_ifindex(ifname), XDP_MODES.get(mode or "", 0), ctypes.byref(opts)),
            f"detaching from {ifname}")
    finally:
        os.close(fd)
