"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response
from app.api.responses import JSONResponse

from app import metrics
from app.api.deps import DbDep
from app.db.migrate import schema_is_current

router = APIRouter(tags=["operations"])


@router.get("/healthz")
async def healthz() -> dict:
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(db: DbDep) -> JSONResponse:
    checks: dict = {}
    try:
        async with db.engine.connect() as conn:
            checks["database"] = "ok"
            checks["schema"] = "current" if await schema_is_current(conn) else "outdated"
    except Exception as exc:  # any failure to reach the database means not ready
        checks["database"] = f"unreachable: {type(exc).__name__}"
    ready = checks.get("database") == "ok" and checks.get("schema") == "current"
    return JSONResponse({"status": "ready" if ready else "not ready", "checks": checks}, status_code=200 if ready else 503)


@router.get("/metrics")
async def prometheus_metrics() -> Response:
    return Response(metrics.exposition(), media_type="text/plain; version=0.0.4; charset=utf-8")
