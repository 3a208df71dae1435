"""accept_batch: validate, authorise, store once, fold into dossier states and aggregates, commit."""

from __future__ import annotations

import time
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta

from sqlalchemy.exc import DBAPIError

from app import metrics
from app.aggregates import silent, writes
from app.aggregates.contrib import Delta
from app.db import meta, partitions
from app.db.engine import Database
from app.ingest import groups, repository
from app.ingest.schemas import EventError, validate_events
from app.keys.service import Principal, check_units
from app.settings import Settings
from app.units.service import Registry


def screen(
    items: list, registry: Registry, now: datetime, skew: timedelta, horizon: timedelta | None, seen: set[tuple[str, str]]
) -> list[tuple[str, str | None, dict | list]]:
    """Per item, in order: ("valid", event_id, the event with `ingested_at` = now), ("duplicate",
    event_id, {}) for a repeat of an earlier item (`seen` holds the keys already taken; it grows), or
    ("rejected", event_id or None, errors). An item may be an EventError already (an unreadable
    line). The API and `chiso import` both screen their items here."""
    out: list[tuple[str, str | None, dict | list]] = []
    checked = validate_events([{} if isinstance(obj, EventError) else obj for obj in items], now, skew, horizon)
    for obj, ev in zip(items, checked, strict=True):
        if isinstance(obj, EventError):
            ev = obj
        else:
            errors = ev.errors if isinstance(ev, EventError) else []
            unit = obj.get("unit_code") if isinstance(obj, dict) else None
            typed = not any(e["loc"][:1] == ["unit_code"] for e in errors)
            if typed and isinstance(unit, str) and registry.get(unit) is None:
                # named with the item's other problems, all in one answer
                ev = EventError([*errors, {"loc": ["unit_code"], "msg": "unknown unit"}])
        if isinstance(ev, EventError):
            event_id = obj.get("event_id") if isinstance(obj, dict) else None
            # echo only a string: any JSON (nested 1,000 deep) may stand there
            out.append(("rejected", event_id if isinstance(event_id, str) else None, ev.errors))
            continue
        key = (ev["unit_code"], ev["event_id"])
        if key in seen:
            out.append(("duplicate", ev["event_id"], {}))
            continue
        seen.add(key)
        ev["ingested_at"] = now
        out.append(("valid", ev["event_id"], ev))
    return out


async def accept_batch(
    db: Database,
    registry: Registry,
    settings: Settings,
    principal: Principal,
    items: list,
    dry_run: bool = False,
    now: datetime | None = None,
) -> dict:
    """Store the valid, new events of a batch durably; answer only after COMMIT.

    `now` is the batch's acceptance time (its events' `ingested_at`, and the clock of the skew and
    horizon checks): the current time, unless a caller that replays history says otherwise (the
    demo's back-fill, tests of acceptance-time rules such as silent sources)."""
    started = time.perf_counter()
    grouped = now is None and settings.ingest_group_events > 0  # accepted now: may share a pass (app.ingest.groups)
    now = datetime.now(UTC) if now is None else now.astimezone(UTC)
    skew, horizon = timedelta(seconds=settings.skew_seconds), timedelta(days=settings.horizon_days)

    named = {it["unit_code"] for it in items if isinstance(it, dict) and isinstance(it.get("unit_code"), str)}
    check_units(principal, registry, named)

    outcome: dict[int, dict] = {}
    valid: list[tuple[int, dict]] = []
    for index, (status, event_id, got) in enumerate(screen(items, registry, now, skew, horizon, set())):
        if status == "valid":
            valid.append((index, got))
        elif status == "duplicate":
            outcome[index] = {"index": index, "event_id": event_id, "status": "duplicate"}
        else:
            outcome[index] = {"index": index, "event_id": event_id, "status": "rejected", "errors": got}

    if dry_run:
        async with db.session() as session:
            stored = await repository.read_stored_event_keys(session, [(e["unit_code"], e["event_id"]) for _, e in valid])
    elif not valid:
        stored = set()
    elif grouped:
        stored = await groups.of(db, settings.ingest_group_events).store(
            lambda events, at: store_events(db, registry, settings, events, at), [e for _, e in valid], now
        )
    else:
        stored = await store_events(db, registry, settings, [e for _, e in valid], now)
    for index, ev in valid:
        key = (ev["unit_code"], ev["event_id"])
        # `stored` is what was already there (dry run) or what this request inserted (real run).
        if (key in stored) == dry_run:
            outcome[index] = {"index": index, "event_id": ev["event_id"], "status": "duplicate"}

    result_items = [outcome[i] for i in sorted(outcome)]
    duplicates = sum(1 for it in result_items if it["status"] == "duplicate")
    rejected = len(result_items) - duplicates
    accepted = len(items) - len(result_items)
    if not dry_run:
        metrics.EVENTS.labels("accepted").inc(accepted)
        metrics.EVENTS.labels("duplicate").inc(duplicates)
        metrics.EVENTS.labels("rejected").inc(rejected)
        metrics.BATCH_EVENTS.observe(len(items))
        metrics.BATCH_SECONDS.observe(time.perf_counter() - started)
    return {"accepted": accepted, "duplicates": duplicates, "rejected": rejected, "items": result_items}


