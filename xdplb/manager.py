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
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

from xdplb.config import describe
from xdplb.datapath import Connection, Datapath
from xdplb.diff import StateDiff, diff_state
from xdplb.model import Backend, IPAddress, Service, key_id
from xdplb.rates import Sample
from xdplb.reconcile import Applied, Reconciler
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
    def __init__(self, dp: Datapath, store: Store, state: State) -> None:
        self.dp = dp
        self.store = store
        self.reconciler = Reconciler(dp)
        self.applied = Applied()
        self.listeners: list[Callable[[Manager], None]] = []  # called after each change, under the lock
        self._state = state
        self._lock = threading.Lock()

    @property
    def state(self) -> State:
        return self._state

    @property
    def version(self) -> int:
        return self._state.version

    def start(self) -> Applied:
        """The first pass at start-up: best effort, since a director must come up with what it can
        (a refused service is reported in `applied`, the others forward)."""
        with self._lock:
            self.applied = self.reconciler.apply(self._state.services, self._state.timeouts)
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
            pre = self.dp.preflight(new.services)
            if pre.problems:
                raise Refused([f"{key_id(k)}: {why}" for k, why in pre.problems.items()])
            if dry_run or diff.empty:
                return Change(old.version, diff, dry_run)
            applied = self.reconciler.apply(new.services, new.timeouts, pre.nexthops)
            if not applied.ok:  # preflight makes this rare (an interface gone in between): undo
                self.reconciler.apply(old.services, old.timeouts)
                raise Refused([f"{key_id(k)}: {why}" for k, why in applied.refused.items()])
            self.applied = applied
            self._state = new.model_copy(update={"version": self.store.save(new)})
            log.info("state version %d: +%d -%d ~%d services", self._state.version, len(diff.added),
                     len(diff.removed), len(diff.changed))
            for listener in self.listeners:
                listener(self)
            return Change(self._state.version, diff, False, dict(applied.written))

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
