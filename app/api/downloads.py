"""Downloads: every GET answer of SPEC section 5 (but the export feed and health) as CSV or XLSX.

A download is asked for with `format=csv|xlsx` or an `Accept` header that prefers `text/csv` or the
XLSX type. The routes here have the paths of the JSON ones and match only such requests
(`DownloadRoute`), so the JSON handlers stay as they are; the OpenAPI document lists the media types
and the `format`/`lang` parameters on the JSON operations (app.api.docs). Each handler: parse -> one
service call for every row (limit/offset do not apply) -> a `Table` (app.tables) streamed.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin
from urllib.parse import parse_qsl

import anyio
import orjson
from fastapi import APIRouter, Depends, Query, Request
from fastapi.routing import APIRoute
from pydantic import BaseModel
from starlette.responses import StreamingResponse
from starlette.routing import Match

from app import tables
from app.api import params as arg
from app.api import titles
from app.api.deps import Reads, ReadsDep
from app.api.etag import etag_of
from app.errors import Unprocessable
from app.scoring import drivers as drivers_service
from app.scoring import service as scoring
from app.scoring.kpis import is_rate
from app.scoring.schemas import AtRiskItem, DriverItem, RankingItem, SectorItem, SeriesPoint, SilentItem, Unit
from app.scoring.service import pick_period

FORMATS = ("csv", "xlsx")
# the JSON operations that can be downloaded (app.api.docs documents their media types)
DOWNLOADABLE = (
    "/api/v1/units",
    "/api/v1/units/{code}",
    "/api/v1/units/{code}/kpis",
    "/api/v1/rankings",
    "/api/v1/units/{code}/series",
    "/api/v1/units/{code}/sectors",
    "/api/v1/units/{code}/at-risk",
    "/api/v1/units/{code}/silent",
    "/api/v1/units/{code}/drivers",
)


def wanted_format(scope) -> str | None:
    """`csv` or `xlsx` when the request asks for a download (`format=` wins over `Accept`), else None."""
    for key, value in parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True):
        if key == "format":
            return None if value == "json" else value  # any other value is the download route's 422
    accept = dict(scope.get("headers") or []).get(b"accept", b"").decode("latin-1")
    best, best_q = None, 0.0
    for i, part in enumerate(accept.split(",")):
        media, *params = (p.strip() for p in part.split(";"))
        q = next((float(p[2:]) for p in params if p.startswith("q=") and re.fullmatch(r"q=[01](\.\d{0,3})?", p)), 1.0)
        fmt = {tables.CSV_MEDIA: "csv", tables.XLSX_MEDIA: "xlsx", "application/json": "json", "*/*": "json"}.get(media)
        if fmt and (q > best_q or (q == best_q and best is None)):
            best, best_q = fmt, q - i * 1e-9  # equal q: the first listed wins
    return best if best in FORMATS else None


class DownloadRoute(APIRoute):
    """A route that matches only requests asking for a download; the JSON route of the same path takes the rest."""

    def matches(self, scope):
        if scope["type"] != "http" or wanted_format(scope) is None:
            return Match.NONE, {}
        return super().matches(scope)


router = APIRouter(prefix="/api/v1", tags=["downloads"], route_class=DownloadRoute, include_in_schema=False)

Format = Annotated[
    Literal["csv", "xlsx"] | None,
    Query(description="`csv` or `xlsx` for a download (or the `Accept` header); default JSON."),
]
Lang = Annotated[
    Literal["vi", "en", "key"],
    Query(description="Header row of a download: Vietnamese titles, English (`en`), or the JSON paths (`key`)."),
]


# --- columns from the answer models ----------------------------------------------------------------


def _leaf_kind(annotation: Any, name: str) -> str:
    args = [a for a in get_args(annotation) if a is not type(None)] if get_origin(annotation) in (Union, UnionType) else [annotation]
    typ = args[0] if args else str
    if typ is bool:
        return tables.BOOL
    if typ is int:
        return tables.INT
    if typ is float:
        return tables.RATE if is_rate(name) else tables.NUMBER
    if typ is datetime:
        return tables.DATETIME
    if typ is date:
        return tables.DATE
    return tables.TEXT


def _model_of(annotation: Any) -> type[BaseModel] | None:
    for typ in get_args(annotation) or (annotation,):
        if isinstance(typ, type) and issubclass(typ, BaseModel):
            return typ
    return None


def columns(model: type[BaseModel], lang: str, prefix: str = "", rate_kpis: bool = True) -> list[tables.Column]:
    """One column per leaf field of `model` (nested models flattened by path; lists left out)."""
    out: list[tables.Column] = []
    for name, info in model.model_fields.items():
        path = f"{prefix}.{name}" if prefix else name
        nested = _model_of(info.annotation)
        if nested is not None:
            out += columns(nested, lang, path, rate_kpis)
        elif get_origin(info.annotation) is not list:
            kind = _leaf_kind(info.annotation, name)
            if kind == tables.RATE and not rate_kpis:
                kind = tables.NUMBER
            out.append(tables.Column(path, titles.title(path, lang), kind, info.description or ""))
    return out


# --- rendering -------------------------------------------------------------------------------------


def _about(answer: dict, what: str, request: Request, lang: str) -> list[tuple[str, str]]:
    lines = [(titles.label("table", lang), titles.label(what, lang))]
    unit = answer.get("unit")
    if unit:
        lines.append((titles.label("unit", lang), f"{unit['code']} – {unit['name']}"))
    for key, block in (("period", answer.get("period")), ("previous_period", (answer.get("previous") or {}).get("period"))):
        if block:
            name = block.get("label") or block.get("window") or block.get("kind")
            until = f" ({titles.label('until', lang)}: {block['until']})" if block.get("until") else ""  # the previous at the same point
            lines.append((titles.label(key, lang), f"{name}: {block['start']} → {block['end']}{until}"))
    if answer.get("as_of"):
        lines.append((titles.label("as_of", lang), answer["as_of"]))
    lines.append((titles.label("times", lang), titles.label("times_note", lang)))
    lines.append((titles.label("request", lang), str(request.url.path) + ("?" + request.url.query if request.url.query else "")))
    return lines


def _about_title(lang: str) -> tuple[str, str]:
    return (titles.label("about", lang), "")


def _name_part(value: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", value).strip("_") or "all"


def filename(what: str, unit: str, period: str, fmt: str) -> str:
    """`chiso-<what>-<unit>-<period label or window>.<ext>`, ASCII only."""
    return f"chiso-{_name_part(what)}-{_name_part(unit)}-{_name_part(period)}.{fmt}"


def period_name(answer: dict) -> str:
    p = answer.get("period") or {}
    return p.get("label") or p.get("window") or ""


def _stream_xlsx(table: tables.Table) -> Iterator[bytes]:
    """Write the workbook to a temporary file (XlsxWriter, constant memory), then send it in chunks."""
    with tempfile.TemporaryFile() as f:
        tables.write_xlsx(table, f)
        f.seek(0)
        while chunk := f.read(1 << 16):
            yield chunk


async def _xlsx_body(table: tables.Table):
    it = _stream_xlsx(table)
    first = await anyio.to_thread.run_sync(next, it)  # the whole workbook is written in a worker thread
    yield first
    for chunk in it:
        yield chunk


def respond(table: tables.Table, answer: dict, fmt: str, lang: str, name: str) -> StreamingResponse:
    """The table streamed as `fmt`, with an ETag over the answer's figures (not `as_of`) and the format."""
    basis = {k: v for k, v in answer.items() if k != "as_of"}
    tag = etag_of(orjson.dumps(basis) + f"|{fmt}|{lang}".encode())
    headers = {"ETag": tag, "Content-Disposition": f'attachment; filename="{name}"'}
    body = tables.render_csv(table) if fmt == "csv" else _xlsx_body(table)
    media = tables.CSV_MEDIA + "; charset=utf-8" if fmt == "csv" else tables.XLSX_MEDIA
    return StreamingResponse(body, media_type=media, headers=headers)


