"""The figures at now per unit, kept between reads, so that a refresh reads what changed.

The figures of a period judged at now that the day rows cannot give (aggregates.at_now: the
dossiers due later today, late today, events dated ahead, due within 24/48/72 h, silent) are sums
over units. A `LiveMemo` keeps each unit's own part, with the `unit_change` count it was read at and
the instant it holds at. A read of any scope (a commune, a province, the nation, every commune of a
ranking) then re-reads only the units whose part may have moved since:
- their stored rows changed (their `unit_change` count moved: a batch changed a dossier of theirs);
- a deadline of theirs, or an event dated ahead, came due in between (at_now.read_units_due_between,
  a few index ranges over the seconds since), or they became silent in between;
- their part is older than `max_age` (a bound on what no count shows, e.g. a repair of the
  silent-source bookkeeping alone);
and sums the parts: a province's figures at now are the sum of its units' parts, exactly what one
count over its dossiers gives (every figure is a count over dossiers or units, grouped by unit).

Counts are read before the parts, so a batch that commits in between is re-read at the next read:
every batch acknowledged before a read began is in its figures. The subordinates' records (central
mode) are read anew each time, as before. A memo is one process's (a worker's, the refresher's):
`LIVE` names the one a computation may use (set by app.answers.kinds around each computation).
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict, defaultdict
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.aggregates.at_now import DUE_HOURS, _network_due_statement, _read_silent, _read_today, read_units_due_between
from app.aggregates.network_reads import network_held
from app.aggregates.scopes import _scope_params
from app.aggregates.sums import Scope, Sums
from app.db.dialect import codes_in
from app.db.models import ALL_SECTORS, UnitChange, UnitSource

CHUNK = 500
# A unit's part: not yet due today, pending ahead, overdue ahead, due within 24/48/72 h, silent,
# then late today per live span.
_FIXED = 3 + len(DUE_HOURS) + 1
MARGIN = timedelta(milliseconds=1)  # the instants compared are exact to the microsecond: a margin, not a gap


@dataclass
class _Entry:
    """The parts of one kind of read (sector, live spans' starts, day, silent hours)."""

    parts: dict[str, tuple[int, ...]] = field(default_factory=dict)
    at: dict[str, datetime] = field(default_factory=dict)  # the instant a unit's part holds at
    changes: dict[str, int] = field(default_factory=dict)  # its unit_change count when read
    full_at: datetime | None = None  # when every unit with a figure was read (the nation)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class KeptEntries:
    """The entries a memo keeps, one per kind of read, the `size` last used; a unit's part older
    than `max_age` is read again. `units_read` counts the units read again (a measure of the work)."""

    entry_type: type

    def __init__(self, size: int = 16, max_age: float = 60.0):
        self.size = size
        self.max_age = timedelta(seconds=max_age)
        self._entries: OrderedDict[tuple, object] = OrderedDict()
        self.units_read = 0

    def _entry(self, key: tuple):
        entry = self._entries.get(key)
        if entry is None:
            entry = self._entries[key] = self.entry_type()
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)
        self._entries.move_to_end(key)
        return entry


class LiveMemo(KeptEntries):
    """One process's figures at now per unit (see the module's docstring)."""

    entry_type = _Entry

    async def parts(
        self, session: AsyncSession, codes: set[str] | None, live: list, sector: str, after_hours: float
    ) -> tuple[dict[str, tuple[int, ...]], set[str]]:
        """(every unit's part as of now, the units a `None` of `codes` stands for) after re-reading
        the parts of `codes` (None: every unit) that may have moved."""
        now = live[0][1].now
        key = (sector, tuple(sp.start_at for _, sp in live), live[0][1].today_at, after_hours)
        entry = self._entry(key)
        async with entry.lock:
            changes = await read_changes(session, codes)
            fresh_from = now - self.max_age
            if codes is None and (entry.full_at is None or not fresh_from <= entry.full_at <= now):
                got = await _read_units(session, None, live, sector, after_hours)
                for unit in set(entry.parts) | set(got):
                    self._keep(entry, unit, got.get(unit), now, changes.get(unit, 0))
                entry.full_at = now
                return entry.parts, set(entry.parts)
            universe = (set(entry.at) | set(changes)) if codes is None else codes
            known = [entry.at[u] for u in universe if u in entry.at and fresh_from <= entry.at[u] <= now]
            moved: set[str] = set()
            if known:
                moved = await read_moved(session, min(known) - MARGIN, now, after_hours)
                if codes is None:  # a unit with no figure until now may have one now
                    universe |= moved
            stale = sorted(
                u
                for u in universe
                if u not in entry.at or not fresh_from <= entry.at[u] <= now or u in moved or entry.changes.get(u) != changes.get(u, 0)
            )
            if len(stale) > CHUNK:  # many (a first read): one read of every unit's
                got = await _read_units(session, None, live, sector, after_hours)
                for unit in set(stale) | set(got):
                    self._keep(entry, unit, got.get(unit), now, changes.get(unit, 0))
                stale = []
            for start in range(0, len(stale), CHUNK):
                chunk = stale[start : start + CHUNK]
                got = await _read_units(session, tuple(chunk), live, sector, after_hours)
                for unit in chunk:
                    self._keep(entry, unit, got.get(unit), now, changes.get(unit, 0))
            return entry.parts, set(entry.parts) if codes is None else universe

    def _keep(self, entry: _Entry, unit: str, part: list[int] | None, now: datetime, changes: int) -> None:
        self.units_read += 1
        if part is None or not any(part):
            entry.parts.pop(unit, None)  # a unit with no figure at now: none kept
        else:
            entry.parts[unit] = tuple(part)
        entry.at[unit] = now
        entry.changes[unit] = changes


