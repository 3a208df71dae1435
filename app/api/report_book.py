"""The period report as one XLSX workbook: one sheet per part, Vietnamese titles (English with `lang=en`)."""

from __future__ import annotations

from typing import IO

from app import tables
from app.api import titles
from app.api.downloads import as_rates, columns, filename
from app.scoring.kpis import is_rate
from app.scoring.schemas import DriverItem, ReportRankingItem, SectorItem, SilentItem

RANKING_COLUMNS = (
    "rank",
    "previous_rank",
    "unit.code",
    "unit.name",
    "kpis.on_time_rate",
    "change.on_time_rate",
    "kpis.resolved",
    "kpis.resolved_late",
    "kpis.received",
    "kpis.online_rate",
    "kpis.overdue",
    "kpis.due_48h",
)
DRIVER_COLUMNS = (
    "unit.code",
    "unit.name",
    "own",
    "value",
    "previous_value",
    "numerator",
    "denominator",
    "previous_numerator",
    "previous_denominator",
    "contribution",
)
DUE_COLUMNS = ("unit.code", "unit.name", "kpis.due_24h", "kpis.due_48h", "kpis.due_72h")
SILENT_COLUMNS = ("unit.code", "unit.name", "last_event_at", "silent_hours")
SECTOR_COLUMNS = ("sector", "kpis.received", "kpis.resolved", "kpis.on_time_rate", "kpis.online_rate", "kpis.pending", "kpis.overdue")


def _pick(all_columns: list[tables.Column], paths: tuple[str, ...]) -> list[tables.Column]:
    by_path = {c.path: c for c in all_columns}
    return [by_path[p] for p in paths]


def _sheet(name: str, cols: list[tables.Column], items: list[dict]) -> tables.Table:
    return tables.Table(name, cols, list(tables.rows_of(items, [c.path for c in cols])))


def report_sheets(answer: dict, lang: str) -> list[tables.Table]:
    """The report's parts as tables, in the order of SPEC section 5."""
    label = lambda key: titles.label(key, lang)  # noqa: E731
    summary = answer["summary"]
    rates = {titles.kpi_title(k, lang) for k in summary["kpis"] if is_rate(k)}
    sheets = [
        tables.Table(
            label("summary"),
            [
                tables.Column("kpi", titles.title("kpi", lang), tables.TEXT, "The KPI (SPEC section 4)."),
                tables.Column("value", titles.title("value", lang), tables.NUMBER, "Its value in the period."),
                tables.Column("previous", titles.title("previous", lang), tables.NUMBER, "Its value in the previous period."),
                tables.Column("change", titles.title("change", lang), tables.NUMBER, "Current minus previous."),
            ],
            [[titles.kpi_title(k, lang), v, summary["previous"]["kpis"][k], summary["change"][k]] for k, v in summary["kpis"].items()],
            rate_row=lambda row: row[0] in rates,
        )
    ]
    if answer["ranking"] is not None:
        cols = _pick(columns(ReportRankingItem, lang), RANKING_COLUMNS)
        sheets.append(_sheet(label("ranking"), cols, answer["ranking"]["items"]))
    for kpi, part in answer["drivers"].items():
        table = _sheet(f"{label('drivers')} – {kpi}", _pick(columns(DriverItem, lang), DRIVER_COLUMNS), part["items"])
        sheets.append(as_rates(table, ("value", "previous_value", "contribution")) if is_rate(kpi) else table)
    due = answer["due_soon"]
    totals = {"unit": answer["unit"], "kpis": {k: due[k] for k in ("due_24h", "due_48h", "due_72h")}}
    below = due["units"]["items"] if due["units"] else []
    sheets.append(_sheet(label("due_soon"), _pick(columns(ReportRankingItem, lang), DUE_COLUMNS), [totals, *below]))
    sheets.append(_sheet(label("silent"), _pick(columns(SilentItem, lang), SILENT_COLUMNS), answer["silent"]["items"]))
    sheets.append(_sheet(label("sectors"), _pick(columns(SectorItem, lang), SECTOR_COLUMNS), answer["sectors"]["items"]))
    return sheets


def report_about(answer: dict, lang: str, request: str) -> list[tuple[str, str]]:
    p, prev = answer["period"], answer["previous"]["period"]
    until = f" ({titles.label('until', lang)}: {prev['until']})" if prev.get("until") else ""  # a period in progress
    return [
        (titles.label("table", lang), titles.label("report", lang)),
        (titles.label("unit", lang), f"{answer['unit']['code']} – {answer['unit']['name']}"),
        (titles.label("period", lang), f"{p['label']}: {p['start']} → {p['end']}"),
        (titles.label("previous_period", lang), f"{prev['label']}: {prev['start']} → {prev['end']}{until}"),
        (titles.label("as_of", lang), answer["as_of"]),
        (titles.label("times", lang), titles.label("times_note", lang)),
        (titles.label("request", lang), request),
    ]


def write_report(answer: dict, lang: str, request: str, out: IO[bytes] | str) -> None:
    """The report workbook of `answer` (app.scoring.report) in `out`."""
    tables.write_workbook(report_sheets(answer, lang), out, report_about(answer, lang, request), (titles.label("about", lang), ""))


def report_filename(answer: dict) -> str:
    return filename("report", answer["unit"]["code"], answer["period"]["label"], "xlsx")
