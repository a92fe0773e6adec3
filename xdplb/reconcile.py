"""The reconciler: the one writer of the balancer's configuration.

Given the desired state it makes the data plane match it: the idle timeouts, every desired service
(Datapath.set_service plans a service whole before writing and writes only what differs), services
no longer desired removed, and after a take-over the pinned services nobody claimed released. A
service the data plane refuses (a limit, a next hop that does not resolve) is reported and left as
it was; the others still apply, so one bad backend address cannot hold every other change back.
Health checks only reach it through the manager's effective services; VRRP moves addresses, never maps.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

from xdplb.datapath import ConfigError, Datapath
from xdplb.model import IPAddress, Service, Timeouts
from xdplb.net import Nexthop, NexthopError

log = logging.getLogger(__name__)


@dataclass
class Applied:
    """What one pass did."""

    services: int = 0                                   # services as desired now
    written: Counter = field(default_factory=Counter)   # map entries written, by table
    removed: list[tuple] = field(default_factory=list)  # services no longer desired
    refused: dict[tuple, str] = field(default_factory=dict)  # service key -> why the data plane refused it

    @property
    def ok(self) -> bool:
        return not self.refused


class Reconciler:
    def __init__(self, dp: Datapath) -> None:
        self.dp = dp

    def apply(self, services: list[Service], timeouts: Timeouts,
              nexthops: Mapping[IPAddress, Nexthop] | None = None) -> Applied:
        """nexthops: already resolved (Datapath.preflight's), so the pass does not wait for ARP/ND again."""
        out = Applied()
        nexthops = nexthops or {}
        with self.dp.lock:
            if timeouts != self.dp.timeouts:
                self.dp.set_timeouts(timeouts)
            wanted = {s.key for s in services}
            for key in [s.key for s in self.dp.services if s.key not in wanted]:
                self.dp.remove_service(key)  # first: its endpoints may move to another service
                out.removed.append(key)
            for svc in services:
                try:
                    hops = {b.address: nexthops[b.address] for b in svc.backends if b.address in nexthops}
                    out.written.update(self.dp.set_service(svc, hops))
                    out.services += 1
                except (ConfigError, NexthopError) as e:
                    out.refused[svc.key] = str(e)
                    log.error("service %s refused: %s", svc, e)
            self.dp.release_unclaimed()
        return out