LIVE: ContextVar[LiveMemo | None] = ContextVar("chiso_live_memo", default=None)


_CHANGES_OF = select(UnitChange.unit_code, UnitChange.changes).where(codes_in(UnitChange.unit_code))


async def read_changes(session: AsyncSession, codes: set[str] | None) -> dict[str, int]:
    c = UnitChange
    if codes is None or len(codes) > CHUNK:  # a few thousand small rows: one read of them all
        got = {u: int(n) for u, n in (await (await session.connection()).execute(select(c.unit_code, c.changes))).all()}
        return got if codes is None else {u: n for u, n in got.items() if u in codes}
    out: dict[str, int] = {}
    ordered = sorted(codes)
    for start in range(0, len(ordered), CHUNK):
        rows = (await (await session.connection()).execute(_CHANGES_OF, {"codes": ordered[start : start + CHUNK]})).all()
        out.update({u: int(n) for u, n in rows})
    return out


async def read_moved(session: AsyncSession, since: datetime, until: datetime, after_hours: float) -> set[str]:
    """Units whose figures at now moved with time alone in (since, until]: deadlines, events dated
    ahead (at_now.read_units_due_between), and units that fell silent."""
    moved = set(await read_units_due_between(session, since, until))
    hours = timedelta(hours=after_hours)
    s = UnitSource
    stmt = select(s.unit_code).where(s.last_at >= since - hours, s.last_at <= until - hours)
    moved.update((await (await session.connection()).execute(stmt)).scalars())
    return moved


async def _read_units(session: AsyncSession, codes: tuple[str, ...] | None, live: list, sector: str, after_hours: float) -> dict:
    """Each unit's own part at now (of `codes`, or of every unit with one), from its dossiers and
    its silent-source rows: the reads of at_now grouped by unit."""
    live = [(k, sp) for k, (_, sp) in enumerate(live)]  # numbered afresh: a Sums per live span, not per span of the read
    out: dict[str, list[Sums]] = defaultdict(lambda: [Sums(silent=0) for _ in live])
    scope = Scope(codes=codes, level="unit")
    await _read_today(session, scope, live, sector, out, network=False)
    await _read_silent(session, scope, live, after_hours, out)
    got = {}
    for unit, sums in out.items():
        s = sums[0]
        due = s.due_live or (0,) * len(DUE_HOURS)
        got[unit] = [s.overdue_not_yet, s.pending_ahead, s.overdue_ahead, *due, s.silent or 0, *(x.late_today for x in sums)]
    return got


def total_of(parts: dict[str, tuple[int, ...]], units) -> tuple[int, ...] | None:
    """The sum of the parts of `units` (None: all zero)."""
    got = [p for u in units if (p := parts.get(u)) is not None]
    if len(got) <= 1:
        return got[0] if got else None
    return tuple(map(sum, zip(*got, strict=True)))


def fill(sums: list[Sums], total: tuple[int, ...] | None, live: list, network_due: tuple[int, ...] | None = None) -> None:
    """Set the figures at now of one group's Sums (one per span) from the sum of its units' parts
    and the due-soon figures of its subordinates' latest day records."""
    total = total or (0,) * (_FIXED + len(live))
    due = total[3 : 3 + len(DUE_HOURS)]
    if network_due is not None:
        due = tuple(a + b for a, b in zip(due, network_due, strict=True))
    for k, (i, _) in enumerate(live):
        s = sums[i]
        s.overdue_not_yet, s.pending_ahead, s.overdue_ahead = total[0], total[1], total[2]
        s.due_live = tuple(due)
        s.silent = total[_FIXED - 1]
        s.late_today = total[_FIXED + k]


async def read_network_due(session: AsyncSession, scope: Scope) -> dict[str, tuple[int, ...]]:
    """Per group of `scope`, the due-soon figures of the latest day records of its units fed by
    subordinates (central mode; none elsewhere), read anew each time."""
    if not (await network_held(session))[0]:
        return {}
    stmt = _network_due_statement(scope.level, scope.parent, scope.codes is not None)
    rows = (await (await session.connection()).execute(stmt, _scope_params(scope))).mappings()
    return {row["g"]: tuple(int(row[f"d{h}"] or 0) for h in DUE_HOURS) for row in rows}


async def read_live(
    session: AsyncSession,
    scope: Scope,
    live: list,
    sector: str,
    after_hours: float,
    out,
    groups: dict[str, tuple[str, ...] | None] | None = None,
    memo: LiveMemo | None = None,
) -> None:
    """The figures at now of `scope` into `out` (as at_now._read_today and _read_silent set them):
    of one group (`scope.codes`; None: every unit), or of `groups` (group -> its units) for a
    grouped scope. From `memo` (default: the one `LIVE` names) when there is one, else read."""
    memo = memo or LIVE.get()
    if memo is None:
        await _read_today(session, scope, live, sector, out)
        await _read_silent(session, scope, live, after_hours, out)
        return
    if groups is None:
        assert scope.level is None, "a grouped scope names its groups"
        groups = {"": scope.codes}
    codes: set[str] | None = set()
    for members in groups.values():
        if members is None:
            codes = None
            break
        codes.update(members)
    parts, everyone = await memo.parts(session, codes, live, sector, after_hours)
    network = await read_network_due(session, scope) if sector == ALL_SECTORS else {}
    for g, members in groups.items():
        fill(out[g], total_of(parts, everyone if members is None else members), live, network.get(g))
