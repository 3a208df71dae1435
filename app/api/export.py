"""The central assessment network (SPEC section 6): the pull feed and the receiving end of push."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Request

from app.api.deps import DbDep, ReadKey, RegistryDep, SettingsDep
from app.api.events import read_body_limited
from app.api.responses import JSONResponse
from app.export import receiver
from app.export import service as export_service

router = APIRouter(prefix="/api/v1", tags=["network"])
MAX_SNAPSHOT_BYTES = 32 * 1024 * 1024


@router.get("/export/snapshots")
async def export_snapshots(
    _: ReadKey,
    db: DbDep,
    settings: SettingsDep,
    after: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
) -> JSONResponse:
    """This node's export records after a sequence, in sequence order, with the histogram bounds."""
    return JSONResponse(await export_service.feed(db, settings, after, limit))


@router.post("/network/snapshots")
async def network_snapshots(
    request: Request,
    db: DbDep,
    registry: RegistryDep,
    settings: SettingsDep,
    x_chiso_node: Annotated[str | None, Header()] = None,
    x_chiso_signature: Annotated[str | None, Header()] = None,
) -> JSONResponse:
    """Accept a signed snapshot from a known subordinate node (central mode)."""
    body = await read_body_limited(request, MAX_SNAPSHOT_BYTES)
    result = await receiver.receive(db, settings, registry, x_chiso_node, x_chiso_signature, body)
    if result["applied"] and getattr(request.app.state, "answers", None) is not None:
        request.app.state.answers.invalidate()  # this worker's readers see the merge at once
    return JSONResponse(result)
