"""The manager: the one owner of a running director's desired state, between the REST API (and the
daemon's reload) and the reconciler.

Every change is a function from the current state to the next one, applied all-or-nothing under one
lock: the result is validated whole (models, collisions), checked against the data plane without
writing (Datapath.preflight: limits, next hops), written by the reconciler, then saved; a call
returns after the maps are written. A change refused at any step leaves maps and state as they
were. Each saved state has a version, one more than the last: a caller that read version N and
says so (the API's If-Match) is refused when another change came first, so two operators never
overwrite each other silently.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from xdplb import hooks
from xdplb.config import describe
from xdplb.datapath import Connection, Datapath
from xdplb.diff import StateDiff, diff_state
from xdplb.events import EventBus
from xdplb.health.effective import Outcome, Verdict, checked, effective
from xdplb.model import Backend, IPAddress, Service, Timeouts, key_id
from xdplb.rates import Sample
from xdplb.reconcile import Applied, Reconciler

if TYPE_CHECKING:  # the monitor's module imports asyncio machinery the API process needs only with it
    from xdplb.health.monitor import Health, Watch
    from xdplb.health.monitor import HealthMonitor as Monitor
from xdplb.store import State, Store

log = logging.getLogger(__name__)


class ManagerError(Exception):
    """A change or a read refused; `messages` says why, one line per problem."""

    def __init__(self, messages: str | list[str]) -> None:
        self.messages = [messages] if isinstance(messages, str) else messages
        super().__init__("; ".join(self.messages))


class NotFound(ManagerError):
    """No such service or backend."""


class Conflict(ManagerError):
    """It exists already."""


class Invalid(ManagerError):
    """The resulting state does not validate."""


class Refused(ManagerError):
    """The data plane cannot take the resulting state (a limit, a next hop)."""


class VersionMismatch(ManagerError):
    """The state changed since the caller read it."""


@dataclass(frozen=True)
class Change:
    """What a change did (or, in a dry run, would do)."""

    version: int
    diff: StateDiff
    dry_run: bool = False
    written: dict[str, int] = field(default_factory=dict)


Edit = Callable[[State], State]


class Manager:
    def __init__(self, dp: Datapath, store: Store, state: State, events: EventBus | None = None) -> None:
        self.dp = dp
        self.store = store
        self.reconciler = Reconciler(dp)
        self.applied = Applied()
        self.events = events or EventBus()
        self.listeners: list[Callable[[Manager], None]] = []  # called after each change, under the lock
        self.monitor: Monitor | None = None   # the health monitor, told what to watch after each change
        self.health: dict[tuple[str, IPAddress], Health] = {}  # the monitor's last word per watched backend
        self._quorum: dict[str, bool] = {}    # service id -> whether its quorum holds
        self._nexthops: dict = {}             # the last resolved, for a backend a health change brings back
        self._health_worker = ThreadPoolExecutor(1, thread_name_prefix="xdplb-health")
        self._state = state
        self._lock = threading.Lock()

    @property
    def state(self) -> State:
        return self._state

    @property
    def version(self) -> int:
        return self._state.version

    def start(self, monitor: Monitor | None = None) -> Applied:
        """The first pass at start-up: best effort, since a director must come up with what it can
        (a refused service is reported in `applied`, the others forward). The monitor, if any, is
        told what to watch."""
        with self._lock:
            self.monitor = monitor
            self.applied = self._apply(self._effective(self._state.services), self._state.timeouts)
            self._watch()
            return self.applied

    # ---- changes ---------------------------------------------------------------------------

    def change(self, edit: Edit, expect_version: int | None = None, dry_run: bool = False) -> Change:
        """Apply `edit` all-or-nothing. expect_version: refuse unless the state is still this version."""
        with self._lock:
            old = self._state
            if expect_version is not None and expect_version != old.version:
                raise VersionMismatch(f"the configuration is at version {old.version}, not {expect_version}: "
                                      "another change came first; read it again")
            new = edit(old)
            diff = diff_state(old.services, new.services, old.timeouts, new.timeouts)
            outcomes = self._effective(new.services)
            pre = self.dp.preflight([o.service for o in outcomes],
                                    standby={s.key: s.sorry_server for s in new.services if s.sorry_server})
            if pre.problems:
                raise Refused([f"{key_id(k)}: {why}" for k, why in pre.problems.items()])
            if dry_run or diff.empty:
                return Change(old.version, diff, dry_run)
            applied = self._apply(outcomes, new.timeouts, pre.nexthops)
            if not applied.ok:  # preflight makes this rare (an interface gone in between): undo
                self._apply(self._effective(old.services), old.timeouts)
                raise Refused([f"{key_id(k)}: {why}" for k, why in applied.refused.items()])
            self.applied = applied
            self._nexthops.update(pre.nexthops)
            self._state = new.model_copy(update={"version": self.store.save(new)})
            log.info("state version %d: +%d -%d ~%d services", self._state.version, len(diff.added),
                     len(diff.removed), len(diff.changed))
            self._watch()
            self.events.publish("config", version=self._state.version, added=diff.added, removed=diff.removed,
                                changed=list(diff.changed))
            for listener in self.listeners:
                listener(self)
            return Change(self._state.version, diff, False, dict(applied.written))

    # ---- health ----------------------------------------------------------------------------

    def on_health(self, health: Health) -> None:
        """The monitor's word on a backend. It comes from the monitor's event loop, which must not
        wait for the lock or for netlink (a backend back in the tables may need its next hop
        resolved): one worker thread of the manager's applies it, in the order they came."""
        self._health_worker.submit(self._health_changed, health)

    def health_settled(self) -> None:
        """Returns once every health change handed over so far is in the data plane."""
        self._health_worker.submit(lambda: None).result()

    def _health_changed(self, health: Health) -> None:
        key = (health.service, health.backend)
        with self._lock:
            if key not in {w.key for w in self.watches()}:
                return  # a watch removed since
            known = {**self.health, key: health}  # published only once the data plane has it
            self.applied = self._apply(self._effective(self._state.services, known), self._state.timeouts,
                                       self._nexthops)
            self.health = known
            for k, why in self.applied.refused.items():
                log.error("service %s refused after a health change: %s", key_id(k), why)
        self.events.publish("health", service=health.service, backend=str(health.backend),
                            state="up" if health.up else "down", reason=health.reason, weight=health.weight)

    def without_quorum(self) -> list[str]:
        """The services whose quorum is lost (by default: no backend is up), as the data plane has them."""
        return sorted(sid for sid, holds in self._quorum.items() if not holds)

    def health_states(self) -> list[tuple[Watch, Health | None]]:
        """Every watched backend with its health as the data plane applies it: the monitor's latest
        word once the manager has applied it (until then the one before, None for none)."""
        states = self.monitor.states() if self.monitor is not None else {}
        out = []
        for w in self.watches():
            applied = self.health.get(w.key)
            h = states.get(w.key) or applied
            if h is not None and (h.up, h.weight) != ((applied.up, applied.weight) if applied else (True, None)):
                h = applied  # the data plane has not followed yet: say what it does
            out.append((w, h))
        return out

    def watches(self) -> list[Watch]:
        """Every checked backend of the desired state, with its check and where to send it."""
        from xdplb.health.monitor import Watch
        from xdplb.health.probe import Target

        out = []
        for svc in self._state.services:
            for b in checked(svc):
                check = b.check or svc.check
                port = check.port or b.port or svc.port
                out.append(Watch(svc.id, b.address, Target(check.address or b.address, port), check, b.weight))
        return out

    def _watch(self) -> None:
        watches = self.watches()
        keys = {w.key for w in watches}
        self.health = {k: h for k, h in self.health.items() if k in keys}
        if self.monitor is not None:
            self.monitor.watch(watches)

    def _effective(self, services: list[Service], health: dict | None = None) -> list[Outcome]:
        """The services as the data plane gets them after the health checks' verdicts."""
        verdicts: dict[str, dict[IPAddress, Verdict]] = {}
        for (sid, backend), h in (self.health if health is None else health).items():
            verdicts.setdefault(sid, {})[backend] = Verdict(h.up, h.weight)
        return [effective(svc, verdicts.get(svc.id, {}), self._quorum.get(svc.id, True)) for svc in services]

    def _apply(self, outcomes: list[Outcome], timeouts: Timeouts, nexthops: dict | None = None) -> Applied:
        """A reconciler pass over the effective services; once it is through, quorum changes are
        final and run their hooks."""
        applied = self.reconciler.apply([o.service for o in outcomes], timeouts, nexthops)
        if applied.ok:
            for o in outcomes:
                if o.quorum != self._quorum.get(o.service.id, True):
                    self._quorum_changed(o)
        return applied

    def _quorum_changed(self, outcome: Outcome) -> None:
        svc = outcome.service
        self._quorum[svc.id] = outcome.quorum
        hook = svc.quorum.on_up if outcome.quorum else svc.quorum.on_down
        if hook:
            hooks.run([*hook, svc.id])
        self.events.publish("quorum", service=svc.id, quorum=outcome.quorum, live_weight=outcome.live_weight,
                            sorry_server=outcome.sorry)

    def replace(self, services: list[Any], timeouts: Any = None, expect_version: int | None = None,
                dry_run: bool = False) -> Change:
        """The whole configuration (services, and timeouts when given)."""
        def edit(state: State) -> State:
            return _state(state, services, timeouts)
        return self.change(edit, expect_version, dry_run)

    def add_service(self, service: Service, expect_version: int | None = None) -> Change:
        def edit(state: State) -> State:
            if any(s.key == service.key for s in state.services):
                raise Conflict(f"service {service.id} exists already")
            return _state(state, [*state.services, service])
        return self.change(edit, expect_version)

    def set_service(self, key: tuple, service: Service, expect_version: int | None = None) -> Change:
        """Replace a service (the id may not change: that is a remove and an add)."""
        if service.key != key:
            raise Invalid(f"the service's own id is {service.id}, not {key_id(key)}")
        return self._edit_service(key, lambda _old: service, expect_version)

    def remove_service(self, key: tuple, expect_version: int | None = None) -> Change:
        def edit(state: State) -> State:
            self._find(state, key)
            return _state(state, [s for s in state.services if s.key != key])
        return self.change(edit, expect_version)

    def add_backend(self, key: tuple, backend: Backend, expect_version: int | None = None) -> Change:
        def edit(svc: Service) -> Service:
            if any(b.address == backend.address for b in svc.backends):
                raise Conflict(f"backend {backend.address} of {svc.id} exists already")
            return _revalidate(svc, backends=[*svc.backends, backend])
        return self._edit_service(key, edit, expect_version)

    def update_backend(self, key: tuple, address: IPAddress, changes: dict[str, Any],
                       expect_version: int | None = None) -> Change:
        """Change some fields of a backend (weight, thresholds, ...); its address stays."""
        def edit(svc: Service) -> Service:
            current = _backend(svc, address)
            updated = _revalidate(current, **changes)
            if updated.address != current.address:
                raise Invalid("a backend's address cannot change: remove it and add the new one")
            return _revalidate(svc, backends=[updated if b.address == address else b for b in svc.backends])
        return self._edit_service(key, edit, expect_version)

    def remove_backend(self, key: tuple, address: IPAddress, expect_version: int | None = None) -> Change:
        def edit(svc: Service) -> Service:
            _backend(svc, address)
            return _revalidate(svc, backends=[b for b in svc.backends if b.address != address])
        return self._edit_service(key, edit, expect_version)

    def _edit_service(self, key: tuple, edit: Callable[[Service], Service], expect_version: int | None) -> Change:
        def edit_state(state: State) -> State:
            new = edit(self._find(state, key))
            return _state(state, [new if s.key == key else s for s in state.services])
        return self.change(edit_state, expect_version)

    @staticmethod
    def _find(state: State, key: tuple) -> Service:
        for svc in state.services:
            if svc.key == key:
                return svc
        raise NotFound(f"no service {key_id(key)}")

    # ---- reads -----------------------------------------------------------------------------

    def service(self, key: tuple) -> Service:
        return self._find(self._state, key)

    def backend(self, key: tuple, address: IPAddress) -> Backend:
        return _backend(self.service(key), address)

    def stats(self) -> list[ServiceStats]:
        """Each service's counters (ipvsadm --stats) and its backends' with their connection counts."""
        out = []
        with self.dp.lock:
            for svc in self.dp.services:
                counts = self.dp.backend_counts(svc.key)
                per_backend = self.dp.backend_stats(svc.key)
                out.append(ServiceStats(svc, self.dp.service_stats(svc.key), {
                    b.address: BackendStats(b, per_backend[b.address], *counts[b.address]) for b in svc.backends}))
        return out

    def counters(self) -> Sample:
        """Every service's and backend's counters, for the rate estimator."""
        out: Sample = {}
        for s in self.stats():
            out[(s.service.id, None)] = s.stats
            out.update({(s.service.id, str(addr)): b.stats for addr, b in s.backends.items()})
        return out

    def connections(self, service: tuple | None = None, backend: IPAddress | None = None,
                    client: IPAddress | None = None, state: str | None = None) -> Iterator[Connection]:
        """The connection tables (ipvsadm -Lc), filtered."""
        endpoints = None
        if service is not None:
            endpoints = set(self.service(service).all_endpoints)
        with self.dp.lock:
            rows = list(self.dp.connections())
        for c in rows:
            if endpoints is not None and not _in_service(c, endpoints):
                continue
            if backend is not None and c.backend != backend:
                continue
            if client is not None and c.client[0] != client:
                continue
            if state is not None and c.state != state.upper():
                continue
            yield c


