"""`chiso retention status` and `chiso retention run` (SPEC section 9).

RETAIN_EVENTS_MONTHS = N keeps the current local month and the N months before it; an older month is
first written to its archive file (app.retention.archive) and then dropped whole, in one
transaction with the record of what it held (app.db.models.event_log): its events' keys among it, so
that an event of the month sent again is still a duplicate. Dossiers and aggregates are never
touched, so every answer stays.

Safe to run again at any point: a run killed before the drop left the file (or the previous one)
and the month still stored, and the next run merges the month into the file once more, each event
written once; the drop happens only if the month holds exactly the events just archived (an
import of that month in between means another pass). Safe beside the service: the API cannot reach
an archived month (its horizon lies within N months, checked at start), and an import that brings
one makes its partition again; a later run archives those events into the same file.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

from sqlalchemy.exc import DBAPIError

from app.db import partitions
from app.db.engine import Database
from app.retention import archive, repository
from app.settings import Settings

ATTEMPTS = 5  # per month: lock timeouts and events arriving meanwhile
RETRYABLE = ("55P03", "40P01")  # lock_not_available (LOCK_TIMEOUT), deadlock_detected


@dataclass
class MonthRow:
    month: date
    stored: int = 0  # events in the log
    archived: int = 0  # lines of its archive file (as recorded)
    file: str | None = None
    due: bool = False  # out of retention: the next run archives what is stored


@dataclass
class Status:
    retain_months: int | None
    first_kept: date | None  # the oldest month retention keeps; None: keep everything
    archive_dir: str
    months: list[MonthRow] = field(default_factory=list)
    missing_files: list[str] = field(default_factory=list)  # recorded as archived, not found under archive_dir


def first_kept(now: datetime, settings: Settings) -> date | None:
    """The oldest local month kept: the current one and RETAIN_EVENTS_MONTHS before it."""
    n = settings.retain_events_months
    return None if n is None else partitions.next_month(partitions.month_of(now, settings.tz), -n)


async def status(db: Database, settings: Settings, now: datetime | None = None) -> Status:
    """The months stored and archived, and which are due."""
    keep = first_kept(now or datetime.now(UTC), settings)
    async with db.session() as session:
        stored = await repository.read_stored_months(session, settings.tz)
        archived = await repository.read_archived_months(session)
    rows = {m: MonthRow(m, stored=n) for m, n in stored.items()}
    out = Status(settings.retain_events_months, keep, settings.archive_dir)
    for a in archived:
        row = rows.setdefault(a["month"], MonthRow(a["month"]))
        row.archived, row.file = a["events"], a["file"]
        if not (Path(settings.archive_dir) / a["file"]).exists():
            out.missing_files.append(a["file"])
    for row in rows.values():
        row.due = keep is not None and row.month < keep and row.stored > 0
    out.months = [rows[m] for m in sorted(rows)]
    return out


async def oldest_month(db: Database, settings: Settings) -> date | None:
    """The oldest local month with events still stored (the metric)."""
    async with db.session() as session:
        return await repository.read_oldest_month(session, settings.tz)


async def run(db: Database, settings: Settings, now: datetime | None = None) -> list[dict]:
    """Archive and drop every stored month out of retention, oldest first; one dict per month."""
    now = now or datetime.now(UTC)
    keep = first_kept(now, settings)
    if keep is None:
        return []
    await partitions.ensure_ahead(db, settings.tz, settings.horizon_days, now)
    async with db.session() as session:
        stored = await repository.read_stored_months(session, settings.tz)
    done = []
    try:
        for month in sorted(m for m in stored if m < keep):
            done.append(await archive_month(db, settings, month, now))
    finally:
        partitions.of(db).forget()
    return done


async def _tally(db: Database, month: date, settings: Settings, units: dict) -> AsyncIterator[dict]:
    """A month's stored events in key order, counted into `units` as they pass: per unit, the events,
    the latest acceptance and the local days they are dated on."""
    async with db.session() as session:
        async for ev in repository.stream_month_events(session, month, settings.tz):
            n, last, days = units.get(ev["unit_code"], (0, ev["ingested_at"], set()))
            days.add(ev["occurred_at"].astimezone(settings.tz).date())
            units[ev["unit_code"]] = (n + 1, max(last, ev["ingested_at"]), days)
            yield ev


async def archive_month(db: Database, settings: Settings, month: date, now: datetime) -> dict:
    """Write one month's stored events into its file, then drop them with the record of what they were."""
    tz = settings.tz
    path = Path(settings.archive_dir) / archive.file_name(month)
    for attempt in range(1, ATTEMPTS + 1):
        units: dict[str, tuple[int, datetime, set[date]]] = {}
        lines = await archive.write_merged(path, _tally(db, month, settings, units))
        read = sum(n for n, _, _ in units.values())
        try:
            async with db.transaction() as session:
                await repository.lock_month(session, month)
                if await repository.count_month(session, month, tz) != read:
                    continue  # events of the month arrived meanwhile (an import): archive them too
                await repository.insert_receipts(session, await repository.read_open_receipts(session, month, tz))
                before = await repository.read_unit_months(session, month)
                for unit, (n, last, days) in before.items():
                    m, at, more = units.get(unit, (0, last, set()))
                    units[unit] = (n + m, max(last, at), days | more)
                await repository.upsert_unit_months(session, month, units)
                await repository.upsert_month(session, month, lines, path.name, now)
                await repository.insert_month_keys(session, month, tz)
                await repository.drop_month(session, month, tz)
            return {"month": f"{month:%Y-%m}", "archived": read, "file": str(path), "file_events": lines}
        except DBAPIError as exc:
            code = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
            if code not in RETRYABLE or attempt == ATTEMPTS:
                raise
            await asyncio.sleep(attempt)
    raise RuntimeError(f"month {month:%Y-%m}: events kept arriving while it was archived; run again")
