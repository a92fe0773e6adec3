"""The VRRPv3 state machine of one virtual router (RFC 5798 section 6.4), pure: time comes in as an
argument and what to do comes out as effects, so every transition is unit-tested without sockets.

A master that hears another master answers at once and announces its VIPs again, as keepalived does
(the RFC would discard a lower-priority advert silently, and a healed split brain could leave the
neighbours with the loser's MAC).

Beyond the RFC's Initialize/Backup/Master it has Fault (keepalived's: a tracked interface or service
failed, or the instance's own link is down: no VIPs, no adverts) and two operator controls:
`resign` (hand the VIPs over now: a priority 0 advert makes the backup take over after its skew
time, not its master-down interval) and `claim` (take them over now: the old master steps down
on our higher-priority advert). `hold` keeps a backup from becoming master (maintenance).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from ipaddress import IPv4Address, IPv6Address

from xdplb.vrrp.packet import master_down_interval, skew_time

IPAddress = IPv4Address | IPv6Address

PRIORITY_OWNER = 255
PRIORITY_STOP = 0


class State(StrEnum):
    INIT = "init"
    BACKUP = "backup"
    MASTER = "master"
    FAULT = "fault"


@dataclass(frozen=True)
class Send:
    """Send an advert now, with this priority (0: stepping down)."""

    priority: int


@dataclass(frozen=True)
class Transition:
    old: State
    new: State
    reason: str


@dataclass(frozen=True)
class Announce:
    """Announce the VIPs again (gratuitous ARP / unsolicited NA): another master was heard, so the
    neighbours may have its MAC for them."""


Effect = Send | Transition | Announce


class Machine:
    def __init__(self, address: IPAddress, priority: int, interval_cs: int, preempt: bool = True,
                 preempt_delay: float = 0.0) -> None:
        self.address = address            # our primary address: the tie-break between equal priorities
        self.priority = priority          # the effective priority, set by the speaker
        self.interval_cs = interval_cs
        self.preempt = preempt
        self.preempt_delay = preempt_delay
        self.state = State.INIT
        self.hold = False                 # maintenance: never master
        self.master: IPAddress | None = None
        self.master_priority: int | None = None
        self.master_interval_cs = interval_cs
        self.adver_at: float | None = None
        self.down_at: float | None = None
        self._preempt_at: float | None = None
        self._lower: tuple[IPAddress, int] | None = None  # the lower-priority master a backup ignores

    # ---- inputs ----------------------------------------------------------------------------

    def start(self, now: float) -> list[Effect]:
        if self.state != State.INIT:
            return []
        self.master_interval_cs = self.interval_cs  # 6.4.1: not what a master of before advertised
        if self.priority == PRIORITY_OWNER and not self.hold:
            return self._to_master(now, "address owner (priority 255)")
        return self._to_backup(now, "started", self.master_down(), start=True)

    def shutdown(self, now: float) -> list[Effect]:
        """Graceful stop: a master says priority 0 so its backup takes over at once."""
        effects: list[Effect] = [Send(PRIORITY_STOP)] if self.state == State.MASTER else []
        return effects + self._move(State.INIT, "shut down", now)

    def advert(self, source: IPAddress, priority: int, interval_cs: int, now: float) -> list[Effect]:
        """A valid advert of our VRID from another router."""
        if self.state == State.BACKUP:
            return self._backup_advert(source, priority, interval_cs, now)
        if self.state == State.MASTER:
            return self._master_advert(source, priority, interval_cs, now)
        if priority:  # init, fault: only remembered, for the status
            self._seen(source, priority, interval_cs)
        return []

    def due(self, now: float) -> list[Effect]:
        """Whatever timer expired by `now`."""
        if self.state == State.MASTER and self.adver_at is not None and now >= self.adver_at:
            self.adver_at = now + self.interval_cs / 100
            return [Send(self.priority)]
        if self.state == State.BACKUP and self.down_at is not None and now >= self.down_at:
            if self.hold:
                self.master = self.master_priority = None  # nobody is master; we may not be
                self.down_at = now + self.master_down()
                return []
            if self._lower is not None:
                reason = f"preempting {self._lower[0]} (priority {self._lower[1]} < {self.priority})"
            elif self.master:
                reason = f"no advert from the master for {self.master_down():.3f} s"
            else:
                reason = "no master seen"
            return self._to_master(now, reason)
        return []

    def deadline(self) -> float | None:
        if self.state == State.MASTER:
            return self.adver_at
        if self.state == State.BACKUP:
            return self.down_at
        return None

    def set_priority(self, priority: int, now: float) -> list[Effect]:
        """A new effective priority; a master advertises it at once, so a preempting backup sees it."""
        if priority == self.priority:
            return []
        self.priority = priority
        if self.state == State.MASTER:
            self.master_priority = priority
            self.adver_at = now + self.interval_cs / 100
            return [Send(priority)]
        return []

    def fault(self, reason: str, now: float) -> list[Effect]:
        if self.state == State.FAULT:
            return []
        effects: list[Effect] = [Send(PRIORITY_STOP)] if self.state == State.MASTER else []
        return effects + self._move(State.FAULT, reason, now)

    def recover(self, reason: str, now: float) -> list[Effect]:
        """The fault is over: start afresh, as from Initialize."""
        if self.state != State.FAULT:
            return []
        self.state = State.INIT
        effects = self.start(now)
        return [_replace_old(e, State.FAULT, reason) for e in effects]

    def resign(self, reason: str, now: float) -> list[Effect]:
        """Hand over now: priority 0, then backup (the backup's skew time, not its master-down interval)."""
        if self.state != State.MASTER:
            return []
        return [Send(PRIORITY_STOP), *self._to_backup(now, reason, self.master_down())]

    def claim(self, reason: str, now: float) -> list[Effect]:
        """Take over now: master, advertising our (higher) priority, which makes the old master step down."""
        if self.state != State.BACKUP or self.hold:
            return []
        return self._to_master(now, reason)

    # ---- RFC 5798 6.4.2 and 6.4.3 ----------------------------------------------------------

    def _backup_advert(self, source: IPAddress, priority: int, interval_cs: int, now: float) -> list[Effect]:
        if priority == PRIORITY_STOP:
            self.master = self.master_priority = None
            self.down_at = now + skew_time(self.master_interval_cs, self.priority)
            return []
        if self.hold or not self.preempt or priority >= self.priority or not self._may_preempt(now):
            self._lower = None
            self._seen(source, priority, interval_cs)
            self.down_at = now + self.master_down()
            return []
        self._lower = (source, priority)
        return []  # a lower-priority master: discarded, so the master-down timer makes us master

    def _master_advert(self, source: IPAddress, priority: int, interval_cs: int, now: float) -> list[Effect]:
        if priority == PRIORITY_STOP:
            self.adver_at = now + self.interval_cs / 100
            return [Send(self.priority)]
        if priority > self.priority or (priority == self.priority and _wins(source, self.address)):
            # one last advert first (keepalived's higher_prio_send_advert): the winner hears that there
            # were two masters and announces the VIPs again, in case the neighbours last heard us
            self._seen(source, priority, interval_cs)
            return [Send(self.priority),
                    *self._to_backup(now, f"{source} advertises priority {priority} over our {self.priority}",
                                     self.master_down())]
        # another master of lower priority (a healed split brain): an advert now so it steps down, and
        # the VIPs announced again (keepalived's garp_lower_prio_repeat; the RFC only discards it)
        self.adver_at = now + self.interval_cs / 100
        return [Send(self.priority), Announce()]

    def _may_preempt(self, now: float) -> bool:
        """preempt_delay, as keepalived: a lower-priority master is accepted for that long after it is
        first seen, before preempting it."""
        if not self.preempt_delay:
            return True
        if self._preempt_at is None:
            self._preempt_at = now + self.preempt_delay
        return now >= self._preempt_at

    def _seen(self, source: IPAddress, priority: int, interval_cs: int) -> None:
        self.master, self.master_priority, self.master_interval_cs = source, priority, interval_cs

    def master_down(self) -> float:
        return master_down_interval(self.master_interval_cs, max(1, min(self.priority, 254)))

    # ---- transitions -----------------------------------------------------------------------

    def _to_master(self, now: float, reason: str) -> list[Effect]:
        effects = self._move(State.MASTER, reason, now)
        self.master, self.master_priority = self.address, self.priority
        self.adver_at = now + self.interval_cs / 100
        self._preempt_at = None
        return [Send(self.priority), *effects]

    def _to_backup(self, now: float, reason: str, down_in: float, start: bool = False) -> list[Effect]:
        effects = self._move(State.BACKUP, reason, now)
        if start or self.master == self.address:
            self.master = self.master_priority = None
        self.down_at = now + down_in
        return effects

    def _move(self, new: State, reason: str, now: float) -> list[Effect]:
        old, self.state = self.state, new
        self.adver_at = self.down_at = None
        self._lower = None
        if new != State.BACKUP:
            self._preempt_at = None
        if new in (State.INIT, State.FAULT) and self.master == self.address:
            self.master = self.master_priority = None
        return [Transition(old, new, reason)] if old != new else []


def _wins(source: IPAddress, ours: IPAddress) -> bool:
    """The RFC's tie-break: between equal priorities the higher primary address is master."""
    return source.packed > ours.packed


def _replace_old(effect: Effect, old: State, reason: str) -> Effect:
    if isinstance(effect, Transition):
        return Transition(old, effect.new, f"{reason}; {effect.reason}")
    return effect
