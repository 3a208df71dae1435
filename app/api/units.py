"""The unit registry over HTTP."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from app.api.deps import ReadKey, RegistryDep
from app.api.params import Limit, Offset, UnitLevel, UnitParent
from app.api.responses import JSONResponse
from app.api.schemas import READ_ERRORS, problems
from app.scoring import service as scoring
from app.scoring.schemas import UnitDetail, UnitList

router = APIRouter(prefix="/api/v1", tags=["units"])


@router.get(
    "/units",
    response_model=UnitList,
    responses=problems(*READ_ERRORS, 404, 422, s404="Unknown `parent`."),
    summary="The unit registry",
    description="The nation (`VN`), its 34 provinces (tỉnh, thành phố) and 3,321 communes (xã, phường, đặc khu), "
    "ordered by code; filter by `level` and `parent`.",
)
async def list_units(
    _: ReadKey,
    registry: RegistryDep,
    level: UnitLevel = None,
    parent: UnitParent = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> JSONResponse:
    rows = scoring.unit_list(registry, level, parent)
    return JSONResponse(
        {
            "items": [scoring.unit_shape(u) for u in rows[offset : offset + limit]],
            "total": len(rows),
            "limit": limit,
            "offset": offset,
        }
    )


@router.get(
    "/units/{code}",
    response_model=UnitDetail,
    responses=problems(*READ_ERRORS, 404),
    summary="One unit with its parent chain",
    description="The unit and its ancestors from `VN` down (`parents`).",
)
async def get_unit(
    code: Annotated[str, Path(description="Unit code: `VN`, a province (`46`) or a commune (`19753`).", examples=["46"])],
    _: ReadKey,
    registry: RegistryDep,
) -> JSONResponse:
    return JSONResponse(scoring.unit_detail(registry, code))
