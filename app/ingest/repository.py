"""All SQL of ingest that is not the aggregate model's (app.aggregates.writes): the event log.
Events are inserted in sorted key order, before anything else of a batch (see the lock order in
app.aggregates.writes).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import delete, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import dialect
from app.db.models import DossierEvent, DossierFuture, EventKey

CHUNK = 1000


def _chunks(items: list, size: int = CHUNK) -> Iterable[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


async def insert_events(session: AsyncSession, rows: list[dict]) -> set[tuple[str, str]]:
    """Insert events whose (unit_code, event_id) was never stored, archived or not (app.db.models.event_log:
    the keys first, then the log); returns the keys actually inserted."""
    rows = sorted(rows, key=lambda r: (r["unit_code"], r["event_id"]))
    keys = [{"unit_code": r["unit_code"], "event_id": r["event_id"]} for r in rows]
    inserted = {
        (u, e)
        for u, e in await dialect.bulk_upsert(session, EventKey, keys, ["unit_code", "event_id"], returning=("unit_code", "event_id"))
    }
    fresh = [r for r in rows if (r["unit_code"], r["event_id"]) in inserted]
    # a key missing for a stored event (written by a version older than event_key) leaves it a duplicate
    stored = await dialect.bulk_upsert(
        session, DossierEvent, fresh, ["unit_code", "event_id", "occurred_at"], returning=("unit_code", "event_id")
    )
    return {(u, e) for u, e in stored}


async def mark_future(session: AsyncSession, rows: list[dict], before: datetime) -> None:
    """Remember dossiers with events dated after their arrival; forget marks older than `before`."""
    await dialect.bulk_upsert(session, DossierFuture, rows, ["unit_code", "dossier_id", "at"])
    await session.execute(delete(DossierFuture).where(DossierFuture.at < before))


async def read_stored_event_keys(session: AsyncSession, keys: list[tuple[str, str]]) -> set[tuple[str, str]]:
    """Which of these (unit_code, event_id) are stored (or were, before their month was archived)."""
    found: set[tuple[str, str]] = set()
    for chunk in _chunks(sorted(keys)):
        stmt = select(EventKey.unit_code, EventKey.event_id).where(tuple_(EventKey.unit_code, EventKey.event_id).in_(chunk))
        found.update((u, e) for u, e in (await session.execute(stmt)).all())
    return found
