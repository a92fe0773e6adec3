"""Virtual services: ipvsadm -A / -E / -D and -L, one service at a time."""

from __future__ import annotations

from fastapi import APIRouter, Response

from xdplb.api.deps import ExpectVersion, ManagerDep, ReadAccess, ServiceKey, WriteAccess, answer_change, etag
from xdplb.api.schemas import ChangeView, ServiceView
from xdplb.model import Service

router = APIRouter(prefix="/v1/services", tags=["services"])


@router.get("", dependencies=[ReadAccess])
def list_services(manager: ManagerDep, response: Response) -> list[ServiceView]:
    state = manager.state
    response.headers.update(etag(state.version))
    return [ServiceView.of(s) for s in state.services]


@router.post("", status_code=201, dependencies=[WriteAccess])
def add_service(service: Service, manager: ManagerDep, expect: ExpectVersion, response: Response) -> ChangeView:
    """Add a service (409 when its id exists)."""
    return answer_change(manager.add_service(service, expect), response)


@router.get("/{service_id}", dependencies=[ReadAccess])
def get_service(key: ServiceKey, manager: ManagerDep, response: Response) -> ServiceView:
    response.headers.update(etag(manager.version))
    return ServiceView.of(manager.service(key))


@router.put("/{service_id}", dependencies=[WriteAccess])
def replace_service(key: ServiceKey, service: Service, manager: ManagerDep, expect: ExpectVersion,
                    response: Response) -> ChangeView:
    """Replace a service whole, its backends included (the id stays: protocol, VIP and port, or fwmark)."""
    return answer_change(manager.set_service(key, service, expect), response)


@router.delete("/{service_id}", dependencies=[WriteAccess])
def remove_service(key: ServiceKey, manager: ManagerDep, expect: ExpectVersion, response: Response) -> ChangeView:
    return answer_change(manager.remove_service(key, expect), response)
