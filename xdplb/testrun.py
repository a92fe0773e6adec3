"""BPF_PROG_TEST_RUN through libbpf: run an XDP program on a frame, optionally with XDP metadata.

The two structs below are the kernel's and libbpf's ABI (uapi/linux/bpf.h, libbpf's bpf.h), not
xdplb's: BCC has no generated type for them. A runner keeps its buffers, so a loop of runs (the
benchmark's repeat=1 calls) leaves the caches to the program rather than to the allocator.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
from collections.abc import Iterable
from dataclasses import dataclass

XDP_ACTIONS = {0: "ABORTED", 1: "DROP", 2: "PASS", 3: "TX", 4: "REDIRECT"}
BPF_F_TEST_XDP_LIVE_FRAMES = 1 << 1
_HEADROOM = 256  # room for the metadata in front and for a program that grows the frame
_MAX_FRAME = 4096


class XdpMd(ctypes.Structure):
    _fields_ = [(name, ctypes.c_uint32) for name in
                ("data", "data_end", "data_meta", "ingress_ifindex", "rx_queue_index", "egress_ifindex")]


class _TestRunOpts(ctypes.Structure):
    _fields_ = [
        ("sz", ctypes.c_size_t),
        ("data_in", ctypes.c_void_p),
        ("data_out", ctypes.c_void_p),
        ("data_size_in", ctypes.c_uint32),
        ("data_size_out", ctypes.c_uint32),
        ("ctx_in", ctypes.c_void_p),
        ("ctx_out", ctypes.c_void_p),
        ("ctx_size_in", ctypes.c_uint32),
        ("ctx_size_out", ctypes.c_uint32),
        ("retval", ctypes.c_uint32),
        ("repeat", ctypes.c_int),
        ("duration", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("cpu", ctypes.c_uint32),
        ("batch_size", ctypes.c_uint32),
    ]


_libbpf = ctypes.CDLL(ctypes.util.find_library("bpf") or "libbpf.so.1", use_errno=True)
_libbpf.bpf_prog_test_run_opts.argtypes = [ctypes.c_int, ctypes.POINTER(_TestRunOpts)]
_libbpf.bpf_prog_test_run_opts.restype = ctypes.c_int


def _test_run(prog_fd: int, opts: object) -> None:
    if _libbpf.bpf_prog_test_run_opts(prog_fd, opts) != 0:
        err = ctypes.get_errno() or errno.EINVAL
        raise OSError(err, f"BPF_PROG_TEST_RUN: {os.strerror(err)}")


@dataclass(frozen=True)
class RunResult:
    action: int          # XDP verdict
    frame: bytes         # the frame after the program (without metadata)
    meta: bytes          # the metadata after the program
    duration_ns: int     # the kernel's average per repetition

    @property
    def verdict(self) -> str:
        return XDP_ACTIONS.get(self.action, str(self.action))


class XdpRunner:
    """Runs one XDP program on frames, with buffers allocated once."""

    def __init__(self, prog_fd: int) -> None:
        self._fd = prog_fd
        self._in = ctypes.create_string_buffer(_HEADROOM + _MAX_FRAME)
        self._out = ctypes.create_string_buffer(2 * _HEADROOM + _MAX_FRAME)
        self._ctx_in = XdpMd()
        self._ctx_out = XdpMd()
        self._opts = _TestRunOpts(
            sz=ctypes.sizeof(_TestRunOpts),
            data_in=ctypes.addressof(self._in),
            data_out=ctypes.addressof(self._out),
            ctx_in=ctypes.addressof(self._ctx_in),
            ctx_out=ctypes.addressof(self._ctx_out),
            ctx_size_in=ctypes.sizeof(XdpMd),
        )
        self._ref = ctypes.byref(self._opts)

    def _call(self, frame: bytes, meta: bytes, ingress_ifindex: int, repeat: int) -> None:
        if len(frame) > _MAX_FRAME or len(meta) > _HEADROOM or len(meta) % 4:
            raise ValueError("frame over 4096 bytes, or metadata not a multiple of 4 up to 256")
        size = len(meta) + len(frame)
        ctypes.memmove(self._in, meta + frame, size)
        self._ctx_in.data, self._ctx_in.data_end = len(meta), size
        self._ctx_in.ingress_ifindex = ingress_ifindex
        o = self._opts
        o.data_size_in, o.data_size_out = size, ctypes.sizeof(self._out)
        o.ctx_size_out, o.repeat = ctypes.sizeof(XdpMd), repeat
        _test_run(self._fd, self._ref)

    def run(self, frame: bytes, *, meta: bytes = b"", ingress_ifindex: int = 0, repeat: int = 1) -> RunResult:
        """One BPF_PROG_TEST_RUN. With repeat > 1 the kernel reruns the already rewritten buffer."""
        self._call(frame, meta, ingress_ifindex, repeat)
        out = ctypes.string_at(self._out, self._opts.data_size_out)
        meta_len = self._ctx_out.data
        return RunResult(self._opts.retval, out[meta_len:], out[:meta_len], self._opts.duration)

    def live(self, frame: bytes, ingress_ifindex: int, repeat: int, batch_size: int = 64) -> None:
        """A packet generator: the program runs `repeat` times on fresh copies of the frame as if it had
        arrived on `ingress_ifindex` (of the current namespace), and what it returns is carried out:
        XDP_TX really transmits there."""
        ctx = XdpMd(data=0, data_end=len(frame), ingress_ifindex=ingress_ifindex)
        data = ctypes.create_string_buffer(frame, len(frame))
        opts = _TestRunOpts(sz=ctypes.sizeof(_TestRunOpts), data_in=ctypes.addressof(data), data_size_in=len(frame),
                            ctx_in=ctypes.addressof(ctx), ctx_size_in=ctypes.sizeof(XdpMd), repeat=repeat,
                            flags=BPF_F_TEST_XDP_LIVE_FRAMES, batch_size=batch_size)
        _test_run(self._fd, ctypes.byref(opts))

    def durations(self, frames: Iterable[bytes]) -> list[int]:
        """The kernel's time for each frame, run once each: the benchmark loop, kept lean."""
        out = []
        for frame in frames:
            self._call(frame, b"", 0, 1)
            out.append(self._opts.duration)
        return out
