"""The sweeper: runs Datapath.sweep() every few seconds in a thread, which is what IPVS's
per-connection timers do (expired connections and templates go, counts are recounted).

Its one job is the schedule; what a pass does is Datapath.sweep's. A pass that fails is logged
and the next one runs on time: a sweeper that stopped would let the counts drift for good.
"""

from __future__ import annotations

import logging
import threading

from xdplb.datapath import Datapath, Sweep

log = logging.getLogger(__name__)


class Sweeper:
    def __init__(self, dp: Datapath, interval: float = 2.0) -> None:
        if interval <= 0:
            raise ValueError("the sweep interval must be positive")
        self.dp, self.interval = dp, interval
        self.last: Sweep | None = None
        self.passes = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Sweeper:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="xdplb-sweeper", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()
            self._thread = None

    def __enter__(self) -> Sweeper:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.last = self.dp.sweep()
                self.passes += 1
            except Exception:
                log.exception("sweep failed; the next one runs in %.1f s", self.interval)
            else:
                if self.last.expired or self.last.corrected:
                    log.debug("sweep: %s", self.last)
