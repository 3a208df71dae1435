"""`chiso kpis verify`: rebuild every dossier and aggregate from the stored events and compare.

The event log is the source of truth; this is also how an operator repairs the live state.
Run it while ingest is quiet: an event committed between the two reads shows as a difference.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from app.db.engine import Database
from app.export import repository as export_repository
from app.ingest import repository as ingest_repository
from app.ingest.dossier import DossierState
from app.ingest.service import DATA_VERSION
from app.scoring import repository
from app.scoring.contrib import Delta
from app.settings import Settings
from app.units import repository as units_repository


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


def _as_plain(delta: Delta) -> dict[str, dict]:
    return {
        "day": {k: dict(v) for k, v in delta.day.items()},
        "hist": dict(delta.hist),
        "cohort_due": dict(delta.cohort_due),
        "total": {k: dict(v) for k, v in delta.total.items()},
    }


def _diff(unit: str, want: dict, have: dict, limit: int = 5) -> list[str]:
    out = []
    for table in want:
        keys = sorted(set(want[table]) | set(have[table]), key=repr)
        for key in keys:
            if want[table].get(key) != have[table].get(key):
                out.append(f"{unit} {table} {key}: live {have[table].get(key)} != rebuilt {want[table].get(key)}")
                if len(out) >= limit:
                    return out
    return out


async def verify(db: Database, settings: Settings, repair: bool = False) -> Report:
    """Compare (and with repair=True, replace) the live state with one rebuilt from events."""
    report = Report()
    async with db.session() as session:
        units = await ingest_repository.read_event_units(session)
    for unit in units:
        async with db.session() as session:
            events = await ingest_repository.read_unit_events(session, unit)
            live_dossiers = await ingest_repository.read_unit_dossiers(session, unit)
            live = await repository.read_unit_aggregates(session, unit)
        states, delta = rebuild(events, settings)
        report.units += 1
        report.events += len(events)
        report.dossiers += len(states)
        problems = _diff(unit, _as_plain(delta), live)
        rebuilt_rows = {d: s.to_row() for d, s in states.items()}
        for dossier_id in sorted(set(rebuilt_rows) | set(live_dossiers)):
            if rebuilt_rows.get(dossier_id) != live_dossiers.get(dossier_id):
                problems.append(f"{unit} dossier {dossier_id}: live state differs from its events")
                break
        report.differences.extend(problems)
        if problems and repair:
            async with db.transaction() as session:
                await ingest_repository.delete_unit_state(session, unit)
                await ingest_repository.lock_dossiers(session, [(unit, d) for d in states])
                await ingest_repository.upsert_dossiers(session, list(states.values()))
                await ingest_repository.upsert_aggregates(session, delta)
                days = [k[2] for k in live["day"]] + [k[2] for k in delta.day]
                if days:  # the central network must hear of the repaired figures too
                    await export_repository.mark_dirty(session, {unit: min(days)})
                await units_repository.bump_meta(session, DATA_VERSION)  # cached answers are stale now
            report.repaired.append(unit)
    return report
