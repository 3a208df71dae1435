"""The registry's seed: the 2025 two-tier divisions from the `vietnam-provinces` package, and CSV files."""

from __future__ import annotations

import csv
import re
from pathlib import Path

from app.units.model import NATION, UnitRow

LEVELS = ("nation", "province", "commune")
COMMUNE_KINDS = ("xa", "phuong", "dac_khu")


def level_of(code: str) -> str | None:
    """The level a code's shape implies: VN, 2 digits, or 5 digits."""
    if code == NATION:
        return "nation"
    if re.fullmatch(r"\d{2}", code):
        return "province"
    if re.fullmatch(r"\d{5}", code):
        return "commune"
    return None


def package_units() -> list[UnitRow]:
    """Nation, 34 provinces and 3,321 communes, codes zero-padded."""
    from vietnam_provinces import Province, VietNamDivisionType, Ward

    kinds = {
        VietNamDivisionType.XA: "xa",
        VietNamDivisionType.PHUONG: "phuong",
        VietNamDivisionType.DAC_KHU: "dac_khu",
    }
    rows = [UnitRow(NATION, "Việt Nam", "nation", None, None)]
    for p in Province.iter_all():
        rows.append(UnitRow(f"{int(p.code):02d}", p.name, "province", None, NATION))
    for w in Ward.iter_all():
        rows.append(UnitRow(f"{int(w.code):05d}", w.name, "commune", kinds[w.division_type], f"{int(w.province_code):02d}"))
    return rows


class CsvError(ValueError):
    pass


def read_csv(path: Path) -> list[UnitRow]:
    """Parse `code,name,kind,parent_code`; raise CsvError naming the line and field."""
    rows: list[UnitRow] = []
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        missing = {"code", "name", "kind", "parent_code"} - set(reader.fieldnames or [])
        if missing:
            raise CsvError(f"header lacks {', '.join(sorted(missing))}")
        for lineno, rec in enumerate(reader, start=2):
            code = (rec["code"] or "").strip()
            name = (rec["name"] or "").strip()
            kind = (rec["kind"] or "").strip() or None
            parent = (rec["parent_code"] or "").strip() or None
            level = level_of(code)
            if level is None:
                raise CsvError(f"line {lineno}: code {code!r} is not VN, 2 or 5 digits")
            if not name:
                raise CsvError(f"line {lineno}: name is empty")
            if level == "commune" and kind not in COMMUNE_KINDS:
                raise CsvError(f"line {lineno}: kind must be one of {', '.join(COMMUNE_KINDS)}")
            if level != "commune":
                kind = None
            expected_parent = {"nation": None, "province": NATION, "commune": "province"}[level]
            if level == "province" and parent != NATION:
                raise CsvError(f"line {lineno}: a province's parent_code must be VN")
            if level == "commune" and (parent is None or level_of(parent) != expected_parent):
                raise CsvError(f"line {lineno}: a commune's parent_code must be a province code")
            rows.append(UnitRow(code, name, level, kind, parent))
    return rows
