"""What the health checks' verdicts do to a service: the service the data plane gets, computed from
the desired one and the backends' health. Pure: the manager calls it, the reconciler writes it.

- A backend found down leaves the scheduling tables (its connections then follow expire_nodest:
  rescheduled by default), or drops to weight 0 when it is `inhibit_on_failure` or the service
  says `on_down: keep` (established connections go on, new ones avoid it).
- A MISC dynamic check's weight replaces the configured weight while the backend is up.
- Quorum, as keepalived: the live weight is the sum of the weights of the backends that are up. The
  quorum is lost when it falls below `quorum.weight - hysteresis` and regained from `quorum.weight
  + hysteresis`; while it is lost, the sorry server, if any, takes the service's traffic alone.
  (The default quorum of 1 means: while no backend is up.)
- A backend without a check is up. A service none of whose backends has a check is untouched.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from xdplb.checks import OnDown
from xdplb.model import Backend, IPAddress, Service


@dataclass(frozen=True)
class Verdict:
    """A checked backend's health, as the monitor last said it."""

    up: bool
    weight: int | None = None  # a MISC dynamic weight


@dataclass(frozen=True)
class Outcome:
    service: Service        # what the data plane gets
    quorum: bool            # whether the quorum holds (the hooks fire when it changes)
    live_weight: int
    sorry: bool             # the sorry server has the traffic


def checked(service: Service) -> list[Backend]:
    """The backends a check watches: those with a check of their own or the service's."""
    return [b for b in service.backends if b.check or service.check]


def effective(service: Service, verdicts: Mapping[IPAddress, Verdict], had_quorum: bool = True) -> Outcome:
    if not checked(service):
        return Outcome(service, True, sum(b.weight for b in service.backends), False)
    backends: list[Backend] = []
    live = 0
    for b in service.backends:
        v = verdicts.get(b.address, Verdict(True)) if b.check or service.check else Verdict(True)
        if v.up:
            weight = b.weight if v.weight is None else v.weight
            live += weight
            backends.append(b if weight == b.weight else b.model_copy(update={"weight": weight}))
        elif b.inhibit_on_failure or service.on_down == OnDown.KEEP:
            backends.append(b.model_copy(update={"weight": 0}))
    q = service.quorum
    quorum = live >= q.weight + q.hysteresis if not had_quorum else live >= q.weight - q.hysteresis
    quorum = quorum and live > 0
    sorry = not quorum and service.sorry_server is not None
    if sorry:
        backends = [service.sorry_server]
    # model_copy does not validate: the backends are the desired service's own (or its sorry server,
    # validated with it), only weights change, within their range
    return Outcome(service.model_copy(update={"backends": tuple(backends)}), quorum, live, sorry)
