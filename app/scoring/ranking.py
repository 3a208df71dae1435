"""Rankings of units by a KPI, and the memo that keeps a ranking of communes per unit."""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime, tzinfo

from app.aggregates import periods
from app.aggregates.periods import Period
from app.aggregates.reads import read_sums, read_unit_changes
from app.aggregates.silent import DEFAULT_AFTER_HOURS
from app.aggregates.sums import Scope, Sums, live_part, span_at, with_live
from app.db.engine import Database
from app.db.models import ALL_SECTORS
from app.errors import Unprocessable
from app.scoring import kpis as kpi_math
from app.scoring import service
from app.units.seed import UnitRow
from app.units.service import Registry


@dataclass
class _Figures:
    """One level's units in one ranking period: what was read for each and the rows made of it."""

    changes: dict[str, int] = field(default_factory=dict)  # unit -> change count when its rows were read
    stored: dict[str, list[Sums]] = field(default_factory=dict)  # unit -> the stored part, per span
    live: dict[str, tuple] = field(default_factory=dict)  # unit -> the live part it was computed with
    rows: dict[str, dict] = field(default_factory=dict)  # unit -> {"unit", "kpis", "change"}
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class RankingMemo:
    """A worker's per-unit figures of the communes' rankings it answered (one entry per level,
    parent, period and day), so that after a data change a ranking re-reads and recomputes only the
    units whose own rows changed (unit_change counts) or whose figures within today moved (read
    anew every time for all): the ranking of all 3,321 communes costs the changed units, not all."""

    def __init__(self, size: int = 16):
        self.size = size
        self._entries: OrderedDict[tuple, _Figures] = OrderedDict()

    def get(self, key: tuple) -> _Figures:
        entry = self._entries.get(key)
        if entry is None:
            entry = self._entries[key] = _Figures()
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)
        self._entries.move_to_end(key)
        return entry


async def ranking(
    db: Database,
    registry: Registry,
    tz: tzinfo,
    level: str,
    parent: str | None,
    p: Period,
    sort: str,
    limit: int,
    offset: int,
    memo: RankingMemo | None = None,
    silent_after_hours: float = DEFAULT_AFTER_HOURS,
    min_count: int = 0,
    judged_at: datetime | None = None,
) -> dict:
    """Units of a level ranked by one KPI; ties share a rank; nulls last, unranked. With
    `min_count`, a unit whose sort KPI rests on fewer dossiers (kpis.SAMPLE_OF) is unranked too:
    after the ranked units, with the nulls, by code."""
    key = sort.lstrip("-")
    if key not in kpi_math.KPI_NAMES:
        raise Unprocessable(f"unknown KPI {key}", [{"loc": ["sort"], "msg": f"unknown KPI {key}"}])
    if parent is not None:
        service._unit(registry, parent)
    members = registry.at_level(level, parent)
    now = service._now()
    prev, spans, _ = service.compared(p, now, tz)
    if judged_at is not None:  # p itself as it stood at that instant (the report's previous ranks)
        spans[0] = span_at(p, judged_at, tz)
    if memo is None or level != "commune":  # provinces read 34 units' rollup rows: nothing to save
        async with db.session() as session:
            sums = await read_sums(session, Scope(level=level, parent=parent), spans, ALL_SECTORS, silent_after_hours=silent_after_hours)
        rows = [_ranking_row(u, *(sums.get(u.code) or sums.default_factory())) for u in members]
    else:
        today = periods.today(now, tz)
        figures = memo.get((level, parent, p, prev, today, registry.version, spans[0].end, spans[1].end))
        async with figures.lock:
            rows = await _memo_rows(db, figures, members, level, parent, spans, silent_after_hours)
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


def _ranking_row(u: UnitRow, cur_s: Sums, prev_s: Sums) -> dict:
    cur, before = kpi_math.compute(cur_s), kpi_math.compute(prev_s)
    return {"unit": service.unit_shape(u), "kpis": cur, "change": kpi_math.change(cur, before), "samples": kpi_math.samples(cur_s)}


async def _memo_rows(
    db: Database, figures: _Figures, members: list[UnitRow], level: str, parent: str | None, spans, silent_after_hours: float
) -> list[dict]:
    """The rows of a ranking, re-reading the stored sums of changed units only.

    Change counts are read before the sums: a batch that commits in between shows as a change at
    the next call, which reads the unit again; every batch acknowledged before this call is in."""
    async with db.session() as session:
        changes = await read_unit_changes(session, level, parent)
        stale = [u.code for u in members if u.code not in figures.stored or changes.get(u.code, 0) != figures.changes.get(u.code)]
        for start in range(0, len(stale), 500):
            chunk = tuple(stale[start : start + 500])
            got = await read_sums(session, Scope(codes=chunk, level="unit"), spans, ALL_SECTORS, live=False)
            for code in chunk:
                figures.stored[code] = got.get(code) or [Sums() for _ in spans]
                figures.changes[code] = changes.get(code, 0)
        live = await read_sums(
            session, Scope(level=level, parent=parent), spans, ALL_SECTORS, stored=False, silent_after_hours=silent_after_hours
        )
    stale_set = set(stale)
    rows = []
    for u in members:
        now_live = live[u.code]  # a defaultdict: a unit with no live figure gets the zero (not null) ones
        parts = tuple(live_part(s) for s in now_live)
        if u.code in stale_set or figures.live.get(u.code) != parts or u.code not in figures.rows:
            cur_s, prev_s = (with_live(st, lv) for st, lv in zip(figures.stored[u.code], now_live, strict=True))
            figures.rows[u.code] = _ranking_row(u, cur_s, prev_s)
            figures.live[u.code] = parts
        rows.append(figures.rows[u.code])
    return rows
