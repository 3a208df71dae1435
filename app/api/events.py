"""POST /api/v1/events: parse -> authorise -> accept_batch -> 202 (after COMMIT)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from app.api.responses import JSONResponse

from app.api.deps import DbDep, IngestKey, RegistryDep, SettingsDep
from app.errors import PayloadTooLarge, UnsupportedMediaType
from app.ingest import service as ingest

router = APIRouter(prefix="/api/v1", tags=["ingest"])
CONTENT_TYPES = ("application/json", "application/x-ndjson")


async def read_body_limited(request: Request, limit: int) -> bytes:
    """The body, refused as soon as it passes `limit` bytes (by Content-Length when it tells)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"body over {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"body over {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


@router.post("/events", status_code=202)
async def post_events(
    request: Request,
    principal: IngestKey,
    db: DbDep,
    registry: RegistryDep,
    settings: SettingsDep,
    dry_run: bool = False,
) -> JSONResponse:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in CONTENT_TYPES:
        raise UnsupportedMediaType("Content-Type must be application/json or application/x-ndjson")
    request.app.state.rate_limiter.check(principal.key_id)
    body = await read_body_limited(request, settings.max_body_bytes)
    items = ingest.parse_body(body, content_type, settings.max_batch_events)
    result = await ingest.accept_batch(db, registry, settings, principal, items, dry_run=dry_run)
    if result["accepted"] and not dry_run:
        request.app.state.answers.invalidate()  # read-your-writes on this worker
    return JSONResponse(result, status_code=202)
