"""The central assessment network (SPEC section 6): the pull feed and the receiving end of push."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Request

from app.api.deps import DbDep, ReadKey, RegistryDep, SettingsDep
from app.api.events import read_body_limited
from app.api.responses import JSONResponse
from app.api.schemas import READ_ERRORS, problems
from app.export import receiver
from app.export import service as export_service
from app.export.schemas import ExportFeed, ReceiveAnswer

router = APIRouter(prefix="/api/v1", tags=["network"])
MAX_SNAPSHOT_BYTES = 32 * 1024 * 1024


@router.get(
    "/export/snapshots",
    response_model=ExportFeed,
    responses=problems(*READ_ERRORS, 422),
    summary="This node's export records, for a central node that pulls",
    description="Day and cohort records (SPEC section 6: counters, never rates) after the sequence `after`, in "
    "sequence order; continue with `after=next_after` while `has_more`. A newer record replaces an older one for "
    "the same unit and day (or cohort period).",
)
async def export_snapshots(
    _: ReadKey,
    db: DbDep,
    settings: SettingsDep,
    after: Annotated[
        int, Query(ge=0, le=2**63 - 1, description="Only records with a greater sequence; 0 from the start.", examples=[0])
    ] = 0,
    limit: Annotated[int, Query(ge=1, le=5000, description="Records in this page, at most 5,000.", examples=[500])] = 500,
) -> JSONResponse:
    """This node's export records after a sequence, in sequence order, with the histogram bounds."""
    return JSONResponse(await export_service.feed(db, settings, after, limit))


@router.post(
    "/network/snapshots",
    response_model=ReceiveAnswer,
    responses=problems(
        400,
        401,
        413,
        422,
        503,
        s400="The body is not a JSON snapshot of records.",
        s401="Not a central node, an unknown subordinate, or a bad signature.",
        s422="A record has not the shape of SPEC section 6.",
    ),
    openapi_extra={
        "requestBody": {
            "required": True,
            "description": "The exact bytes the signature covers: a JSON object whose `records` are records of the "
            "export feed (`GET /api/v1/export/snapshots`).",
            "content": {"application/json": {"schema": {"type": "object", "properties": {"records": {"type": "array"}}}}},
        }
    },
    summary="Accept a signed snapshot from a subordinate node (central mode)",
    description="A node configured as central (its subordinates' `node_id`s and secrets in `SUBORDINATES`) keeps the "
    "newest record per (source node, unit, day or period) and serves the merged figures through the read API. "
    "Authenticated by HMAC-SHA256 over the exact body bytes, not by an API key.",
)
async def network_snapshots(
    request: Request,
    db: DbDep,
    registry: RegistryDep,
    settings: SettingsDep,
    x_chiso_node: Annotated[str | None, Header(description="The sending node's `node_id`.", examples=["hue"])] = None,
    x_chiso_signature: Annotated[
        str | None, Header(description="`sha256=<hex>`: HMAC-SHA256 of the body with the node's secret.", examples=["sha256=9f86d0..."])
    ] = None,
) -> JSONResponse:
    """Accept a signed snapshot from a known subordinate node (central mode)."""
    body = await read_body_limited(request, MAX_SNAPSHOT_BYTES)
    result = await receiver.receive(db, settings, registry, x_chiso_node, x_chiso_signature, body)
    if result["applied"] and getattr(request.app.state, "answers", None) is not None:
        request.app.state.answers.invalidate()  # this worker's readers see the merge at once
    return JSONResponse(result)
