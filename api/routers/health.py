"""Liveness and readiness, for a supervisor or a load balancer in front of the API."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from xdplb.api.deps import Context

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The API answers."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "not ready, with the reasons"}})
def readyz(ctx: Context) -> JSONResponse:
    """The data plane is loaded and attached, and every desired service is in it."""
    problems = [*ctx.problems(), *(f"service {k} refused: {why}" for k, why in _refused(ctx))]
    return JSONResponse({"ready": not problems, "problems": problems}, status_code=503 if problems else 200)


def _refused(ctx) -> list[tuple[str, str]]:
    from xdplb.model import key_id

    return [(key_id(k), why) for k, why in ctx.manager.applied.refused.items()]