PAGE_ROWS = 5000  # rows read at a time by a long download


def paged(first: list[dict], page: Callable, total: int) -> Iterator[dict]:
    """The first page's items, then every further page's, each read when the renderer (in a worker
    thread) comes to it: one page in memory at a time."""
    yield from first
    for offset in range(len(first), total, PAGE_ROWS):
        got = anyio.from_thread.run(page, offset)["items"]
        if not got:
            return
        yield from got


def _check_rows(total: int, max_rows: int) -> None:
    if total > max_rows:
        raise Unprocessable(
            f"{total} rows: a download holds at most {max_rows}; narrow the request",
            [{"loc": ["format"], "msg": f"more than {max_rows} rows; narrow the request (parent, within, a shorter range)"}],
        )


def items_table(
    answer: dict, model: type[BaseModel], what: str, request: Request, lang: str, rate_kpis: bool = True, key: str = "items"
) -> tables.Table:
    cols = columns(model, lang, rate_kpis=rate_kpis)
    rows = tables.rows_of(answer[key], [c.path for c in cols])
    return tables.Table(titles.label(what, lang), cols, rows, _about(answer, what, request, lang), about_title=_about_title(lang))


def kpi_table(answer: dict, request: Request, lang: str, what: str = "kpis") -> tables.Table:
    """A KPI answer as one row per KPI: kpi, value, previous, change."""
    names = list(answer["kpis"])
    cols = [
        tables.Column("kpi", titles.title("kpi", lang), tables.TEXT, "The KPI's name (SPEC section 4)."),
        tables.Column("value", titles.title("value", lang), tables.NUMBER, "Its value in the period."),
        tables.Column("previous", titles.title("previous", lang), tables.NUMBER, "Its value in the previous period."),
        tables.Column("change", titles.title("change", lang), tables.NUMBER, "Current minus previous; empty where either is."),
    ]
    rows = [[k, answer["kpis"][k], answer["previous"]["kpis"][k], answer["change"][k]] for k in names]
    rates = {k for k in names if is_rate(k)}
    return tables.Table(
        titles.label(what, lang),
        cols,
        rows,
        _about(answer, what, request, lang),
        rate_row=lambda r: r[0] in rates,
        about_title=_about_title(lang),
    )


