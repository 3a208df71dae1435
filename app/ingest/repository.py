"""All SQL of ingest. Rows are touched in sorted key order, table after table, so concurrent
batches wait for each other but never deadlock: events, then dossiers, then aggregates.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import orjson
from sqlalchemy import delete, select, text, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import dialect
from app.db.models import (
    DAY_COUNTERS,
    LOCAL_SOURCE,
    TOTAL_COUNTERS,
    Dossier,
    DossierEvent,
    DossierFuture,
    UnitCohortDue,
    UnitDay,
    UnitDayHist,
    UnitTotal,
)
from app.ingest.dossier import STATE_COLUMNS, DossierState
from app.scoring.contrib import Delta

CHUNK = 1000
DOSSIER_COLUMNS = (*STATE_COLUMNS, "sector", "eff_due_at", "end_at", "ok_766")


def _chunks(items: list, size: int = CHUNK) -> Iterable[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


async def insert_events(session: AsyncSession, rows: list[dict]) -> set[tuple[str, str]]:
    """Insert events, skipping stored (unit_code, event_id); returns the keys actually inserted."""
    rows = sorted(rows, key=lambda r: (r["unit_code"], r["event_id"]))
    inserted = await dialect.bulk_upsert(session, DossierEvent, rows, ["unit_code", "event_id"], returning=("unit_code", "event_id"))
    return {(u, e) for u, e in inserted}


async def mark_future(session: AsyncSession, rows: list[dict], before: datetime) -> None:
    """Remember dossiers with events dated after their arrival; forget marks older than `before`."""
    await dialect.bulk_upsert(session, DossierFuture, rows, ["unit_code", "dossier_id", "at"])
    await session.execute(delete(DossierFuture).where(DossierFuture.at < before))


async def read_stored_event_keys(session: AsyncSession, keys: list[tuple[str, str]]) -> set[tuple[str, str]]:
    """Which of these (unit_code, event_id) are stored."""
    found: set[tuple[str, str]] = set()
    for chunk in _chunks(sorted(keys)):
        stmt = select(DossierEvent.unit_code, DossierEvent.event_id).where(
            tuple_(DossierEvent.unit_code, DossierEvent.event_id).in_(chunk)
        )
        found.update((u, e) for u, e in (await session.execute(stmt)).all())
    return found


async def lock_dossiers(session: AsyncSession, keys: list[tuple[str, str]]) -> dict[tuple[str, str], DossierState]:
    """Create missing dossier rows, lock all of them in key order, and return their states."""
    keys = sorted(set(keys))
    placeholders = [
        {"unit_code": u, "dossier_id": d, "event_days": "{}", "supplements": 0, "sector": "", "ok_766": False}
        for u, d in keys
    ]
    await dialect.bulk_upsert(session, Dossier, placeholders, ["unit_code", "dossier_id"])
    conn = await session.connection()
    states: dict[tuple[str, str], DossierState] = {}
    if dialect.is_postgres(session):
        # Row locks in key order: concurrent batches touching the same dossiers queue, never deadlock.
        # The keys travel as one JSON document (cheap to encode, see dialect.bulk_upsert); asyncpg
        # returns timestamptz as aware UTC datetimes, as the UTCDateTime type would.
        stmt = text(
            f"SELECT {', '.join(STATE_COLUMNS)} FROM dossier WHERE (unit_code, dossier_id) IN "
            "(SELECT u, d FROM json_to_recordset(CAST(:keys AS json)) AS k(u varchar, d varchar)) "
            "ORDER BY unit_code, dossier_id FOR UPDATE"
        )
        result = await conn.execute(stmt, {"keys": orjson.dumps([{"u": u, "d": d} for u, d in keys]).decode()})
        for row in result.mappings():
            states[(row["unit_code"], row["dossier_id"])] = DossierState.from_row(row)
        return states
    cols = [getattr(Dossier, c) for c in STATE_COLUMNS]
    for chunk in _chunks(keys):
        stmt = select(*cols).where(tuple_(Dossier.unit_code, Dossier.dossier_id).in_(chunk))
        for row in (await conn.execute(stmt)).mappings():
            states[(row["unit_code"], row["dossier_id"])] = DossierState.from_row(row)
    return states


async def upsert_dossiers(session: AsyncSession, states: list[DossierState]) -> None:
    """Write dossier states (rows exist: lock_dossiers made them)."""
    rows = sorted((s.to_row() for s in states), key=lambda r: (r["unit_code"], r["dossier_id"]))
    others = tuple(c for c in DOSSIER_COLUMNS if c not in ("unit_code", "dossier_id"))
    await dialect.bulk_upsert(session, Dossier, rows, ["unit_code", "dossier_id"], replace=others)


async def _add_rows(session: AsyncSession, table, keys: tuple[str, ...], cols: tuple[str, ...], rows: list[dict]):
    """Add counters to rows, creating them as needed, in key order."""
    rows.sort(key=lambda r: tuple(r[k] for k in keys))
    await dialect.bulk_upsert(session, table, rows, list(keys), add=cols)


async def upsert_aggregates(session: AsyncSession, delta: Delta) -> None:
    """Add a delta to the aggregate tables."""
    day_rows = [
        {"unit_code": u, "sector": s, "day": d, "source": LOCAL_SOURCE, **{c: cols.get(c, 0) for c in DAY_COUNTERS}}
        for (u, s, d), cols in delta.day.items()
    ]
    await _add_rows(session, UnitDay, ("unit_code", "sector", "day", "source"), DAY_COUNTERS, day_rows)
    hist_rows = [
        {"unit_code": u, "sector": s, "day": d, "bucket": b, "source": LOCAL_SOURCE, "n": n} for (u, s, d, b), n in delta.hist.items()
    ]
    await _add_rows(session, UnitDayHist, ("unit_code", "sector", "day", "bucket", "source"), ("n",), hist_rows)
    due_rows = [
        {"unit_code": u, "sector": s, "recv_day": r, "due_day": d, "source": LOCAL_SOURCE, "n": n}
        for (u, s, r, d), n in delta.cohort_due.items()
    ]
    await _add_rows(session, UnitCohortDue, ("unit_code", "sector", "recv_day", "due_day", "source"), ("n",), due_rows)
    total_rows = [
        {"unit_code": u, "sector": s, "source": LOCAL_SOURCE, **{c: cols.get(c, 0) for c in TOTAL_COUNTERS}}
        for (u, s), cols in delta.total.items()
    ]
    await _add_rows(session, UnitTotal, ("unit_code", "sector", "source"), TOTAL_COUNTERS, total_rows)


async def read_event_units(session: AsyncSession) -> list[str]:
    """Every unit that has stored events."""
    return list((await session.execute(select(DossierEvent.unit_code).distinct().order_by(DossierEvent.unit_code))).scalars())


async def read_unit_events(session: AsyncSession, unit_code: str) -> list[dict]:
    """Every stored event of one unit."""
    stmt = select(DossierEvent.__table__).where(DossierEvent.unit_code == unit_code)
    return [dict(r) for r in (await session.execute(stmt)).mappings()]


async def read_unit_dossiers(session: AsyncSession, unit_code: str) -> dict[str, dict]:
    """Every dossier row of one unit, by dossier_id."""
    stmt = select(*(getattr(Dossier, c) for c in DOSSIER_COLUMNS)).where(Dossier.unit_code == unit_code)
    return {r["dossier_id"]: dict(r) for r in (await session.execute(stmt)).mappings()}


async def delete_unit_state(session: AsyncSession, unit_code: str) -> None:
    """Remove a unit's dossiers and its own (local) aggregates, before a rebuild."""
    await session.execute(delete(Dossier).where(Dossier.unit_code == unit_code))
    for table in (UnitDay, UnitDayHist, UnitCohortDue, UnitTotal):
        await session.execute(delete(table).where(table.unit_code == unit_code, table.source == LOCAL_SOURCE))
