"""The previous period's corrections at the same point t, per unit, kept between reads, so that as t
moves with now a read adds what happened since the last one instead of reading [midnight, t) again.

A KPI answer or a ranking of a period in progress compares with the previous period as it stood at
t = previous start + (now - start) (SPEC section 4); aggregates.at_tau corrects the day rows at the
midnight m before t to t from the dossiers received, ended or due within [m, t). A `TauMemo` keeps,
per kind of read (sector, previous start, m), each unit's correction at the instant the entry
stands at, with the `unit_change` count it was read at. A read at a later (or earlier) instant t2
within the same day:
- moves every unit it knows from t1 to t2 by one query over [t1, t2) for all units (at_tau.
  read_between: the dossiers with a receipt, an end or a deadline within those seconds of a past
  day; its cost is what happened then, not the day so far);
- reads again from m only the units it needs whose count moved since (a batch touched them: a late
  event or a correction may change a dossier inside [m, t1)), that it never read, or whose read is
  older than `max_age` (a bound on what no count shows);
and sums the parts of the units of each group: a province's correction is the sum of its units',
exactly what one grouped count over its dossiers gives (every figure is a count over dossiers, or a
histogram of them, grouped by unit). A new m (t crossing a midnight) is a new entry.

Counts are read before the dossiers (as in aggregates.live_memo): a batch that commits in between
shows as a moved count at the next read, which reads the unit again. A unit outside the codes of a
read is moved to t2 with the others but its count is not looked at: when a read needs it, its count
is, and a moved one is read again from m. A memo is one process's; `at_tau.TAU` names the one a
computation may use (set by app.answers.kinds around each computation).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field, replace
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from app.aggregates.at_tau import Correction, apply, read_between
from app.aggregates.live_memo import CHUNK, KeptEntries, read_changes
from app.aggregates.sums import Scope, Span
from app.db import dialect

_UNKNOWN = -1  # the count of a unit read without its count at hand: read again when needed


@dataclass
class _Entry:
    """The corrections of one kind of read (sector, previous start, midnight m), at instant `t`."""

    parts: dict[str, tuple[tuple[int, ...], dict[int, int]]] = field(default_factory=dict)  # unit -> (vector, histogram)
    changes: dict[str, int] = field(default_factory=dict)  # every unit known: its unit_change count when read from m
    read_at: dict[str, datetime] = field(default_factory=dict)  # the instant it was read from m at
    t: datetime | None = None
    full_at: datetime | None = None  # when every unit was read from m (the nation)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class TauMemo(KeptEntries):
    """One process's corrections at t per unit (see the module's docstring)."""

    entry_type = _Entry

    def __init__(self, size: int = 16, max_age: float = 60.0):
        super().__init__(size, max_age)  # units_read: units read again from the midnight
        self.steps_read = 0  # reads of what happened between two instants

    async def read(self, session: AsyncSession, scope: Scope, spans: list[tuple[int, Span]], sector: str, out, groups: dict | None) -> None:
        """at_tau.read_at_instant from the memo: of one group (`scope.codes`; None: every unit), of
        each unit (scope.level "unit"), or of `groups` (group -> its units; None: every unit)."""
        if scope.level == "unit":
            groups = None if scope.codes is None else {u: (u,) for u in scope.codes}
        elif scope.level is None:
            groups = {"": scope.codes}
        codes: set[str] | None = set()
        for members in (groups or {"": None}).values():
            if members is None:
                codes = None
                break
            codes.update(members)
        for i, sp in spans:
            parts, everyone = await self.parts(session, codes, sector, sp)
            by_group = {u: (u,) for u in everyone} if groups is None else groups
            for g, members in by_group.items():
                vector, hist = total_of(parts, everyone if members is None else members)
                if vector is not None:
                    apply(out[g][i], vector, hist)
            for g in list(out) or [""]:
                out[g][i].until = sp.until

    async def parts(self, session: AsyncSession, codes: set[str] | None, sector: str, sp: Span) -> tuple[dict, set[str]]:
        """(every known unit's correction at sp.until, the units a `None` of `codes` stands for)
        after moving the entry to sp.until and reading again those of `codes` that may have moved."""
        t = sp.until
        entry = self._entry((sector, sp.start_at, sp.today_at))
        async with entry.lock:
            conn = await session.connection()
            postgres = dialect.is_postgres(session)
            changes = await read_changes(session, codes)  # of `codes`, or of every unit
            if entry.t is not None and entry.t != t and entry.changes:
                lo, hi = sorted((entry.t, t))
                step = await read_between(conn, postgres, Scope(level="unit"), sector, replace(sp, until=hi), lo)
                self.steps_read += 1
                sign = 1 if t > entry.t else -1
                for unit, c in step.items():
                    if unit in entry.changes:
                        _add(entry.parts, unit, c, sign)
            entry.t = t
            fresh_from = t - self.max_age
            if codes is None and (entry.full_at is None or not fresh_from <= entry.full_at <= t):
                await self._read(entry, conn, postgres, None, sector, sp, changes, None)
                return entry.parts, set(entry.changes)
            universe = (set(entry.changes) | set(changes)) if codes is None else codes
            stale = sorted(
                u
                for u in universe
                if entry.changes.get(u) != changes.get(u, 0) or not fresh_from <= entry.read_at.get(u, t - 2 * self.max_age) <= t
            )
            if len(stale) > CHUNK:  # many (a first read): one read of every unit's
                await self._read(entry, conn, postgres, None, sector, sp, changes, codes)
            else:
                for start in range(0, len(stale), CHUNK):
                    await self._read(entry, conn, postgres, tuple(stale[start : start + CHUNK]), sector, sp, changes, codes)
            return entry.parts, set(entry.changes) if codes is None else universe

    async def _read(
        self, entry: _Entry, conn, postgres: bool, codes: tuple[str, ...] | None, sector: str, sp: Span, changes: dict, counted: set | None
    ) -> None:
        """Read the corrections of `codes` (None: every unit) from the midnight; `changes` holds the
        counts of the units of `counted` (None: every unit; a unit without one has none)."""
        got = await read_between(conn, postgres, Scope(codes=codes, level="unit"), sector, sp, sp.today_at)
        units = set(got) | (set(codes) if codes is not None else set(entry.changes) | set(changes) | (counted or set()))
        for unit in units:
            c = got.get(unit)
            if c is None or (not any(c.vector) and not any(c.hist.values())):
                entry.parts.pop(unit, None)
            else:
                entry.parts[unit] = (tuple(c.vector), {b: n for b, n in c.hist.items() if n})
            entry.changes[unit] = changes.get(unit, 0) if counted is None or unit in counted else _UNKNOWN
            entry.read_at[unit] = sp.until
        if codes is None:
            entry.full_at = sp.until
        self.units_read += len(units)


def _add(parts: dict, unit: str, c: Correction, sign: int) -> None:
    """Add (sign 1) or take away (-1) a step to a unit's correction."""
    vector, hist = parts.get(unit) or ((0,) * len(c.vector), {})
    vector = tuple(a + sign * b for a, b in zip(vector, c.vector, strict=True))
    hist = dict(hist)
    for b, n in c.hist.items():
        hist[b] = hist.get(b, 0) + sign * n
    hist = {b: n for b, n in hist.items() if n}
    if any(vector) or hist:
        parts[unit] = (vector, hist)
    else:
        parts.pop(unit, None)


def total_of(parts: dict, units) -> tuple[tuple[int, ...] | None, dict[int, int]]:
    """The sum of the corrections of `units` (None: all zero)."""
    got = [p for u in units if (p := parts.get(u)) is not None]
    if not got:
        return None, {}
    if len(got) == 1:
        return got[0]
    hist: dict[int, int] = {}
    for _, h in got:
        for b, n in h.items():
            hist[b] = hist.get(b, 0) + n
    return tuple(map(sum, zip(*(v for v, _ in got), strict=True))), hist