@dataclass(frozen=True, slots=True)
class Ask(Reads):
    """A read asked as a download: the format and the header language too."""

    format: str = "csv"
    lang: str = "vi"

    @property
    def rows(self) -> int:
        """The rows asked of a service: one more than a download may hold, to tell when it is too many."""
        return self.settings.download_max_rows + 1

    def period(self, period: str | None, at: date | None, window: str | None):
        return pick_period(period, at, window, self.reader.now(), self.reader.tz)


async def ask(r: ReadsDep, format: Format = None, lang: Lang = "vi") -> Ask:
    return Ask(r.request, r.reader, r.settings, format or wanted_format(r.request.scope) or "csv", lang)


AskDep = Annotated[Ask, Depends(ask)]


async def download(
    a: Ask, what: str, unit: str, compute: Callable, build: Callable, name: Callable[[dict], str] = period_name
) -> StreamingResponse:
    """Compute the answer with every row, refuse more than DOWNLOAD_MAX_ROWS, stream its table."""
    answer = await compute()
    total = answer.get("total", len(answer.get("items") or answer.get("points") or []))
    _check_rows(total, a.settings.download_max_rows)
    return respond(build(answer), answer, a.format, a.lang, filename(what, unit, name(answer), a.format))


def as_table(a: Ask, model: type[BaseModel], what: str, key: str = "items") -> Callable[[dict], tables.Table]:
    return lambda answer: items_table(answer, model, what, a.request, a.lang, key=key)


# --- the routes ------------------------------------------------------------------------------------


@router.get("/units")
async def units_download(a: AskDep, level: arg.UnitLevel = None, parent: arg.UnitParent = None) -> StreamingResponse:
    async def compute():
        rows = scoring.unit_list(a.reader.registry, level, parent)
        return {"items": [scoring.unit_shape(u) for u in rows], "total": len(rows)}

    return await download(a, "units", parent or level or "VN", compute, as_table(a, Unit, "units"))


@router.get("/units/{code}/kpis")
async def kpis_download(
    a: AskDep,
    code: arg.Code,
    period: arg.PeriodKind = None,
    at: arg.At = None,
    window: arg.Window = None,
    sector: arg.Sector = None,
) -> StreamingResponse:
    p = a.period(period, at, window)

    async def compute():
        return await scoring.unit_kpis(a.reader, code, p, sector)

    return await download(a, "kpis", code, compute, lambda answer: kpi_table(answer, a.request, a.lang))


@router.get("/units/{code}")
async def unit_download(a: AskDep, code: arg.Code) -> StreamingResponse:
    async def compute():
        return {"items": [scoring.unit_detail(a.reader.registry, code)], "total": 1}

    return await download(a, "unit", code, compute, as_table(a, Unit, "unit"))


