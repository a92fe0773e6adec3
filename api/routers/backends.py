"""A service's backends: ipvsadm -a / -e / -d, and draining (weight 0: no new connections, the
existing ones go on)."""

from __future__ import annotations

from fastapi import APIRouter, Response

from xdplb.api.deps import (
    BackendAddress,
    ExpectVersion,
    ManagerDep,
    ReadAccess,
    ServiceKey,
    WriteAccess,
    answer_change,
    etag,
)
from xdplb.api.schemas import BackendPatch, ChangeView
from xdplb.model import Backend

router = APIRouter(prefix="/v1/services/{service_id}/backends", tags=["backends"])


@router.get("", dependencies=[ReadAccess])
def list_backends(key: ServiceKey, manager: ManagerDep, response: Response) -> list[Backend]:
    response.headers.update(etag(manager.version))
    return list(manager.service(key).backends)


@router.post("", status_code=201, dependencies=[WriteAccess])
def add_backend(key: ServiceKey, backend: Backend, manager: ManagerDep, expect: ExpectVersion,
                response: Response) -> ChangeView:
    return answer_change(manager.add_backend(key, backend, expect), response)


@router.get("/{address}", dependencies=[ReadAccess])
def get_backend(key: ServiceKey, address: BackendAddress, manager: ManagerDep, response: Response) -> Backend:
    response.headers.update(etag(manager.version))
    return manager.backend(key, address)


@router.patch("/{address}", dependencies=[WriteAccess])
def update_backend(key: ServiceKey, address: BackendAddress, patch: BackendPatch, manager: ManagerDep,
                   expect: ExpectVersion, response: Response) -> ChangeView:
    """Change the fields given (weight, port, thresholds, tunnel); the others stay."""
    return answer_change(manager.update_backend(key, address, patch.model_dump(exclude_unset=True), expect), response)


@router.post("/{address}/drain", dependencies=[WriteAccess])
def drain_backend(key: ServiceKey, address: BackendAddress, manager: ManagerDep, expect: ExpectVersion,
                  response: Response) -> ChangeView:
    """Weight 0: the backend takes no new connections; established ones go on until they close."""
    return answer_change(manager.update_backend(key, address, {"weight": 0}, expect), response)


@router.delete("/{address}", dependencies=[WriteAccess])
def remove_backend(key: ServiceKey, address: BackendAddress, manager: ManagerDep, expect: ExpectVersion,
                   response: Response) -> ChangeView:
    return answer_change(manager.remove_backend(key, address, expect), response)
