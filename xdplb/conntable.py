"""The connection tables as arrays, read the way the data plane reads them (bpf/lib/conntrack.h):
which entries are expired, and how many active and inactive connections each backend holds.
Pure numpy over the dumped tables, so the sweeper's arithmetic is unit tested on its own.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from xdplb.cenum import enum_values

STRUCTS_H = Path(__file__).resolve().parent.parent / "bpf" / "lib" / "structs.h"
STATE = enum_values(STRUCTS_H, "xdplb_conn_state", "CT_")
TIMEOUT = {k: v for k, v in enum_values(STRUCTS_H, "xdplb_timeout", "TO_").items() if k != "max"}
TCP, UDP = 6, 17


def timeout_of(state: np.ndarray, proto: np.ndarray, timeouts: np.ndarray) -> np.ndarray:
    """Each entry's idle timeout, in the unit of `timeouts` (indexed by enum xdplb_timeout)."""
    idx = np.full(len(state), TIMEOUT["tcp"])
    idx[state == STATE["new"]] = TIMEOUT["syn"]
    idx[state == STATE["closing"]] = TIMEOUT["tcpfin"]
    idx[proto != TCP] = TIMEOUT["udp"]
    return np.asarray(timeouts)[idx]


def expired(last_seen: np.ndarray, state: np.ndarray, proto: np.ndarray, now: int,
            timeouts: np.ndarray) -> np.ndarray:
    """Entries the data plane would no longer use: idle past their timeout, or retired."""
    idle = now - last_seen.astype(np.int64)
    return (idle > timeout_of(state, proto, timeouts)) | (state == STATE["retired"])


def counts(backend: np.ndarray, state: np.ndarray, proto: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Per backend id, (active, inactive) over the given live entries: IPVS's ActiveConn are TCP
    connections in ESTABLISHED, InActConn every other live entry."""
    counted = state != STATE["retired"]
    active = counted & (state == STATE["established"]) & (proto == TCP)
    inactive = counted & ~active
    return (np.bincount(backend[active], minlength=size)[:size],
            np.bincount(backend[inactive], minlength=size)[:size])
