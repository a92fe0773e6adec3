"""What the API's handlers work with, built once by whoever serves the app (the daemon, a test)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from xdplb.manager import Manager
from xdplb.rates import RateEstimator
from xdplb.vrrp.control import SpeakerClient


@dataclass
class ApiContext:
    manager: Manager
    token: str                                   # the bearer token every change needs
    auth_reads: bool = False                     # reads need it too
    rates: RateEstimator | None = None
    director: str = ""                           # its name (the daemon's configuration)
    ingress_ifindex: int = 0                     # where simulated frames arrive (the director's interface)
    problems: Callable[[], list[str]] = field(default=lambda: [])  # why the director is not ready (readyz)
    ha: SpeakerClient | None = None              # the VRRP speaker's control socket; None: no `ha` section
