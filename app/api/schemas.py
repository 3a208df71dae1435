"""HTTP's own answers (problem details, health and readiness) and the error statuses each route documents.

The domain answers live in their domains: the KPI answers in app/scoring/schemas.py, the ingest answer
and the event contract in app/ingest/answers.py, the network records in app/export/schemas.py.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.answer import Answer
from app.ingest.answers import ErrorItem


class Problem(BaseModel):
    """An error, RFC 9457 problem details (`application/problem+json`)."""

    model_config = ConfigDict(extra="allow")

    type: str = Field("about:blank", examples=["about:blank"])
    title: str = Field(examples=["Validation failed"])
    status: int = Field(examples=[422])
    detail: str = Field(examples=["invalid window"])
    errors: list[ErrorItem] | None = Field(None, description="Validation failures (422): each `{loc, msg}`.")
    unit: str | None = Field(None, description="403 on ingest: the unit outside the key's unit.", examples=["79"])


class Health(Answer):
    status: Literal["ok"] = "ok"


class ExportStatus(BaseModel):
    model_config = ConfigDict(extra="allow")

    node_id: str
    push: str | None = Field(description="Where records are pushed; `null`: pull only.")
    backlog: int
    lag_seconds: float
    parked: int


class ReadyChecks(BaseModel):
    model_config = ConfigDict(extra="allow")

    database: str = Field(description="`ok`, or `unreachable: <error>`.", examples=["ok"])
    schema_: str | None = Field(None, alias="schema", description="`current` or `outdated`.", examples=["current"])
    write_pass: str | None = Field(
        None,
        description="`installed` or `missing`: this version's write functions (PostgreSQL; always `installed` on SQLite).",
        examples=["installed"],
    )
    export: ExportStatus | str | None = Field(None, description="Export detail (section 6); never makes the node unready.")


class Ready(Answer):
    status: Literal["ready", "not ready"] = Field(examples=["ready"])
    checks: ReadyChecks


# --- error statuses, documented on each route ------------------------------------------------------

PROBLEM_MEDIA = "application/problem+json"
RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before trying again.", "schema": {"type": "integer"}}}
ERROR_DOCS: dict[int, tuple[str, dict | None]] = {
    400: ("The body is not JSON, or not UTF-8.", None),
    401: (
        "No key, or an unknown or revoked key.",
        {"WWW-Authenticate": {"description": "`Bearer`", "schema": {"type": "string"}}},
    ),
    403: ("A key of another scope (or, on ingest, an event for a unit outside the key's unit: `unit` names it).", None),
    404: ("Unknown unit.", None),
    413: ("Body over 5 MiB or more than 5,000 events (refused before reading it when Content-Length tells).", None),
    415: ("Content-Type other than `application/json` or `application/x-ndjson`.", None),
    422: ("A parameter (or the body's shape) is malformed or out of range; `errors` names each one.", None),
    429: ("Too many requests for this key.", RETRY_AFTER),
    503: ("The database is unreachable.", RETRY_AFTER),
}
PROBLEM_EXAMPLES = {
    400: {"type": "about:blank", "title": "Bad request", "status": 400, "detail": "body is not JSON"},
    401: {"type": "about:blank", "title": "Unauthorized", "status": 401, "detail": "missing bearer token"},
    403: {"type": "about:blank", "title": "Forbidden", "status": 403, "detail": "a key of scope ingest cannot read"},
    404: {"type": "about:blank", "title": "Not found", "status": 404, "detail": "unknown unit 99999"},
    413: {"type": "about:blank", "title": "Payload too large", "status": 413, "detail": "body over 5242880 bytes"},
    415: {
        "type": "about:blank",
        "title": "Unsupported media type",
        "status": 415,
        "detail": "Content-Type must be application/json or application/x-ndjson",
    },
    422: {
        "type": "about:blank",
        "title": "Validation failed",
        "status": 422,
        "detail": "invalid window",
        "errors": [{"loc": ["window"], "msg": "Input should be '1d', '7d', '30d', '90d' or '365d'"}],
    },
    429: {"type": "about:blank", "title": "Too many requests", "status": 429, "detail": "rate limit exceeded"},
    503: {"type": "about:blank", "title": "Service unavailable", "status": 503, "detail": "database unavailable"},
}


def problems(*statuses: int, **descriptions: str) -> dict[int | str, dict[str, Any]]:
    """`responses=` of a route: each error status with the Problem schema (application/problem+json).

    `descriptions` overrides the default text of a status, keyed `s401`, `s404`...
    """
    out: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        text, headers = ERROR_DOCS[status]
        entry: dict[str, Any] = {
            "model": Problem,
            "description": descriptions.get(f"s{status}", text),
            "content": {PROBLEM_MEDIA: {"example": PROBLEM_EXAMPLES[status]}},
        }
        if headers:
            entry["headers"] = headers
        out[status] = entry
    return out


READ_ERRORS = (401, 403, 503)
