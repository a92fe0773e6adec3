"""One VRRP instance at work: its state machine (xdplb.vrrp.machine) wired to its sockets, its VIPs,
its announcements, its notify hook, and what an operator sees of it.

The effective priority is the configured one (or the operator's), less the weights of what it tracks
that failed; a failed item of weight 0, or the instance's own link down, is a fault. Operator
controls: `hand-over` (priority 1 and a priority 0 advert: the peer takes over at once and we do not
preempt it back), `take-over` (one above the master we hear, and master now), `auto` (neither), and
maintenance (never master).
"""

from __future__ import annotations

import logging
import time
from collections import Counter, deque
from ipaddress import IPv4Address, IPv6Address

from xdplb import hooks, net
from xdplb.vrrp.announce import Announcer
from xdplb.vrrp.config import Instance
from xdplb.vrrp.machine import PRIORITY_OWNER, Announce, Effect, Machine, Send, State, Transition
from xdplb.vrrp.packet import Advert, AdvertError, decode, encode, validate
from xdplb.vrrp.sockets import Packet, VrrpSockets

log = logging.getLogger(__name__)

IPAddress = IPv4Address | IPv6Address
KEEP_TRANSITIONS = 50
ARP_LOCKTIME = 1.1  # seconds: Linux's neighbour locktime (1 s by default), and a little more
ACTIONS = ("hand-over", "take-over", "auto")


class ControlError(ValueError):
    """An operator request this instance cannot follow; `status` is the HTTP status to answer."""

    def __init__(self, message: str, status: int = 409) -> None:
        super().__init__(message)
        self.status = status


