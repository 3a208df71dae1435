"""KPI reads: one unit, rankings, series, sectors. Each endpoint: parse -> one service call."""

from __future__ import annotations

import time
from datetime import date
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from app import metrics
from app.api.deps import DbDep, ReadKey, RegistryDep, SettingsDep
from app.scoring import service as scoring
from app.scoring.service import pick_period

router = APIRouter(prefix="/api/v1", tags=["kpis"])

PeriodKind = Literal["day", "week", "month", "quarter", "year"]
Window = Literal["1d", "7d", "30d", "90d", "365d"]
Sort = Annotated[str, Query(pattern=r"^-?[a-z0-9_]+$", description="a KPI name, `-` first for descending")]


async def answer(request: Request, compute) -> Response:
    """The (cached) answer as JSON, with an ETag over the figures, not `as_of`."""
    key = request.url.path + "?" + "&".join(sorted(f"{k}={v}" for k, v in request.query_params.multi_items()))
    entry = await request.app.state.answers.get(key, compute)
    return Response(entry.body, media_type="application/json", headers={"ETag": entry.etag})


class _Timer:
    def __init__(self, endpoint: str):
        self.endpoint = endpoint

    def __enter__(self):
        self.t0 = time.perf_counter()

    def __exit__(self, *exc):
        metrics.KPI_SECONDS.labels(self.endpoint).observe(time.perf_counter() - self.t0)


@router.get("/units/{code}/kpis")
async def unit_kpis(
    request: Request,
    code: str,
    _: ReadKey,
    db: DbDep,
    registry: RegistryDep,
    settings: SettingsDep,
    period: PeriodKind | None = None,
    at: date | None = None,
    window: Window | None = None,
    sector: Annotated[str | None, Query(max_length=64)] = None,
) -> Response:
    with _Timer("kpis"):
        p = pick_period(period, at, window, scoring._now(), settings.tz)
        return await answer(request, lambda: scoring.unit_kpis(db, registry, settings.tz, code, p, sector))


@router.get("/rankings")
async def rankings(
    request: Request,
    _: ReadKey,
    db: DbDep,
    registry: RegistryDep,
    settings: SettingsDep,
    level: Literal["province", "commune"] = "province",
    parent: str | None = None,
    period: PeriodKind | None = None,
    at: date | None = None,
    window: Window | None = None,
    sort: Sort = "-on_time_rate",
    limit: Annotated[int, Query(ge=1, le=5000)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> Response:
    with _Timer("rankings"):
        p = pick_period(period, at, window, scoring._now(), settings.tz)
        return await answer(request, lambda: scoring.ranking(db, registry, settings.tz, level, parent, p, sort, limit, offset))


@router.get("/units/{code}/series")
async def series(
    request: Request,
    code: str,
    _: ReadKey,
    db: DbDep,
    registry: RegistryDep,
    settings: SettingsDep,
    kpi: str = "on_time_rate",
    interval: Literal["day", "week", "month", "quarter"] = "week",
    from_: Annotated[date | None, Query(alias="from")] = None,
    to: date | None = None,
) -> Response:
    with _Timer("series"):
        return await answer(request, lambda: scoring.series(db, registry, settings.tz, code, kpi, interval, from_, to))


@router.get("/units/{code}/sectors")
async def sectors(
    request: Request,
    code: str,
    _: ReadKey,
    db: DbDep,
    registry: RegistryDep,
    settings: SettingsDep,
    period: PeriodKind | None = None,
    at: date | None = None,
    window: Window | None = None,
) -> Response:
    with _Timer("sectors"):
        p = pick_period(period, at, window, scoring._now(), settings.tz)
        return await answer(request, lambda: scoring.sectors(db, registry, settings.tz, code, p))
