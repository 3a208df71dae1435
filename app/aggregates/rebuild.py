"""`chiso kpis verify`: rebuild every dossier and aggregate (and the silent-source bookkeeping) from
the stored events and compare.

The event log is the source of truth; this is also how an operator repairs the live state. Own
rows of each unit are rebuilt from its events; rollup rows of provinces and the nation must equal
the sums of the own rows below them (every source, so a central node's merged records count).
Run it while ingest is quiet: an event committed between the two reads shows as a difference.

Months archived by retention (app.retention) are no longer in the log: a dossier whose row counts
more events than are stored (`event_days`) keeps its live state, checked against the events still
stored (each of them merged again changes no winner) and, per month, against what the archive
holds of its unit (`archived_unit_month`); the aggregates are then checked against the dossiers.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, time

from app.aggregates import reads, silent, writes
from app.aggregates.contrib import Delta
from app.aggregates.dossier import DossierState
from app.db import meta
from app.db.engine import Database
from app.settings import Settings
from app.units.service import Registry, RegistryCache


@dataclass
class Report:
    units: int = 0
    events: int = 0
    archived_events: int = 0  # events of archived months the dossiers count
    dossiers: int = 0
    differences: list[str] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)


def rebuild(events: list[dict], settings: Settings) -> tuple[dict[str, DossierState], Delta]:
    """Dossier states and aggregates of one unit, from its events alone."""
    tz = settings.tz
    by_dossier: dict[str, list[dict]] = defaultdict(list)
    for e in events:
        by_dossier[e["dossier_id"]].append(e)
    states, delta = {}, Delta()
    for dossier_id, evs in by_dossier.items():
        state = DossierState(evs[0]["unit_code"], dossier_id)
        for e in evs:
            state.apply(e, tz)
        states[dossier_id] = state
        delta.add(state, tz, +1)
    return states, delta.nonzero()


def rebuild_with_archive(
    unit: str, events: list[dict], live_rows: dict[str, dict], archive: dict[date, tuple[int, datetime, list[date]]], settings: Settings
) -> tuple[dict[str, DossierState], Delta, list[str], int]:
    """rebuild() where some events lie in archived months: the states (rebuilt, or live where a
    dossier has archived events), their aggregates, the problems found, and the archived events
    counted by the dossiers."""
    tz = settings.tz
    states, _ = rebuild(events, settings)
    by_dossier: dict[str, list[dict]] = defaultdict(list)
    for e in events:
        by_dossier[e["dossier_id"]].append(e)
    problems: list[str] = []
    extra_by_month: dict[date, int] = defaultdict(int)
    for dossier_id, row in live_rows.items():
        live = DossierState.from_row(row)
        stored = states[dossier_id].event_days if dossier_id in states else {}
        if sum(live.event_days.values()) <= sum(stored.values()):
            continue  # every event stored: compared with the rebuilt row by the caller
        for day, n in live.event_days.items():
            if n != stored.get(day, 0):
                extra_by_month[date.fromisoformat(day).replace(day=1)] += n - stored.get(day, 0)
        if not _agrees(live, by_dossier.get(dossier_id, []), tz):
            problems.append(f"{unit} dossier {dossier_id}: live state differs from its stored events")
        states[dossier_id] = live
    kept = {m: n for m, (n, _, _) in archive.items()}
    if dict(extra_by_month) != kept:
        problems.append(f"{unit} archived events by month: dossiers count {_months(extra_by_month)}, the archive holds {_months(kept)}")
    delta = Delta()
    for state in states.values():
        delta.add(state, tz, +1)
    return states, delta.nonzero(), problems, sum(extra_by_month.values())


def _agrees(live: DossierState, events: list[dict], tz) -> bool:
    """True when merging these (stored) events into the live state again moves no winner."""
    again = DossierState.from_row(live.to_row())
    for e in events:
        again.apply(e, tz)
    counted = ("event_days", "supplements")  # these add up, once per event
    return {k: v for k, v in again.to_row().items() if k not in counted} == {
        k: v for k, v in live.to_row().items() if k not in counted
    } and live.supplements >= sum(1 for e in events if e["type"] == "due_changed" and e.get("reason") == "supplement_requested")


def _archived_as_events(unit: str, archive: dict, tz) -> list[dict]:
    """What silent.expected() needs of the archived events: their latest acceptance and their days."""
    return [
        {"unit_code": unit, "ingested_at": last, "occurred_at": datetime.combine(day, time(12), tz)}
        for _, last, days in archive.values()
        for day in days
    ]


def _months(counts: dict[date, int]) -> str:
    return ", ".join(f"{m:%Y-%m}: {n}" for m, n in sorted(counts.items()) if n) or "none"


def as_plain(delta: Delta) -> dict[str, dict]:
    return {
        "day": {k: dict(v) for k, v in delta.day.items()},
        "hist": dict(delta.hist),
        "cohort_due": dict(delta.cohort_due),
        "total": {k: dict(v) for k, v in delta.total.items()},
    }


def diff(label: str, want: dict, have: dict, limit: int = 5) -> list[str]:
    out = []
    for table in want:
        keys = sorted(set(want[table]) | set(have[table]), key=repr)
        for key in keys:
            if want[table].get(key) != have[table].get(key):
                out.append(f"{label} {table} {key}: live {have[table].get(key)} != rebuilt {want[table].get(key)}")
                if len(out) >= limit:
                    return out
    return out


async def verify(db: Database, settings: Settings, repair: bool = False, registry: Registry | None = None) -> Report:
    """Compare (and with repair=True, replace) the live state with one rebuilt from events."""
    report = Report()
    registry = registry or await RegistryCache(db).refresh()
    async with db.session() as session:
        units = await reads.read_event_units(session)
    for unit in units:
        async with db.session() as session:
            events = await reads.read_unit_events(session, unit)
            live_dossiers = await reads.read_unit_dossiers(session, unit)
            live = await reads.read_unit_aggregates(session, unit)
            live_source = await silent.read_unit(session, unit)
            archive = await reads.read_unit_archived(session, unit)
        states, delta, problems, archived = rebuild_with_archive(unit, events, live_dossiers, archive, settings)
        report.units += 1
        report.events += len(events)
        report.archived_events += archived
        report.dossiers += len(states)
        problems += diff(unit, as_plain(delta), live)
        rebuilt_rows = {d: s.to_row() for d, s in states.items()}
        for dossier_id in sorted(set(rebuilt_rows) | set(live_dossiers)):
            if rebuilt_rows.get(dossier_id) != live_dossiers.get(dossier_id):
                problems.append(f"{unit} dossier {dossier_id}: live state differs from its events")
                break
        events += _archived_as_events(unit, archive, settings.tz)  # for the silent-source bookkeeping
        want_source = silent.expected(events, settings.tz)
        if live_source != want_source:
            problems.append(f"{unit} silent-source bookkeeping: live {_source_text(live_source)} != rebuilt {_source_text(want_source)}")
        report.differences.extend(problems)
        if problems and repair:
            async with db.transaction() as session:
                await writes.delete_unit_state(session, unit)
                await writes.lock_dossiers(session, [(unit, d) for d in states])
                await writes.upsert_dossiers(session, list(states.values()))
                await writes.add_aggregates(session, delta, registry, slot=0)  # rollups: rebuilt below
                days = [k[2] for k in live["day"]] + [k[2] for k in delta.day]
                if days:  # the central network must hear of the repaired figures too
                    await writes.mark_dirty(session, {unit: min(days)})
                await silent.delete_unit(session, unit)
                await silent.record_accepted(session, events, settings.tz)
                await meta.bump_data_version(session)  # cached answers are stale now
            report.repaired.append(unit)
    async with db.session() as session:
        want, have = await reads.read_rollups(session, expected=True), await reads.read_rollups(session)
    problems = diff("rollup", want, have)
    report.differences.extend(problems)
    if (problems or report.repaired) and repair:
        async with db.transaction() as session:
            await writes.rebuild_rollups(session)
            await meta.bump_data_version(session)
        if problems:
            report.repaired.append("rollups")
    return report


def _source_text(source: tuple) -> str:
    last, days = source
    return f"last accepted {last.isoformat() if last else None}, {len(days)} days dated within 14"


async def rebuild_rollups(db: Database) -> None:
    """Recompute every rollup row from the own rows (after the registry's tree changed)."""
    async with db.transaction() as session:
        await writes.rebuild_rollups(session)
        await meta.bump_data_version(session)
