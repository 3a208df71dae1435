"""All SQL of the export network: dirty marks, digests, the outbox; received records.

Lock order. Ingest marks `export_dirty` after the aggregates and before `node_meta` (sorted by
unit). The exporter takes its lease (or advisory lock) first, then writes outbox, digests, marks
and `node_meta`. The receiver locks its `network_source` row first, which serialises snapshots of
one subordinate, then its own rows (source = that node), sorted by key.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime

from sqlalchemy import case, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.aggregates import writes
from app.aggregates.pending import total_columns
from app.db import dialect, meta
from app.db.models import (
    ALL_SECTORS,
    LOCAL_SOURCE,
    ExportDirty,
    ExportOutbox,
    ExportState,
    NetworkDay,
    NetworkSource,
    UnitDay,
    UnitTotal,
)
from app.db.types import hist_decode
from app.export.outbox import PARKED, PENDING, SENT

CHUNK = 500
SEQUENCE = "export_sequence"
LAST_DAY = "export_last_day"  # ordinal of the local day of the last production run


def _chunks(items: list, size: int = CHUNK) -> Iterable[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# --- dirty marks (written by app.aggregates.writes.mark_dirty) --------------------------------------------------------------


async def read_dirty(session: AsyncSession) -> dict[str, tuple[date, int]]:
    """Every mark: unit -> (earliest day, generation)."""
    rows = await session.execute(select(ExportDirty.unit_code, ExportDirty.day, ExportDirty.gen))
    return {u: (d, g) for u, d, g in rows.all()}


async def delete_dirty(session: AsyncSession, marks: dict[str, int]) -> None:
    """Clear marks that no ingest touched since they were read (same generation)."""
    for unit, gen in sorted(marks.items()):
        await session.execute(delete(ExportDirty).where(ExportDirty.unit_code == unit, ExportDirty.gen == gen))


async def seed_dirty_from_aggregates(session: AsyncSession) -> None:
    """Mark every unit with local figures from its first day: the first production run exports all."""
    stmt = (
        select(UnitDay.unit_code, func.min(UnitDay.day))
        .where(UnitDay.source == LOCAL_SOURCE, UnitDay.sector == ALL_SECTORS)
        .group_by(UnitDay.unit_code)
    )
    marks = {u: d for u, d in (await session.execute(stmt)).all()}
    if marks:
        await writes.mark_dirty(session, marks)


async def read_pending_units(session: AsyncSession) -> list[str]:
    """Units with pending dossiers of their own: their today's record moves with time."""
    stmt = select(UnitTotal.unit_code).where(
        UnitTotal.source == LOCAL_SOURCE, UnitTotal.sector == ALL_SECTORS, UnitTotal.p_in > UnitTotal.p_out
    )
    return sorted((await session.execute(stmt)).scalars())


# --- node_meta values -------------------------------------------------------------------------


async def allocate_sequences(session: AsyncSession, n: int) -> int:
    """Reserve n sequence numbers; returns the first. Never reused, even when rows are pruned."""
    return await meta.add_meta(session, SEQUENCE, n) - n + 1


# --- digests -----------------------------------------------------------------------------------


async def read_digests(session: AsyncSession, units: list[str], since: date) -> dict[tuple[str, str, date], str]:
    """Digests of the records last produced for these units, keys from `since`'s year on."""
    out = {}
    low = date(since.year, 1, 1)
    for chunk in _chunks(sorted(units)):
        stmt = select(ExportState.unit_code, ExportState.kind, ExportState.key, ExportState.digest).where(
            ExportState.unit_code.in_(chunk), ExportState.key >= low
        )
        out.update({(u, k, d): h for u, k, d, h in (await session.execute(stmt)).all()})
    return out


async def upsert_digests(session: AsyncSession, rows: list[dict]) -> None:
    """Remember the digests of the records just produced."""
    rows = sorted(rows, key=lambda r: (r["unit_code"], r["kind"], r["key"]))
    await dialect.bulk_upsert(session, ExportState, rows, ["unit_code", "kind", "key"], replace=("digest",))


# --- outbox ------------------------------------------------------------------------------------


async def insert_outbox(session: AsyncSession, rows: list[dict]) -> None:
    """Append produced records (an executemany, whose SQL is compiled once: a VALUES list of the rows
    is compiled anew for every chunk, which under a live feed took most of the exporter's CPU)."""
    for chunk in _chunks(rows):
        await session.execute(dialect.insert(session, ExportOutbox), chunk)


async def read_outbox(session: AsyncSession, after: int, limit: int, state: str | None = None) -> list[ExportOutbox]:
    """Records after a sequence, in sequence order (of one state, when given)."""
    stmt = select(ExportOutbox).where(ExportOutbox.sequence > after)
    if state is not None:
        stmt = stmt.where(ExportOutbox.state == state)
    return list((await session.execute(stmt.order_by(ExportOutbox.sequence).limit(limit))).scalars())


async def set_outbox_state(session: AsyncSession, sequences: list[int], state: str, at: datetime, error: str | None = None) -> None:
    """Move delivered (or refused) pending records to their new state."""
    for chunk in _chunks(sorted(sequences)):
        values = {"state": state, "attempts": ExportOutbox.attempts + 1, "error": error}
        if state == SENT:
            values["sent_at"] = at
        await session.execute(update(ExportOutbox).where(ExportOutbox.sequence.in_(chunk), ExportOutbox.state == PENDING).values(**values))


async def count_attempt(session: AsyncSession, sequences: list[int], error: str) -> None:
    """Record a failed try of pending records (they stay pending)."""
    for chunk in _chunks(sorted(sequences)):
        await session.execute(
            update(ExportOutbox).where(ExportOutbox.sequence.in_(chunk)).values(attempts=ExportOutbox.attempts + 1, error=error)
        )


