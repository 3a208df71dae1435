"""All SQL of ingest that is not the aggregate model's (app.aggregates.writes): the event log.
Events are inserted in sorted key order, before anything else of a batch (see the lock order in
app.aggregates.writes).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import dialect
from app.db.models import DossierEvent, DossierFuture, EventKey
from app.db.models.event_log import event_key_of

CHUNK = 1000


def _chunks(items: list, size: int = CHUNK) -> Iterable[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


async def insert_events(session: AsyncSession, rows: list[dict]) -> set[tuple[str, str]]:
    """Insert events whose (unit_code, event_id) was never stored, archived or not (app.db.models.event_log:
    the keys first, then the log); returns the keys actually inserted."""
    rows = sorted(rows, key=lambda r: (r["unit_code"], r["event_id"]))
    by_key = {event_key_of(r["unit_code"], r["event_id"]): r for r in rows}
    keys = [{"key": k} for k in sorted(by_key)]
    inserted = {k for (k,) in await dialect.bulk_upsert(session, EventKey, keys, ["key"], returning=("key",))}
    fresh = [r for k, r in by_key.items() if k in inserted]
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
    of = {event_key_of(u, e): (u, e) for u, e in keys}
    found: set[tuple[str, str]] = set()
    for chunk in _chunks(sorted(of)):
        stmt = select(EventKey.key).where(EventKey.key.in_(chunk))
        found.update(of[k] for (k,) in (await session.execute(stmt)).all())
    return found