@dataclass(frozen=True)
class BackendStats:
    backend: Backend
    stats: dict[str, int]
    active: int
    inactive: int


@dataclass(frozen=True)
class ServiceStats:
    service: Service
    stats: dict[str, int]
    backends: dict[IPAddress, BackendStats]


def _in_service(c: Connection, endpoints: set[tuple]) -> bool:
    vip, port = c.virtual
    return any(proto.upper() == c.protocol and ep_vip == vip and ep_port in (0, port)
               for proto, ep_vip, ep_port in endpoints)


def _state(state: State, services: list[Any], timeouts: Any = None) -> State:
    """The next state, validated whole (each service, and the list: no two on one endpoint)."""
    try:
        return State.model_validate({
            "services": [_plain(s) for s in services],
            "timeouts": _plain(state.timeouts if timeouts is None else timeouts),
            "checks": state.checks, "ha": state.ha,
        })
    except ValidationError as e:
        raise Invalid(describe(e.errors())) from None


def _revalidate(model: BaseModel, **changes: Any) -> Any:
    """A model with some fields changed, validated again (model_copy would not validate)."""
    data = model.model_dump()
    data.update({k: [_plain(x) for x in v] if isinstance(v, list) else _plain(v) for k, v in changes.items()})
    try:
        return type(model).model_validate(data)
    except ValidationError as e:
        raise Invalid(describe(e.errors())) from None


def _plain(value: Any) -> Any:
    return value.model_dump() if isinstance(value, BaseModel) else value


def _backend(svc: Service, address: IPAddress | str) -> Backend:
    address = ipaddress.ip_address(address)
    for b in svc.backends:
        if b.address == address:
            return b
    raise NotFound(f"service {svc.id} has no backend {address}")
