"""The sweeper: runs Datapath.sweep() every few seconds in a thread, which is what IPVS's
per-connection timers do (expired connections and templates go, counts are recounted).

Its one job is the schedule; what a pass does is Datapath.sweep's. A pass that fails is logged
and the next one runs on time: a sweeper that stopped would let the counts drift for good.
"""

from __future__ import annotations

import logging

from xdplb.datapath import Datapath, Sweep
from xdplb.periodic import Periodic

log = logging.getLogger(__name__)


class Sweeper:
    def __init__(self, dp: Datapath, interval: float = 2.0) -> None:
        self.dp = dp
        self.last: Sweep | None = None
        self.passes = 0
        self._periodic = Periodic("sweeper", interval, self._sweep)

    @property
    def interval(self) -> float:
        return self._periodic.interval

    def start(self) -> Sweeper:
        self._periodic.start()
        return self

    def stop(self) -> None:
        self._periodic.stop()

    def __enter__(self) -> Sweeper:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _sweep(self, _elapsed: float) -> None:
        self.last = self.dp.sweep()
        self.passes += 1
        if self.last.expired or self.last.corrected:
            log.debug("sweep: %s", self.last)
