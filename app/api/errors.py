"""One place that renders every error as application/problem+json (RFC 9457)."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from sqlalchemy.exc import DataError, DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

from app import metrics
from app.api.responses import JSONResponse
from app.errors import ChisoError

log = logging.getLogger(__name__)
PROBLEM = "application/problem+json"


def problem(status: int, title: str, detail: str, headers: dict | None = None, **extra) -> JSONResponse:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, **extra}
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


def _loc(loc) -> list:
    parts = list(loc)
    if parts and parts[0] in ("query", "path", "body", "header"):
        parts = parts[1:]
    return parts


def install(app: FastAPI) -> None:
    retry_after = str(app.state.settings.retry_after_seconds)

    @app.exception_handler(ChisoError)
    async def _domain(_: Request, exc: ChisoError):
        return problem(exc.status, exc.title, exc.detail, exc.headers, **exc.extra)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError):
        errors = [{"loc": _loc(e["loc"]), "msg": e["msg"]} for e in exc.errors()]
        names = ", ".join(str(e["loc"][-1]) for e in errors if e["loc"]) or "request"
        return problem(422, "Validation failed", f"invalid {names}", errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException):
        return problem(exc.status_code, str(exc.detail), str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        # Starlette's outermost middleware calls this for an unhandled error, answers with it and
        # re-raises (the traceback is logged); counted for the ingest-errors alert.
        if request.url.path == "/api/v1/events":
            metrics.INGEST_ERRORS.inc()
        return problem(500, "Internal Server Error", "unexpected error")

    @app.exception_handler(DataError)  # a value the database refuses (out of range, malformed): the request's fault
    @app.exception_handler(OverflowError)  # an integer past 64 bits, refused by the driver before it is sent
    async def _value(_: Request, exc: Exception):
        log.info("value refused by the database: %s", exc)
        return problem(
            422, "Validation failed", "a value of the request is out of range", errors=[{"loc": [], "msg": "value out of range"}]
        )

    @app.exception_handler(OperationalError)
    @app.exception_handler(InterfaceError)
    @app.exception_handler(DBAPIError)
    @app.exception_handler(OSError)  # connection refused or reset, and asyncpg's connect timeout
    @app.exception_handler(PoolTimeout)  # no pooled connection within DB_POOL_TIMEOUT
    async def _database(_: Request, exc: Exception):
        log.warning("database unavailable: %s", exc)
        metrics.DB_ERRORS.inc()
        return problem(503, "Service unavailable", "database unavailable", {"Retry-After": retry_after})
