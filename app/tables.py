"""Tables for downloads: JSON items flattened by path, rendered as CSV or XLSX. Knows no domain.

A `Table` is its columns (a JSON path, a header, a kind) and its rows (one list of JSON values per
item, in column order). CSV is RFC 4180 in UTF-8 with a byte-order mark (Excel reads Vietnamese right
only then); XLSX is written by XlsxWriter in constant memory (docs/downloads.md has the measurements
behind the choice): header row frozen with a filter, rates as percentages, dates as dates, and a
second sheet that says what the table is.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import IO, Any

import xlsxwriter

TEXT, INT, NUMBER, RATE, DATE, DATETIME, BOOL = "text", "int", "number", "rate", "date", "datetime", "bool"
CSV_MEDIA = "text/csv"
XLSX_MEDIA = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
MEDIA = {"csv": CSV_MEDIA, "xlsx": XLSX_MEDIA}
CHUNK_ROWS = 1000  # rows per CSV chunk sent: bounded memory, few writes


@dataclass(frozen=True, slots=True)
class Column:
    path: str  # the JSON path, e.g. `kpis.on_time_rate`
    title: str  # the header shown
    kind: str = TEXT
    about: str = ""  # what the column means (the XLSX's second sheet)


@dataclass
class Table:
    name: str  # the sheet's name
    columns: list[Column]
    rows: Iterable[list[Any]]
    about: list[tuple[str, str]] = field(default_factory=list)  # (label, value) lines of the second sheet
    rate_row: Callable[[list[Any]], bool] | None = None  # rows whose numbers are rates (a KPI answer's)
    about_title: tuple[str, str] = ("Về bảng này", "")  # the head of the second sheet


def flatten(item: Any, prefix: str = "") -> dict[str, Any]:
    """`{"unit": {"code": "46"}}` -> `{"unit.code": "46"}`; lists get their index as a path part."""
    if isinstance(item, dict):
        out: dict[str, Any] = {}
        for key, value in item.items():
            out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    if isinstance(item, list):
        out = {}
        for i, value in enumerate(item):
            out.update(flatten(value, f"{prefix}.{i}" if prefix else str(i)))
        return out
    return {prefix: item}


def rows_of(items: Iterable[dict], paths: list[str]) -> Iterator[list[Any]]:
    """Each item as the values of `paths` (a path it lacks is `None`: an empty cell)."""
    for item in items:
        flat = flatten(item)
        yield [flat.get(p) for p in paths]


def csv_text(value: Any) -> str:
    """A JSON value as CSV text: `null` empty, booleans as in JSON, numbers and strings as they are."""
    if value is None:
        return ""
    if value is True or value is False:
        return "true" if value else "false"
    return str(value)


def render_csv(table: Table) -> Iterator[bytes]:
    """The table as RFC 4180 CSV (CRLF line ends, quoted where needed), UTF-8 with a BOM, in chunks."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow([c.title for c in table.columns])
    first = True
    pending = 0
    for row in table.rows:
        writer.writerow([csv_text(v) for v in row])
        pending += 1
        if pending >= CHUNK_ROWS:
            yield (b"\xef\xbb\xbf" if first else b"") + buf.getvalue().encode()
            first, pending = False, 0
            buf.seek(0)
            buf.truncate()
    yield (b"\xef\xbb\xbf" if first else b"") + buf.getvalue().encode()


def _excel_time(value: Any, kind: str) -> Any:
    """An ISO date or local-offset time as Excel's (naive) date or time; anything else unchanged."""
    if not isinstance(value, str):
        return value
    try:
        if kind == DATE:
            return date.fromisoformat(value)
        return datetime.fromisoformat(value).replace(tzinfo=None)  # the local time as answered; the offset is in `about`
    except ValueError:
        return value


def write_xlsx(table: Table, out: IO[bytes] | str) -> None:
    """The table as an XLSX workbook in `out`: sheet 1 the table, sheet 2 what it is."""
    write_workbook([table], out, table.about, table.about_title)


def write_workbook(
    sheets: list[Table], out: IO[bytes] | str, about: list[tuple[str, str]], about_title: tuple[str, str] = ("Về bảng này", "")
) -> None:
    """Tables as the sheets of one XLSX workbook (each header frozen, with a filter), then a sheet
    `about`: the `about` lines and, for each sheet, its columns' paths, titles and meanings."""
    book = xlsxwriter.Workbook(out, {"constant_memory": True, "in_memory": False, "strings_to_numbers": False})
    formats = {
        "head": book.add_format({"bold": True, "bg_color": "#DDEBF7", "text_wrap": True, "valign": "top"}),
        "pct": book.add_format({"num_format": "0.00%"}),
        "day": book.add_format({"num_format": "yyyy-mm-dd"}),
        "stamp": book.add_format({"num_format": "yyyy-mm-dd hh:mm:ss"}),
    }
    names: set[str] = set()
    for table in sheets:
        name = re.sub(r"[\[\]:*?/\\]", "-", table.name)[:31]  # characters Excel refuses in a sheet name
        while name.lower() in names:  # sheet names are unique, case-insensitively, at most 31 characters
            name = name[:28] + f" {len(names)}"
        names.add(name.lower())
        _write_sheet(book.add_worksheet(name), table, formats)
    info = book.add_worksheet("about")
    info.set_column(0, 0, 28)
    info.set_column(1, 1, 60)
    info.set_column(2, 2, 80)
    info.write_row(0, 0, about_title, formats["head"])
    r = 1
    for label, value in about:
        info.write_string(r, 0, label)
        info.write_string(r, 1, value)
        r += 1
    for table in sheets:
        r += 1
        if len(sheets) > 1:
            info.write_string(r, 0, table.name, formats["head"])
            r += 1
        for col in table.columns:
            info.write_string(r, 0, col.path)
            info.write_string(r, 1, col.title)
            info.write_string(r, 2, col.about)
            r += 1
    book.close()


def _write_sheet(sheet, table: Table, formats: dict) -> None:
    for c, col in enumerate(table.columns):
        sheet.write_string(0, c, col.title, formats["head"])
        sheet.set_column(c, c, max(10, min(40, len(col.title) + 2)))
    n = 0
    for n, row in enumerate(table.rows, start=1):
        rates = table.rate_row(row) if table.rate_row else False
        for c, (col, value) in enumerate(zip(table.columns, row, strict=True)):
            if value is None:
                continue
            if col.kind in (DATE, DATETIME):
                value = _excel_time(value, col.kind)
                if isinstance(value, datetime):
                    sheet.write_datetime(n, c, value, formats["stamp"])
                elif isinstance(value, date):
                    sheet.write_datetime(n, c, datetime(value.year, value.month, value.day), formats["day"])
                else:
                    sheet.write_string(n, c, value)
            elif isinstance(value, bool):
                sheet.write_boolean(n, c, value)
            elif isinstance(value, int | float):
                percent = (col.kind == RATE or rates) and isinstance(value, float)
                sheet.write_number(n, c, value, formats["pct"] if percent else None)
            else:
                sheet.write_string(n, c, str(value))
    sheet.freeze_panes(1, 0)
    if table.columns:
        sheet.autofilter(0, 0, max(n, 1), len(table.columns) - 1)
