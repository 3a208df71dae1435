"""The XLSX writer candidates on the two downloads that matter: a ranking of all 3,321 communes
(52 columns) and a 100,000-row at-risk list (13 columns). Each run is a fresh process, so its peak
RSS is the writer's (plus Python's). `python -m bench.xlsx_libs [runs]` prints min/median/max.

XlsxWriter writes with `constant_memory` (one row buffered, cells streamed to a temp file);
openpyxl with `write_only` (rows streamed to its own temp file)."""

from __future__ import annotations

import json
import random
import statistics
import subprocess
import sys
import tempfile
from datetime import datetime, timedelta

SHAPES = {"ranking": (3321, 52), "at_risk": (100_000, 13)}


def rows(n: int, width: int):
    rnd = random.Random(n)
    t0 = datetime(2026, 12, 1, 8, 0)
    for i in range(n):
        row: list = [i + 1, f"{10000 + i}", f"Xã Phước Hưng {i}", "commune"]
        row.append(t0 + timedelta(minutes=i))
        while len(row) < width:
            row.append(rnd.random() if len(row) % 2 else rnd.randint(0, 5000))
        yield row


def write_xlsxwriter(path: str, n: int, width: int) -> None:
    import xlsxwriter

    book = xlsxwriter.Workbook(path, {"constant_memory": True})
    sheet = book.add_worksheet("t")
    pct = book.add_format({"num_format": "0.00%"})
    stamp = book.add_format({"num_format": "yyyy-mm-dd hh:mm:ss"})
    sheet.write_row(0, 0, [f"col {c}" for c in range(width)])
    for r, row in enumerate(rows(n, width), start=1):
        for c, v in enumerate(row):
            if isinstance(v, datetime):
                sheet.write_datetime(r, c, v, stamp)
            elif isinstance(v, float):
                sheet.write_number(r, c, v, pct)
            else:
                sheet.write(r, c, v)
    sheet.freeze_panes(1, 0)
    sheet.autofilter(0, 0, n, width - 1)
    book.close()


def write_openpyxl(path: str, n: int, width: int) -> None:
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell

    book = Workbook(write_only=True)
    sheet = book.create_sheet("t")
    sheet.freeze_panes = "A2"
    sheet.auto_filter.ref = f"A1:A{n + 1}"
    sheet.append([f"col {c}" for c in range(width)])
    for row in rows(n, width):
        cells = []
        for v in row:
            cell = WriteOnlyCell(sheet, value=v)
            if isinstance(v, datetime):
                cell.number_format = "yyyy-mm-dd hh:mm:ss"
            elif isinstance(v, float):
                cell.number_format = "0.00%"
            cells.append(cell)
        sheet.append(cells)
    book.save(path)


def one(lib: str, shape: str) -> dict:
    import resource
    import time

    n, width = SHAPES[shape]
    with tempfile.NamedTemporaryFile(suffix=".xlsx") as f:
        t0 = time.perf_counter()
        (write_xlsxwriter if lib == "xlsxwriter" else write_openpyxl)(f.name, n, width)
        seconds = time.perf_counter() - t0
        size = f.seek(0, 2)
    return {"seconds": seconds, "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "bytes": size}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "one":
        print(json.dumps(one(sys.argv[2], sys.argv[3])))
        return
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    for shape in SHAPES:
        for lib in ("xlsxwriter", "openpyxl"):
            got = [json.loads(subprocess.check_output([sys.executable, "-m", "bench.xlsx_libs", "one", lib, shape])) for _ in range(runs)]

            def mmm(key: str, got=got) -> str:
                xs = [g[key] for g in got]
                return f"{min(xs):.2f}/{statistics.median(xs):.2f}/{max(xs):.2f}"

            print(f"{shape:8} {lib:10} seconds {mmm('seconds')}  peak RSS MiB {mmm('peak_mib')}  size {got[0]['bytes'] / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
