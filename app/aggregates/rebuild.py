"""`chiso kpis verify`: rebuild every dossier and aggregate (and the silent-source bookkeeping) from
the stored events and compare.

The event log is the source of truth; this is also how an operator repairs the live state. Own
rows of each unit are rebuilt from its events; rollup rows of provinces and the nation must equal
the sums of the own rows below them (every source, so a central node's merged records count).
Run it while ingest is quiet: an event committed between the two reads shows as a difference.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

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
        states, delta = rebuild(events, settings)
        report.units += 1
        report.events += len(events)
        report.dossiers += len(states)
        problems = diff(unit, as_plain(delta), live)
        rebuilt_rows = {d: s.to_row() for d, s in states.items()}
        for dossier_id in sorted(set(rebuilt_rows) | set(live_dossiers)):
            if rebuilt_rows.get(dossier_id) != live_dossiers.get(dossier_id):
                problems.append(f"{unit} dossier {dossier_id}: live state differs from its events")
                break
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
