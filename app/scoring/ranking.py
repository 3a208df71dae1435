"""Rankings of units by a KPI, and the memo that keeps a ranking of communes per unit."""

from __future__ import annotations

import asyncio
from collections import OrderedDict, defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from app.aggregates import periods
from app.aggregates.at_tau import apply, is_central, read_at_instant
from app.aggregates.live_memo import LiveMemo, fill, read_live, read_network_due, total_of
from app.aggregates.network_reads import _read_network_cohort
from app.aggregates.periods import Period
from app.aggregates.reads import read_sums, read_unit_changes
from app.aggregates.sums import Scope, Sums, live_part, span_at, with_live
from app.aggregates.tau_memo import TauMemo
from app.aggregates.tau_memo import total_of as tau_total
from app.db.engine import Database
from app.db.models import ALL_SECTORS
from app.errors import Unprocessable
from app.scoring import kpis as kpi_math
from app.scoring import service
from app.scoring.context import Reader
from app.units.seed import UnitRow
from app.units.service import Registry


@dataclass
class _Figures:
    """One level's units in one ranking period: what was read for each and the rows made of it."""

    changes: dict[str, int] = field(default_factory=dict)  # unit -> change count when its rows were read
    stored: dict[str, list[Sums]] = field(default_factory=dict)  # unit -> the stored part, per span
    live: dict[str, tuple] = field(default_factory=dict)  # unit -> the live part it was computed with
    rows: dict[str, dict] = field(default_factory=dict)  # unit -> {"unit", "kpis", "change"}
    groups: dict[str, tuple[str, ...]] = field(default_factory=dict)  # unit -> the units whose figures it sums
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class RankingMemo:
    """A worker's per-unit figures of the communes' rankings it answered (one entry per level,
    parent, period and day), so that after a data change a ranking re-reads and recomputes only the
    units whose own rows changed (unit_change counts) or whose figures within today moved (read
    anew every time for all): the ranking of all 3,321 communes costs the changed units, not all."""

    def __init__(self, size: int = 16):
        self.size = size
        self._entries: OrderedDict[tuple, _Figures] = OrderedDict()
        self.live: LiveMemo | None = LiveMemo()  # the figures at now per unit, for every answer of this process
        self.tau: TauMemo | None = TauMemo()  # the previous period's corrections at t per unit, likewise

    def get(self, key: tuple) -> _Figures:
        entry = self._entries.get(key)
        if entry is None:
            entry = self._entries[key] = _Figures()
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)
        self._entries.move_to_end(key)
        return entry


async def ranking(
    reader: Reader,
    level: str,
    parent: str | None,
    p: Period,
    sort: str,
    limit: int,
    offset: int,
    memo: RankingMemo | None = None,
    min_count: int = 0,
    judged_at: datetime | None = None,
) -> dict:
    """Units of a level ranked by one KPI; ties share a rank; nulls last, unranked. With
    `min_count`, a unit whose sort KPI rests on fewer dossiers (kpis.SAMPLE_OF) is unranked too:
    after the ranked units, with the nulls, by code."""
    key = sort.lstrip("-")
    if key not in kpi_math.KPI_NAMES:
        raise Unprocessable(f"unknown KPI {key}", [{"loc": ["sort"], "msg": f"unknown KPI {key}"}])
    db, registry, tz, silent_after_hours = reader.db, reader.registry, reader.tz, reader.silent_after_hours
    if parent is not None:
        service._unit(registry, parent)
    members = registry.at_level(level, parent)
    now = reader.now()
    prev, spans, _ = service.compared(p, now, tz)
    if judged_at is not None:  # p itself as it stood at that instant (the report's previous ranks)
        spans[0] = span_at(p, judged_at, tz)
    if memo is None:
        async with db.session() as session:
            sums = await read_sums(session, Scope(level=level, parent=parent), spans, ALL_SECTORS, silent_after_hours=silent_after_hours)
        rows = [_ranking_row(u, *(sums.get(u.code) or sums.default_factory())) for u in members]
    elif level != "commune":  # provinces read 34 units' rollup rows: nothing to save but the figures at now
        rows = await _level_rows(db, memo, registry, members, level, parent, spans, silent_after_hours)
    else:
        today = periods.today(now, tz)
        figures = memo.get((level, parent, p, prev, today, registry.version, spans[0].end, spans[1].end))
        async with figures.lock:
            rows = await _memo_rows(db, figures, members, level, parent, spans, silent_after_hours, memo, registry)
    descending = sort.startswith("-")
    sample = kpi_math.SAMPLE_OF.get(key)

    def ranks(r: dict) -> bool:
        return r["kpis"][key] is not None and (sample is None or r["samples"][sample] >= min_count)

    ranked = [r for r in rows if ranks(r)]
    unranked = sorted((r for r in rows if not ranks(r)), key=lambda r: r["unit"]["code"])
    ranked.sort(key=lambda r: r["unit"]["code"])
    ranked.sort(key=lambda r: r["kpis"][key], reverse=descending)
    ranks: list[int | None] = []
    last_value, last_rank = object(), 0
    for i, r in enumerate(ranked, start=1):
        if r["kpis"][key] != last_value:
            last_value, last_rank = r["kpis"][key], i
        ranks.append(last_rank)
    ranks += [None] * len(unranked)
    ordered = ranked + unranked
    return {
        "level": level,
        "parent": parent,
        "sort": sort,
        "min_count": min_count,
        "period": p.as_dict(),
        "as_of": service.as_of(now, tz),
        "total": len(ordered),
        "limit": limit,
        "offset": offset,
        "items": [
            {"rank": rank, "unit": r["unit"], "kpis": r["kpis"], "change": r["change"]}
            for rank, r in zip(ranks[offset : offset + limit], ordered[offset : offset + limit], strict=True)
        ],
    }


