"""Packet capture from the balancer itself: what it receives and sends, for one service or one flow.

tcpdump cannot see what an XDP program sends (XDP_TX, XDP_REDIRECT), and sees what it receives only
when that reaches the stack, so the data plane copies the frames out (bpf/lib/capture.h): each
matching frame as received, with the verdict and its reason, and a forwarded one again as sent
(rewritten, encapsulated, or the ICMP the balancer answered with). Records go through a BPF ring
buffer, at most `rate_pps` frames per second (a token bucket in the data plane, with a burst of a
tenth of a second). Simulated frames are never captured. One capture at a time per data plane.

Works on BCC's objects handed over by xdplb/datapath.py (`Datapath.capture`), never imports BCC; the
record header is BCC's generated type for struct capture_hdr, not a copy.
"""

from __future__ import annotations

import ctypes as ct
import ipaddress
import math
import socket
import struct
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path
from typing import BinaryIO

from xdplb.cenum import enum_values, header_enums
from xdplb.testrun import XDP_ACTIONS

_NONE = 0xFFFFFFFF
_PCAP_MAGIC_NS = 0xA1B23C4D  # classic pcap, nanosecond timestamps
_LINKTYPE_ETHERNET = 1


class CaptureBusy(RuntimeError):
    """A capture is already running on this data plane."""


@dataclass(frozen=True)
class CaptureFilter:
    """What to capture: every field given must match (none given: every frame). The client is the
    flow's client as the balancer keys it, also for an ICMP error about that flow."""

    service_id: int | None = None          # the data plane's service id (Datapath.service_id)
    client: IPv4Address | IPv6Address | None = None
    client_port: int | None = None
    protocol: int | None = None            # 6 / 17

    def __post_init__(self) -> None:
        if isinstance(self.client, str):
            object.__setattr__(self, "client", ipaddress.ip_address(self.client))
        for name, top in (("service_id", _NONE - 1), ("client_port", 0xFFFF), ("protocol", 0xFF)):
            value = getattr(self, name)
            if value is not None and not 0 <= value <= top:
                raise ValueError(f"{name} {value} is out of range 0-{top}")


@dataclass(frozen=True)
class Captured:
    """One record: a frame as the balancer received it, or as it sent it."""

    timestamp_ns: int        # wall clock (CLOCK_REALTIME) when the data plane copied it
    direction: str           # "received" | "sent"
    verdict: str             # "TX", "REDIRECT", "PASS", "DROP" (a received frame: what became of it)
    reason: str              # the counter name (enum xdplb_counter): why it passed or dropped, how it went
    ingress_ifindex: int
    egress_ifindex: int      # sent: the interface it left on; 0 for a received record
    length: int              # the frame's length
    frame: bytes             # its first snaplen bytes
    service_id: int          # -1: no service
    backend_id: int          # -1: no backend


