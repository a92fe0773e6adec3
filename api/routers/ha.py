"""High availability: the director's VRRP instances, as its speaker (xdplb/vrrp/speaker.py, a process
of its own) runs them. Reading them, and the operator's controls: a failover (hand over the VIPs,
take them over, or back to the election), an instance's priority, maintenance.

Each request is one call on the speaker's control socket (blocking: these handlers run in the
threadpool). A director without an `ha` section answers 404; a speaker that does not answer, 503;
the speaker's refusals keep their status (400, 404 for an unknown instance, 409 for a state that
forbids the request) and their message. Every change answers the status after it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, HTTPException

from xdplb.api.context import ApiContext
from xdplb.api.deps import Context, ReadAccess, WriteAccess
from xdplb.api.schemas import HaFailover, HaMaintenance, HaPriority, HaStatus
from xdplb.vrrp.control import SpeakerClient, SpeakerError

router = APIRouter(prefix="/v1/ha", tags=["ha"])

NO_HA = "this director has no high availability: its configuration has no `ha` section (no VRRP instance)"
_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"description": "no `ha` section, or no such instance"},
    503: {"description": "the VRRP speaker does not answer"},
}
_CHANGE_ERRORS: dict[int | str, dict[str, Any]] = {
    **_ERRORS, 409: {"description": "refused in the instance's state (hand-over of a backup, take-over in "
                                    "maintenance or in fault)"}}


def _ask(ctx: ApiContext, call: Callable[[SpeakerClient], Any]) -> HaStatus:
    if ctx.ha is None:
        raise HTTPException(404, NO_HA)
    try:
        return HaStatus.model_validate(call(ctx.ha))
    except SpeakerError as e:  # SpeakerUnavailable: 503
        raise HTTPException(e.status, str(e)) from None


@router.get("", dependencies=[ReadAccess], responses=_ERRORS)
def status(ctx: Context) -> HaStatus:
    """Every instance: its state, priorities, the master it hears, faults, last transitions, counters."""
    return _ask(ctx, lambda ha: ha.status())


@router.post("/failover", dependencies=[WriteAccess], responses=_CHANGE_ERRORS)
def failover(body: HaFailover, ctx: Context) -> HaStatus:
    """Hand the VIPs over to a peer, take them over, or go back to the election (`auto`); every
    instance (all checked before any acts) or the one named."""
    return _ask(ctx, lambda ha: ha.failover(body.action, body.instance))


@router.put("/priority", dependencies=[WriteAccess], responses=_CHANGE_ERRORS)
def priority(body: HaPriority, ctx: Context) -> HaStatus:
    """Set the priority of every instance or of the one named (until the speaker restarts); a failover
    in force ends."""
    return _ask(ctx, lambda ha: ha.priority(body.priority, body.instance))


@router.put("/maintenance", dependencies=[WriteAccess], responses=_CHANGE_ERRORS)
def maintenance(body: HaMaintenance, ctx: Context) -> HaStatus:
    """Maintenance on: the instance never becomes master (a master hands over now); off: it takes part
    in the election again."""
    return _ask(ctx, lambda ha: ha.maintenance(body.on, body.instance))
