"""A thread that runs one function every `interval` seconds until stopped (the sweeper, the rate
estimator). A run that fails is logged and the next one comes on time: a periodic job that stopped
would let counts drift, or rates freeze, for good."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)


class Periodic:
    def __init__(self, name: str, interval: float, job: Callable[[float], None]) -> None:
        """job(elapsed): `elapsed` seconds since the previous run started (the interval, about)."""
        if interval <= 0:
            raise ValueError(f"the {name} interval must be positive")
        self.name, self.interval, self._job = name, interval, job
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Periodic:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"xdplb-{self.name}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()
            self._thread = None

    def _run(self) -> None:
        last = time.monotonic()
        while not self._stop.wait(self.interval):
            now = time.monotonic()
            try:
                self._job(now - last)
            except Exception:
                log.exception("%s failed; the next run is in %.1f s", self.name, self.interval)
            last = now