class InstanceRunner:
    def __init__(self, cfg: Instance, clock=time.monotonic) -> None:
        self.cfg = cfg
        self.clock = clock
        self.priority = cfg.priority          # configured, or set by the operator
        self.override: str | None = None      # "hand-over" | "take-over"
        self.claim_priority: int | None = None
        self.maintenance = False
        self.faults: list[str] = []           # what keeps it in fault
        self.degraded: list[str] = []         # what lowers its priority
        self.penalty = 0
        self.machine: Machine | None = None
        self.sockets: VrrpSockets | None = None
        self.announcer: Announcer | None = None
        self.transitions: deque[dict] = deque(maxlen=KEEP_TRANSITIONS)
        self.counters: Counter[str] = Counter()
        self.invalid: Counter[str] = Counter()
        self.since = time.time()
        self._garp_at: float | None = None
        self._last_lower_prio_announce = float("-inf")
        self._lower_prio_at: float | None = None  # an announcement due because another master was heard
        self._advert_addresses = tuple(a.address.ip for a in cfg.addresses)
        self._moved = [(a.interface, a.address) for a in cfg.all_addresses()]  # every (interface, VIP) it holds
        self._vips = frozenset(address.ip for _, address in self._moved)

    # ---- life ------------------------------------------------------------------------------

    @property
    def state(self) -> State:
        if self.machine is None:  # never had a link to speak on
            return State.FAULT if self.faults else State.INIT
        return self.machine.state

    def fileno(self) -> int:
        return self.sockets.fileno() if self.sockets else -1

    def controls(self) -> dict:
        """What the operator set that must outlive the speaker: a restarted speaker in maintenance
        stays out of the election. A take-over is not kept: it outranks a master heard now."""
        return {"priority": self.priority, "maintenance": self.maintenance,
                "hand_over": self.override == "hand-over"}

    def restore(self, controls: dict) -> None:
        """The operator's controls a previous speaker saved (before start)."""
        priority = controls.get("priority")
        if isinstance(priority, int) and 1 <= priority <= PRIORITY_OWNER:
            self.priority = priority
        self.maintenance = controls.get("maintenance") is True
        self.override = "hand-over" if controls.get("hand_over") is True else None

    def start(self, services_down: set[str]) -> None:
        """Releases VIPs a previous run may have left, then Initialize (or fault)."""
        self._release()
        self.evaluate(services_down)

    def shutdown(self) -> None:
        if self.machine:
            self._run(self.machine.shutdown(self.clock()))
        self._release()
        self._close()

    def deadline(self) -> float | None:
        times = [t for t in (self.machine.deadline() if self.machine else None, self._garp_at, self._lower_prio_at)
                 if t is not None]
        return min(times, default=None)

    def due(self) -> None:
        now = self.clock()
        if self.machine:
            self._run(self.machine.due(now))
        if self._garp_at is not None and now >= self._garp_at:
            self._announce()
            self._garp_at = now + self.cfg.garp_refresh if self.cfg.garp_refresh else None
        if self._lower_prio_at is not None and now >= self._lower_prio_at:
            self._lower_prio_at = None
            if self.state == State.MASTER:
                self._last_lower_prio_announce = now
                self.counters["lower_priority_masters"] += 1
                self._announce()

    # ---- tracking --------------------------------------------------------------------------

    def evaluate(self, services_down: set[str]) -> None:
        """Re-reads the links and the services' word; opens the sockets when the link is back,
        enters or leaves fault, sets the effective priority."""
        faults, self.degraded, penalty = self._failures(services_down)
        link = net.link_state(self.cfg.interface)
        if link is None or not link.up:
            faults.insert(0, f"interface {self.cfg.interface} {'missing' if link is None else 'down'}")
        elif (self.sockets is None or self.sockets.ifindex != link.ifindex) and not self._open(link):
            faults.insert(0, f"interface {self.cfg.interface}: no {self._family_word()} address to speak from")
        self.faults, self.penalty = faults, penalty
        now = self.clock()
        if faults:
            if self.machine:
                self._run(self.machine.fault("; ".join(faults), now))
            if link is None or not link.up:
                self._close()
            return
        self._run(self.machine.set_priority(self.effective_priority(), now))
        if self.machine.state == State.FAULT:
            self._run(self.machine.recover("fault over", now))
        elif self.machine.state == State.INIT:
            self._run(self.machine.start(now))

    def _failures(self, services_down: set[str]) -> tuple[list[str], list[str], int]:
        """What failed: the faults (weight 0), the rest with their weights, and the weights' sum."""
        failed = []
        for t in self.cfg.track_interfaces:
            link = net.link_state(t.name)
            if link is None or not link.up:
                failed.append((f"tracked interface {t.name} {'missing' if link is None else 'down'}", t.weight))
        failed += [(f"tracked service {t.service} has lost its quorum", t.weight)
                   for t in self.cfg.track_services if t.service in services_down]
        faults = [what for what, weight in failed if weight == 0]
        degraded = [f"{what} ({weight:+d})" for what, weight in failed if weight]
        return faults, degraded, sum(weight for _, weight in failed)

    def effective_priority(self) -> int:
        if self.override == "take-over" and self.claim_priority:
            return self.claim_priority
        if self.override == "hand-over":
            return 1
        if self.priority == PRIORITY_OWNER:
            return PRIORITY_OWNER
        return max(1, min(254, self.priority + self.penalty))

    # ---- operator --------------------------------------------------------------------------

    def failover_problem(self, action: str) -> ControlError | None:
        """Why `failover(action)` would be refused, checked for every instance before any acts."""
        if action not in ACTIONS:
            return ControlError(f"action {action!r}: one of {', '.join(ACTIONS)}", 400)
        if action == "hand-over" and self.state != State.MASTER:
            return ControlError(f"{self.cfg.name} is {self.state}, not master: nothing to hand over")
        if action == "take-over" and (self.maintenance or self.faults or self.machine is None):
            why = "in maintenance" if self.maintenance else "; ".join(self.faults) or "not started"
            return ControlError(f"{self.cfg.name} cannot take over: {why}")
        if action == "take-over" and self.state != State.MASTER and self._claim() > 254 \
                and self.priority != PRIORITY_OWNER:
            return ControlError(f"{self.cfg.name} cannot outrank the master's priority {self.machine.master_priority}")
        return None

    def failover(self, action: str) -> None:
        if problem := self.failover_problem(action):
            raise problem
        now = self.clock()
        if action == "hand-over":
            self.override = "hand-over"
            self._run(self.machine.set_priority(1, now) + self.machine.resign("operator: hand-over", now))
        elif action == "take-over":
            self._take_over(now)
        else:
            self.override = self.claim_priority = None
            self._run(self.machine.set_priority(self.effective_priority(), now) if self.machine else [])

    def _claim(self) -> int:
        """The priority that outranks the master we hear."""
        return max(self.effective_priority(), (self.machine.master_priority or 0) + 1)

    def _take_over(self, now: float) -> None:
        if self.state == State.MASTER:
            return
        self.override, self.claim_priority = "take-over", min(self._claim(), PRIORITY_OWNER)
        self._run(self.machine.set_priority(self.claim_priority, now)
                  + self.machine.claim("operator: take-over", now))

    def set_priority(self, priority: int) -> None:
        if not 1 <= priority <= PRIORITY_OWNER:
            raise ControlError(f"priority {priority}: from 1 to 255", 400)
        self.priority = priority
        self.override = self.claim_priority = None
        if self.machine:
            self._run(self.machine.set_priority(self.effective_priority(), self.clock()))

    def set_maintenance(self, on: bool) -> None:
        self.maintenance = on
        if self.machine is None:
            return
        self.machine.hold = on
        if on:
            self._run(self.machine.resign("operator: maintenance", self.clock()))

    # ---- packets ---------------------------------------------------------------------------

    def receive(self) -> None:
        while self.sockets and (packet := self.sockets.receive()) is not None:
            self._received(packet)

    def _received(self, packet: Packet) -> None:
        if packet.source == self.sockets.source:
            return  # our own, looped back
        try:
            got = decode(packet.payload, packet.source, packet.destination)
            warnings = validate(got, packet.ttl, self.cfg.vrid, set(self._advert_addresses))
        except AdvertError as e:
            if e.reason != "other_vrid":
                self.invalid[e.reason] += 1
                log.debug("%s: advert from %s dropped: %s", self.cfg.name, packet.source, e)
            return
        if self.cfg.unicast_peers and packet.source not in self.cfg.unicast_peers:
            self.invalid["source"] += 1
            return
        self.counters["adverts_received"] += 1
        for w in warnings:
            self.counters["address_mismatch"] += 1
            log.warning("%s: advert from %s: %s", self.cfg.name, packet.source, w)
        if self.machine:
            self._run(self.machine.advert(packet.source, got.advert.priority, got.advert.interval_cs, self.clock()))

    # ---- effects ---------------------------------------------------------------------------

    def _run(self, effects: list[Effect]) -> None:
        for e in effects:
            if isinstance(e, Send):
                self._send(e.priority)
            elif isinstance(e, Transition):
                self._transition(e)
            elif isinstance(e, Announce):
                self._announce_again()

    def _send(self, priority: int) -> None:
        advert = Advert(self.cfg.vrid, priority, self.cfg.interval_cs, self._advert_addresses)
        source = self.sockets.source
        try:
            self.sockets.send(lambda dst: encode(advert, source, dst, self.cfg.pseudo_header))
            self.counters["adverts_sent"] += 1
        except OSError as e:
            self.counters["send_errors"] += 1
            log.warning("%s: advert not sent: %s", self.cfg.name, e)

    def _transition(self, t: Transition) -> None:
        log.info("%s: %s -> %s (%s)", self.cfg.name, t.old, t.new, t.reason)
        self.transitions.append({"at": time.time(), "from": str(t.old), "to": str(t.new), "reason": t.reason})
        self.since = time.time()
        self.counters["transitions"] += 1
        if t.new == State.MASTER:
            self.counters["became_master"] += 1
            self._take()
        elif t.old == State.MASTER:
            self._release()
        if self.cfg.notify:
            hooks.run([*self.cfg.notify, "INSTANCE", self.cfg.name, str(t.new).upper(),
                       str(self.effective_priority())])

    def _take(self) -> None:
        for problem in net.set_addresses(self._moved, True):
            log.error("%s: %s", self.cfg.name, problem)
        self._announce()
        self._garp_at = self.clock() + self.cfg.garp_delay if self.cfg.garp_delay else None

    def _release(self) -> None:
        self._garp_at = self._lower_prio_at = None
        for problem in net.set_addresses(self._moved, False):
            log.warning("%s: %s", self.cfg.name, problem)

    def _announce_again(self) -> None:
        """Another master was heard: announce again, and never within ARP's locktime of our last
        answer to one (Linux ignores a second update of a neighbour within 1 s), so the last
        word the neighbours take is ours. Many adverts of that master are one announcement."""
        if self._lower_prio_at is None:
            self._lower_prio_at = max(self.clock(), self._last_lower_prio_announce + ARP_LOCKTIME)

    def _announce(self) -> None:
        by_interface: dict[str, list[IPAddress]] = {}
        for ifname, address in self._moved:
            by_interface.setdefault(ifname, []).append(address.ip)
        for ifname, addresses in by_interface.items():
            with Announcer(ifname) as announcer:  # one look-up of the MAC, the burst back to back
                self.counters["announcements"] += announcer.announce(addresses * self.cfg.garp_repeat)

    def _open(self, link: net.LinkState) -> bool:
        self._close()
        family = self.cfg.family
        source = self.cfg.unicast_source or net.primary_address(self.cfg.interface, family, self._vips)
        if source is None:
            return False
        try:
            self.sockets = VrrpSockets(family, self.cfg.interface, link.ifindex, source, list(self.cfg.unicast_peers))
        except OSError as e:
            log.error("%s: cannot open VRRP sockets on %s: %s", self.cfg.name, self.cfg.interface, e)
            return False
        if self.machine is None:
            self.machine = Machine(source, self.effective_priority(), self.cfg.interval_cs, self.cfg.preempt,
                                   self.cfg.preempt_delay)
            self.machine.hold = self.maintenance
        self.machine.address = source
        return True

    def _close(self) -> None:
        if self.sockets:
            self.sockets.close()
            self.sockets = None

    def _family_word(self) -> str:
        return "IPv4" if self.cfg.family == 4 else "IPv6 link-local"

    # ---- status ----------------------------------------------------------------------------

    def status(self) -> dict:
        m = self.machine
        return {
            "name": self.cfg.name, "interface": self.cfg.interface, "vrid": self.cfg.vrid,
            "family": self.cfg.family, "state": str(self.state),
            "priority": self.priority,
            "effective_priority": 0 if self.maintenance else self.effective_priority(),
            "override": self.override, "maintenance": self.maintenance, "faults": list(self.faults),
            "degraded": list(self.degraded),
            "master": str(m.master) if m and m.master else None,
            "master_priority": m.master_priority if m else None,
            "source": str(self.sockets.source) if self.sockets else None,
            "advert_interval": self.cfg.advert_interval, "preempt": self.cfg.preempt,
            "addresses": [str(a) for a in self.cfg.all_addresses()],
            "since": self.since,
            "transitions": list(self.transitions),
            "counters": {**self.counters, "invalid": dict(self.invalid)},
        }

