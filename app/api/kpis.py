"""KPI reads: one unit, rankings, series, sectors. Each endpoint: parse -> one service call."""

from __future__ import annotations

import time
from datetime import date
from typing import Annotated, Literal

import orjson
from fastapi import APIRouter, Query
from app.api.responses import JSONResponse

from app import metrics
from app.api.etag import etag_of
from app.api.deps import DbDep, ReadKey, RegistryDep, SettingsDep
from app.scoring import service as scoring
from app.scoring.service import pick_period

router = APIRouter(prefix="/api/v1", tags=["kpis"])

PeriodKind = Literal["day", "week", "month", "quarter", "year"]
Window = Literal["1d", "7d", "30d", "90d", "365d"]


def answer(payload: dict) -> JSONResponse:
    """JSON with an ETag over the figures, not `as_of`, so an unchanged answer polls as 304."""
    basis = {k: v for k, v in payload.items() if k != "as_of"}
    return JSONResponse(payload, headers={"ETag": etag_of(orjson.dumps(basis))})


class _Timer:
    def __init__(self, endpoint: str):
        self.endpoint = endpoint

    def __enter__(self):
        self.t0 = time.perf_counter()

    def __exit__(self, *exc):
        metrics.KPI_SECONDS.labels(self.endpoint).observe(time.perf_counter() - self.t0)


@router.get("/units/{code}/kpis")
async def unit_kpis(
    code: str,
    _: ReadKey,
    db: DbDep,
    registry: RegistryDep,
    settings: SettingsDep,
    period: PeriodKind | None = None,
    at: date | None = None,
    window: Window | None = None,
    sector: Annotated[str | None, Query(max_length=64)] = None,
) -> JSONResponse:
    with _Timer("kpis"):
        p = pick_period(period, at, window, scoring._now(), settings.tz)
        return answer(await scoring.unit_kpis(db, registry, settings.tz, code, p, sector))


@router.get("/rankings")
async def rankings(
    _: ReadKey,
    db: DbDep,
    registry: RegistryDep,
    settings: SettingsDep,
    level: Literal["province", "commune"] = "province",
    parent: str | None = None,
    period: PeriodKind | None = None,
    at: date | None = None,
    window: Window | None = None,
    sort: str = "-on_time_rate",
    limit: Annotated[int, Query(ge=1, le=5000)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> JSONResponse:
    with _Timer("rankings"):
        p = pick_period(period, at, window, scoring._now(), settings.tz)
        return answer(await scoring.ranking(db, registry, settings.tz, level, parent, p, sort, limit, offset))


@router.get("/units/{code}/series")
async def series(
    code: str,
    _: ReadKey,
    db: DbDep,
    registry: RegistryDep,
    settings: SettingsDep,
    kpi: str = "on_time_rate",
    interval: Literal["day", "week", "month", "quarter"] = "week",
    from_: Annotated[date | None, Query(alias="from")] = None,
    to: date | None = None,
) -> JSONResponse:
    with _Timer("series"):
        return answer(await scoring.series(db, registry, settings.tz, code, kpi, interval, from_, to))


@router.get("/units/{code}/sectors")
async def sectors(
    code: str,
    _: ReadKey,
    db: DbDep,
    registry: RegistryDep,
    settings: SettingsDep,
    period: PeriodKind | None = None,
    at: date | None = None,
    window: Window | None = None,
) -> JSONResponse:
    with _Timer("sectors"):
        p = pick_period(period, at, window, scoring._now(), settings.tz)
        return answer(await scoring.sectors(db, registry, settings.tz, code, p))
