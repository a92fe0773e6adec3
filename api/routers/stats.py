"""Counters and rates per service and backend: ipvsadm --stats and --rate."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query

from xdplb.api.deps import Context, ReadAccess
from xdplb.api.schemas import BackendStatsView, Counters, Rates, ServiceStatsView
from xdplb.manager import ServiceStats
from xdplb.model import parse_key
from xdplb.rates import RateEstimator

router = APIRouter(prefix="/v1", tags=["stats"])
ServiceFilter = Annotated[str | None, Query(description="only this service (its id)")]


@router.get("/stats", dependencies=[ReadAccess])
def stats(ctx: Context, service: ServiceFilter = None) -> list[ServiceStatsView]:
    """Each service's and backend's totals, with the backends' ActiveConn/InActConn and, once the
    estimator has two samples, their rates."""
    key = _key(service)
    rows = [s for s in ctx.manager.stats() if key is None or s.service.key == key]
    if key is not None and not rows:
        raise HTTPException(404, f"no service {service}")
    return [_view(s, ctx.rates) for s in rows]


def _key(service: str | None) -> tuple | None:
    if service is None:
        return None
    try:
        return parse_key(service)
    except ValueError as e:
        raise HTTPException(422, str(e)) from None


def _view(s: ServiceStats, rates: RateEstimator | None) -> ServiceStatsView:
    svc = s.service
    return ServiceStatsView(
        id=svc.id, scheduler=svc.scheduler, method=svc.method,
        persistence=svc.persistence.timeout if svc.persistence else None,
        stats=Counters(**s.stats), rates=Rates(**rates.rates(svc.id)) if rates else None,
        backends=[BackendStatsView(
            address=str(addr), port=b.backend.port if b.backend.port is not None else svc.port,
            weight=b.backend.weight, active=b.active, inactive=b.inactive, stats=Counters(**b.stats),
            rates=Rates(**rates.rates(svc.id, str(addr))) if rates else None,
        ) for addr, b in s.backends.items()],
    )
