"""Errors as a person reads them: every 4xx has the body {"detail": one line, "errors": [one per problem]}."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from xdplb.config import describe
from xdplb.manager import Conflict, Invalid, ManagerError, NotFound, Refused, VersionMismatch

STATUS = {NotFound: 404, Conflict: 409, Invalid: 422, Refused: 422, VersionMismatch: 412}


def error_response(status: int, errors: list[str], headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": "; ".join(errors), "errors": errors}, status_code=status, headers=headers)


def install(app: FastAPI) -> None:
    @app.exception_handler(ManagerError)
    async def manager_error(_request: Request, exc: ManagerError) -> JSONResponse:
        return error_response(STATUS.get(type(exc), 400), exc.messages)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(422, describe(exc.errors()))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error_response(exc.status_code, [str(exc.detail)], getattr(exc, "headers", None))
