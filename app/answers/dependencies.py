"""What a polled answer depends on, so the refresher computes again only the answers whose figures
moved: a commune's answer when that commune changed or a deadline of it passed, a province's when
one of its units did, the nation's and the rankings of every unit when any unit did.

Each tick the refresher reads every unit's `unit_change` count (a few thousand small rows) and the
units whose figures at now moved with time alone since the last tick (app.aggregates.live_memo:
deadlines passed or entering the due-soon windows, events dated ahead come due, units fallen silent),
and notes, per unit, the last tick that found it touched. An answer is known to hold at a tick: the
tick whose counts were read before the refresher's computation of it started (a computation may
outlast several ticks), the tick that restamped it, or, adopted, the tick after the data version it
was computed at by anyone, when that is the version the last tick read with its counts (read in one
snapshot: its computation saw every batch those counts show). It still holds at a later tick when
none of its units was touched at a tick after that one (ticks were counted without a gap since: no
first tick, central node or clock gone back between), its day is still today, the registry is the
same, and it was computed less than `chain_for` seconds ago (a bound on what no count shows:
`chiso kpis verify --repair` of the rollup rows alone). The refresher then restamps it (data
version, time, `as_of`) instead of computing it: its figures are those a computation would give.

Only kinds whose figures move with time at deadlines alone are restamped (KPIs, series, sectors,
rankings); the at-risk list (`hours_left`), the silent units (`silent_hours`), drivers and reports
are computed again as before. KPIs and rankings of a period not over compare with the previous
period as it stood at the same point t (SPEC section 4), and t moves with now
(kinds.compared_point): such an answer holds when, besides, the step of t since the last tick
crossed no time of its units' dossiers (at_tau.read_units_between: a receipt, an end, a deadline or
a deadline 24/48/72 h ahead, an orphan's event) since the tick it is known to hold at, read once per
tick for each such period polled (a period left unpolled for a tick is followed afresh); its restamp
rewrites `until` with `as_of`. On a central node (records of subordinates, which no count
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
from app.answers.kinds import compared_point
from app.db import meta
from app.db.models import NetworkSource, UnitChange
from app.units.model import NATION
from app.units.service import Registry

HELD_KINDS = ("kpis", "rankings", "series", "sectors")


@dataclass(slots=True)
class _Held:
    etag: str
    day: object  # the local day it was computed on (a window ends today)
    registry: int
    tick: int  # the last tick it is known to hold at: its figures include every batch that tick's counts show
    computed_at: datetime  # when its computation started


class Dependencies:
    """The refresher's knowledge of which answers still hold (see the module's docstring)."""

    def __init__(self, tz: tzinfo, chain_for: float = 60.0):
        self.tz = tz
        self.chain_for = timedelta(seconds=chain_for)
        self._tick = 0
        self._known_from = 1  # the last tick whose touches are unknown: known at every tick after it
        self._touched_at: dict[str, int] = {}  # unit -> the last tick that found it (or a unit below) touched
        self._counts: dict[str, int] | None = None
        self._version: int | None = None  # the data version read with those counts
        self._registry: int | None = None
        self._at: datetime | None = None
        self._held: dict[str, _Held] = {}
        # per period in progress: (the tick it is followed from, unit -> the last tick whose step of t
        # crossed a time of its dossiers, with the units above it; this tick's such units)
        self._moved: dict[periods.Period, tuple[int, dict[str, int], set[str]]] = {}
        self._points: dict[tuple, tuple | None] = {}  # compared_point per (kind, period parameters) at one `now`

    @property
    def version(self) -> int | None:
        """The data version the last tick read with its counts."""
        return self._version

    @property
    def current(self) -> int:
        """This tick: what a computation started now is known to hold at (`computed`)."""
        return self._tick

    def forget(self) -> None:
        """Not the leader (any more): what it knew may be stale when it leads again."""
        self._counts, self._version, self._at = None, None, None
        self._held.clear()
        self._moved.clear()

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
        if prev is None or since is None or central or since > now:
            self._known_from, self._moved = self._tick, {}  # what moved before this tick is unknown
            return current, None
        units = {u for u, k in counts.items() if prev.get(u) != k} | (set(prev) - set(counts))
        units |= await read_moved(session, since - MARGIN, now, after_hours)
        touched = _with_ancestors(units, registry)
        self._touched_at.update(dict.fromkeys(touched, self._tick))
        moved_before, self._moved = self._moved, {}
        for p in {cp[0] for kind, params in compared if (cp := self._point(kind, params, now)) is not None}:
            # t at `since` and now: the answers computed or restamped since stand at a t within
            lo, hi = periods.same_point(p, since, self.tz), periods.same_point(p, now, self.tz)
            moved = await read_units_between(session, lo, hi) if lo is not None and hi is not None and lo < hi else set()
            moved = _with_ancestors(moved, registry)
            start, last, _ = moved_before.get(p, (self._tick, {}, set()))  # unpolled at the last tick: followed from this one
            self._moved[p] = (start, last | dict.fromkeys(moved, self._tick), moved)
        return current, touched

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
        so, it is known to. Known to hold at an earlier tick (computed or restamped by this
        refresher) and touched at no tick since, or computed by anyone at the data version the last
        tick read with its counts and touched at none of this tick's (adopted)."""
        if touched is None or row.kind not in HELD_KINDS:
            return False
        units = _units_of(row.kind, params)
        cp = self._point(row.kind, params, now)
        moved = None if cp is None else self._moved.get(cp[0])
        if cp is not None and moved is None:
            return False
        today = periods.today(now, self.tz)
        held = self._held.get(row.key)
        if held is not None and held.etag == row.etag:
            at = held.tick  # touched at no tick after it, each tick since known (the moves from the one after a start)
            ok = at >= self._known_from and all(self._touched_at.get(u, 0) <= at for u in units)
            ok = ok and (moved is None or (at >= moved[0] - 1 and all(moved[1].get(u, 0) <= at for u in units)))
            ok = ok and held.registry == registry.version and held.day == today and now - held.computed_at < self.chain_for
        else:  # adopted: this tick's touches reach back to its computation (since)
            ok = not (touched & units) and (moved is None or not (moved[2] & units))
            ok = ok and row.version == prev_version and registry.version == self._registry and now - row.computed_at < self.chain_for
            ok = ok and periods.today(row.computed_at, self.tz) == today
            held = _Held(row.etag, today, registry.version, self._tick, row.computed_at)
        if ok:
            held.tick = self._tick
            self._held[row.key] = held
        return ok

    def computed(self, key: str, kind: str, etag: str, registry: Registry, now: datetime, tick: int) -> None:
        """The refresher computed the answer, starting at tick `tick` (after its counts were read)."""
        if kind in HELD_KINDS:
            self._held[key] = _Held(etag, periods.today(now, self.tz), registry.version, tick, now)

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


def _units_of(kind: str, params: dict) -> set[str]:
    """The unit whose touch (or a touch below it) moves the answer's figures."""
    if kind == "rankings":
        return {params.get("parent") or NATION}
    return {params["code"]}
