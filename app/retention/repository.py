"""All SQL of retention: the months of the event log, a month's events, what an archived month leaves
behind (app.db.models.event_log: its events' keys among it), and the drop: a partition on
PostgreSQL, a DELETE by month on SQLite."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import AsyncIterator
from datetime import date, datetime, tzinfo

from sqlalchemy import and_, exists, func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import dialect, partitions
from app.db.models import ArchivedMonth, ArchivedReceipt, ArchivedUnitMonth, Dossier, DossierEvent, EventKey
from app.db.models.event_log import SQL_EVENT_KEY, event_key_of

KEYS_CHUNK = 10_000  # SQLite: keys inserted a chunk at a time
LOCK_TIMEOUT = "2s"  # the drop's wait for ACCESS EXCLUSIVE on the log: ingest queues behind it meanwhile


def _in(month: date, tz: tzinfo):
    start, end = partitions.bounds(month, tz)
    return and_(DossierEvent.occurred_at >= start, DossierEvent.occurred_at < end)


async def read_stored_months(session: AsyncSession, tz: tzinfo) -> dict[date, int]:
    """Events stored per local month, for the months that hold any."""
    if dialect.is_postgres(session):
        conn = await session.connection()
        out = {}
        for month in await partitions.read_months(conn):
            n = (await conn.execute(text(f"SELECT count(*) FROM {partitions.name(month)}"))).scalar_one()
            if n:
                out[month] = n
        return out
    counts: Counter[date] = Counter()
    async for (at,) in await session.stream(select(DossierEvent.occurred_at).execution_options(yield_per=10_000)):
        counts[partitions.month_of(at, tz)] += 1
    return dict(sorted(counts.items()))


async def read_oldest_month(session: AsyncSession, tz: tzinfo) -> date | None:
    """The oldest local month with an event stored (a partition's first page on PostgreSQL)."""
    if dialect.is_postgres(session):
        conn = await session.connection()
        for month in await partitions.read_months(conn):
            if (await conn.execute(text(f"SELECT EXISTS (SELECT 1 FROM {partitions.name(month)})"))).scalar_one():
                return month
        return None
    at = (await session.execute(select(func.min(DossierEvent.occurred_at)))).scalar()
    return None if at is None else partitions.month_of(at, tz)


async def stream_month_events(session: AsyncSession, month: date, tz: tzinfo) -> AsyncIterator[dict]:
    """A month's stored events in key order (ids compared as binary strings, as Python compares str)."""
    e = DossierEvent
    order = (e.unit_code.collate("C"), e.event_id.collate("C")) if dialect.is_postgres(session) else (e.unit_code, e.event_id)
    stmt = select(e.__table__).where(_in(month, tz)).order_by(*order).execution_options(yield_per=5_000)
    async for row in await session.stream(stmt):
        yield dict(row._mapping)


async def count_month(session: AsyncSession, month: date, tz: tzinfo) -> int:
    return (await session.execute(select(func.count()).select_from(DossierEvent).where(_in(month, tz)))).scalar_one()


async def lock_month(session: AsyncSession, month: date) -> None:
    """Hold writes to the month's events until the transaction ends (SQLite: its write transaction
    holds every write already)."""
    if dialect.is_postgres(session):
        await session.execute(text(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
        await session.execute(text(f"LOCK TABLE {partitions.name(month)} IN SHARE MODE"))


async def read_open_receipts(session: AsyncSession, month: date, tz: tzinfo) -> list[dict]:
    """Receipts of the month that name a procedure and are the winning receipt of a dossier still open."""
    e, d = DossierEvent, Dossier
    stmt = (
        select(e.unit_code, e.event_id, e.procedure_code)
        .where(_in(month, tz), e.type == "received", e.procedure_code.is_not(None))
        .where(exists().where(d.unit_code == e.unit_code, d.dossier_id == e.dossier_id, d.recv_event_id == e.event_id, d.end_at.is_(None)))
        .order_by(e.unit_code, e.event_id)
    )
    return [dict(r._mapping) for r in (await session.execute(stmt)).all()]


async def insert_receipts(session: AsyncSession, rows: list[dict]) -> None:
    await dialect.bulk_upsert(session, ArchivedReceipt, rows, ["unit_code", "event_id"])


async def read_unit_months(session: AsyncSession, month: date) -> dict[str, tuple[int, datetime, set[date]]]:
    """What the archive already holds of each unit in a month."""
    a = ArchivedUnitMonth
    stmt = select(a.unit_code, a.events, a.last_ingested_at, a.days).where(a.month == month)
    return {u: (n, at, {date.fromisoformat(d) for d in json.loads(days)}) for u, n, at, days in (await session.execute(stmt)).all()}


async def upsert_unit_months(session: AsyncSession, month: date, units: dict[str, tuple[int, datetime, set[date]]]) -> None:
    rows = [
        {"unit_code": u, "month": month, "events": n, "last_ingested_at": at, "days": json.dumps(sorted(d.isoformat() for d in days))}
        for u, (n, at, days) in sorted(units.items())
    ]
    await dialect.bulk_upsert(session, ArchivedUnitMonth, rows, ["unit_code", "month"], replace=("events", "last_ingested_at", "days"))


async def upsert_month(session: AsyncSession, month: date, events: int, file: str, at: datetime) -> None:
    row = {"month": month, "events": events, "file": file, "archived_at": at}
    await dialect.bulk_upsert(session, ArchivedMonth, [row], ["month"], replace=("events", "file", "archived_at"))


async def read_archived_months(session: AsyncSession) -> list[dict]:
    a = ArchivedMonth
    stmt = select(a.month, a.events, a.file, a.archived_at).order_by(a.month)
    return [dict(r._mapping) for r in (await session.execute(stmt)).all()]


async def insert_month_keys(session: AsyncSession, month: date, tz: tzinfo) -> None:
    """The keys of the month's stored events into `event_key` (those of a month archived before in
    part are there already): what keeps them duplicates once the month is dropped, in the drop's
    transaction."""
    if dialect.is_postgres(session):
        key = SQL_EVENT_KEY.format(a="e")
        await session.execute(
            text(f"INSERT INTO event_key (key) SELECT {key} FROM {partitions.name(month)} e ORDER BY 1 ON CONFLICT DO NOTHING")
        )
        return
    e = DossierEvent
    stmt = select(e.unit_code, e.event_id).where(_in(month, tz))
    keys = sorted({event_key_of(u, i) for u, i in (await session.execute(stmt)).all()})
    for start in range(0, len(keys), KEYS_CHUNK):
        await dialect.bulk_upsert(session, EventKey, [{"key": k} for k in keys[start : start + KEYS_CHUNK]], ["key"])


async def drop_month(session: AsyncSession, month: date, tz: tzinfo) -> None:
    """The month's events gone from the log: its partition dropped whole (PostgreSQL), or deleted."""
    if dialect.is_postgres(session):
        await session.execute(text(f"DROP TABLE {partitions.name(month)}"))
    else:
        await session.execute(DossierEvent.__table__.delete().where(_in(month, tz)))
