"""The connection tables (ipvsadm -Lc), filtered and paged."""

from __future__ import annotations

import ipaddress
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query

from xdplb.api.deps import ManagerDep, ReadAccess
from xdplb.api.schemas import ConnectionPage, ConnectionView
from xdplb.datapath import Connection
from xdplb.model import IPAddress, parse_key

router = APIRouter(prefix="/v1/connections", tags=["connections"])


@router.get("", dependencies=[ReadAccess])
def connections(
    manager: ManagerDep,
    service: Annotated[str | None, Query(description="a service id")] = None,
    backend: Annotated[str | None, Query(description="a backend address")] = None,
    client: Annotated[str | None, Query(description="a client address")] = None,
    state: Annotated[str | None, Query(description="NEW (half-open), ESTABLISHED or CLOSING")] = None,
    offset: Annotated[int, Query(ge=0, le=2**31)] = 0,
    limit: Annotated[int, Query(ge=1, le=10000)] = 100,
) -> ConnectionPage:
    """Rows in a stable order (protocol, client, port), so offsets page through a table that changes
    little between calls."""
    try:
        key = parse_key(service) if service is not None else None
        be, cl = _address(backend), _address(client)
    except ValueError as e:
        raise HTTPException(422, str(e)) from None
    rows = sorted(manager.connections(key, be, cl, state), key=_order)
    return ConnectionPage(total=len(rows), offset=offset, items=[_view(c) for c in rows[offset:offset + limit]])


def _address(text: str | None) -> IPAddress | None:
    return ipaddress.ip_address(text) if text is not None else None


def _order(c: Connection) -> tuple:
    return c.protocol, c.client[0].version, int(c.client[0]), c.client[1], int(c.virtual[0]), c.virtual[1]


def _view(c: Connection) -> ConnectionView:
    return ConnectionView(protocol=c.protocol, client=str(c.client[0]), client_port=c.client[1],
                          virtual=str(c.virtual[0]), virtual_port=c.virtual[1],
                          backend=str(c.backend) if c.backend else None, state=c.state, idle_s=round(c.idle_s, 1))
