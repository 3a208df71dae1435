"""KPI answers: one unit, rankings, series and sectors, each with the previous period and the change.
Every read takes its read context first (app.scoring.context.Reader: database, registry, time zone,
silent hours, clock)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, tzinfo

from app.aggregates import periods
from app.aggregates.periods import Period
from app.aggregates.reads import read_at_risk, read_sectors, read_spans
from app.aggregates.silent import cut_off, read_silent_units
from app.aggregates.sums import Scope, Span, Sums, span_at, span_for
from app.aggregates.writes import ROLLUP_LEVELS
from app.db.models import ALL_SECTORS, NO_SECTOR
from app.errors import NotFound, Unprocessable
from app.scoring import kpis as kpi_math
from app.scoring.context import Reader
from app.units.model import NATION, UnitRow
from app.units.service import Registry

SERIES_MAX_POINTS = 1000


def unit_shape(u: UnitRow) -> dict:
    return {"code": u.code, "name": u.name, "level": u.level, "kind": u.kind, "parent": u.parent_code}


def unit_detail(registry: Registry, code: str) -> dict:
    """One unit with its ancestors from VN down."""
    u = _unit(registry, code)
    return {**unit_shape(u), "parents": [{"code": a.code, "name": a.name, "level": a.level} for a in registry.ancestors(code)]}


def unit_list(registry: Registry, level: str | None, parent: str | None) -> list[UnitRow]:
    """The units of `level` directly under `parent` (either may be None), by code."""
    if parent is not None:
        _unit(registry, parent)
    return [
        u
        for u in sorted(registry.units.values(), key=lambda u: u.code)
        if (level is None or u.level == level) and (parent is None or u.parent_code == parent)
    ]


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


unit_of = _unit  # for the other modules of scoring (drivers, report)
scope_of = _scope_of


def pick_period(period: str | None, at, window: str | None, now: datetime, tz: tzinfo) -> Period:
    """The period a query names: `period` + `at` (default today) or `window` (default 30d)."""
    if period and window:
        raise Unprocessable("give period or window, not both", [{"loc": ["window"], "msg": "not with period"}])
    today = periods.today(now, tz)
    if period:
        try:
            p = periods.containing(period, at or today)
            periods.previous(p)  # every answer carries the previous period as well
        except (OverflowError, ValueError):  # at the ends of the calendar (year 1, year 9999)
            raise Unprocessable(f"no {period} around {at} with a previous one", [{"loc": ["at"], "msg": "out of range"}]) from None
        return p
    return periods.window(window or "30d", today)


def _now() -> datetime:
    """The scoring clock (UTC): what a Reader without a clock of its own reads (context.Reader.now),
    and what the shared answers are stamped with (app.answers.service); the tests stop it here."""
    return datetime.now(UTC)


def __getattr__(name: str):
    """`ranking` and `RankingMemo` live in app.scoring.ranking; still importable from here."""
    if name in ("ranking", "RankingMemo"):
        from app.scoring import ranking

        return getattr(ranking, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def as_of(now: datetime, tz: tzinfo) -> str:
    return now.astimezone(tz).isoformat(timespec="seconds")


def compared(p: Period, now: datetime, tz: tzinfo) -> tuple[Period, list[Span], datetime | None]:
    """The previous period of p and the spans of both as compared (SPEC section 4): while p is not
    over, the previous period judged at the same point of it, t (returned; None once p is over)."""
    prev = periods.previous(p)
    t = periods.same_point(p, now, tz)
    return prev, [span_for(p, now, tz), span_for(prev, now, tz) if t is None else span_at(prev, t, tz)], t


def previous_period(prev: Period, t: datetime | None, read: Sums | None, tz: tzinfo) -> dict:
    """The `previous.period` block: with `until` (the instant its figures stand at: t, or the
    midnight before it on a central node) while the current period is in progress."""
    out = prev.as_dict()
    if t is not None:
        out["until"] = as_of(read.until if read is not None and read.until is not None else t, tz)
    return out


def kpi_answer(
    unit: dict, p: Period, now: datetime, tz: tzinfo, prev: Period, t: datetime | None, prev_s: Sums, cur: dict, before: dict
) -> dict:
    """A KPI answer (all sectors) from the figures of its period and of the previous one."""
    return {
        "unit": unit,
        "period": p.as_dict(),
        "as_of": as_of(now, tz),
        "kpis": cur,
        "previous": {"period": previous_period(prev, t, prev_s, tz), "kpis": before},
        "change": kpi_math.change(cur, before),
    }


async def unit_kpis(reader: Reader, code: str, p: Period, sector: str | None) -> dict:
    """KPIs of one unit (with everything below it), its previous period and the change."""
    u = _unit(reader.registry, code)
    now, tz = reader.now(), reader.tz
    prev, spans, t = compared(p, now, tz)
    async with reader.db.session() as session:
        cur_s, prev_s = await read_spans(
            session, _scope_of(reader.registry, code), spans, _sector_key(sector), silent_after_hours=reader.silent_after_hours
        )
    out = kpi_answer(unit_shape(u), p, now, tz, prev, t, prev_s, kpi_math.compute(cur_s), kpi_math.compute(prev_s))
    if sector is not None:  # the answer says which dossiers it counts
        out["sector"] = None if _sector_key(sector) == NO_SECTOR else sector
    return out


def _sector_key(sector: str | None) -> str:
    if sector is None:
        return ALL_SECTORS
    if "\x00" in sector or len(sector) > 64:  # no stored sector is like that (app.ingest.schemas); PostgreSQL refuses NUL
        raise Unprocessable("no such sector", [{"loc": ["sector"], "msg": "at most 64 characters, no U+0000"}])
    if sector == ALL_SECTORS:  # the internal key of the all-sector rows: all sectors is no `sector` at all
        raise Unprocessable(
            "no such sector", [{"loc": ["sector"], "msg": f"{ALL_SECTORS!r} is reserved; leave sector out for all sectors"}]
        )
    return NO_SECTOR if sector in ("", "null") else sector


_SHORTEST_DAYS = {"day": 1, "week": 7, "month": 28, "quarter": 89}  # the fewest days an interval spans


async def series(reader: Reader, code: str, kpi: str, interval: str, start, end) -> dict:
    """One KPI per interval over [start, end), widened to whole intervals."""
    u = _unit(reader.registry, code)
    if kpi not in kpi_math.KPI_NAMES:
        raise Unprocessable(f"unknown KPI {kpi}", [{"loc": ["kpi"], "msg": f"unknown KPI {kpi}"}])
    now, tz = reader.now(), reader.tz
    if end is None:
        end = periods.today(now, tz) + timedelta(days=1)
    if start is None:
        start = max(end, date.min + timedelta(days=364)) - timedelta(days=364)
    if start >= end:
        raise Unprocessable("from must be before to", [{"loc": ["from"], "msg": "must be before to"}])
    too_many = Unprocessable(f"more than {SERIES_MAX_POINTS} points", [{"loc": ["from"], "msg": f"more than {SERIES_MAX_POINTS} points"}])
    if (end - start).days // _SHORTEST_DAYS[interval] > SERIES_MAX_POINTS + 1:  # before listing millions of intervals
        raise too_many
    try:
        spans_p = periods.intervals(interval, start, end)
    except (OverflowError, ValueError):  # widened past the ends of the calendar
        raise Unprocessable("the series reaches past the calendar", [{"loc": ["to"], "msg": "out of range"}]) from None
    if len(spans_p) > SERIES_MAX_POINTS:
        raise too_many
    scope = _scope_of(reader.registry, code)
    async with reader.db.session() as session:
        spans = [span_for(p, now, tz) for p in spans_p]  # the figures at now read only for a KPI resting on them
        sums = await read_spans(session, scope, spans, ALL_SECTORS, reader.silent_after_hours, at_now=kpi in kpi_math.AT_NOW_KPIS)
    points = [
        {"start": p.start.isoformat(), "end": p.end.isoformat(), "value": kpi_math.compute(s)[kpi]}
        for p, s in zip(spans_p, sums, strict=True)
    ]
    return {"unit": unit_shape(u), "kpi": kpi, "interval": interval, "points": points}


async def sectors(reader: Reader, code: str, p: Period) -> dict:
    """KPIs split by sector, one item per sector with any non-zero figure."""
    u = _unit(reader.registry, code)
    now, tz = reader.now(), reader.tz
    scope = _scope_of(reader.registry, code)
    span = span_for(p, now, tz)
    async with reader.db.session() as session:
        names = await read_sectors(session, scope, p.start)
        items = []
        for name in sorted(names):
            (s,) = await read_spans(session, scope, [span], name, silent_after_hours=reader.silent_after_hours)
            figures = kpi_math.compute(s)
            if any(v for k, v in figures.items() if k != "silent_units"):  # a unit's silent sources are no sector's figure
                items.append({"sector": name or None, "kpis": figures})
    return {"unit": unit_shape(u), "period": p.as_dict(), "as_of": as_of(now, tz), "items": items}


AT_RISK_MAX_HOURS = 720


def parse_within(within: str) -> int:
    """Hours of an at-risk window such as `48h` (1 to 720); 422 naming `within` otherwise."""
    hours = int(within[:-1]) if within.endswith("h") and within[:-1].isdigit() else 0
    if not 1 <= hours <= AT_RISK_MAX_HOURS:
        raise Unprocessable(
            f"within must be 1h to {AT_RISK_MAX_HOURS}h", [{"loc": ["within"], "msg": f"expected 1h to {AT_RISK_MAX_HOURS}h, e.g. 48h"}]
        )
    return hours


def _local_time(dt: datetime | None, tz: tzinfo) -> str | None:
    return None if dt is None else dt.astimezone(tz).isoformat()


async def at_risk(reader: Reader, code: str, within: str, include_overdue: bool, limit: int, offset: int) -> dict:
    """Pending dossiers of the unit and every unit below it due within the next `within` hours (with
    `include_overdue`, also those already overdue), soonest deadline first, ties by unit and dossier.
    A reader stopped at one instant (Reader.at) reads several pages at that instant (a download)."""
    registry, tz = reader.registry, reader.tz
    u = _unit(registry, code)
    hours = parse_within(within)
    now = reader.now()
    codes = None if code == NATION else tuple(registry.subtree(code))
    rollup = code if u.level in ROLLUP_LEVELS else None  # a province or the nation: totals from its rollup rows
    async with reader.db.session() as session:
        total, rows = await read_at_risk(session, codes, now, now + timedelta(hours=hours), include_overdue, limit, offset, rollup)
    shapes: dict[str, dict] = {}
    items = []
    for r in rows:
        unit = shapes.get(r["unit_code"])
        if unit is None:
            row = registry.get(r["unit_code"])
            unit = shapes[r["unit_code"]] = (
                unit_shape(row)
                if row is not None
                else {"code": r["unit_code"], "name": r["unit_code"], "level": "commune", "kind": None, "parent": None}
            )
        due = r["eff_due_at"]
        items.append(
            {
                "unit": unit,
                "dossier_id": r["dossier_id"],
                "received_at": _local_time(r["recv_at"], tz),
                "due_at": _local_time(due, tz),
                "hours_left": round((due - now).total_seconds() / 3600, 2),
                "overdue": due < now,
                "channel": r["channel"],
                "sector": r["sector"] or None,
                "procedure_code": r["procedure_code"],
            }
        )
    return {
        "unit": unit_shape(u),
        "within": f"{hours}h",
        "include_overdue": include_overdue,
        "as_of": as_of(now, tz),
        "total": total,
        "limit": limit,
        "offset": offset,
        "items": items,
    }


async def silent_units(reader: Reader, code: str, limit: int, offset: int) -> dict:
    """The silent units at or below a unit (SPEC section 4), longest silent first, then by code."""
    registry, tz, silent_after_hours = reader.registry, reader.tz, reader.silent_after_hours
    u = _unit(registry, code)
    now = reader.now()
    codes = None if code == NATION else registry.subtree(code)
    async with reader.db.session() as session:
        rows = await read_silent_units(session, codes, cut_off(now, silent_after_hours))
    rows = [(registry.get(c), at) for c, at in rows if registry.get(c) is not None]  # a unit since removed is in no tree
    items = []
    for member, last_at in rows[offset : offset + limit]:
        items.append(
            {
                "unit": unit_shape(member),
                "last_event_at": as_of(last_at, tz),
                "silent_hours": round((now - last_at).total_seconds() / 3600, 2),
            }
        )
    return {
        "unit": unit_shape(u),
        "as_of": as_of(now, tz),
        "silent_after_hours": float(silent_after_hours),
        "total": len(rows),
        "limit": limit,
        "offset": offset,
        "items": items,
    }
