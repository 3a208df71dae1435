"""KPI answers: one unit, rankings, series and sectors, each with the previous period and the change."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, tzinfo

from app.aggregates import periods
from app.aggregates.periods import Period
from app.aggregates.reads import read_sectors, read_spans, read_sums
from app.aggregates.sums import Scope, span_for
from app.aggregates.writes import ROLLUP_LEVELS
from app.db.engine import Database
from app.db.models import ALL_SECTORS, NO_SECTOR
from app.errors import NotFound, Unprocessable
from app.scoring import kpis as kpi_math
from app.units.seed import NATION, UnitRow
from app.units.service import Registry

SERIES_MAX_POINTS = 1000


def unit_shape(u: UnitRow) -> dict:
    return {"code": u.code, "name": u.name, "level": u.level, "kind": u.kind, "parent": u.parent_code}


def unit_detail(registry: Registry, code: str) -> dict:
    """One unit with its ancestors from VN down."""
    u = _unit(registry, code)
    return {**unit_shape(u), "parents": [{"code": a.code, "name": a.name, "level": a.level} for a in registry.ancestors(code)]}


def _unit(registry: Registry, code: str) -> UnitRow:
    u = registry.get(code)
    if u is None:
        raise NotFound(f"unknown unit {code}")
    return u


def _scope_of(registry: Registry, code: str) -> Scope:
    """A commune reads its own rows; a province or the nation its rollup rows (the dossiers of its
    subtree only for the corrections within today)."""
    if code == NATION:
        return Scope(codes=None, rollup=NATION)
    u = registry.get(code)
    if u is not None and u.level in ROLLUP_LEVELS:
        return Scope(codes=tuple(registry.subtree(code)), rollup=code)
    return Scope(codes=tuple(registry.subtree(code)))


def pick_period(period: str | None, at, window: str | None, now: datetime, tz: tzinfo) -> Period:
    """The period a query names: `period` + `at` (default today) or `window` (default 30d)."""
    if period and window:
        raise Unprocessable("give period or window, not both", [{"loc": ["window"], "msg": "not with period"}])
    today = periods.today(now, tz)
    if period:
        return periods.containing(period, at or today)
    return periods.window(window or "30d", today)


def _now() -> datetime:
    return datetime.now(UTC)


def as_of(now: datetime, tz: tzinfo) -> str:
    return now.astimezone(tz).isoformat(timespec="seconds")


async def unit_kpis(db: Database, registry: Registry, tz: tzinfo, code: str, p: Period, sector: str | None) -> dict:
    """KPIs of one unit (with everything below it), its previous period and the change."""
    u = _unit(registry, code)
    now = _now()
    prev = periods.previous(p)
    async with db.session() as session:
        cur_s, prev_s = await read_spans(
            session, _scope_of(registry, code), [span_for(p, now, tz), span_for(prev, now, tz)], _sector_key(sector)
        )
    cur, before = kpi_math.compute(cur_s), kpi_math.compute(prev_s)
    return {
        "unit": unit_shape(u),
        "period": p.as_dict(),
        "as_of": as_of(now, tz),
        "kpis": cur,
        "previous": {"period": prev.as_dict(), "kpis": before},
        "change": kpi_math.change(cur, before),
    }


def _sector_key(sector: str | None) -> str:
    if sector is None:
        return ALL_SECTORS
    return NO_SECTOR if sector in ("", "null") else sector


async def ranking(
    db: Database, registry: Registry, tz: tzinfo, level: str, parent: str | None, p: Period, sort: str, limit: int, offset: int
) -> dict:
    """Units of a level ranked by one KPI; ties share a rank; nulls last, unranked."""
    key = sort.lstrip("-")
    if key not in kpi_math.KPI_NAMES:
        raise Unprocessable(f"unknown KPI {key}", [{"loc": ["sort"], "msg": f"unknown KPI {key}"}])
    if parent is not None:
        _unit(registry, parent)
    members = registry.at_level(level, parent)
    now = _now()
    prev = periods.previous(p)
    async with db.session() as session:
        sums = await read_sums(session, Scope(level=level, parent=parent), [span_for(p, now, tz), span_for(prev, now, tz)], ALL_SECTORS)
    rows = []
    for u in members:
        cur_s, prev_s = sums.get(u.code) or sums.default_factory()
        cur, before = kpi_math.compute(cur_s), kpi_math.compute(prev_s)
        rows.append({"unit": unit_shape(u), "kpis": cur, "change": kpi_math.change(cur, before)})
    descending = sort.startswith("-")
    ranked = [r for r in rows if r["kpis"][key] is not None]
    unranked = [r for r in rows if r["kpis"][key] is None]
    ranked.sort(key=lambda r: r["unit"]["code"])
    ranked.sort(key=lambda r: r["kpis"][key], reverse=descending)
    last_value, last_rank = object(), 0
    for i, r in enumerate(ranked, start=1):
        if r["kpis"][key] != last_value:
            last_value, last_rank = r["kpis"][key], i
        r["rank"] = last_rank
    for r in unranked:
        r["rank"] = None
    ordered = ranked + unranked
    return {
        "level": level,
        "parent": parent,
        "sort": sort,
        "period": p.as_dict(),
        "as_of": as_of(now, tz),
        "total": len(ordered),
        "limit": limit,
        "offset": offset,
        "items": [
            {"rank": r["rank"], "unit": r["unit"], "kpis": r["kpis"], "change": r["change"]} for r in ordered[offset : offset + limit]
        ],
    }


async def series(db: Database, registry: Registry, tz: tzinfo, code: str, kpi: str, interval: str, start, end) -> dict:
    """One KPI per interval over [start, end), widened to whole intervals."""
    u = _unit(registry, code)
    if kpi not in kpi_math.KPI_NAMES:
        raise Unprocessable(f"unknown KPI {kpi}", [{"loc": ["kpi"], "msg": f"unknown KPI {kpi}"}])
    now = _now()
    if end is None:
        end = periods.today(now, tz) + timedelta(days=1)
    if start is None:
        start = end - timedelta(days=364)
    if start >= end:
        raise Unprocessable("from must be before to", [{"loc": ["from"], "msg": "must be before to"}])
    spans_p = periods.intervals(interval, start, end)
    if len(spans_p) > SERIES_MAX_POINTS:
        raise Unprocessable(f"more than {SERIES_MAX_POINTS} points", [{"loc": ["from"], "msg": f"more than {SERIES_MAX_POINTS} points"}])
    scope = _scope_of(registry, code)
    async with db.session() as session:
        sums = await read_spans(session, scope, [span_for(p, now, tz) for p in spans_p], ALL_SECTORS)
    points = [
        {"start": p.start.isoformat(), "end": p.end.isoformat(), "value": kpi_math.compute(s)[kpi]}
        for p, s in zip(spans_p, sums, strict=True)
    ]
    return {"unit": unit_shape(u), "kpi": kpi, "interval": interval, "points": points}


async def sectors(db: Database, registry: Registry, tz: tzinfo, code: str, p: Period) -> dict:
    """KPIs split by sector, one item per sector with any non-zero figure."""
    u = _unit(registry, code)
    now = _now()
    scope = _scope_of(registry, code)
    span = span_for(p, now, tz)
    async with db.session() as session:
        names = await read_sectors(session, scope, p.start)
        items = []
        for name in sorted(names):
            (s,) = await read_spans(session, scope, [span], name)
            figures = kpi_math.compute(s)
            if any(v for v in figures.values()):
                items.append({"sector": name or None, "kpis": figures})
    return {"unit": unit_shape(u), "period": p.as_dict(), "as_of": as_of(now, tz), "items": items}
