"""All SQL of ingest that is not the aggregate model's (app.aggregates.writes): the event log.
Events are inserted in sorted key order, before anything else of a batch (see the lock order in
app.aggregates.writes).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import delete, select, text, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import dialect
from app.db.models import DossierEvent, DossierFuture, EventKey
from app.db.models.event_log import SQL_EVENT_MATCH, event_key_of

CHUNK = 1000


def _chunks(items: list, size: int = CHUNK) -> Iterable[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


async def insert_events(session: AsyncSession, rows: list[dict]) -> set[tuple[str, str]]:
    """Insert events whose (unit_code, event_id) was never stored, archived or not
    (app.db.models.event_log: in the log, or a key of an archived month); returns the keys actually
    inserted. SQLite: its write transaction (BEGIN IMMEDIATE) holds every other writer off."""
    rows = sorted(rows, key=lambda r: (r["unit_code"], r["event_id"]))
    stored = await read_stored_event_keys(session, [(r["unit_code"], r["event_id"]) for r in rows])
    fresh = [r for r in rows if (r["unit_code"], r["event_id"]) not in stored]
    inserted = await dialect.bulk_upsert(
        session, DossierEvent, fresh, ["unit_code", "event_id", "occurred_at"], returning=("unit_code", "event_id")
    )
    return {(u, e) for u, e in inserted}


async def mark_future(session: AsyncSession, rows: list[dict], before: datetime) -> None:
    """Remember dossiers with events dated after their arrival; forget marks older than `before`."""
    await dialect.bulk_upsert(session, DossierFuture, rows, ["unit_code", "dossier_id", "at"])
    await session.execute(delete(DossierFuture).where(DossierFuture.at < before))


async def read_stored_event_keys(session: AsyncSession, keys: list[tuple[str, str]]) -> set[tuple[str, str]]:
    """Which of these (unit_code, event_id) are stored: in the log (any month), or as a key of an
    archived month (app.db.models.event_log)."""
    e = DossierEvent
    found: set[tuple[str, str]] = set()
    for chunk in _chunks(sorted(set(keys))):
        if dialect.is_postgres(session):  # by the log's index over the hash of the pair
            stmt = text(
                "SELECT e.unit_code, e.event_id FROM unnest(CAST(:u AS text[]), CAST(:i AS text[])) AS j(unit_code, event_id)"
                f" JOIN dossier_event e ON {SQL_EVENT_MATCH.format(e='e', j='j')}"
            )
            rows = await session.execute(stmt, {"u": [u for u, _ in chunk], "i": [i for _, i in chunk]})
        else:
            rows = await session.execute(select(e.unit_code, e.event_id).where(tuple_(e.unit_code, e.event_id).in_(chunk)))
        found.update((u, i) for u, i in rows.all())
    of = {event_key_of(u, i): (u, i) for u, i in keys if (u, i) not in found}
    for chunk in _chunks(sorted(of)):
        stmt = select(EventKey.key).where(EventKey.key.in_(chunk))
        found.update(of[k] for (k,) in (await session.execute(stmt)).all())
    return found
