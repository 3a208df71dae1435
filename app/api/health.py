"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from app.api.responses import JSONResponse

from app import metrics
from app.api.deps import DbDep
from app.db.migrate import schema_is_current
from app.export import service as export_service

router = APIRouter(tags=["operations"])


@router.get("/healthz")
async def healthz() -> dict:
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(db: DbDep, request: Request) -> JSONResponse:
    checks: dict = {}
    try:
        async with db.engine.connect() as conn:
            checks["database"] = "ok"
            checks["schema"] = "current" if await schema_is_current(conn) else "outdated"
    except Exception as exc:  # any failure to reach the database means not ready
        checks["database"] = f"unreachable: {type(exc).__name__}"
    ready = checks.get("database") == "ok" and checks.get("schema") == "current"
    if ready:  # detail only: a slow central node does not make this node unready
        try:
            checks["export"] = await export_service.status(db, request.app.state.settings)
        except Exception as exc:
            checks["export"] = f"unavailable: {type(exc).__name__}"
    return JSONResponse({"status": "ready" if ready else "not ready", "checks": checks}, status_code=200 if ready else 503)


@router.get("/metrics")
async def prometheus_metrics(request: Request) -> Response:
    return Response(await metrics.scrape(request.app.state), media_type=metrics.CONTENT_TYPE)
