"""Rates like ipvsadm --rate: connections, packets and bytes per second, per service and per backend.

IPVS's estimator: every 2 seconds the counters' growth over the interval is a rate, smoothed into
an average that moves a quarter of the way towards each new rate (ip_vs_est.c). Here one thread
samples the data plane's per-CPU stats the same way; a service or backend seen for the first time
starts from its first interval's rate.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from xdplb.periodic import Periodic

INTERVAL_S = 2.0
SMOOTHING = 0.25  # IPVS: avg += (rate - avg) >> 2
FIELDS = ("conns", "in_pkts", "out_pkts", "in_bytes", "out_bytes")
RATE_NAMES = {"conns": "cps", "in_pkts": "inpps", "out_pkts": "outpps", "in_bytes": "inbps", "out_bytes": "outbps"}

# (service id, backend address or None for the service) -> its counters
Sample = dict[tuple[str, str | None], dict[str, int]]


@dataclass
class _Estimate:
    last: dict[str, int]
    avg: dict[str, float] | None = None


class RateEstimator:
    """Samples `read` every `interval` seconds in a thread of its own."""

    def __init__(self, read: Callable[[], Sample], interval: float = INTERVAL_S) -> None:
        self._read = read
        self._estimates: dict[tuple[str, str | None], _Estimate] = {}
        self._lock = threading.Lock()
        self._periodic = Periodic("rates", interval, self.sample)  # a service removed mid-read: next time

    def start(self) -> RateEstimator:
        self._periodic.start()
        return self

    def stop(self) -> None:
        self._periodic.stop()

    def rates(self, service: str, backend: str | None = None) -> dict[str, float]:
        """cps, inpps, outpps, inbps, outbps (0 until one interval went by)."""
        with self._lock:
            est = self._estimates.get((service, backend))
            avg = est.avg if est and est.avg else {}
        return {RATE_NAMES[f]: round(avg.get(f, 0.0), 3) for f in FIELDS}

    def sample(self, elapsed: float) -> None:
        """One estimator tick: `elapsed` seconds since the last."""
        current = self._read()
        with self._lock:
            for key in self._estimates.keys() - current.keys():
                del self._estimates[key]  # a service or backend removed
            for key, counters in current.items():
                est = self._estimates.get(key)
                if est is None:
                    self._estimates[key] = _Estimate(dict(counters))
                    continue
                rate = {f: max(0, counters[f] - est.last[f]) / elapsed for f in FIELDS}
                est.avg = rate if est.avg is None else {f: est.avg[f] + (rate[f] - est.avg[f]) * SMOOTHING
                                                         for f in FIELDS}
                est.last = dict(counters)
