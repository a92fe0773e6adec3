"""The data plane from Python: the only module that imports BCC.

Compiles bpf/xdplb.c with sizes from configuration, loads and attaches it, turns services and
backends into map entries (writing only what changed), reads counters and connections, and
simulates a frame through the real program with BPF_PROG_TEST_RUN without side effects. Map key and
value types are BCC's generated ctypes: no struct layout is restated here.
"""

from __future__ import annotations

import ctypes as ct
import functools
import heapq
import ipaddress
import logging
import os
import re
import socket
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from bcc import BPF

from xdplb import conntable, kernel, maglev, pinning, schedule
from xdplb import migrate as migrate_mod
from xdplb.capture import Capture, CaptureFilter, Tap
from xdplb.cenum import enum_values, header_enums
from xdplb.model import Backend, IPAddress, Method, Protocol, SchedFlag, Scheduler, Service, Timeouts, Tunnel, key_id
from xdplb.net import Nexthop, NexthopError, mac_bytes, resolve_nexthop
from xdplb.sizes import Sizes
from xdplb.testrun import RunResult, XdpRunner

log = logging.getLogger(__name__)

BPF_DIR = Path(os.environ.get("XDPLB_BPF_DIR", Path(__file__).resolve().parent.parent / "bpf"))
STRUCTS_H = BPF_DIR / "lib" / "structs.h"

COUNTERS = {k: v for k, v in enum_values(STRUCTS_H, "xdplb_counter", "CNT_").items() if k != "max"}
SCHEDULERS = enum_values(STRUCTS_H, "xdplb_sched", "LB_SCHED_")
METHODS = enum_values(STRUCTS_H, "xdplb_method", "LB_METHOD_")
CONN_STATES = {v: k for k, v in enum_values(STRUCTS_H, "xdplb_conn_state", "CT_").items()}
_SVC_FLAGS = enum_values(STRUCTS_H, "xdplb_svc_flag", "SVC_F_")
_BE_ACTIVE = enum_values(STRUCTS_H, "xdplb_backend_flag", "BE_F_")["active"]
_ENCAPS = enum_values(STRUCTS_H, "xdplb_encap", "ENCAP_")
_FAMILY = header_enums(STRUCTS_H)["xdplb_family"]
_LC_PROGS = {"scan": 0, "main": 1}  # enum lc_prog, bpf/lib/sched.h
# The lc family's rank numbers (struct service rank_*): active, inactive, plus, weighted, idle_first.
_RANKS = {
    Scheduler.LC: (256, 1, 0, 0, 0),
    Scheduler.WLC: (256, 1, 0, 1, 0),
    Scheduler.SED: (1, 0, 1, 1, 0),
    Scheduler.NQ: (1, 0, 1, 1, 1),
    Scheduler.FO: (0, 0, 1, 1, 0),
}
_SIM_MAGIC = int(re.search(r"#define XDPLB_SIM_MAGIC (0x[0-9a-f]+)", STRUCTS_H.read_text()).group(1), 16)
SCHEMA_VERSION = int(re.search(r"#define XDPLB_SCHEMA_VERSION (\d+)", STRUCTS_H.read_text()).group(1))
_NONE = 0xFFFFFFFF
_INCLUDE = re.compile(r'^#include "([^"]+)"\s*$')

# uapi/linux/if_link.h
XDP_MODES = {"generic": 1 << 1, "native": 1 << 2}

Resolver = Callable[[IPAddress], Nexthop]


class ConfigError(ValueError):
    """A change the data plane cannot take; nothing was written."""


@dataclass
class _Backend:
    id: int
    gen: int
    weight: int
    nexthop: Nexthop
    model: Backend
    tunnel: Tunnel | None = None  # the effective tunnel of a TUN backend


@dataclass
class _Service:
    id: int
    model: Service
    backends: dict[IPAddress, _Backend] = field(default_factory=dict)
    ring: np.ndarray = field(default_factory=lambda: np.empty(0, np.uint32))
    seq: np.ndarray = field(default_factory=lambda: np.empty(0, np.uint32))
    conf: bytes = b""   # the struct service last written
    keys: frozenset = frozenset()  # the (protocol, VIP, port) keys in the services map


@dataclass(frozen=True)
class Simulation:
    verdict: str
    frame: bytes
    reason: str
    service: Service | None
    backend: IPAddress | None


@dataclass
class Preflight:
    """What Datapath.preflight found: why services would be refused (by key), and the next hops it
    resolved (the pass can reuse them rather than wait for ARP/ND again)."""

    problems: dict[tuple, str] = field(default_factory=dict)
    nexthops: dict[IPAddress, Nexthop] = field(default_factory=dict)


@dataclass(frozen=True)
class Sweep:
    """What one sweeper pass did."""

    expired: int                 # connections deleted after their idle timeout
    templates_expired: int       # persistence templates deleted
    corrected: int               # backends whose counts were corrected
    evicted: dict[str, int]      # entries the LRU evicted so far, per table


@dataclass(frozen=True)
class Connection:
    """One row of `ipvsadm -Lc`."""

    protocol: str
    client: tuple[IPAddress, int]
    virtual: tuple[IPAddress, int]
    backend: IPAddress | None
    state: str
    idle_s: float


def _locked(method: Callable) -> Callable:
    """Runs a Datapath method under the instance's lock."""
    @functools.wraps(method)
    def run(self: Datapath, *args: object, **kw: object) -> object:
        with self.lock:
            return method(self, *args, **kw)
    return run


def program_source(path: Path, seen: set[Path] | None = None) -> str:
    """The program as one text: BCC rewrites map calls only in its main file, so the project's own
    headers are inlined; #line keeps compiler messages pointing at the real files."""
    seen = set() if seen is None else seen
    out = [f'#line 1 "{path}"']
    for n, line in enumerate(path.read_text().splitlines(), 1):
        m = _INCLUDE.match(line)
        if not m:
            out.append(line)
            continue
        inc = (path.parent / m.group(1)).resolve()
        if inc not in seen:
            seen.add(inc)
            out.append(program_source(inc, seen))
        out.append(f'#line {n + 1} "{path}"')
    return "\n".join(out)


def _addr_words(table_type: type, addr: IPAddress) -> ct.Array:
    return table_type.from_buffer_copy(addr.packed.ljust(16, b"\0"))