async def unpark(session: AsyncSession) -> int:
    """Make every parked record pending again; returns how many."""
    result = await session.execute(update(ExportOutbox).where(ExportOutbox.state == PARKED).values(state=PENDING, attempts=0, error=None))
    return result.rowcount or 0


async def read_outbox_status(session: AsyncSession) -> dict:
    """Backlog, parked and last figures of the outbox."""
    t = ExportOutbox
    backlog, oldest = (await session.execute(select(func.count(), func.min(t.created_at)).where(t.state == PENDING))).one()
    parked = (await session.execute(select(func.count()).where(t.state == PARKED))).scalar()
    last_seq, last_sent = (await session.execute(select(func.max(t.sequence), func.max(t.sent_at)))).one()
    err = None
    if parked:
        stmt = select(t.error).where(t.state == PARKED).order_by(t.sequence.desc()).limit(1)
        err = (await session.execute(stmt)).scalar()
    return {
        "backlog": int(backlog or 0),
        "oldest_pending_at": oldest,
        "parked": int(parked or 0),
        "parked_error": err,
        "last_sequence": int(last_seq or 0),
        "last_sent_at": last_sent,
    }


# --- receiving (central mode) ------------------------------------------------------------------


async def lock_source(session: AsyncSession, source: str, last_sequence: int, now: datetime) -> None:
    """Upsert and lock the subordinate's row: its snapshots are merged one at a time."""
    stmt = dialect.insert(session, NetworkSource).values(source=source, last_sequence=last_sequence, received_at=now)
    stmt = stmt.on_conflict_do_update(
        index_elements=["source"],
        set_={
            "received_at": now,
            "last_sequence": case(
                (stmt.excluded.last_sequence > NetworkSource.last_sequence, stmt.excluded.last_sequence),
                else_=NetworkSource.last_sequence,
            ),
        },
    )
    await session.execute(stmt)


async def upsert_newer(session: AsyncSession, table, keys: tuple[str, ...], rows: list[dict]) -> list[tuple]:
    """Store rows whose sequence is newer than the stored one for their key; returns the keys stored."""
    rows = sorted(rows, key=lambda r: tuple(r[k] for k in keys))
    if not rows:
        return []
    others = tuple(c for c in rows[0] if c not in keys)
    return await dialect.bulk_upsert(session, table, rows, list(keys), replace=others, returning=keys, newer="sequence")


async def read_max_network_day(session: AsyncSession, source: str, unit: str) -> date | None:
    """The latest day with a record from this source for this unit."""
    stmt = select(func.max(NetworkDay.day)).where(NetworkDay.source == source, NetworkDay.unit_code == unit)
    return (await session.execute(stmt)).scalar()


async def read_network_days(session: AsyncSession, source: str, unit: str, since: date) -> list[NetworkDay]:
    """Stored day records of one unit from one source, from `since`, by day."""
    stmt = (
        select(NetworkDay)
        .where(NetworkDay.unit_code == unit, NetworkDay.source == source, NetworkDay.day >= since)
        .order_by(NetworkDay.day)
    )
    return list((await session.execute(stmt)).scalars())


async def read_sources(session: AsyncSession) -> list[dict]:
    """Subordinates that sent snapshots, with their last sequence and time."""
    rows = await session.execute(select(NetworkSource).order_by(NetworkSource.source))
    return [{"node_id": r.source, "last_sequence": r.last_sequence, "received_at": r.received_at} for r in rows.scalars()]


# --- figures of past days (the exporter) -------------------------------------------------------


async def read_day_sums(session: AsyncSession, units: list[str], since: date) -> tuple[dict, dict, dict]:
    """All-sector figures of these units from `since` on, summed over sources like the read path:
    ({(unit, day): {flow..., p_in, p_out, o_in, o_out, due_c0..2}}, {unit: (pending total, overdue total)},
    {(unit, day): {bucket: n}})."""
    from app.aggregates.counters import DUE, TOTALS
    from app.export.records import DAY_FLOWS

    counters = (*DAY_FLOWS, *TOTALS, *DUE)
    stmt = (
        select(UnitDay.unit_code, UnitDay.day, *(func.sum(getattr(UnitDay, c)).label(c) for c in counters))
        .where(UnitDay.unit_code.in_(units), UnitDay.sector == ALL_SECTORS, UnitDay.day >= since)
        .group_by(UnitDay.unit_code, UnitDay.day)
    )
    days = {(r["unit_code"], r["day"]): {k: int(r[k] or 0) for k in counters} for r in (await session.execute(stmt)).mappings()}
    stmt = (
        select(UnitTotal.unit_code, *total_columns(UnitTotal))
        .where(UnitTotal.unit_code.in_(units), UnitTotal.sector == ALL_SECTORS)
        .group_by(UnitTotal.unit_code)
    )
    totals = {u: (int(p or 0), int(o or 0)) for u, p, o in (await session.execute(stmt)).all()}
    stmt = select(UnitDay.unit_code, UnitDay.day, UnitDay.hist).where(
        UnitDay.unit_code.in_(units), UnitDay.sector == ALL_SECTORS, UnitDay.day >= since, UnitDay.hist.is_not(None)
    )
    hist: dict = {}
    for u, d, packed in (await session.execute(stmt)).all():  # every source's row of the day, added
        counts = hist.setdefault((u, d), {})
        for b, n in hist_decode(packed).items():
            counts[b] = counts.get(b, 0) + n
    hist = {k: {b: n for b, n in v.items() if n} for k, v in hist.items()}
    return days, totals, {k: v for k, v in hist.items() if v}
