"""What a polled answer depends on, so the refresher computes again only the answers whose figures
moved: a commune's answer when that commune changed or a deadline of it passed, a province's when
one of its units did, the nation's and the rankings of every unit when any unit did.

Each tick the refresher reads every unit's `unit_change` count (a few thousand small rows) and the
units whose figures at now moved with time alone since the last tick (app.aggregates.live_memo:
deadlines passed or entering the due-soon windows, events dated ahead come due, units fallen silent).
An answer the refresher computed, or found holding, at the last tick still holds at this one when
none of its units is among those, its day is still today, the registry is the same, and it was
computed less than `chain_for` seconds ago (a bound on what no count shows: `chiso kpis verify
--repair` of the rollup rows alone). The refresher then restamps it (data version, time, `as_of`)
instead of computing it: its figures are those a computation would give. The counts are read after
the data version the restamp records, so a batch counted here is never claimed by an older version.

Only kinds whose figures move with time at deadlines alone are restamped (KPIs, series, sectors,
rankings); the at-risk list (`hours_left`), the silent units (`silent_hours`), drivers and reports
are computed again as before. On a central node (records of subordinates, which no count shows)
nothing is restamped.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, tzinfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.aggregates import periods
from app.aggregates.live_memo import MARGIN, read_changes, read_moved
from app.db.models import NetworkSource
from app.units.model import NATION
from app.units.service import Registry

HELD_KINDS = ("kpis", "rankings", "series", "sectors")


@dataclass(slots=True)
class _Held:
    etag: str
    day: object  # the local day it was computed on (a window ends today)
    registry: int
    tick: int  # the last tick it was known to hold at
    computed: float  # monotonic time of its computation


class Dependencies:
    """The refresher's knowledge of which answers still hold (see the module's docstring)."""

    def __init__(self, tz: tzinfo, chain_for: float = 60.0):
        self.tz = tz
        self.chain_for = chain_for
        self._tick = 0
        self._counts: dict[str, int] | None = None
        self._at: datetime | None = None
        self._held: dict[str, _Held] = {}

    def forget(self) -> None:
        """Not the leader (any more): what it knew may be stale when it leads again."""
        self._counts, self._at = None, None
        self._held.clear()

    async def tick(self, session: AsyncSession, registry: Registry, now: datetime, after_hours: float) -> set[str] | None:
        """A new tick: the units touched since the last one, with every unit above them; None when
        that is unknown (the first tick, a central node, a clock gone back)."""
        counts = await read_changes(session, None)
        central = (await session.execute(select(NetworkSource.source).limit(1))).first() is not None
        prev, at = self._counts, self._at
        self._tick += 1
        self._counts, self._at = counts, now
        if prev is None or at is None or central or at > now:
            return None
        units = {u for u, n in counts.items() if prev.get(u) != n} | (set(prev) - set(counts))
        units |= await read_moved(session, at - MARGIN, now, after_hours)
        touched = set(units)
        for u in units:
            touched.update(a.code for a in registry.ancestors(u))
        if touched:
            touched.add(NATION)  # a unit the registry no longer has still counts in the nation's figures
        return touched

    def holds(self, key: str, kind: str, params: dict, etag: str, touched: set[str] | None, registry: Registry, now: datetime) -> bool:
        """Whether the stored answer (`etag`) still holds at this tick; if so, it is known to."""
        held = self._held.get(key)
        ok = (
            touched is not None
            and held is not None
            and kind in HELD_KINDS
            and held.tick == self._tick - 1
            and held.etag == etag
            and held.registry == registry.version
            and held.day == periods.today(now, self.tz)
            and time.monotonic() - held.computed < self.chain_for
            and not touched & _units_of(kind, params)
        )
        if ok:
            held.tick = self._tick
        return ok

    def computed(self, key: str, kind: str, etag: str, registry: Registry, now: datetime) -> None:
        """The refresher computed the answer at this tick (after its counts were read)."""
        if kind in HELD_KINDS:
            self._held[key] = _Held(etag, periods.today(now, self.tz), registry.version, self._tick, time.monotonic())

    def drop(self, key: str) -> None:
        self._held.pop(key, None)


def _units_of(kind: str, params: dict) -> set[str]:
    """The unit whose touch (or a touch below it) moves the answer's figures."""
    if kind == "rankings":
        return {params.get("parent") or NATION}
    return {params["code"]}
