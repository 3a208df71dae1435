"""POST /api/v1/events: parse -> authorise -> accept_batch -> 202 (after COMMIT)."""

from __future__ import annotations

from typing import Annotated

import orjson
from fastapi import APIRouter, Query, Request

from app.api.body import parse_body
from app.api.deps import DbDep, IngestKey, RegistryDep, SettingsDep
from app.api.responses import JSONResponse
from app.api.schemas import problems
from app.errors import PayloadTooLarge, UnsupportedMediaType
from app.ingest import service as ingest
from app.ingest.answers import EVENT_EXAMPLES, IngestAnswer

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


_ALL = list(EVENT_EXAMPLES.values())
# The body is read raw by the handler (limits before parsing, orjson, NDJSON), so it is documented here
# rather than declared as a parameter; EventBatch and Event are added to the components by app.api.docs.
REQUEST_BODY = {
    "required": True,
    "description": 'A batch of dossier events (SPEC section 3): a JSON object `{"events": [...]}` or NDJSON, one '
    "event per line (blank lines skipped). Up to 5,000 events or 5 MiB. Fields not in the Event schema are ignored.",
    "content": {
        "application/json": {
            "schema": {"$ref": "#/components/schemas/EventBatch"},
            "examples": {
                "lifecycle": {
                    "summary": "A dossier's life: received, deadline moved, resolved; another one withdrawn",
                    "value": {"events": _ALL},
                },
                **{name: {"summary": f"A `{name}` event", "value": {"events": [event]}} for name, event in EVENT_EXAMPLES.items()},
            },
        },
        "application/x-ndjson": {
            "schema": {"type": "string", "description": "One Event (a JSON object) per line; blank lines are skipped."},
            "example": "\n".join(orjson.dumps(e).decode() for e in _ALL) + "\n",
        },
    },
}


@router.post(
    "/events",
    status_code=202,
    response_model=IngestAnswer,
    responses={
        202: {"description": "Every accepted event is durably committed; `items` lists those not accepted."},
        **problems(
            400,
            401,
            403,
            413,
            415,
            422,
            429,
            503,
            s422="The JSON is not an object with an `events` array, or a parameter is malformed.",
        ),
    },
    openapi_extra={"requestBody": REQUEST_BODY},
    summary="Ingest a batch of dossier events",
    description="Posts events about dossiers (hồ sơ) for the key's unit and the units below it. Answers `202` only "
    "after every accepted event is committed. One invalid event never blocks the rest of its batch: it is listed "
    "in `items` as `rejected` with `errors: [{loc, msg}]`; a repeat of a stored `event_id` (or a second copy in "
    "the batch) is a `duplicate` and changes nothing. Whole-request errors store nothing. Needs an `ingest` key.",
)
async def post_events(
    request: Request,
    principal: IngestKey,
    db: DbDep,
    registry: RegistryDep,
    settings: SettingsDep,
    dry_run: Annotated[
        bool, Query(description="Validate and answer as a real post would (duplicates included), storing nothing.", examples=[False])
    ] = False,
) -> JSONResponse:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in CONTENT_TYPES:
        raise UnsupportedMediaType("Content-Type must be application/json or application/x-ndjson")
    request.app.state.rate_limiter.check(principal.key_id)
    body = await read_body_limited(request, settings.max_body_bytes)
    items = parse_body(body, content_type, settings.max_batch_events)
    result = await ingest.accept_batch(db, registry, settings, principal, items, dry_run=dry_run)
    if result["accepted"] and not dry_run:
        request.app.state.answers.invalidate()  # read-your-writes on this worker
    return JSONResponse(result, status_code=202)
