"""The unit registry over HTTP."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query

from app.api.deps import ReadKey, RegistryDep
from app.errors import NotFound
from app.scoring import service as scoring

router = APIRouter(prefix="/api/v1", tags=["units"])
Limit = Annotated[int, Query(ge=1, le=5000)]
Offset = Annotated[int, Query(ge=0)]


@router.get("/units")
async def list_units(
    _: ReadKey,
    registry: RegistryDep,
    level: Literal["nation", "province", "commune"] | None = None,
    parent: str | None = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> dict:
    if parent is not None and registry.get(parent) is None:
        raise NotFound(f"unknown unit {parent}")
    rows = [
        u
        for u in sorted(registry.units.values(), key=lambda u: u.code)
        if (level is None or u.level == level) and (parent is None or u.parent_code == parent)
    ]
    return {
        "items": [scoring.unit_shape(u) for u in rows[offset : offset + limit]],
        "total": len(rows),
        "limit": limit,
        "offset": offset,
    }


@router.get("/units/{code}")
async def get_unit(code: str, _: ReadKey, registry: RegistryDep) -> dict:
    return scoring.unit_detail(registry, code)