@router.get("/rankings")
async def ranking_download(
    a: AskDep,
    level: arg.RankLevel = "province",
    parent: arg.RankParent = None,
    period: arg.PeriodKind = None,
    at: arg.At = None,
    window: arg.Window = None,
    sort: arg.Sort = "-on_time_rate",
    min_count: arg.MinCount = 0,
) -> StreamingResponse:
    p = a.period(period, at, window)

    async def compute():
        return await scoring.ranking(a.reader, level, parent, p, sort, a.rows, 0, memo=a.rankings, min_count=min_count)

    return await download(a, f"ranking-{level}", parent or "VN", compute, as_table(a, RankingItem, "ranking"))


@router.get("/units/{code}/series")
async def series_download(
    a: AskDep,
    code: arg.Code,
    kpi: arg.SeriesKpi = "on_time_rate",
    interval: arg.Interval = "week",
    from_: arg.From = None,
    to: arg.To = None,
) -> StreamingResponse:
    async def compute():
        return await scoring.series(a.reader, code, kpi, interval, from_, to)

    def build(answer: dict) -> tables.Table:
        table = items_table(answer, SeriesPoint, "series", a.request, a.lang, key="points")
        table.about.insert(1, (titles.title("kpi", a.lang), kpi))
        return as_rates(table, ("value",)) if is_rate(kpi) else table

    def name(answer: dict) -> str:
        points = answer["points"]
        return f"{kpi}-{interval}-{points[0]['start']}-{points[-1]['end']}" if points else kpi

    return await download(a, "series", code, compute, build, name)


@router.get("/units/{code}/sectors")
async def sectors_download(
    a: AskDep, code: arg.Code, period: arg.PeriodKind = None, at: arg.At = None, window: arg.Window = None
) -> StreamingResponse:
    p = a.period(period, at, window)

    async def compute():
        return await scoring.sectors(a.reader, code, p)

    return await download(a, "sectors", code, compute, as_table(a, SectorItem, "sectors"))


@router.get("/units/{code}/at-risk")
async def at_risk_download(
    a: AskDep, code: arg.Code, within: arg.Within = "48h", include_overdue: arg.IncludeOverdue = False
) -> StreamingResponse:
    """Read and sent page by page (PAGE_ROWS) at one `as_of`, so that memory stays bounded however long the list;
    the ETag is taken over the first page, the total and the data version (any event changes it)."""
    scoring.parse_within(within)
    reader = a.reader.at(a.reader.now())  # every page at one instant

    async def page(offset: int) -> dict:
        return await scoring.at_risk(reader, code, within, include_overdue, PAGE_ROWS, offset)

    first = await page(0)
    _check_rows(first["total"], a.settings.download_max_rows)
    version = await a.request.app.state.answers.version()
    items = paged(first["items"], page, first["total"])
    table = items_table({**first, "items": items}, AtRiskItem, "at-risk", a.request, a.lang)
    name = filename("at-risk", code, first["within"] + ("-overdue" if include_overdue else ""), a.format)
    return respond(table, {**first, "data_version": version}, a.format, a.lang, name)


@router.get("/units/{code}/silent")
async def silent_download(a: AskDep, code: arg.Code) -> StreamingResponse:
    async def compute():
        return await scoring.silent_units(a.reader, code, a.rows, 0)

    return await download(a, "silent", code, compute, as_table(a, SilentItem, "silent"), lambda answer: answer["as_of"][:10])


def as_rates(table: tables.Table, paths: tuple[str, ...]) -> tables.Table:
    """The columns at `paths` shown as percentages (the figures of a rate KPI)."""
    table.columns = [tables.Column(c.path, c.title, tables.RATE, c.about) if c.path in paths else c for c in table.columns]
    return table


@router.get("/units/{code}/drivers")
async def drivers_download(
    a: AskDep,
    code: arg.Code,
    kpi: arg.DriverKpi = "on_time_rate",
    period: arg.PeriodKind = None,
    at: arg.At = None,
    window: arg.Window = None,
    sort: arg.DriverSort = "contribution",
) -> StreamingResponse:
    drivers_service.check_kpi(kpi)
    p = a.period(period, at, window)

    async def compute():
        return await drivers_service.drivers(a.reader, code, kpi, p, sort, a.rows, 0)

    def build(answer: dict) -> tables.Table:
        table = items_table(answer, DriverItem, "drivers", a.request, a.lang)
        table.about.insert(1, (titles.title("kpi", a.lang), kpi))
        return as_rates(table, ("value", "previous_value", "contribution")) if is_rate(kpi) else table

    return await download(a, f"drivers-{kpi}", code, compute, build)
