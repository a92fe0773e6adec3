"""The director's events, for operators (`GET /v1/events`, server-sent events) and logs: health
transitions, quorum changes, configuration changes. Numbered from 1; the last few hundred are kept,
so a client that reconnects with Last-Event-ID misses nothing recent."""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

KEEP = 500


@dataclass(frozen=True)
class Event:
    id: int
    kind: str                     # "health", "quorum", "config"
    time: float                   # wall clock
    data: dict[str, Any] = field(default_factory=dict)


class EventBus:
    def __init__(self, keep: int = KEEP) -> None:
        self._events: deque[Event] = deque(maxlen=keep)
        self._ids = itertools.count(1)
        self._cond = threading.Condition()

    def publish(self, kind: str, **data: Any) -> Event:
        with self._cond:
            event = Event(next(self._ids), kind, time.time(), data)
            self._events.append(event)
            self._cond.notify_all()
        log.info("event %s %s", kind, data)
        return event

    def since(self, last_id: int, timeout: float) -> list[Event]:
        """Events after `last_id`, waiting up to `timeout` seconds for one (from a worker thread)."""
        with self._cond:
            self._cond.wait_for(lambda: self._events and self._events[-1].id > last_id, timeout)
            return [e for e in self._events if e.id > last_id]

    @property
    def last_id(self) -> int:
        with self._cond:
            return self._events[-1].id if self._events else 0
