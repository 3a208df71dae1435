"""Silent sources (SPEC section 4, "Silent"): the bookkeeping ingest writes and the reads of it.

A unit is silent at *now* when the last event accepted for it was accepted more than
`SILENT_AFTER_HOURS` before now, and its stored events are dated (`occurred_at`, local days) on at
least MIN_DAYS of the WINDOW_DAYS local days up to the day that last event arrived. A unit with
no accepted event is not silent. Only a unit's own events count (those naming it); a province's
or the nation's count of silent units sums the units at or below it.

Two tables hold what the rule needs, both written by `record_accepted` in the ingest transaction:
- `unit_source`: per unit, the latest acceptance time (`last_at`), its local day (`last_day`) and
  the first of the WINDOW_DAYS days up to it (`window_from`), so that reads compare dates and do
  no date arithmetic in SQL (SQLite and PostgreSQL alike);
- `unit_event_day`: per unit, every local day on which an accepted event of it is dated.
A read costs a row per unit of the scope plus at most WINDOW_DAYS day rows per candidate unit,
whatever the stored history.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime, timedelta, tzinfo

from sqlalchemy import and_, delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import dialect
from app.db.models import UnitEventDay, UnitSource

DEFAULT_AFTER_HOURS = 48.0  # SILENT_AFTER_HOURS
WINDOW_DAYS = 14
MIN_DAYS = 3
SOURCE_COLUMNS = ("last_at", "last_day", "window_from")  # all follow the latest acceptance


# --- the write: once per ingest batch -----------------------------------------------------------


async def record_accepted(session: AsyncSession, events: Iterable[dict], tz: tzinfo) -> None:
    """Record the silent-source bookkeeping of one batch's accepted (newly stored) events.

    `events`: the events this transaction inserted, each with `unit_code`, `occurred_at` and
    `ingested_at` (aware datetimes). Records, per unit named by them:
    - `unit_source`: `last_at` = the latest `ingested_at` (kept if the stored one is later), with
      `last_day` = its local day and `window_from` = `last_day` - 13 days (both follow `last_at`);
    - `unit_event_day`: one row per local day of `occurred_at` (set union: existing rows stay).
    Both writes are idempotent and order-free (a maximum, a union), touch rows in key order (the
    lock order of writes.py: after the change marks, before `node_meta`), and cost two statements
    per batch, whatever the number of units named (dialect.bulk_upsert).
    """
    last: dict[str, datetime] = {}
    days: set[tuple[str, date]] = set()
    for ev in events:
        unit, at = ev["unit_code"], ev["ingested_at"]
        if unit not in last or at > last[unit]:
            last[unit] = at
        days.add((unit, ev["occurred_at"].astimezone(tz).date()))
    if not last:
        return
    rows = []
    for unit, at in sorted(last.items()):
        day = at.astimezone(tz).date()
        rows.append({"unit_code": unit, "last_at": at, "last_day": day, "window_from": day - timedelta(days=WINDOW_DAYS - 1)})
    await dialect.bulk_upsert(session, UnitSource, rows, ["unit_code"], replace=SOURCE_COLUMNS, newer="last_at")
    await dialect.bulk_upsert(session, UnitEventDay, [{"unit_code": u, "day": d} for u, d in sorted(days)], ["unit_code", "day"])


# The SQL spelling of record_accepted (the PostgreSQL pass): the batch's new events are the pass's
# table chiso_new n, days in the zone p_tz; the same maximum, the same union, in key order.
SQL_RECORD_ACCEPTED = (
    """  INSERT INTO unit_source AS u (unit_code, last_at, last_day, window_from)
  SELECT x.unit_code, x.at, (x.at AT TIME ZONE p_tz)::date, (x.at AT TIME ZONE p_tz)::date - """
    + str(WINDOW_DAYS - 1)
    + """
  FROM (SELECT n.unit_code, max(n.ingested_at) AS at FROM chiso_new n GROUP BY 1) x ORDER BY 1
  ON CONFLICT (unit_code) DO UPDATE SET
    last_at = CASE WHEN excluded.last_at > u.last_at THEN excluded.last_at ELSE u.last_at END,
    last_day = CASE WHEN excluded.last_at > u.last_at THEN excluded.last_day ELSE u.last_day END,
    window_from = CASE WHEN excluded.last_at > u.last_at THEN excluded.window_from ELSE u.window_from END;
  INSERT INTO unit_event_day (unit_code, day)
  SELECT DISTINCT n.unit_code, (n.occurred_at AT TIME ZONE p_tz)::date FROM chiso_new n ORDER BY 1, 2
  ON CONFLICT DO NOTHING;
"""
)


async def delete_unit(session: AsyncSession, unit_code: str) -> None:
    """Remove a unit's bookkeeping, before it is recorded again from all its events (a repair)."""
    await session.execute(delete(UnitSource).where(UnitSource.unit_code == unit_code))
    await session.execute(delete(UnitEventDay).where(UnitEventDay.unit_code == unit_code))


# --- the reads ----------------------------------------------------------------------------------


def expected(events: Iterable[dict], tz: tzinfo) -> tuple[datetime | None, frozenset[date]]:
    """What the bookkeeping of one unit must say, from all its stored events: the last acceptance
    and the local days its events are dated on within the WINDOW_DAYS up to that acceptance's day."""
    events = list(events)
    if not events:
        return None, frozenset()
    last = max(ev["ingested_at"] for ev in events)
    last_day = last.astimezone(tz).date()
    first = last_day - timedelta(days=WINDOW_DAYS - 1)
    return last, frozenset(d for ev in events if first <= (d := ev["occurred_at"].astimezone(tz).date()) <= last_day)


async def read_unit(session: AsyncSession, unit_code: str) -> tuple[datetime | None, frozenset[date]]:
    """What the bookkeeping of one unit says, in the shape of expected()."""
    s, d = UnitSource, UnitEventDay
    row = (await session.execute(select(s.last_at, s.last_day, s.window_from).where(s.unit_code == unit_code))).first()
    if row is None:
        return None, frozenset()
    stmt = select(d.day).where(d.unit_code == unit_code, d.day >= row.window_from, d.day <= row.last_day)
    return row.last_at, frozenset((await session.execute(stmt)).scalars())


# --- the reads ----------------------------------------------------------------------------------


def cut_off(now: datetime, after_hours: float) -> datetime:
    """Units whose last acceptance is before this are silent (if they sent on enough days)."""
    return now - timedelta(hours=after_hours)


def silent_condition(cut: datetime):
    """The SQL condition on a `unit_source` row: silent at the `cut` of cut_off()."""
    s, d = UnitSource, UnitEventDay
    dated = (
        select(func.count()).where(d.unit_code == s.unit_code, d.day >= s.window_from, d.day <= s.last_day).correlate(s).scalar_subquery()
    )
    return and_(s.last_at < cut, dated >= MIN_DAYS)


async def read_silent_units(session: AsyncSession, codes: Iterable[str] | None, cut: datetime) -> list[tuple[str, datetime]]:
    """(unit, last acceptance) of the silent units among `codes` (None: every unit), longest
    silent first, then by code."""
    s = UnitSource
    stmt = select(s.unit_code, s.last_at).where(silent_condition(cut))
    if codes is not None:
        stmt = stmt.where(s.unit_code.in_(list(codes)))
    rows = (await session.execute(stmt)).all()
    return sorted(((u, at) for u, at in rows), key=lambda r: (r[1], r[0]))
