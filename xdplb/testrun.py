"""BPF_PROG_TEST_RUN through libbpf: run an XDP program on a frame, optionally with XDP metadata.

The two structs below are the kernel's and libbpf's ABI (uapi/linux/bpf.h, libbpf's bpf.h), not
xdplb's: BCC has no generated type for them.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
from dataclasses import dataclass

XDP_ACTIONS = {0: "ABORTED", 1: "DROP", 2: "PASS", 3: "TX", 4: "REDIRECT"}
BPF_F_TEST_XDP_LIVE_FRAMES = 1 << 1
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


@dataclass(frozen=True)
class RunResult:
    action: int          # XDP verdict
    frame: bytes         # the frame after the program (without metadata)
    meta: bytes          # the metadata after the program
    duration_ns: int     # the kernel's average per repetition

    @property
    def verdict(self) -> str:
        return XDP_ACTIONS.get(self.action, str(self.action))


def run_xdp(prog_fd: int, frame: bytes, *, meta: bytes = b"", ingress_ifindex: int = 0,
            repeat: int = 1, flags: int = 0, batch_size: int = 0) -> RunResult:
    """One BPF_PROG_TEST_RUN. The metadata length must be a multiple of 4 (the kernel's rule)."""
    data = meta + frame
    data_in = ctypes.create_string_buffer(data, len(data))
    live = bool(flags & BPF_F_TEST_XDP_LIVE_FRAMES)
    data_out = None if live else ctypes.create_string_buffer(len(data) + _MAX_FRAME)
    ctx_in = XdpMd(data=len(meta), data_end=len(data), ingress_ifindex=ingress_ifindex)
    ctx_out = XdpMd()
    opts = _TestRunOpts(
        sz=ctypes.sizeof(_TestRunOpts),
        data_in=ctypes.cast(data_in, ctypes.c_void_p),
        data_out=ctypes.cast(data_out, ctypes.c_void_p) if data_out else None,
        data_size_in=len(data),
        data_size_out=ctypes.sizeof(data_out) if data_out else 0,
        ctx_in=ctypes.cast(ctypes.pointer(ctx_in), ctypes.c_void_p),
        ctx_size_in=ctypes.sizeof(XdpMd),
        ctx_out=None if live else ctypes.cast(ctypes.pointer(ctx_out), ctypes.c_void_p),
        ctx_size_out=0 if live else ctypes.sizeof(XdpMd),
        repeat=repeat,
        flags=flags,
        batch_size=batch_size,
    )
    if _libbpf.bpf_prog_test_run_opts(prog_fd, ctypes.byref(opts)) != 0:
        err = ctypes.get_errno() or errno.EINVAL
        raise OSError(err, f"BPF_PROG_TEST_RUN: {os.strerror(err)}")
    if live:
        return RunResult(opts.retval, b"", b"", opts.duration)
    out = data_out.raw[: opts.data_size_out]
    meta_len = ctx_out.data
    return RunResult(opts.retval, out[meta_len:], out[:meta_len], opts.duration)
