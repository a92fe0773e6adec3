"""The dependencies a handler's signature names: the manager, the access it needs, the version it
expects (If-Match), and a service or backend named in the path."""

from __future__ import annotations

import hmac
import ipaddress
from typing import Annotated

from fastapi import Depends, Header, HTTPException, Path, Request, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from xdplb.api.context import ApiContext
from xdplb.api.schemas import ChangeView
from xdplb.manager import Change, Manager
from xdplb.model import IPAddress, parse_key

_bearer = HTTPBearer(auto_error=False, description="the token in the daemon's token file (api.token)")
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


def context(request: Request) -> ApiContext:
    return request.app.state.ctx


Context = Annotated[ApiContext, Depends(context)]


def _manager(ctx: Context) -> Manager:
    return ctx.manager


ManagerDep = Annotated[Manager, Depends(_manager)]


def _check_token(ctx: ApiContext, creds: HTTPAuthorizationCredentials | None) -> None:
    if creds is None:
        raise HTTPException(401, "a bearer token is required (Authorization: Bearer <token>)",
                            headers={"WWW-Authenticate": "Bearer"})
    if not hmac.compare_digest(creds.credentials.encode(), ctx.token.encode()):
        raise HTTPException(403, "the token is not this director's")


def _write_access(ctx: Context, creds: Credentials) -> None:
    _check_token(ctx, creds)


def _read_access(ctx: Context, creds: Credentials) -> None:
    if ctx.auth_reads:
        _check_token(ctx, creds)


WriteAccess = Depends(_write_access)
ReadAccess = Depends(_read_access)


def _expected_version(if_match: Annotated[str | None, Header(
        description='the ETag of the state the change builds on ("7"); refused with 412 when another '
                    'change came first. Absent or * : no check')] = None) -> int | None:
    if if_match is None or if_match.strip() == "*":
        return None
    tag = if_match.strip().removeprefix("W/").strip('"')
    if not tag.isdigit() or len(tag) > 18:
        raise HTTPException(400, f"If-Match {if_match!r} is not an ETag of this API (a version such as \"7\")")
    return int(tag)


ExpectVersion = Annotated[int | None, Depends(_expected_version)]


def _service_key(service_id: Annotated[str, Path(
        description="tcp:VIP:PORT, udp:VIP:PORT (IPv6 in brackets or not) or fwm:MARK")]) -> tuple:
    try:
        return parse_key(service_id)
    except ValueError as e:
        raise HTTPException(404, f"no service {service_id!r}: {e}") from None


ServiceKey = Annotated[tuple, Depends(_service_key)]


def _backend_address(address: Annotated[str, Path(description="the backend's IP address")]) -> IPAddress:
    try:
        return ipaddress.ip_address(address)
    except ValueError:
        raise HTTPException(404, f"no backend {address!r}: not an IP address") from None


BackendAddress = Annotated[IPAddress, Depends(_backend_address)]


def etag(version: int) -> dict[str, str]:
    return {"ETag": f'"{version}"'}


def answer_change(change: Change, response: Response) -> ChangeView:
    """A change's answer: the ChangeView, with the state's new version as its ETag."""
    response.headers.update(etag(change.version))
    return ChangeView.of(change)