def _addr_of(words: ct.Array | bytes, family: int) -> IPAddress:
    raw = bytes(words)
    return ipaddress.IPv4Address(raw[:4]) if family == _FAMILY["FAMILY_IPV4"] else ipaddress.IPv6Address(raw)


def _family(addr: IPAddress) -> int:
    return _FAMILY[f"FAMILY_IPV{addr.version}"]


def _sum_stats(per_cpu: ct.Array) -> dict[str, int]:
    names = [name for name, _ in per_cpu[0]._fields_]
    return {name: sum(getattr(cpu, name) for cpu in per_cpu) for name in names}


def attach_xdp(prog: object, ifname: str, mode: str = "auto") -> str:
    """Attach an XDP program in native or generic mode; auto tries native first, then generic."""
    modes = ["native", "generic"] if mode == "auto" else [mode]
    for m in modes:
        try:
            BPF.attach_xdp(ifname.encode(), prog, XDP_MODES[m])
            return m
        except Exception as e:
            if m == modes[-1]:
                raise
            log.info("native XDP not available on %s (%s): falling back to generic", ifname, e)
    raise AssertionError("unreachable")


def detach_xdp(ifname: str) -> str | None:
    """Removes whatever XDP program an interface of the current namespace runs; returns its mode."""
    from xdplb.net import xdp_mode

    mode = xdp_mode(ifname)
    if mode in XDP_MODES:
        BPF.remove_xdp(ifname.encode(), XDP_MODES[mode])
    return mode


class Program:
    """A standalone XDP program of bpf/ (a benchmark baseline, later the TUN decapsulator)."""

    def __init__(self, source: Path, func: str, cflags: list[str] | None = None) -> None:
        self._bpf = BPF(text=program_source(source).encode(), cflags=cflags or [])
        self.prog = self._bpf.load_func(func.encode(), BPF.XDP)
        self.runner = XdpRunner(self.prog.fd)

    def attach(self, ifname: str, mode: str = "auto") -> str:
        return attach_xdp(self.prog, ifname, mode)

    def detach(self, ifname: str, mode: str) -> None:
        BPF.remove_xdp(ifname.encode(), XDP_MODES[mode])

    def counter(self, table: str) -> int:
        """The sum over CPUs and entries of a per-CPU counter array of the program."""
        return sum(sum(v) for _, v in self._bpf[table.encode()].items())

    def close(self) -> None:
        self._bpf.cleanup()


