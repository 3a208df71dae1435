"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from app import metrics
from app.aggregates import pgpass
from app.api import kpi_gauges
from app.api.deps import DbDep
from app.api.responses import JSONResponse
from app.api.schemas import Health, Ready
from app.db.migrate import schema_is_current
from app.export import service as export_service

router = APIRouter(tags=["operations"])


@router.get(
    "/healthz",
    response_model=Health,
    summary="Liveness",
    description='`200 {"status": "ok"}` while the process serves requests; never touches the database.',
)
async def healthz() -> JSONResponse:
    return JSONResponse({"status": "ok"})


@router.get(
    "/readyz",
    response_model=Ready,
    responses={
        503: {"model": Ready, "description": "Not ready: the database is unreachable, its schema not current, or its write pass missing."}
    },
    summary="Readiness",
    description="`200` when the database is reachable, its schema current and this version's write pass installed, "
    "with the export detail (lag, backlog, "
    "parked records: SPEC section 6) that never makes the node unready; `503` otherwise.",
)
async def readyz(db: DbDep, request: Request) -> JSONResponse:
    checks: dict = {}
    try:
        async with db.engine.connect() as conn:
            checks["database"] = "ok"
            checks["schema"] = "current" if await schema_is_current(conn) else "outdated"
            # this version's PostgreSQL write pass (installed after the head by `chiso db upgrade`)
            checks["write_pass"] = "installed" if await pgpass.is_installed(conn) else "missing"
    except Exception as exc:  # noqa: BLE001 - any failure to reach the database means not ready
        checks["database"] = f"unreachable: {type(exc).__name__}"
    ready = checks.get("database") == "ok" and checks.get("schema") == "current" and checks.get("write_pass") == "installed"
    if ready:  # detail only: a slow central node does not make this node unready
        try:
            checks["export"] = await export_service.status(db, request.app.state.settings)
        except Exception as exc:  # noqa: BLE001
            checks["export"] = f"unavailable: {type(exc).__name__}"
    # Not ready is a 503 like any other while the database is away: it says when to ask again.
    headers = None if ready else {"Retry-After": str(request.app.state.settings.retry_after_seconds)}
    return JSONResponse({"status": "ready" if ready else "not ready", "checks": checks}, status_code=200 if ready else 503, headers=headers)


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {"description": "Prometheus text format 0.0.4.", "content": {"text/plain; version=0.0.4": {"schema": {"type": "string"}}}}
    },
    summary="Prometheus metrics",
    description="The service metrics summed over every worker process (ingested events by outcome, batch latency, "
    "database errors, export lag and backlog, KPI answer latency) and the KPI gauges per province read from the "
    'database, e.g. `chiso_on_time_ratio{unit="79",window="30d"}` (SPEC section 7).',
)
async def prometheus_metrics(request: Request) -> Response:
    return Response(await kpi_gauges.scrape(request.app.state), media_type=metrics.CONTENT_TYPE)