async def _level_rows(
    db: Database, memo: RankingMemo, registry: Registry, members: list[UnitRow], level: str, parent: str | None, spans, after_hours: float
) -> list[dict]:
    """The rows of a level above the communes (a few dozen units): their rollup rows read at once,
    their figures at now from the per-unit memo."""
    async with db.session() as session:
        sums = await read_sums(session, Scope(level=level, parent=parent), spans, ALL_SECTORS, live=False)
        live = await _live_sums(session, memo, registry, members, level, parent, spans, after_hours)
    return [
        _ranking_row(u, *(with_live(st, lv) for st, lv in zip(sums.get(u.code) or sums.default_factory(), live[u.code], strict=True)))
        for u in members
    ]


def _ranking_row(u: UnitRow, cur_s: Sums, prev_s: Sums) -> dict:
    """A unit's row: its item of a ranking, and (`before`, `prev`) what its KPI answer adds (level_kpis)."""
    cur, before = kpi_math.compute(cur_s), kpi_math.compute(prev_s)
    change = kpi_math.change(cur, before)
    return {
        "unit": service.unit_shape(u),
        "kpis": cur,
        "change": change,
        "samples": kpi_math.samples(cur_s),
        "before": before,
        "prev": prev_s,
    }


async def level_kpis(reader: Reader, level: str, codes: list[str], p: Period, memo: RankingMemo) -> dict[str, dict]:
    """The KPI answers (all sectors) of several units of one level for one period, each as
    service.unit_kpis gives it, made at once from the rows of the ranking of every unit of that level
    in that period: for communes the same memo entry as that ranking's (only the communes whose
    figures changed are read and computed again), for provinces one grouped read of their rollup
    rows. A refresh of many such answers costs what changed, not a read per answer."""
    db, registry, tz, silent_after_hours = reader.db, reader.registry, reader.tz, reader.silent_after_hours
    now = reader.now()
    prev, spans, t = service.compared(p, now, tz)
    members = registry.at_level(level, None)
    if level == "commune":
        figures = memo.get((level, None, p, prev, periods.today(now, tz), registry.version, spans[0].end, spans[1].end))
        async with figures.lock:
            await _memo_rows(db, figures, members, level, None, spans, silent_after_hours, memo, registry)
            rows = {code: figures.rows[code] for code in codes}
    else:
        wanted = set(codes)
        rows = {
            r["unit"]["code"]: r
            for r in await _level_rows(db, memo, registry, [u for u in members if u.code in wanted], level, None, spans, silent_after_hours)
        }
    return {code: service.kpi_answer(r["unit"], p, now, tz, prev, t, r["prev"], r["kpis"], r["before"]) for code, r in rows.items()}


async def _live_sums(
    session, memo: RankingMemo, registry: Registry, members: list[UnitRow], level: str, parent: str | None, spans, after_hours: float
) -> dict[str, list[Sums]]:
    """Per member, the live part of its sums (sums.LIVE_FIELDS): its figures at now summed from the
    per-unit memo (app.aggregates.live_memo), the subordinates' cohort records read anew."""
    out: dict[str, list[Sums]] = defaultdict(lambda: [Sums(silent=None if sp.now is None else 0) for sp in spans])
    scope = Scope(level=level, parent=parent)
    live = [(i, sp) for i, sp in enumerate(spans) if sp.now is not None]
    if live:
        groups = {u.code: tuple(registry.subtree(u.code)) for u in members}
        await read_live(session, scope, live, ALL_SECTORS, after_hours, out, groups=groups, memo=memo.live)
    await _read_moving(session, scope, spans, out, {u.code: tuple(registry.subtree(u.code)) for u in members}, memo.tau)
    return out


