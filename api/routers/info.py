"""What this director is: the version of xdplb it runs, its name and its data plane's sizes."""

from __future__ import annotations

import dataclasses

from fastapi import APIRouter
from pydantic import BaseModel

from xdplb import __version__
from xdplb.api.deps import Context, ReadAccess

router = APIRouter(prefix="/v1/info", tags=["info"])


class Info(BaseModel):
    version: str
    director: str
    state_version: int
    conn_max: int
    sizes: dict[str, int]


@router.get("", dependencies=[ReadAccess])
def info(ctx: Context) -> Info:
    sizes = dataclasses.asdict(ctx.manager.dp.sizes)
    return Info(version=__version__, director=ctx.director, state_version=ctx.manager.version,
                conn_max=sizes["conn_max"], sizes=sizes)
