"""Why a figure moved, and the period report: drivers of a change (SPEC sections 4 and 5)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from app.api.deps import DbDep, ReadKey, RegistryDep, SettingsDep
from app.api.kpis import PERIOD_DOC, At, Code, PeriodKind, Window, answer
from app.api.schemas import READ_ERRORS, DriversAnswer, problems
from app.scoring import drivers as drivers_service
from app.scoring import service as scoring
from app.scoring.service import pick_period

router = APIRouter(prefix="/api/v1", tags=["kpis"])

DriverKpi = Annotated[
    str,
    Query(
        description="A count KPI (`received`, `resolved_*`, `pending`, `overdue`, `due_48h`...) or a rate (`on_time_rate`, "
        "`online_rate`, `settlement_rate_766`, `settlement_score`); processing hours and `silent_units` have no drivers (`422`).",
        examples=["on_time_rate"],
    ),
]
DriverSort = Annotated[
    Literal["contribution", "-contribution"],
    Query(
        description="`contribution`: what pulled the figure down first; `-contribution`: what pushed it up first.",
        examples=["contribution"],
    ),
]


@router.get(
    "/units/{code}/drivers",
    response_model=DriversAnswer,
    responses=problems(*READ_ERRORS, 404, 422),
    summary="Why a figure moved: the parts of a unit and their contributions to the change",
    description="Vì sao thay đổi? The parts of the unit — its own dossiers (if any) and each unit directly below it "
    "with its subtree (a commune's only part is itself) — and what each contributed to the change of one KPI against "
    "the previous period: for a count `k_c(P) − k_c(P′)`, for a rate N/D `N_c(P)/D_U(P) − N_c(P′)/D_U(P′)` (its share "
    "of the unit's denominator), so the contributions add up to the unit's change (rates to 6 decimals). `null` "
    "everywhere when the unit's change is `null`." + PERIOD_DOC,
)
async def drivers(
    request: Request,
    code: Code,
    _: ReadKey,
    db: DbDep,
    registry: RegistryDep,
    settings: SettingsDep,
    kpi: DriverKpi = "on_time_rate",
    period: PeriodKind = None,
    at: At = None,
    window: Window = None,
    sort: DriverSort = "contribution",
    limit: Annotated[int, Query(ge=1, le=5000, description="Items in this page, at most 5,000.", examples=[100])] = 100,
    offset: Annotated[int, Query(ge=0, le=2**63 - 1, description="Items skipped before this page.", examples=[0])] = 0,
) -> Response:
    drivers_service.check_kpi(kpi)  # a 422 before the cache
    p = pick_period(period, at, window, scoring._now(), settings.tz)
    hours = settings.silent_after_hours
    return await answer(
        request, lambda: drivers_service.drivers(db, registry, settings.tz, code, kpi, p, sort, limit, offset, silent_after_hours=hours)
    )
