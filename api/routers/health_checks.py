"""The health of every checked backend, and the director's events as server-sent events."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Annotated

import anyio
from fastapi import APIRouter, Header, HTTPException, Query
from fastapi.responses import StreamingResponse

from xdplb.api.deps import Context, ReadAccess
from xdplb.api.schemas import BackendHealth
from xdplb.model import parse_key

router = APIRouter(prefix="/v1", tags=["health"])
KEEPALIVE_S = 15.0


@router.get("/health", dependencies=[ReadAccess])
def health(ctx: Context, service: Annotated[str | None, Query(description="only this service (its id)")] = None
           ) -> list[BackendHealth]:
    only = None
    if service is not None:
        try:
            only = ctx.manager.service(parse_key(service)).id  # 404 when there is no such service
        except ValueError as e:
            raise HTTPException(422, str(e)) from None
    rows = []
    for watch, h in ctx.manager.health_states():
        if only is not None and watch.service != only:
            continue
        up = h.up if h else True
        rows.append(BackendHealth(
            service=watch.service, backend=str(watch.backend), up=up, state="up" if up else "down",
            check=watch.check.type, reason=h.reason if h else "not checked yet", weight=h.weight if h else None,
            since=h.since if h else None, checked=(h.checked or None) if h else None,
            successes=h.successes if h else 0, failures=h.failures if h else 0))
    return rows


@router.get("/events", dependencies=[ReadAccess], response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {}}}})
async def events(ctx: Context, last_event_id: Annotated[int | None, Header(ge=0)] = None,
                 since: Annotated[int | None, Query(ge=0, description="events after this id (as Last-Event-ID)")]
                 = None,
                 seconds: Annotated[float | None, Query(gt=0, le=86400, description="end the stream after this "
                                                        "long (absent: it goes on)")] = None) -> StreamingResponse:
    """Health transitions, quorum changes and configuration changes as they happen (server-sent
    events: `id`, `event`, `data` as JSON). A client that reconnects with Last-Event-ID gets what it
    missed; without it, only what comes next."""
    bus = ctx.manager.events
    start = last_event_id if last_event_id is not None else since if since is not None else bus.last_id

    async def stream() -> AsyncIterator[str]:
        last = start
        end = None if seconds is None else time.monotonic() + seconds
        while end is None or (left := end - time.monotonic()) > 0:
            wait = KEEPALIVE_S if end is None else min(KEEPALIVE_S, left)
            batch = await anyio.to_thread.run_sync(bus.since, last, wait, abandon_on_cancel=True)
            if not batch:
                yield ": keep-alive\n\n"
            for e in batch:
                last = e.id
                yield f"id: {e.id}\nevent: {e.kind}\ndata: {json.dumps({'time': e.time, **e.data})}\n\n"

    return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
