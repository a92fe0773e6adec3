"""The whole configuration: read it, or replace it all-or-nothing (with dry_run, only the difference)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from xdplb.api.deps import ExpectVersion, ManagerDep, ReadAccess, WriteAccess, answer_change, etag
from xdplb.api.schemas import ChangeView, ConfigDocument, ConfigView, ServiceView

router = APIRouter(prefix="/v1/config", tags=["config"])


@router.get("", dependencies=[ReadAccess])
def get_config(manager: ManagerDep, response: Response) -> ConfigView:
    state = manager.state
    response.headers.update(etag(state.version))
    return ConfigView(version=state.version, services=[ServiceView.of(s) for s in state.services],
                      timeouts=state.timeouts)


@router.put("", dependencies=[WriteAccess])
def put_config(document: ConfigDocument, manager: ManagerDep, expect: ExpectVersion, response: Response,
               dry_run: Annotated[bool, Query(description="only check it and answer the difference")] = False
               ) -> ChangeView:
    """Make this the configuration: services not listed are removed. Either all of it applies or
    nothing does; with dry_run nothing is written and the answer is what would change."""
    return answer_change(manager.replace(document.services, document.timeouts, expect, dry_run), response)
