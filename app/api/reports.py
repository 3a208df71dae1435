"""Why a figure moved, and the period report: drivers of a change (SPEC sections 4 and 5)."""

from __future__ import annotations

import io
from datetime import date
from typing import Annotated, Literal

import anyio
import orjson
from fastapi import APIRouter, Query
from starlette.responses import Response

from app.api import downloads
from app.api.deps import ReadsDep
from app.api.etag import etag_of
from app.api.kpis import answer
from app.api.params import PERIOD_DOC, At, Code, DriverKpi, DriverSort, Limit, Offset, PeriodKind, Window
from app.api.report_book import report_filename, write_report
from app.api.schemas import READ_ERRORS, problems
from app.scoring import drivers as drivers_service
from app.scoring import report as report_service
from app.scoring.schemas import DriversAnswer, ReportAnswer
from app.tables import XLSX_MEDIA

router = APIRouter(prefix="/api/v1", tags=["kpis"])


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
    r: ReadsDep,
    code: Code,
    kpi: DriverKpi = "on_time_rate",
    period: PeriodKind = None,
    at: At = None,
    window: Window = None,
    sort: DriverSort = "contribution",
    limit: Limit = 100,
    offset: Offset = 0,
) -> Response:
    drivers_service.check_kpi(kpi)  # a 422 before the cache
    params = {"code": code, "kpi": kpi, "period": period, "at": at, "window": window, "sort": sort}
    return await answer(r, "drivers", params | {"limit": limit, "offset": offset})


@router.get(
    "/units/{code}/report",
    response_model=ReportAnswer,
    responses={
        200: {"content": {XLSX_MEDIA: {"schema": {"type": "string", "format": "binary"}}}, "description": "The report, JSON or XLSX."},
        **problems(*READ_ERRORS, 404, 422),
    },
    summary="The period report of a unit (JSON or one XLSX workbook)",
    description="Báo cáo kỳ: the unit's KPIs with the previous period and the change; the units below ranked by "
    "`on_time_rate` with `min_count=10`, each with its rank in the previous period; the drivers of `on_time_rate`, "
    "`online_rate` and `overdue`; dossiers due within 24/48/72 h now and the units with most of them; the silent units "
    "now; the sectors. `format=xlsx` (or `Accept:` the XLSX type) for one workbook, one sheet per part, Vietnamese "
    "titles (`lang=en` English). Default period: the last whole one before today.",
)
async def report(
    r: ReadsDep,
    code: Code,
    period: Annotated[
        Literal["week", "month", "quarter", "year"], Query(description="The calendar period reported on.", examples=["week"])
    ] = "week",
    at: Annotated[
        date | None,
        Query(description="A local date inside the period; default: the last whole period before today.", examples=["2025-09-30"]),
    ] = None,
    format: Annotated[
        Literal["json", "xlsx"] | None, Query(description="`xlsx` for the workbook; default JSON (or as `Accept` asks).", examples=["xlsx"])
    ] = None,
    lang: Annotated[Literal["vi", "en"], Query(description="The workbook's titles: Vietnamese or English.", examples=["vi"])] = "vi",
) -> Response:
    p = report_service.report_period(r.reader, period, at)
    if (format or ("xlsx" if downloads.wanted_format(r.request.scope) == "xlsx" else "json")) == "json":
        return await answer(r, "report", {"code": code, "period": period, "at": at})
    got = await report_service.report(r.reader, code, p, memo=r.rankings)
    where = str(r.request.url.path) + ("?" + r.request.url.query if r.request.url.query else "")
    basis = orjson.dumps({k: v for k, v in got.items() if k != "as_of"}) + f"|xlsx|{lang}".encode()
    body = await anyio.to_thread.run_sync(_workbook, got, lang, where)
    headers = {"ETag": etag_of(basis), "Content-Disposition": f'attachment; filename="{report_filename(got)}"'}
    return Response(body, media_type=XLSX_MEDIA, headers=headers)


def _workbook(got: dict, lang: str, where: str) -> bytes:
    out = io.BytesIO()
    write_report(got, lang, where, out)
    return out.getvalue()