class Datapath:
    """One loaded balancer: its maps, and what Python knows it wrote into them."""

    def __init__(self, sizes: Sizes | None = None, resolver: Resolver = resolve_nexthop,
                 pin_dir: Path | None = None, observe: bool = False, migrate: bool = False) -> None:
        """pin_dir: a bpffs directory where the maps are pinned; maps already there (a restarted control
        plane) are checked and taken over, connections, counters and ids included. migrate: pinned maps
        of other sizes are moved to these sizes (xdplb/migrate.py) instead of refused. observe: only
        read the pinned maps of a balancer another process runs (its daemon): nothing is written, the
        tail-call table included, and nothing is attached."""
        self.sizes = sizes or Sizes()
        self.pin_dir = pin_dir
        self._resolver = resolver
        if observe and not (pin_dir and (pin_dir / "pin_meta").exists()):  # BCC would create them
            raise pinning.PinnedMapError(f"nothing to observe: no pinned maps in {pin_dir}")
        src = program_source(BPF_DIR / "xdplb.c")
        cflags = self.sizes.cflags()
        if pin_dir:
            if not observe:
                migrate_mod.recover(pin_dir)
            pin_dir.mkdir(parents=True, exist_ok=True)
            cflags.append(f'-DXDPLB_PIN_DIR="{pin_dir}"')
        self._load(src, cflags)
        try:
            if pin_dir:
                try:
                    pinning.check_shapes({name: self.maps[name] for name in pinning.PINNED_MAPS})
                except pinning.PinnedMapError as e:
                    if observe or not migrate or not e.sizes_only:
                        raise
                    self._migrate(src, cflags)
            taken_over = pinning.check_schema(self.maps["pin_meta"], SCHEMA_VERSION)
            self.prog = self._bpf.load_func(b"xdplb_main", BPF.XDP)
            self._lc_prog = self._bpf.load_func(b"xdplb_lc", BPF.XDP)
        except Exception:
            self._bpf.cleanup()
            raise
        self.runner = XdpRunner(self.prog.fd)
        self.observe = observe
        if not observe:
            progs = self.maps["lc_progs"]
            progs[ct.c_int(_LC_PROGS["scan"])] = ct.c_int(self._lc_prog.fd)
            progs[ct.c_int(_LC_PROGS["main"])] = ct.c_int(self.prog.fd)
        self._removed = {"conntrack": 0, "conn_syn": 0}  # entries Python deleted, for eviction accounting
        self.lock = threading.RLock()  # the sweeper's thread and the reconciler's calls take turns
        self._services: dict[tuple, _Service] = {}
        self._adopted: dict[int, _Service] = {}  # service id -> what pinned maps held, until claimed
        self._endpoints: dict[tuple, tuple] = {}  # (protocol, VIP, port) -> key of the service it belongs to
        self._free_services = list(range(self.sizes.max_services))  # heaps: the lowest free id first
        self._free_backends = list(range(self.sizes.max_backends))
        self._gens = [0] * self.sizes.max_backends
        self._tx_slots: dict[int, int] = {}
        self._attached: dict[str, int] = {}
        self._timeouts = Timeouts()
        self._clock_offset = 0
        if taken_over:
            self._take_over()
        else:
            self._write_settings()

    def _load(self, src: str, cflags: list[str]) -> None:
        self._bpf = BPF(text=src.encode(), cflags=cflags)
        self.maps = {name: self._bpf[name.encode()] for name in (
            "services", "service_conf", "backends", "rings", "seqs", "rr_cursor", "conntrack", "conn_syn",
            "persist", "be_load", "be_fix", "settings", "lc_scratch", "lc_progs", "tx_ports", "counters",
            "svc_stats", "be_stats", "pin_meta", "sim_layout")}

    def _migrate(self, src: str, cflags: list[str]) -> None:
        """Moves the pinned maps to this build's sizes (xdplb/migrate.py); undone if anything fails."""
        log.warning("pinned maps in %s have other sizes: moving them to these", self.pin_dir)
        self._bpf.cleanup()
        aside = migrate_mod.set_aside(self.pin_dir)
        try:
            self._load(src, cflags)
            pinning.check_shapes({name: self.maps[name] for name in pinning.PINNED_MAPS})
            copied = migrate_mod.copy_state(aside, self.pin_dir, pinning.PINNED_MAPS)
            meta = self.maps["pin_meta"]
            meta[ct.c_uint32(0)] = meta.Leaf(schema_version=SCHEMA_VERSION)
        except Exception:
            self._bpf.cleanup()
            migrate_mod.recover(self.pin_dir)
            raise
        pinning.unpin(aside)
        log.info("moved to the new sizes: %s", copied)

    # ---- taking over pinned maps ---------------------------------------------------------------
    # A restarted control plane finds the maps as the previous one left them. It reads back which
    # service and backend ids are in use (so connections keep pointing at the right backends), the
    # tables as written (so the first set_service of each service writes only what differs) and the
    # settings. A service the new desired state does not name is removed by release_unclaimed().

    @_locked
    def follow(self, services: Iterable[Service]) -> None:
        """For an observer: reads again which service and backend ids the pinned maps hold (services map,
        backends, settings; not the tables) and matches these services to them by endpoints, so services,
        service_stats, backend_stats, backend_counts and connections() answer for them. Writes nothing."""
        if not self.observe:
            raise RuntimeError("follow() is for an observer: a writer knows what it applied")
        self._read_settings()
        pinned = self._pinned_services()
        self._services.clear()
        self._endpoints.clear()
        for svc in services:
            state = next((s for s in pinned.values() if s.keys & set(svc.all_endpoints)), None)
            if state is not None:
                state.model = svc
                self._services[svc.key] = pinned.pop(state.id)
                self._endpoints.update(dict.fromkeys(svc.all_endpoints, svc.key))
        self._adopted = pinned  # the rest: their connections still name their backends

    def _read_settings(self) -> None:
        settings = self.maps["settings"][ct.c_uint32(0)]
        self._clock_offset = settings.clock_offset
        hz, order = kernel.hz(), sorted(conntable.TIMEOUT, key=conntable.TIMEOUT.get)
        self._timeouts = Timeouts(**{name: max(1, settings.timeout[i] // hz) for i, name in enumerate(order)})

    def _pinned_services(self) -> dict[int, _Service]:
        keys: dict[int, set] = {}
        for k, v in self.maps["services"].items():
            keys.setdefault(v.value, set()).add(self._endpoint_of(k))
        states = {sid: _Service(id=sid, model=None, keys=frozenset(eps)) for sid, eps in keys.items()}
        for bid, be in self.maps["backends"].items():
            if be.flags & _BE_ACTIVE and be.service in states:
                addr = _addr_of(be.addr, be.family)
                states[be.service].backends[addr] = _Backend(bid.value, be.gen, be.weight, None, None)
        return states

    def _take_over(self) -> None:
        self._read_settings()
        self._adopted = self._pinned_services()
        for bid, be in enumerate(self.maps["backends"].values()):
            self._gens[bid] = be.gen  # every slot, so a reused one takes the next generation
            if be.flags & _BE_ACTIVE and be.service in self._adopted and be.ifindex:
                self._tx_slots[be.ifindex] = be.tx_slot
        for sid, state in self._adopted.items():
            conf = self.maps["service_conf"][ct.c_uint32(sid)]
            state.conf = bytes(conf)
            state.ring = self._read_rows("rings", sid * self.sizes.ring_max, conf.ring_size)
            state.seq = self._read_rows("seqs", sid * self.sizes.seq_max, conf.seq_size)
        in_use = {b.id for st in self._adopted.values() for b in st.backends.values()}
        self._free_services = [i for i in self._free_services if i not in self._adopted]
        self._free_backends = [i for i in self._free_backends if i not in in_use]
        log.info("took over pinned maps in %s: %d services, %d backends", self.pin_dir, len(self._adopted),
                 len(in_use))

    def _endpoint_of(self, key: ct.Structure) -> tuple:
        protocol = {p.number: p for p in Protocol}[key.proto]
        return (protocol, _addr_of(key.addr, key.family), socket.ntohs(key.port))

    def _read_rows(self, name: str, base: int, count: int) -> np.ndarray:
        table = self.maps[name]
        return np.array([table[ct.c_uint32(base + i)].value for i in range(count)], dtype=np.uint32)

    def _adopted_for(self, service: Service) -> _Service | None:
        """The pinned state of a service the previous control plane wrote, found by its endpoints."""
        for state in self._adopted.values():
            if state.keys & set(service.all_endpoints):
                return state
        return None

    @_locked
    def release_unclaimed(self) -> list[int]:
        """Removes the services pinned maps held that no set_service claimed since the take-over."""
        gone = list(self._adopted)
        for sid in gone:
            state = self._adopted.pop(sid)
            for ep in state.keys:
                del self.maps["services"][self._vip_key(*ep)]
            self.maps["service_conf"][ct.c_uint32(sid)] = self.maps["service_conf"].Leaf()
            for slot in state.backends.values():
                self._free_backend(slot)
            heapq.heappush(self._free_services, sid)
        self._prune_tx_slots()
        return gone

    @property
    def instructions(self) -> int:
        """Size of the loaded program, in BPF instructions (the verifier's unit)."""
        return len(self._bpf.dump_func(b"xdplb_main")) // 8

    # ---- attach ----------------------------------------------------------------------------

    def attach(self, ifname: str, mode: str = "auto") -> str:
        """Attach to an interface of the current namespace; returns the mode it got."""
        got = attach_xdp(self.prog, ifname, mode)
        self._attached[ifname] = XDP_MODES[got]
        return got

    def detach(self, ifname: str) -> None:
        BPF.remove_xdp(ifname.encode(), self._attached.pop(ifname))

    def close(self, detach: bool = True) -> None:
        """Frees this process's hold on the balancer. detach=False leaves it attached, forwarding with
        its pinned maps, for the next control plane to take over (a daemon's exit or restart)."""
        for ifname in list(self._attached) if detach else ():
            try:
                self.detach(ifname)
            except Exception as e:  # the interface may be gone with its namespace
                log.warning("detaching from %s: %s", ifname, e)
        if "_tap" in self.__dict__:
            self._tap.close()
        self._bpf.cleanup()

    def __enter__(self) -> Datapath:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- services and backends -------------------------------------------------------------
    # set_service plans the new state without writing (limits, next hops, ids, tables), then writes
    # the maps in an order where the program never follows a half-written entry: backends first,
    # then tables, then the service, then the VIP key; removed backends last. Python remembers a
    # state as applied only once every write went in; a write that fails marks the service for a
    # full rewrite on the next call.

    @property
    def services(self) -> list[Service]:
        return [s.model for s in self._services.values()]

    @_locked
    def set_service(self, service: Service, nexthops: Mapping[IPAddress, Nexthop] | None = None) -> dict[str, int]:
        """Add or update a service with its backends; returns how many entries were written.
        Backends whose next hop is unresolved (ifindex 0) take no new flows, like weight 0."""
        old = self._services.get(service.key) or self._adopted_for(service)
        if self._unchanged(service, old, nexthops or {}):
            return {"backends": 0, "rings": 0, "seqs": 0}  # a reconciler pass over a thousand services
        self._check_limits(service, old, self._endpoints, len(self._endpoints) - (len(old.keys) if old else 0),
                           len(self._free_services), len(self._free_backends))
        hops = self._nexthops(service, old, nexthops or {})
        new = self._plan(service, old, hops)
        try:
            written = self._commit(new, old)
        except Exception:
            self._release(new, old)
            if old:
                old.ring = old.seq = np.empty(0, np.uint32)
                old.conf = b""
            raise
        self._services[service.key] = new
        if old is not None:
            self._adopted.pop(old.id, None)
        for ep in old.keys if old else ():
            self._endpoints.pop(ep, None)
        self._endpoints.update(dict.fromkeys(service.all_endpoints, service.key))
        for addr, slot in (old.backends.items() if old else ()):
            if addr not in new.backends:
                self._free_backend(slot)
        if old and {b.nexthop.ifindex for b in old.backends.values() if b.nexthop} - set(self._tx_slots_used(new)):
            self._prune_tx_slots()  # an egress port this service no longer uses may be free now
        return written

    def _unchanged(self, service: Service, old: _Service | None, given: Mapping[IPAddress, Nexthop]) -> bool:
        """Whether a claimed service is already written exactly as asked (and not marked for a rewrite):
        the same model, and no next hop given that differs from the one it has."""
        return (old is not None and old is self._services.get(service.key) and old.model == service
                and bool(old.conf)
                and all(a in old.backends and old.backends[a].nexthop == nh for a, nh in given.items()))

    @staticmethod
    def _tx_slots_used(state: _Service) -> set[int]:
        return {b.nexthop.ifindex for b in state.backends.values() if b.nexthop}

    @_locked
    def remove_service(self, key: tuple) -> None:
        state = self._services[key]
        for ep in state.keys:
            del self.maps["services"][self._vip_key(*ep)]
            del self._endpoints[ep]
        self.maps["service_conf"][ct.c_uint32(state.id)] = self.maps["service_conf"].Leaf()
        del self._services[key]
        for slot in state.backends.values():
            self._free_backend(slot)
        heapq.heappush(self._free_services, state.id)
        self._prune_tx_slots()

    def refresh_nexthops(self) -> dict[IPAddress, str]:
        """Resolve every backend's next hop again and rewrite those that moved (MAC or port). A
        backend that no longer resolves keeps its last known next hop; returned with the reason."""
        failed: dict[IPAddress, str] = {}
        for state in list(self._services.values()):
            hops = {}
            for addr in state.backends:
                try:
                    hops[addr] = self._resolver(addr)
                except NexthopError as e:
                    failed[addr] = str(e)
                    log.warning("keeping the last next hop of %s: %s", addr, e)
            self.set_service(state.model, hops)
        return failed

    @_locked
    def preflight(self, services: list[Service], standby: Mapping[tuple, Backend] | None = None) -> Preflight:
        """Whether the data plane would take this desired set whole (what a reconciler pass makes of
        it: services no longer listed removed first, then each one set in order), without writing:
        each service's limits and next hops, and the free ids along the pass; `standby` backends (a
        service's sorry server) get their next hops resolved too. A change refused here is refused
        before anything is written, so all-or-nothing needs no undo."""
        out = Preflight()
        wanted = {s.key for s in services}
        gone = [s for k, s in self._services.items() if k not in wanted]
        free_services = len(self._free_services) + len(gone)
        free_backends = len(self._free_backends) + sum(len(s.backends) for s in gone)
        endpoints = {ep: k for ep, k in self._endpoints.items() if k in wanted}
        for svc in services:
            old = self._services.get(svc.key) or self._adopted_for(svc)
            for ep in old.keys if old else ():
                endpoints.pop(ep, None)
            try:
                self._check_limits(svc, old, endpoints, len(endpoints), free_services, free_backends)
                out.nexthops.update(self._nexthops(svc, old, {}))
            except (ConfigError, NexthopError) as e:
                out.problems[svc.key] = str(e)
                continue
            free_services -= old is None
            kept = set(old.backends) if old else set()
            free_backends -= sum(1 for b in svc.backends if b.address not in kept)
            free_backends += len(kept - {b.address for b in svc.backends})
            endpoints.update(dict.fromkeys(svc.all_endpoints, svc.key))
        for key, backend in (standby or {}).items():  # backends a service may switch to later (sorry servers)
            try:
                out.nexthops[backend.address] = out.nexthops.get(backend.address) or self._resolver(backend.address)
            except NexthopError as e:
                out.problems[key] = f"sorry server: {e}"
        return out

    def _check_limits(self, service: Service, old: _Service | None, endpoints: Mapping[tuple, tuple],
                      other_vips: int, free_services: int, free_backends: int) -> None:
        """Whether `service` fits, replacing `old`: `endpoints` maps each endpoint in use to its service,
        `other_vips` counts those other services keep, and the free ids are as the write would find them
        (set_service: the data plane's now; preflight: along its pass)."""
        if service.method == Method.NAT:
            raise ConfigError(f"forwarding method {service.method} is not available yet (DR and TUN are)")
        if old is None and not free_services:
            raise ConfigError(f"service limit reached ({self.sizes.max_services})")
        for ep in service.all_endpoints:
            owner = endpoints.get(ep)
            if owner is not None and owner != service.key:
                raise ConfigError(f"{ep[0]}/{ep[1]}:{ep[2]} already belongs to service {key_id(owner)}")
        if other_vips + len(service.all_endpoints) > self.sizes.max_vips:
            raise ConfigError(f"virtual address limit reached ({self.sizes.max_vips})")
        if service.scheduler.least_connection and len(service.backends) > self.sizes.lc_max:
            raise ConfigError(f"{service.scheduler} scans at most {self.sizes.lc_max} backends per service "
                              f"(the verifier bounds the scan); this one has {len(service.backends)}")
        if service.ring_size > self.sizes.ring_max:
            raise ConfigError(f"ring_size {service.ring_size} exceeds the compiled maximum {self.sizes.ring_max}")
        if len(service.backends) > self.sizes.seq_max:
            raise ConfigError(f"{len(service.backends)} backends exceed the per-service maximum {self.sizes.seq_max}")
        new = sum(1 for b in service.backends if old is None or b.address not in old.backends)
        if new > free_backends:
            raise ConfigError(f"backend limit reached ({self.sizes.max_backends})")

    def _nexthops(self, service: Service, old: _Service | None,
                  given: Mapping[IPAddress, Nexthop]) -> dict[IPAddress, Nexthop]:
        """Each backend's next hop: given, else the one known, else resolved now; checked, not written."""
        out = {}
        for b in service.backends:
            known = old.backends.get(b.address) if old else None
            nh = given.get(b.address) or (known.nexthop if known and known.nexthop else self._resolver(b.address))
            try:
                mac_bytes(nh.smac), mac_bytes(nh.dmac)
                if nh.ifindex:
                    socket.if_indextoname(nh.ifindex)
            except (ValueError, OSError) as e:
                raise ConfigError(f"next hop of backend {b.address}: {e}") from e
            if service.method == Method.TUN:
                self._tunnel_source(b.address, b.tunnel or service.tunnel, nh)
            out[b.address] = nh
        ports = set(self._tx_slots) | {nh.ifindex for nh in out.values() if nh.ifindex}
        if len(ports) > self.sizes.max_tx_ports:
            raise ConfigError(f"egress interface limit reached ({self.sizes.max_tx_ports})")
        return out

    def _plan(self, service: Service, old: _Service | None, hops: dict[IPAddress, Nexthop]) -> _Service:
        """The state to write: ids kept for known backends, taken for new ones; tables computed."""
        new = _Service(id=old.id if old else heapq.heappop(self._free_services), model=service)

        def tunnel(b: Backend) -> Tunnel | None:
            return (b.tunnel or service.tunnel) if service.method == Method.TUN else None

        for b in service.backends:
            known = old.backends.get(b.address) if old else None
            if known:
                new.backends[b.address] = _Backend(known.id, known.gen, b.weight, hops[b.address], b, tunnel(b))
            else:
                bid = heapq.heappop(self._free_backends)
                self._gens[bid] = (self._gens[bid] + 1) & 0xFFFF
                new.backends[b.address] = _Backend(bid, self._gens[bid], b.weight, hops[b.address], b, tunnel(b))
        ids = np.array([new.backends[b.address].id for b in service.backends], dtype=np.uint32)
        usable = [b.weight if hops[b.address].ifindex else 0 for b in service.backends]
        if service.scheduler != Scheduler.SH:  # sh places mid-stream flows by its own source table
            names = [str(b.address) for b in service.backends]
            new.ring = ids[maglev.build(list(zip(names, usable, strict=True)), service.ring_size)]
        if service.scheduler == Scheduler.SH:
            new.seq = ids[np.asarray(schedule.sh(usable), dtype=np.intp)]
        elif service.scheduler == Scheduler.WRR:
            new.seq = ids[np.asarray(schedule.wrr(usable, self.sizes.seq_max), dtype=np.intp)]
        elif service.scheduler == Scheduler.RR or service.scheduler.least_connection:
            new.seq = ids[np.asarray(schedule.rr(usable), dtype=np.intp)]
        new.conf = bytes(self._conf(new))
        new.keys = frozenset(service.all_endpoints)
        return new

    def _release(self, new: _Service, old: _Service | None) -> None:
        """Gives back the ids a plan took and did not keep."""
        if old is None:
            heapq.heappush(self._free_services, new.id)
        for addr, slot in new.backends.items():
            if old is None or addr not in old.backends:
                heapq.heappush(self._free_backends, slot.id)

    def _commit(self, new: _Service, old: _Service | None) -> dict[str, int]:
        for nh in {s.nexthop for s in new.backends.values()}:
            self._tx_slot(nh.ifindex)
        if old is None:
            self.maps["svc_stats"].clearitem(ct.c_uint32(new.id))
            self.maps["rr_cursor"].clearitem(ct.c_uint32(new.id))
        written = {"backends": 0, "rings": 0, "seqs": 0}
        for addr, slot in new.backends.items():
            known = old.backends.get(addr) if old else None
            if known and (known.nexthop, known.model, known.tunnel) == (slot.nexthop, slot.model, slot.tunnel):
                continue
            if not known:
                for table in ("be_stats", "be_load", "be_fix"):
                    self.maps[table].clearitem(ct.c_uint32(slot.id))
            self._write_backend(new.id, addr, slot)
            written["backends"] += 1
        empty = np.empty(0, np.uint32)
        written["rings"] = self._write_rows("rings", new.id * self.sizes.ring_max,
                                            old.ring if old else empty, new.ring)
        written["seqs"] = self._write_rows("seqs", new.id * self.sizes.seq_max, old.seq if old else empty, new.seq)
        if not old or old.conf != new.conf:
            self.maps["service_conf"][ct.c_uint32(new.id)] = self.maps["service_conf"].Leaf.from_buffer_copy(new.conf)
        before = set(old.keys) if old else set()
        for ep in new.model.all_endpoints:
            if ep not in before:
                self.maps["services"][self._vip_key(*ep)] = ct.c_uint32(new.id)
        for ep in before - set(new.model.all_endpoints):
            del self.maps["services"][self._vip_key(*ep)]
        return written

    def _tx_slot(self, ifindex: int) -> int:
        """The devmap slot of an egress interface. The entry is rewritten on every use: the kernel
        drops it when the interface goes away."""
        if not ifindex:
            return 0
        used = set(self._tx_slots.values())
        slot = self._tx_slots.get(ifindex, min(set(range(self.sizes.max_tx_ports)) - used))
        try:
            self.maps["tx_ports"][ct.c_int(slot)] = ct.c_int(ifindex)
        except Exception as e:
            raise ConfigError(f"interface {ifindex} cannot be an XDP egress port: {e}") from e
        self._tx_slots[ifindex] = slot
        return slot

    def _prune_tx_slots(self) -> None:
        """Frees the devmap slots no backend uses any more."""
        used = {s.nexthop.ifindex for svc in self._services.values() for s in svc.backends.values()}
        for ifindex in set(self._tx_slots) - used:
            del self.maps["tx_ports"][ct.c_int(self._tx_slots.pop(ifindex))]

    def _free_backend(self, slot: _Backend) -> None:
        self.maps["backends"][ct.c_uint32(slot.id)] = self.maps["backends"].Leaf()
        heapq.heappush(self._free_backends, slot.id)

    def _write_backend(self, sid: int, addr: IPAddress, slot: _Backend) -> None:
        table = self.maps["backends"]
        be = table.Leaf()
        be.addr = _addr_words(type(be.addr), addr)
        be.family = _family(addr)
        be.flags = _BE_ACTIVE
        be.weight = slot.weight
        be.service = sid
        be.ifindex = slot.nexthop.ifindex
        be.tx_slot = self._tx_slots.get(slot.nexthop.ifindex, 0)
        be.dmac = type(be.dmac).from_buffer_copy(mac_bytes(slot.nexthop.dmac))
        be.smac = type(be.smac).from_buffer_copy(mac_bytes(slot.nexthop.smac))
        be.gen = slot.gen
        be.u_threshold = slot.model.upper_threshold
        be.l_threshold = slot.model.lower_threshold
        if slot.tunnel:
            self._write_tunnel(be, addr, slot.tunnel, slot.nexthop)
        table[ct.c_uint32(slot.id)] = be

    @staticmethod
    def _tunnel_source(addr: IPAddress, tunnel: Tunnel, nh: Nexthop) -> IPAddress:
        """The outer source of a TUN backend: the tunnel's, else the director's address towards it."""
        src = tunnel.source or (ipaddress.ip_address(nh.src) if nh.src else None)
        if src is None:
            raise ConfigError(f"backend {addr}: no source address towards it for the tunnel (give tunnel.source)")
        if src.version != addr.version:
            raise ConfigError(f"backend {addr}: tunnel source {src} is IPv{src.version}")
        return src

    def _write_tunnel(self, be: ct.Structure, addr: IPAddress, tunnel: Tunnel, nh: Nexthop) -> None:
        src = self._tunnel_source(addr, tunnel, nh)
        be.encap = _ENCAPS[tunnel.encap.value]
        be.gue_port = socket.htons(tunnel.gue_port)
        be.mtu = nh.mtu if nh.mtu <= 0xFFFF else 0  # above 65535 nothing can exceed it
        be.outer_src = _addr_words(type(be.outer_src), src)
        bits = tunnel.vary_source_bits
        mask = ((1 << bits) - 1).to_bytes(4, "big")
        hash_mask = (b"\0" * 12 + mask) if addr.version == 6 else mask
        be.src_hash_mask = type(be.src_hash_mask).from_buffer_copy(hash_mask.ljust(16, b"\0"))

    def _write_rows(self, name: str, base: int, old: np.ndarray, new: np.ndarray) -> int:
        """Writes the entries of `new` that differ from `old`, in one batch."""
        idx = np.flatnonzero(old != new) if len(old) == len(new) else np.arange(len(new))
        if not len(idx):
            return 0
        table = self.maps[name]
        keys = np.ascontiguousarray(idx + base, dtype=np.uint32)
        values = np.ascontiguousarray(new[idx], dtype=np.uint32)
        table.items_update_batch((table.Key * len(idx)).from_buffer(keys),
                                 (table.Leaf * len(idx)).from_buffer(values))
        return len(idx)

    def _conf(self, state: _Service) -> ct.Structure:
        svc = state.model
        conf = self.maps["service_conf"].Leaf()
        conf.sched = SCHEDULERS[svc.scheduler.value]
        conf.method = METHODS[svc.method.value]
        if svc.sched_flags & {SchedFlag.SH_PORT, SchedFlag.MH_PORT}:
            conf.flags |= _SVC_FLAGS["hash_sport"]
        if svc.expire_nodest:
            conf.flags |= _SVC_FLAGS["expire_nodest"]
        if any(b.upper_threshold for b in svc.backends):
            conf.flags |= _SVC_FLAGS["thresholds"]
        if svc.persistence:
            conf.flags |= _SVC_FLAGS["persistent"]
            conf.persist_timeout = svc.persistence.timeout * kernel.hz()
            prefix = svc.vip.max_prefixlen if svc.persistence.netmask is None else svc.persistence.netmask
            mask = ipaddress.ip_network(f"{svc.vip}/{prefix}", strict=False).netmask
            conf.persist_mask = _addr_words(type(conf.persist_mask), mask)
        conf.ring_size = len(state.ring)
        conf.seq_size = len(state.seq)
        conf.backend_count = len(svc.backends)
        (conf.rank_active, conf.rank_inactive, conf.rank_plus, conf.rank_weighted,
         conf.rank_idle_first) = _RANKS.get(svc.scheduler, (0, 0, 0, 0, 0))
        return conf

    def _vip_key(self, protocol, vip: IPAddress, port: int) -> ct.Structure:
        key = self.maps["services"].Key()
        key.addr = _addr_words(type(key.addr), vip)
        key.port = socket.htons(port)
        key.proto = protocol.number
        key.family = _family(vip)
        return key

    # ---- reading ---------------------------------------------------------------------------

    def counters(self) -> dict[str, int]:
        """Global verdict and reason counters, summed over CPUs."""
        table = self.maps["counters"]
        return {name: sum(table[ct.c_uint32(idx)]) for name, idx in COUNTERS.items()}

    def service_stats(self, key: tuple) -> dict[str, int]:
        return _sum_stats(self.maps["svc_stats"][ct.c_uint32(self._services[key].id)])

    def backend_stats(self, key: tuple) -> dict[IPAddress, dict[str, int]]:
        table = self.maps["be_stats"]
        return {addr: _sum_stats(table[ct.c_uint32(slot.id)])
                for addr, slot in self._services[key].backends.items()}

    def _backend_by_id(self) -> dict[int, tuple[int, int, IPAddress]]:
        """backend id -> (service id, generation, address) of every backend in use."""
        states = [*self._services.values(), *self._adopted.values()]
        return {slot.id: (s.id, slot.gen, addr) for s in states for addr, slot in s.backends.items()}

    def connections(self) -> Iterator[Connection]:
        """Both connection tables, like `ipvsadm -Lc`. An entry whose backend is gone (its next packet
        will be rescheduled) shows no backend; expired entries not yet swept are left out."""
        owners = self._backend_by_id()
        now, hz = self.now(), kernel.hz()
        protos = {6: "TCP", 17: "UDP"}
        for name in ("conntrack", "conn_syn"):
            keys, vals = self._dump(name)
            live = ~conntable.expired(vals["last_seen"], vals["state"], keys["proto"], now, self._timeout_jiffies())
            for k, v in zip(keys[live], vals[live], strict=True):
                owner = owners.get(int(v["backend"]))
                known = owner is not None and owner[:2] == (int(v["service"]), int(v["be_gen"]))
                family = int(k["family"])
                yield Connection(
                    protocol=protos.get(int(k["proto"]), str(k["proto"])),
                    client=(_addr_of(k["saddr"].tobytes(), family), socket.ntohs(int(k["sport"]))),
                    virtual=(_addr_of(k["daddr"].tobytes(), family), socket.ntohs(int(k["dport"]))),
                    backend=owner[2] if known else None,
                    state=CONN_STATES.get(int(v["state"]), str(v["state"])).upper(),
                    idle_s=max(0, now - int(v["last_seen"])) / hz,
                )

    @_locked
    def flush_connections(self) -> int:
        """Forget every connection and persistence template (`ipvsadm -C` for the tables only);
        returns how many connections there were. Every backend's counts start again from zero."""
        gone = 0
        for name in ("conntrack", "conn_syn"):
            n = sum(1 for _ in self.maps[name].items_lookup_and_delete_batch())
            self._removed[name] += n
            gone += n
        self.maps["persist"].items_delete_batch()
        for name in ("be_load", "be_fix"):
            for slot in self._backend_by_id():
                self.maps[name].clearitem(ct.c_uint32(slot))
        return gone

    def backend_counts(self, key: tuple) -> dict[IPAddress, tuple[int, int]]:
        """Each backend's (ActiveConn, InActConn) as the schedulers see them: the data plane's counts
        plus the sweeper's correction."""
        load, fix = self.maps["be_load"], self.maps["be_fix"]
        out = {}
        for addr, slot in self._services[key].backends.items():
            n, f = load[ct.c_uint32(slot.id)].n, fix[ct.c_uint32(slot.id)]
            out[addr] = (max(0, n.active + f.active), max(0, n.inactive + f.inactive))
        return out

    # ---- time and the sweeper ---------------------------------------------------------------

    @property
    def timeouts(self) -> Timeouts:
        return self._timeouts

    def set_timeouts(self, timeouts: Timeouts) -> None:
        """ipvsadm --set: the idle timeouts, applied at once to every entry."""
        self._timeouts = timeouts
        self._write_settings()

    def shift_clock(self, seconds: float) -> None:
        """Moves the data plane's clock forward (tests of timeouts; 0 in service)."""
        self._clock_offset += round(seconds * kernel.hz())
        self._write_settings()

    def now(self) -> int:
        """The data plane's clock, in jiffies."""
        return kernel.jiffies() + self._clock_offset

    def _timeout_jiffies(self) -> np.ndarray:
        t = self._timeouts
        order = sorted(conntable.TIMEOUT, key=conntable.TIMEOUT.get)
        return np.array([getattr(t, name) * kernel.hz() for name in order], dtype=np.int64)

    def _write_settings(self) -> None:
        table = self.maps["settings"]
        conf = table.Leaf()
        conf.clock_offset = self._clock_offset
        for i, v in enumerate(self._timeout_jiffies()):
            conf.timeout[i] = int(v)
        table[ct.c_uint32(0)] = conf

    def _dump(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """A whole table as two structured arrays (keys, values), BCC's types as numpy dtypes."""
        table = self.maps[name]
        pairs = list(table.items_lookup_batch())
        keys = np.frombuffer(b"".join(bytes(k) for k, _ in pairs), dtype=np.dtype(table.Key))
        values = np.frombuffer(b"".join(bytes(v) for _, v in pairs), dtype=np.dtype(table.Leaf))
        return keys, values

    def _delete(self, name: str, keys: np.ndarray) -> None:
        if not len(keys):
            return
        table = self.maps[name]
        buf = np.ascontiguousarray(keys)
        table.items_delete_batch((table.Key * len(keys)).from_buffer(buf))

    @_locked
    def sweep(self) -> Sweep:
        """What IPVS's timers do, in one pass: deletes expired connections and persistence
        templates, keeps the templates of live connections alive, and recounts every backend's
        connections from the tables, correcting the data plane's counts (LRU evictions and idle
        expiry have no hook to count them down). A connection that wakes up between the read and
        the delete is placed again as a flow met mid-stream; the window is one pass."""
        now, timeouts = self.now(), self._timeout_jiffies()
        size = self.sizes.max_backends
        active, inactive = np.zeros(size, np.int64), np.zeros(size, np.int64)
        expired_n, live_per_table = 0, {}
        live_keys = []
        # An entry counts for a backend only while its slot holds the backend it was placed on (the
        # same generation and service), as the data plane's conn_backend() decides.
        owner_gen, owner_svc = np.full(size, -1, np.int64), np.full(size, -1, np.int64)
        for bid, (sid, gen, _) in self._backend_by_id().items():
            owner_gen[bid], owner_svc[bid] = gen, sid
        for name in ("conntrack", "conn_syn"):
            keys, vals = self._dump(name)
            dead = conntable.expired(vals["last_seen"], vals["state"], keys["proto"], now, timeouts)
            self._delete(name, keys[dead])
            self._removed[name] += int(dead.sum())
            expired_n += int(dead.sum())
            keys, vals = keys[~dead], vals[~dead]
            live_per_table[name] = len(keys)
            backend = vals["backend"].astype(np.int64)
            slot = np.clip(backend, 0, size - 1)
            theirs = (backend < size) & (owner_gen[slot] == vals["be_gen"]) & (owner_svc[slot] == vals["service"])
            a, i = conntable.counts(backend[theirs], vals["state"][theirs], keys["proto"][theirs], size)
            active += a
            inactive += i
            live_keys.append((keys, vals))
        corrected = self._correct_counts(active, inactive)
        templates = self._sweep_templates(now, live_keys)
        return Sweep(expired=expired_n, templates_expired=templates, corrected=corrected,
                     evicted=self.evictions(live_per_table))

    def _correct_counts(self, active: np.ndarray, inactive: np.ndarray) -> int:
        """Sets each backend's correction so that counts plus correction equal the recount."""
        load, fix = self.maps["be_load"], self.maps["be_fix"]
        changed = 0
        for bid in self._backend_by_id():
            n, f = load[ct.c_uint32(bid)].n, fix[ct.c_uint32(bid)]
            want_a, want_i = int(active[bid]) - n.active, int(inactive[bid]) - n.inactive
            if (f.active, f.inactive) != (want_a, want_i):
                fix[ct.c_uint32(bid)] = fix.Leaf(active=want_a, inactive=want_i)
                changed += 1
        return changed

    def _sweep_templates(self, now: int, live: list[tuple[np.ndarray, np.ndarray]]) -> int:
        """Deletes expired templates, except those a live connection still uses (IPVS keeps a
        template while it controls connections), whose last-seen time moves to now."""
        table = self.maps["persist"]
        timeouts = {s.id: s.model.persistence.timeout * kernel.hz()
                    for s in self._services.values() if s.model.persistence}
        in_use = set()
        for keys, vals in live:
            for k, v in zip(keys, vals, strict=True):
                if int(v["service"]) in timeouts:
                    in_use.add(self._template_key(int(v["service"]), k))
        expired = []
        for k, v in table.items_lookup_batch():
            key = bytes(k)
            if key in in_use:
                v.last_seen = now
                table[k] = v
            elif k.service not in timeouts or now - v.last_seen > timeouts[k.service]:
                expired.append(k)
        for k in expired:
            del table[k]
        return len(expired)

    def _template_key(self, service_id: int, conn_key: np.void) -> bytes:
        """The template key (struct persist_key) a connection of a persistent service maps to."""
        key = self.maps["persist"].Key()
        key.service = service_id
        key.family = int(conn_key["family"])
        words = np.frombuffer(self.maps["service_conf"][ct.c_uint32(service_id)].persist_mask, np.uint32)
        for i in range(4):
            key.saddr[i] = int(conn_key["saddr"][i]) & int(words[i])
        return bytes(key)

    def evictions(self, present: Mapping[str, int] | None = None) -> dict[str, int]:
        """Entries the LRU pushed out of each table, derived: inserted minus deleted minus present
        (the kernel counts no eviction). A flood of SYNs moves only conn_syn's."""
        c = self.counters()
        if present is None:
            present = {name: sum(1 for _ in self.maps[name].items_lookup_batch()) for name in self._removed}
        inserted = {"conntrack": c["conn_inserted"], "conn_syn": c["halfopen_inserted"]}
        removed = {"conntrack": self._removed["conntrack"],
                   "conn_syn": self._removed["conn_syn"] + c["halfopen_promoted"] + c["halfopen_retired"]}
        return {name: max(0, inserted[name] - removed[name] - present[name]) for name in inserted}

    # ---- running frames --------------------------------------------------------------------

    def run(self, frame: bytes, ingress_ifindex: int = 0, repeat: int = 1) -> RunResult:
        """The real thing on one frame: inserts connections and counts, like traffic would."""
        return self.runner.run(frame, ingress_ifindex=ingress_ifindex, repeat=repeat)

    def simulate(self, frame: bytes, ingress_ifindex: int = 0) -> Simulation:
        """Where would this frame go? Runs the real program, marked as a simulation in the XDP
        metadata: no connection inserted, no cursor moved, no counter or stat changed."""
        meta_t = self.maps["sim_layout"].Leaf
        meta = meta_t(magic=_SIM_MAGIC, service=_NONE, backend=_NONE, reason=0)
        res = self.runner.run(frame, meta=bytes(meta), ingress_ifindex=ingress_ifindex)
        out = meta_t.from_buffer_copy(res.meta)
        reason = {v: k for k, v in COUNTERS.items()}.get(out.reason, str(out.reason))
        by_id = {s.id: s.model for s in self._services.values()}
        owner = self._backend_by_id().get(out.backend)
        return Simulation(res.verdict, res.frame, reason, by_id.get(out.service),
                          owner[2] if owner else None)

    # ---- packet capture (xdplb/capture.py) --------------------------------------------------

    def service_id(self, key: tuple) -> int:
        """The data plane's id of a service: what a capture filters on."""
        return self._services[key].id

    @functools.cached_property
    def _tap(self) -> Tap:
        return Tap(self._bpf, STRUCTS_H)

    def capture(self, flt: CaptureFilter, rate_pps: int = 1000, snaplen: int = 2048) -> Capture:
        """Copies the frames of a service or flow out of the data plane, as received and as sent, at
        most rate_pps frames a second (xdplb/capture.py). One at a time: a second raises CaptureBusy.
        Its maps are not pinned: only the process that loaded the attached program captures."""
        if self.observe:
            raise RuntimeError("an observer cannot capture: the attached program is its daemon's")
        with self.lock:
            tap = self._tap
        return tap.start(flt, rate_pps, snaplen)
