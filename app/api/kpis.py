"""KPI reads: one unit, rankings, series, sectors. Each endpoint: parse -> one service call."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Query
from starlette.responses import Response

from app import metrics
from app.answers.encoding import GZIP_FROM, canonical_params, gzip_etag
from app.answers.kinds import ReadContext
from app.api.deps import Reads, ReadsDep
from app.api.params import (
    PERIOD_DOC,
    At,
    Code,
    From,
    IncludeOverdue,
    Interval,
    Limit,
    MinCount,
    Offset,
    PeriodKind,
    RankLevel,
    RankParent,
    Sector,
    SeriesKpi,
    Sort,
    To,
    Window,
    Within,
)
from app.api.responses import accepts_gzip
from app.api.schemas import READ_ERRORS, problems
from app.errors import NotFound
from app.scoring.schemas import AtRiskAnswer, KpiAnswer, RankingAnswer, SectorsAnswer, SeriesAnswer, SilentAnswer

router = APIRouter(prefix="/api/v1", tags=["kpis"])


async def answer(r: Reads, kind: str, params: dict) -> Response:
    """The shared answer (app.answers) as JSON, with an ETag over the figures, not `as_of`; one of
    GZIP_FROM bytes or more gzipped (once per body by this worker) to a client that accepts it."""
    for name in ("code", "parent"):  # an unknown unit is a 404 before any stored answer is looked up or claimed
        if params.get(name) is not None and r.reader.registry.get(params[name]) is None:
            raise NotFound(f"unknown unit {params[name]}")
    # Keyed by the validated parameters, not the raw query: parameters the endpoint does not take
    # (any bytes, NUL included) neither split one answer into many nor reach the database.
    key = f"{kind}:{canonical_params(params)}"
    answers = r.request.app.state.answers
    got = await answers.get(ReadContext(r.reader, r.rankings), kind, key, params)
    if len(got.body) < GZIP_FROM:
        return Response(got.body, media_type="application/json", headers={"ETag": got.etag})
    if accepts_gzip(r.request.headers.get("accept-encoding", "")):
        headers = {"ETag": gzip_etag(got.etag), "Content-Encoding": "gzip", "Vary": "Accept-Encoding"}
        return Response(answers.gzipped(key, got), media_type="application/json", headers=headers)
    return Response(got.body, media_type="application/json", headers={"ETag": got.etag, "Vary": "Accept-Encoding"})


class _Timer:
    def __init__(self, endpoint: str):
        self.endpoint = endpoint

    def __enter__(self):
        self.t0 = time.perf_counter()

    def __exit__(self, *exc):
        metrics.KPI_SECONDS.labels(self.endpoint).observe(time.perf_counter() - self.t0)


@router.get(
    "/units/{code}/kpis",
    response_model=KpiAnswer,
    responses=problems(*READ_ERRORS, 404, 422),
    summary="KPIs of one unit, the previous period and the change",
    description="Every KPI of SPEC section 4 for the unit and everything below it — tỷ lệ giải quyết đúng hạn "
    "(`on_time_rate`), điểm tiến độ giải quyết theo Chỉ số 766 (`settlement_score`), hồ sơ đang giải quyết "
    "(`pending`), hồ sơ đang quá hạn (`overdue`)... — with the same figures for the previous period and the "
    'change, so that "better than last week" is one request. Real time: an acknowledged event is in every '
    "answer read after it. Every GET answer has an `ETag` and honours `If-None-Match` with `304`." + PERIOD_DOC,
)
async def unit_kpis(
    r: ReadsDep,
    code: Code,
    period: PeriodKind = None,
    at: At = None,
    window: Window = None,
    sector: Sector = None,
) -> Response:
    with _Timer("kpis"):
        params = {"code": code, "period": period, "at": at, "window": window, "sector": sector}
        return await answer(r, "kpis", params)


@router.get(
    "/rankings",
    response_model=RankingAnswer,
    responses=problems(*READ_ERRORS, 404, 422),
    summary="Units of a level ranked by a KPI",
    description="Provinces (tỉnh, thành phố) or communes (xã, phường, đặc khu), optionally only those under "
    "`parent`, ranked by one KPI with their figures and change. Ties (equal values as answered) share a rank "
    "(1, 2, 2, 4) and are listed by code; units whose KPI is `null` (or, with `min_count`, rests on fewer dossiers) "
    "come last, by code, with `rank: null`." + PERIOD_DOC,
)
async def rankings(
    r: ReadsDep,
    level: RankLevel = "province",
    parent: RankParent = None,
    period: PeriodKind = None,
    at: At = None,
    window: Window = None,
    sort: Sort = "-on_time_rate",
    limit: Annotated[int, Query(ge=1, le=5000, description="Items in this page, at most 5,000.", examples=[50])] = 50,
    offset: Offset = 0,
    min_count: MinCount = 0,
) -> Response:
    with _Timer("rankings"):
        params = {"level": level, "parent": parent, "period": period, "at": at, "window": window, "sort": sort}
        return await answer(r, "rankings", params | {"limit": limit, "offset": offset, "min_count": min_count})


@router.get(
    "/units/{code}/series",
    response_model=SeriesAnswer,
    responses=problems(*READ_ERRORS, 404, 422),
    summary="A time series of one KPI",
    description="One KPI of the unit per interval over [`from`, `to`), widened to whole intervals; every interval "
    "in between is a point, `value` `null` where the KPI is. At most 1,000 points (more is a `422`). "
    "Default: the last 52 weeks up to today.",
)
async def series(
    r: ReadsDep,
    code: Code,
    kpi: SeriesKpi = "on_time_rate",
    interval: Interval = "week",
    from_: From = None,
    to: To = None,
) -> Response:
    with _Timer("series"):
        params = {"code": code, "kpi": kpi, "interval": interval, "from": from_, "to": to}
        return await answer(r, "series", params)


@router.get(
    "/units/{code}/sectors",
    response_model=SectorsAnswer,
    responses=problems(*READ_ERRORS, 404, 422),
    summary="KPIs of one unit split by sector",
    description="One item per sector (lĩnh vực: `land`, `civil_status`, `business`...) with any non-zero figure in "
    "the period, `sector: null` for dossiers without one. A dossier's sector is the one its `received` event "
    "names, else the latest one its other events name." + PERIOD_DOC,
)
async def sectors(
    r: ReadsDep,
    code: Code,
    period: PeriodKind = None,
    at: At = None,
    window: Window = None,
) -> Response:
    with _Timer("sectors"):
        return await answer(r, "sectors", {"code": code, "period": period, "at": at, "window": window})


@router.get(
    "/units/{code}/at-risk",
    response_model=AtRiskAnswer,
    responses=problems(*READ_ERRORS, 404, 422),
    summary="Pending dossiers due soon (and, optionally, overdue)",
    description="Hồ sơ sắp đến hạn: the pending dossiers of the unit and every unit below it whose effective deadline "
    "lies in [now, now + `within`), with `include_overdue=true` also those whose deadline has passed; soonest "
    "deadline first (ties by unit code, then dossier id), paginated.",
)
async def at_risk(
    r: ReadsDep,
    code: Code,
    within: Within = "48h",
    include_overdue: IncludeOverdue = False,
    limit: Limit = 100,
    offset: Offset = 0,
) -> Response:
    with _Timer("at_risk"):
        params = {"code": code, "within": within, "include_overdue": include_overdue, "limit": limit, "offset": offset}
        return await answer(r, "at_risk", params)


@router.get(
    "/units/{code}/silent",
    response_model=SilentAnswer,
    responses=problems(*READ_ERRORS, 404, 422),
    summary="Silent sources at or below a unit",
    description="Đơn vị ngừng gửi dữ liệu: the units at or below the unit (itself included) that are silent now: the last "
    "event accepted for the unit was accepted more than `SILENT_AFTER_HOURS` (default 48) hours ago, and its events "
    "are dated on at least 3 of the 14 local days up to that acceptance — it normally sends, and has stopped. A unit "
    "that never sent is not silent. Longest silent first (then by code); their figures, and those of every unit "
    "above them, may be incomplete.",
)
async def silent(
    r: ReadsDep,
    code: Code,
    limit: Limit = 100,
    offset: Offset = 0,
) -> Response:
    with _Timer("silent"):
        return await answer(r, "silent", {"code": code, "limit": limit, "offset": offset})
