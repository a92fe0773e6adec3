"""What a change of desired state changes, for a dry run and for the change's answer: services added
and removed by id, and for a service kept, each field that differs (old, new), its backends by
address the same way. Computed on the models' JSON form, so it reads like the API's own documents."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from xdplb.model import Service, Timeouts

FieldChanges = dict[str, tuple[Any, Any]]


class BackendsDiff(BaseModel):
    added: list[str] = []
    removed: list[str] = []
    changed: dict[str, FieldChanges] = {}


class ServiceDiff(BaseModel):
    fields: FieldChanges = Field({}, description="service fields other than backends: (old, new)")
    backends: BackendsDiff = BackendsDiff()


class StateDiff(BaseModel):
    added: list[str] = Field([], description="ids of services added")
    removed: list[str] = Field([], description="ids of services removed")
    changed: dict[str, ServiceDiff] = Field({}, description="services kept, by id: what differs")
    timeouts: FieldChanges = {}

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.changed or self.timeouts)


def diff_state(old: list[Service], new: list[Service], old_timeouts: Timeouts, new_timeouts: Timeouts) -> StateDiff:
    before = {s.id: s for s in old}
    after = {s.id: s for s in new}
    changed = {}
    for sid in before.keys() & after.keys():
        d = diff_service(before[sid], after[sid])
        if d is not None:
            changed[sid] = d
    return StateDiff(
        added=[sid for sid in after if sid not in before],
        removed=[sid for sid in before if sid not in after],
        changed=dict(sorted(changed.items())),
        timeouts=_fields(old_timeouts.model_dump(mode="json"), new_timeouts.model_dump(mode="json")),
    )


def diff_service(old: Service, new: Service) -> ServiceDiff | None:
    """None when the two are equal."""
    if old == new:
        return None
    a, b = old.model_dump(mode="json"), new.model_dump(mode="json")
    for d in (a, b):
        d["sched_flags"] = sorted(d["sched_flags"])  # a set: its JSON order means nothing
    olds = {x["address"]: x for x in a.pop("backends")}
    news = {x["address"]: x for x in b.pop("backends")}
    backends = BackendsDiff(
        added=[addr for addr in news if addr not in olds],
        removed=[addr for addr in olds if addr not in news],
        changed={addr: ch for addr in olds.keys() & news.keys() if (ch := _fields(olds[addr], news[addr]))},
    )
    return ServiceDiff(fields=_fields(a, b), backends=backends)


def _fields(a: dict, b: dict) -> FieldChanges:
    return {k: (a.get(k), b.get(k)) for k in dict.fromkeys([*a, *b]) if a.get(k) != b.get(k)}