async def _read_moving(session, scope: Scope, spans, out: dict[str, list[Sums]], groups: dict, tau: TauMemo | None) -> None:
    """What moves with time besides the figures at now: the previous period's corrections up to
    the same point t (t moves with now; per unit from `tau`, app.aggregates.tau_memo, summed over
    `groups`) and the subordinates' cohort records (read anew)."""
    at_instant = [(i, sp) for i, sp in enumerate(spans) if sp.until is not None]
    if at_instant:
        await read_at_instant(session, scope, at_instant, ALL_SECTORS, out, groups=groups if tau is not None else None, memo=tau)
    await _read_network_cohort(session, scope, spans, out)


async def _memo_rows(
    db: Database,
    figures: _Figures,
    members: list[UnitRow],
    level: str,
    parent: str | None,
    spans,
    silent_after_hours: float,
    memo: RankingMemo,
    registry: Registry,
) -> list[dict]:
    """The rows of a ranking, re-reading the stored sums of changed units only, and recomputing
    only the rows of units whose stored sums, figures at now (per unit: app.aggregates.live_memo),
    corrections at the same point t (per unit: app.aggregates.tau_memo) or subordinates' records
    changed (compared by value: a row is a function of them alone).

    Change counts are read before the sums: a batch that commits in between shows as a change at
    the next call, which reads the unit again; every batch acknowledged before this call is in."""
    scope = Scope(level=level, parent=parent)
    live = [(i, sp) for i, sp in enumerate(spans) if sp.now is not None]
    if not figures.groups:
        figures.groups = {u.code: tuple(registry.subtree(u.code)) for u in members}
    async with db.session() as session:
        changes = await read_unit_changes(session, level, parent)
        stale = [u.code for u in members if u.code not in figures.stored or changes.get(u.code, 0) != figures.changes.get(u.code)]
        for start in range(0, len(stale), 500):
            chunk = tuple(stale[start : start + 500])
            got = await read_sums(session, Scope(codes=chunk, level="unit"), spans, ALL_SECTORS, live=False)
            for code in chunk:
                figures.stored[code] = got.get(code) or [Sums() for _ in spans]
                figures.changes[code] = changes.get(code, 0)
        parts: dict = {}
        if live and memo.live is not None:
            codes = None if parent is None or parent == "VN" else {c for g in figures.groups.values() for c in g}
            parts, _ = await memo.live.parts(session, codes, live, ALL_SECTORS, silent_after_hours)
            network_due = await read_network_due(session, scope)
        elif live:  # no memo of figures at now: read them all
            parts = await _live_sums(session, memo, registry, members, level, parent, spans, silent_after_hours)
        # what moves with time besides the figures at now: the previous period's corrections at t (per
        # unit, kept: app.aggregates.tau_memo) and the subordinates' records (read anew, few units)
        at_instant = [(i, sp) for i, sp in enumerate(spans) if sp.until is not None]
        kept_tau = memo.tau is not None and bool(at_instant) and not await is_central(session)
        tau: dict[int, dict] = {}
        if kept_tau:
            codes = None if parent is None or parent == "VN" else {c for g in figures.groups.values() for c in g}
            for i, sp in at_instant:
                tau[i] = (await memo.tau.parts(session, codes, ALL_SECTORS, sp))[0]
        moving: dict[str, list[Sums]] = defaultdict(lambda: [Sums(silent=None if sp.now is None else 0) for sp in spans])
        if at_instant and not kept_tau:
            await read_at_instant(session, scope, at_instant, ALL_SECTORS, moving)
        await _read_network_cohort(session, scope, spans, moving)
    stale_set = set(stale)
    rows = []
    for u in members:
        group = figures.groups[u.code]
        read = moving.get(u.code)
        moved = (tuple(tuple(kept.get(c) for c in group) for kept in tau.values()), read and tuple(live_part(s)[:-1] for s in read))
        if live and memo.live is not None:
            key = (tuple(parts.get(c) for c in group), network_due.get(u.code), moved)
            now_live = None
        else:  # a defaultdict: a unit with no live figure gets the zero (not null) ones
            now_live = parts[u.code] if live else moving[u.code]  # parts: with the corrections at t and the records
            key = (tuple(live_part(s)[:-1] for s in now_live), moved)
        if u.code in stale_set or figures.live.get(u.code) != key or u.code not in figures.rows:
            if now_live is None or not live:  # (else the parts of _live_sums hold the corrections at t already)
                if now_live is None:
                    now_live = moving[u.code]
                    fill(now_live, total_of(parts, group), live, network_due.get(u.code))
                for i, kept in tau.items():
                    vector, hist = tau_total(kept, group)
                    if vector is not None:
                        apply(now_live[i], vector, hist)
            cur_s, prev_s = (with_live(st, lv) for st, lv in zip(figures.stored[u.code], now_live, strict=True))
            figures.rows[u.code] = _ranking_row(u, cur_s, prev_s)
            figures.live[u.code] = key
        rows.append(figures.rows[u.code])
    return rows
