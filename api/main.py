"""Builds the application; serving it is the daemon's business (xdplb/apiserver.py)."""

from __future__ import annotations

from fastapi import FastAPI

from xdplb import __version__, metrics
from xdplb.api import errors
from xdplb.api.context import ApiContext
from xdplb.api.routers import (
    backends,
    capture,
    config,
    connections,
    ha,
    health,
    health_checks,
    info,
    services,
    simulate,
    stats,
)
from xdplb.api.routers import metrics as metrics_router


def create_app(ctx: ApiContext) -> FastAPI:
    app = FastAPI(title="xdplb", version=__version__,
                  description="A director's REST API: services, backends, the whole configuration, stats, "
                              "connections, simulation, metrics, high availability. Changes need the bearer token.")
    app.state.ctx = ctx
    app.state.registry = metrics.registry(ctx.manager, ctx.ha)
    errors.install(app)
    for module in (services, backends, config, stats, connections, simulate, capture, health_checks, info,
                   metrics_router, health, ha):
        app.include_router(module.router)
    return app