def _clock_offset() -> int:
    """CLOCK_REALTIME minus CLOCK_MONOTONIC (bpf_ktime_get_ns), from the tightest of a few readings."""
    best = (math.inf, 0)
    for _ in range(5):
        m1 = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
        wall = time.clock_gettime_ns(time.CLOCK_REALTIME)
        m2 = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
        best = min(best, (m2 - m1, wall - (m1 + m2) // 2))
    return best[1]


class Tap:
    """The capture maps of one loaded balancer (its BCC object): hands out one Capture at a time."""

    def __init__(self, bpf: object, structs_h: Path) -> None:
        self._bpf = bpf
        self._conf = bpf[b"capture_conf"]
        self._bucket = bpf[b"capture_bucket"]
        self._stats = bpf[b"capture_stats"]
        rec = dict(bpf[b"capture_scratch"].sLeaf._fields_)
        self._hdr_t = rec["hdr"]                      # BCC's struct capture_hdr
        self._hdr_size = ct.sizeof(self._hdr_t)
        self.snap_max = rec["data"]._length_         # XDPLB_CAPTURE_SNAP_MAX
        enums = header_enums(structs_h)
        on = enums["xdplb_capture_on"]
        self._on = on["CAP_ON_RECEIVED"] | on["CAP_ON_EXIT"]
        self._match = enum_values(structs_h, "xdplb_capture_match", "CAP_M_")
        self._stat_names = {k: v for k, v in enum_values(structs_h, "xdplb_capture_stat", "CAP_STAT_").items()
                            if k != "max"}
        self._directions = {v: k for k, v in enum_values(structs_h, "xdplb_capture_dir", "CAP_DIR_").items()}
        self._reasons = {v: k for k, v in enum_values(structs_h, "xdplb_counter", "CNT_").items()}
        self._family = enums["xdplb_family"]
        self._lock = threading.Lock()      # start and close
        self._poll_lock = threading.Lock()  # the ring's one reader at a time
        self._sink: list[tuple[ct.Structure, bytes]] | None = None
        self._session = 0
        self.current: Capture | None = None
        bpf[b"capture_ring"].open_ring_buffer(self._on_record)

    def _on_record(self, _ctx: object, data: int, size: int) -> int:
        if self._sink is not None and size >= self._hdr_size:
            hdr = self._hdr_t.from_buffer_copy(ct.string_at(data, self._hdr_size))
            self._sink.append((hdr, ct.string_at(data + self._hdr_size, min(hdr.caplen, size - self._hdr_size))))
        return 0

    def _read(self, timeout_ms: int) -> list[tuple[ct.Structure, bytes]]:
        """Whatever the ring holds, waiting up to timeout_ms for something."""
        with self._poll_lock:
            self._sink = []
            try:
                self._bpf.ring_buffer_poll(timeout_ms)
                return self._sink
            finally:
                self._sink = None

    def start(self, flt: CaptureFilter, rate_pps: int, snaplen: int) -> Capture:
        if not 1 <= rate_pps <= 1_000_000_000:
            raise ValueError(f"rate {rate_pps} packets/s is out of range 1-1000000000")
        if not 1 <= snaplen <= self.snap_max:
            raise ValueError(f"snap length {snaplen} is out of range 1-{self.snap_max}")
        with self._lock:
            if self.current is not None:
                raise CaptureBusy("a capture is already running on this data plane")
            self._read(0)  # what a previous capture left
            for i in self._stat_names.values():
                self._stats.clearitem(self._stats.Key(i))
            self._bucket[self._bucket.Key(0)] = self._bucket.Leaf()
            self._session = (self._session + 1) & _NONE or 1
            burst = max(1, rate_pps // 10)
            conf = self._conf.Leaf(snaplen=snaplen, session=self._session)
            conf.interval = -(-1_000_000_000 // rate_pps)  # rounded up: never above the rate
            conf.tolerance = (burst - 1) * conf.interval
            self._set_filter(conf, flt)
            # A map write is not atomic to the program: the filter first, then the same with `on` set.
            self._conf[self._conf.Key(0)] = conf
            conf.on = self._on
            self.current = Capture(self, flt, rate_pps, burst, snaplen, self._session, _clock_offset())
            self._conf[self._conf.Key(0)] = conf
            return self.current

    def _set_filter(self, conf: ct.Structure, flt: CaptureFilter) -> None:
        if flt.service_id is not None:
            conf.match |= self._match["service"]
            conf.service = flt.service_id
        if flt.client is not None:
            conf.match |= self._match["client"]
            conf.client = type(conf.client).from_buffer_copy(flt.client.packed.ljust(16, b"\0"))
            conf.family = self._family[f"FAMILY_IPV{flt.client.version}"]
        if flt.client_port is not None:
            conf.match |= self._match["port"]
            conf.client_port = socket.htons(flt.client_port)
        if flt.protocol is not None:
            conf.match |= self._match["proto"]
            conf.proto = flt.protocol

    def _stop(self, capture: Capture) -> None:
        with self._lock:
            if self.current is not capture:
                return
            self._conf[self._conf.Key(0)] = self._conf.Leaf()  # on = 0
            self.current = None

    def stats(self) -> dict[str, int]:
        return {name: sum(self._stats[self._stats.Key(i)]) for name, i in self._stat_names.items()}

    def close(self) -> None:
        """Stops the capture running, if any (the data plane is going away)."""
        if self.current is not None:
            self.current.close()

    def record(self, hdr: ct.Structure, frame: bytes, offset_ns: int) -> Captured:
        return Captured(
            timestamp_ns=hdr.timestamp + offset_ns,
            direction=self._directions.get(hdr.direction, str(hdr.direction)),
            verdict=XDP_ACTIONS.get(hdr.verdict, str(hdr.verdict)),
            reason=self._reasons.get(hdr.reason, str(hdr.reason)),
            ingress_ifindex=hdr.ingress_ifindex,
            egress_ifindex=hdr.egress_ifindex,
            length=hdr.length,
            frame=frame,
            service_id=-1 if hdr.service == _NONE else hdr.service,
            backend_id=-1 if hdr.backend == _NONE else hdr.backend,
        )


class Capture:
    """A running capture (from Datapath.capture): poll it for records, close it (or leave the `with`)
    to stop it in the data plane. After close, poll returns what was still in the ring, then nothing."""

    def __init__(self, tap: Tap, flt: CaptureFilter, rate_pps: int, burst: int, snaplen: int, session: int,
                 offset_ns: int) -> None:
        self._tap = tap
        self.filter = flt
        self.rate_pps = rate_pps
        self.burst = burst              # frames the bucket lets through at once
        self.snaplen = snaplen
        self._session = session
        self._offset_ns = offset_ns     # CLOCK_REALTIME - CLOCK_MONOTONIC, measured at the start
        self._left: list[Captured] = []  # read from the ring at close, not yet polled
        self._final: dict[str, int] | None = None  # the counts when it stopped
        self.closed = False

    def poll(self, timeout_ms: int) -> list[Captured]:
        """The records written since the last poll, waiting up to timeout_ms for the first (0: none)."""
        if self.closed:
            left, self._left = self._left, []
            return left
        return self._take(self._tap._read(timeout_ms))

    def _take(self, raw: list[tuple[ct.Structure, bytes]]) -> list[Captured]:
        return [self._tap.record(hdr, frame, self._offset_ns) for hdr, frame in raw if hdr.session == self._session]

    def stats(self) -> dict[str, int]:
        """matched and over_rate frames, emitted and lost records (a forwarded frame makes two)."""
        return dict(self._final) if self._final is not None else self._tap.stats()

    def close(self) -> None:
        """Stops the capture in the data plane; what the ring still holds stays for poll."""
        if self.closed:
            return
        self._tap._stop(self)
        self.closed = True
        self._left = self._take(self._tap._read(0))
        self._final = self._tap.stats()

    def __enter__(self) -> Capture:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def write_pcap(out: BinaryIO, records: Iterable[Captured], snaplen: int) -> int:
    """Classic pcap (nanosecond timestamps, LINKTYPE_ETHERNET) of the records, in the order given;
    returns how many were written. Received and sent copies are both there, in the order taken."""
    out.write(pcap_header(snaplen))
    n = 0
    for r in records:
        out.write(pcap_record(r, snaplen))
        n += 1
    return n


def pcap_header(snaplen: int) -> bytes:
    return struct.pack("=IHHiIII", _PCAP_MAGIC_NS, 2, 4, 0, 0, snaplen, _LINKTYPE_ETHERNET)


def pcap_record(r: Captured, snaplen: int) -> bytes:
    data = r.frame[:snaplen]
    sec, nsec = divmod(r.timestamp_ns, 1_000_000_000)
    return struct.pack("=IIII", sec, nsec, len(data), max(r.length, len(data))) + data
