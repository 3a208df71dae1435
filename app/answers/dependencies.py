"""What a polled answer depends on, so the refresher computes again only the answers whose figures
moved: a commune's answer when that commune changed or a deadline of it passed, a province's when
one of its units did, the nation's and the rankings of every unit when any unit did.

Each tick the refresher reads every unit's `unit_change` count (a few thousand small rows) and the
units whose figures at now moved with time alone since the last tick (app.aggregates.live_memo:
deadlines passed or entering the due-soon windows, events dated ahead come due, units fallen silent).
An answer the refresher computed, or found holding, at the last tick, or that anyone computed at
the data version the last tick read with its counts (read in one snapshot: its computation saw every
batch those counts show), still holds at this one when none of its units is among those touched
since, its day is still today, the registry is the same, and it was computed less than `chain_for`
seconds ago (a bound on what no count shows: a row altered by hand; a repair of the rollup rows
counts a change of every unit above others, app.aggregates.writes.rebuild_rollups). The refresher
then restamps it (data version, time, `as_of`) instead of computing it: its figures are those a
computation would give.

Only kinds whose figures move with time at deadlines alone are restamped (KPIs, series, sectors,
rankings); the at-risk list (`hours_left`), the silent units (`silent_hours`), drivers and reports
are computed again as before. KPIs and rankings of a period not over compare with the previous
period as it stood at the same point t (SPEC section 4), and t moves with now
(kinds.compared_point): such an answer holds when, besides, the step of t since the last tick
crossed no time of its units' dossiers (at_tau.read_units_between: a receipt, an end, a deadline or
a deadline 24/48/72 h ahead, an orphan's event), read once per tick for each such period polled; its
restamp rewrites `until` with `as_of`. On a central node (records of subordinates, which no count
shows) nothing is restamped.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.aggregates import periods
from app.aggregates.at_tau import read_units_between
from app.aggregates.live_memo import MARGIN, read_moved
from app.answers.kinds import HELD_KINDS, compared_point, unit_of
from app.db import meta
from app.db.models import NetworkSource, UnitChange
from app.units.model import NATION
from app.units.service import Registry


@dataclass(slots=True)
class _Held:
    etag: str
    day: object  # the local day it was computed on (a window ends today)
    registry: int
    tick: int  # the last tick it was known to hold at
    computed_at: datetime  # when its computation started


class Dependencies:
    """The refresher's knowledge of which answers still hold (see the module's docstring)."""

    def __init__(self, tz: tzinfo, chain_for: float = 60.0):
        self.tz = tz
        self.chain_for = timedelta(seconds=chain_for)
        self._tick = 0
        self._counts: dict[str, int] | None = None
        self._version: int | None = None  # the data version read with those counts
        self._registry: int | None = None
        self._at: datetime | None = None
        self._held: dict[str, _Held] = {}
        self._moved_at: dict[periods.Period, set[str]] = {}  # per period in progress: units its t's step crossed a time of
        self._points: dict[tuple, tuple | None] = {}  # compared_point per (kind, period parameters) at one `now`

    @property
    def version(self) -> int | None:
        """The data version the last tick read with its counts."""
        return self._version

    def forget(self) -> None:
        """Not the leader (any more): what it knew may be stale when it leads again."""
        self._counts, self._version, self._at = None, None, None
        self._held.clear()

    def since(self, polled: list, now: datetime) -> datetime | None:
        """From when this tick must know what moved: the last tick, or the computation of an answer
        it may adopt (see holds); None on the first tick."""
        if self._at is None:
            return None
        starts = [r.computed_at for r in polled if r.version == self._version and r.key not in self._held]
        return min([self._at, *(c for c in starts if c >= now - self.chain_for)])

    async def tick(
        self,
        session: AsyncSession,
        registry: Registry,
        now: datetime,
        since: datetime | None,
        after_hours: float,
        compared: list[tuple[str, dict]] = (),
    ) -> tuple[int, set[str] | None]:
        """A new tick: (the data version, the units touched since `since` with every unit above
        them; None when that is unknown: the first tick, a central node, a clock gone back). The
        version and the counts are read in one snapshot: a restamp to this version claims no batch
        the counts do not show. For each period in progress of the `compared` answers (kind,
        params), the units whose figures at its same point t may have moved since `since` too."""
        c = UnitChange
        stmt = select(meta.data_version_select().scalar_subquery(), c.unit_code, c.changes)
        rows = (await (await session.connection()).execute(stmt)).all()  # Core: no ORM rows for thousands of counts
        counts = {u: int(k) for _, u, k in rows}
        current = int(rows[0][0] or 0) if rows else await meta.read_data_version(session)
        central = (await session.execute(select(NetworkSource.source).limit(1))).first() is not None
        prev = self._counts
        self._tick += 1
        self._counts, self._version, self._registry, self._at = counts, current, registry.version, now
        self._moved_at = {}
        if prev is None or since is None or central or since > now:
            return current, None
        units = {u for u, k in counts.items() if prev.get(u) != k} | (set(prev) - set(counts))
        units |= await read_moved(session, since - MARGIN, now, after_hours)
        for p in {cp[0] for kind, params in compared if (cp := self._point(kind, params, now)) is not None}:
            # t at `since` and now: the answers computed or restamped since stand at a t within
            lo, hi = periods.same_point(p, since, self.tz), periods.same_point(p, now, self.tz)
            moved = await read_units_between(session, lo, hi) if lo is not None and hi is not None and lo < hi else set()
            self._moved_at[p] = _with_ancestors(moved, registry)
        return current, _with_ancestors(units, registry)

    def _point(self, kind: str, params: dict, now: datetime) -> tuple | None:
        """kinds.compared_point, once per period's parameters and `now` (a tick asks it of each
        polled answer twice; hundreds of answers share a few periods)."""
        key = (kind, params.get("period"), params.get("at"), params.get("window"), now)
        if key not in self._points:
            if len(self._points) > 1024:
                self._points.clear()
            self._points[key] = compared_point(kind, params, now, self.tz)
        return self._points[key]

    def holds(self, row, params: dict, touched: set[str] | None, registry: Registry, prev_version: int | None, now: datetime) -> bool:
        """Whether the stored answer (a row of repository.read_polled) still holds at this tick; if
        so, it is known to. Known to hold at the last tick (computed or restamped by this refresher
        then), or computed by anyone at the data version the last tick read with its counts (its
        computation saw every batch those counts show): adopted."""
        if touched is None or row.kind not in HELD_KINDS or unit_of(row.kind, params) in touched:
            return False
        cp = self._point(row.kind, params, now)
        if cp is not None and (cp[0] not in self._moved_at or unit_of(row.kind, params) in self._moved_at[cp[0]]):
            return False
        today = periods.today(now, self.tz)
        held = self._held.get(row.key)
        if held is not None and held.tick == self._tick - 1 and held.etag == row.etag:
            ok = held.registry == registry.version and held.day == today and now - held.computed_at < self.chain_for
        else:  # adopted
            ok = row.version == prev_version and registry.version == self._registry and now - row.computed_at < self.chain_for
            ok = ok and periods.today(row.computed_at, self.tz) == today
            held = _Held(row.etag, today, registry.version, self._tick, row.computed_at)
        if ok:
            held.tick = self._tick
            self._held[row.key] = held
        return ok

    def computed(self, key: str, kind: str, etag: str, registry: Registry, now: datetime) -> None:
        """The refresher computed the answer at this tick (after its counts were read)."""
        if kind in HELD_KINDS:
            self._held[key] = _Held(etag, periods.today(now, self.tz), registry.version, self._tick, now)

    def drop(self, key: str) -> None:
        self._held.pop(key, None)


def _with_ancestors(units: set[str], registry: Registry) -> set[str]:
    """The units with every unit above them (and the nation, which counts a unit the registry no
    longer has)."""
    touched = set(units)
    for u in units:
        touched.update(a.code for a in registry.ancestors(u))
    if touched:
        touched.add(NATION)
    return touched