async def store_events(
    db: Database, registry: Registry, settings: Settings, events: list[dict], now: datetime, bulk: bool = False
) -> set[tuple[str, str]]:
    """One transaction: insert valid events (distinct keys), fold the new ones into their dossiers
    and the aggregates; returns the keys inserted (the others were stored before). PostgreSQL does it
    in one server-side pass (`bulk`: the events travel by COPY); SQLite takes the Python path."""
    tz = settings.tz
    if not db.is_sqlite:
        return await _store_events_pg(db, registry, settings, events, now, bulk)
    async with db.transaction() as session:
        inserted = await repository.insert_events(session, events)
        if inserted:
            by_dossier: dict[tuple[str, str], list[dict]] = defaultdict(list)
            future: set[tuple[str, str, datetime]] = set()
            for ev in events:
                if (ev["unit_code"], ev["event_id"]) in inserted:
                    by_dossier[(ev["unit_code"], ev["dossier_id"])].append(ev)
                    if ev["occurred_at"] > now:  # within the skew allowance: ahead of reads for a while
                        future.add((ev["unit_code"], ev["dossier_id"], ev["occurred_at"]))
            if future:
                rows = [{"unit_code": u, "dossier_id": d, "at": at} for u, d, at in sorted(future)]
                await repository.mark_future(session, rows, now - timedelta(days=1))
            states = await writes.lock_dossiers(session, list(by_dossier))
            delta = Delta()
            moved: dict[str, date] = {}  # units with a deadline moved: from the receipt day on
            for key, evs in by_dossier.items():
                state = states[key]
                delta.add(state, tz, -1)
                due = state.effective_due()
                for ev in evs:
                    state.apply(ev, tz)
                delta.add(state, tz, +1)
                if state.effective_due() != due and state.recv_at is not None:
                    day = state.recv_at.astimezone(tz).date()
                    moved[key[0]] = min(day, moved.get(key[0], day))
            await writes.upsert_dossiers(session, [states[k] for k in by_dossier])
            changes = delta.nonzero()
            await writes.add_aggregates(session, changes, registry, touched={u for u, _ in by_dossier})
            # A deadline moved within a day changes no day row, but today's figures at now (overdue, the
            # cohort) and so the export records of today and of the receipt's periods.
            marks = changes.dirty_days()
            for unit, day in moved.items():
                marks[unit] = min(day, marks.get(unit, day))
            await writes.mark_dirty(session, marks)
            # Silent sources: the last acceptance per unit and the days its events are dated on.
            await silent.record_accepted(session, [ev for ev in events if (ev["unit_code"], ev["event_id"]) in inserted], tz)
            # Last, so the one hot row is held only for the commit.
            await meta.bump_data_version(session)
    return inserted


async def _store_events_pg(
    db: Database, registry: Registry, settings: Settings, events: list[dict], now: datetime, bulk: bool
) -> set[tuple[str, str]]:
    """store_events on PostgreSQL: the months' partitions first (app.db.partitions), then the pass.
    A partition this process knew may have been dropped since by a retention run (only a month out
    of the API's reach, so only an import meets it): then it is made again and the batch retried."""
    parts = partitions.of(db)
    months = {partitions.month_of(e["occurred_at"], settings.tz) for e in events}
    for attempt in range(2):
        await parts.ensure(db, months, settings.tz)
        try:
            async with db.transaction() as session:
                return await writes.store_batch_pg(session, events, registry, settings.timezone, now, copy=bulk)
        except DBAPIError as exc:
            if attempt or "no partition of relation" not in str(exc):
                raise
            parts.forget()
    raise AssertionError("unreachable")
