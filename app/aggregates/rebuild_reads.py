"""The reads of the rebuild (`kpis verify`): the event log, dossier rows, and the own and rollup
rows of a unit.
"""

from __future__ import annotations

import json
from datetime import date, datetime

from sqlalchemy import and_, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from app.aggregates.counters import DAY_COUNTERS, TOTAL_COUNTERS
from app.aggregates.histogram import bucket_rows_sql
from app.aggregates.writes import DOSSIER_COLUMNS, OWN_TABLES, ROLLUP_TABLES, open_due_select_sql, rollup_select_sql
from app.db import dialect
from app.db.models import (
    LOCAL_SOURCE,
    ArchivedUnitMonth,
    Dossier,
    DossierEvent,
)
from app.db.types import hist_decode


async def read_unit_aggregates(session: AsyncSession, unit_code: str) -> dict[str, dict]:
    """A unit's own local aggregate rows, keyed like contrib.Delta, zero values left out."""
    day_t, hist_t, due_t, total_t = OWN_TABLES
    out: dict[str, dict] = {"day": {}, "hist": {}, "cohort_due": {}, "total": {}}
    mine = lambda t: and_(t.unit_code == unit_code, t.source == LOCAL_SOURCE)  # noqa: E731
    for r in (await session.execute(select(day_t).where(mine(day_t)))).scalars():
        cols = {c: getattr(r, c) for c in DAY_COUNTERS if getattr(r, c)}
        if cols:
            out["day"][(r.unit_code, r.sector, r.day)] = cols
    for r in (await session.execute(select(hist_t).where(mine(hist_t)))).scalars():
        for b, n in hist_decode(r.hist).items():
            out["hist"][(r.unit_code, r.sector, r.day, b)] = n
    for r in (await session.execute(select(due_t).where(mine(due_t)))).scalars():
        if r.n:
            out["cohort_due"][(r.unit_code, r.sector, r.recv_day, r.due_day)] = r.n
    for r in (await session.execute(select(total_t).where(mine(total_t)))).scalars():
        cols = {c: getattr(r, c) for c in TOTAL_COUNTERS if getattr(r, c)}
        if cols:
            out["total"][(r.unit_code, r.sector)] = cols
    return out


async def read_rollups(session: AsyncSession, expected: bool = False) -> dict[str, dict]:
    """Every rollup row summed over its slots (or, with `expected`, as summed from the own rows
    below), keyed like contrib.Delta, zero values left out."""
    out: dict[str, dict] = {}
    for name, own, rollup in zip(("day", "hist", "cohort_due", "total"), OWN_TABLES, ROLLUP_TABLES, strict=True):
        postgres = dialect.is_postgres(session)
        sql, cols = rollup_select_sql("hist" if name == "hist" else own.__tablename__, postgres)
        if not expected:
            keys = ", ".join(c for c in cols if c in ("unit_code", "sector", "day", "bucket", "recv_day", "due_day"))
            sums = ", ".join(f"SUM({c}) AS {c}" for c in cols if c not in keys.split(", "))
            source = rollup.__tablename__
            if name == "hist":
                source = f"({bucket_rows_sql(source, ('unit_code', 'sector', 'day'), postgres)}) h"
            sql = f"SELECT {keys}, {sums} FROM {source} GROUP BY {keys}"
        values = [c for c in cols if c in (*DAY_COUNTERS, "n")]
        nkeys = len(cols) - len(values)
        table: dict = {}
        for row in (await session.execute(text(sql))).all():
            key = tuple(_as_date(v) for v in row[:nkeys])
            if name in ("day", "total"):
                figures = {c: int(v) for c, v in zip(values, row[nkeys:], strict=True) if v}
                if figures:
                    table[key] = figures
            elif row[nkeys]:
                table[key] = int(row[nkeys])
        out[name] = table
    # open dossiers by deadline hour: from the dossier table, or as kept (summed over slots)
    if expected:
        sql = open_due_select_sql(dialect.is_postgres(session))
    else:
        sql = "SELECT unit_code, sector, hour, SUM(n) AS n FROM rollup_open_due GROUP BY unit_code, sector, hour"
    out["open_due"] = {(u, s, h): int(n) for u, s, h, n in (await session.execute(text(sql))).all() if n}
    return out


def _as_date(v):
    """SQLite answers dates of raw SQL as text."""
    if isinstance(v, str) and len(v) == 10 and v[4] == "-" and v[7] == "-":
        return date.fromisoformat(v)
    return v


async def read_event_units(session: AsyncSession) -> list[str]:
    """Every unit that has stored events, dossiers or archived events."""
    units = set()
    for column in (DossierEvent.unit_code, Dossier.unit_code, ArchivedUnitMonth.unit_code):
        units.update((await session.execute(select(column).distinct())).scalars())
    return sorted(units)


async def read_unit_archived(session: AsyncSession, unit_code: str) -> dict[date, tuple[int, datetime, list[date]]]:
    """What the archive holds of one unit (app.db.models.event_log), per month: events, the latest
    acceptance among them, the local days they are dated on."""
    a = ArchivedUnitMonth
    stmt = select(a.month, a.events, a.last_ingested_at, a.days).where(a.unit_code == unit_code)
    return {m: (n, at, [date.fromisoformat(d) for d in json.loads(days)]) for m, n, at, days in (await session.execute(stmt)).all()}


async def read_unit_events(session: AsyncSession, unit_code: str) -> list[dict]:
    """Every stored event of one unit."""
    stmt = select(DossierEvent.__table__).where(DossierEvent.unit_code == unit_code)
    return [dict(r) for r in (await session.execute(stmt)).mappings()]


async def read_unit_dossiers(session: AsyncSession, unit_code: str) -> dict[str, dict]:
    """Every dossier row of one unit, by dossier_id."""
    stmt = select(*(getattr(Dossier, c) for c in DOSSIER_COLUMNS)).where(Dossier.unit_code == unit_code)
    return {r["dossier_id"]: dict(r) for r in (await session.execute(stmt)).mappings()}
