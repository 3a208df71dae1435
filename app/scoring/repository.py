"""All aggregate SQL of scoring. Reads touch pre-aggregated rows only (per unit and day), plus,
for periods that end after now, the few dossiers whose deadline falls within today.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime

from sqlalchemy import and_, case, func, literal, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.models import ALL_SECTORS, Dossier, NetworkCohort, Unit, UnitCohortDue, UnitDay, UnitDayHist, UnitTotal

FLOW_COUNTERS = (
    "received",
    "received_online",
    "resolved_early",
    "resolved_on_time",
    "resolved_late",
    "resolved_unclassified",
    "withdrawn",
    "orphans",
    "proc_n",
    "proc_ms",
    "c_size",
    "c_final_ok",
)


@dataclass(frozen=True, slots=True)
class Span:
    """What one KPI period needs from storage."""

    start: date  # first local day
    end: date  # first local day after
    after: date  # first local day not yet counted at the judgement time t
    due_from: date  # cohort members with a deadline on or after this day count as on time
    start_at: datetime  # local midnight of start
    now: datetime | None  # set when t is now: the exact corrections within today apply
    today_at: datetime | None  # local midnight of today
    tomorrow_at: datetime | None  # local midnight of tomorrow
    cohort: tuple[str, date] | None = None  # (kind, start) of a calendar month|quarter|year: received cohort records apply


@dataclass
class Sums:
    flows: dict[str, int] = field(default_factory=dict)
    pending_after: int = 0
    overdue_after: int = 0
    pending_total: int = 0
    overdue_total: int = 0
    cohort_due: int = 0
    hist: dict[int, int] = field(default_factory=dict)
    overdue_not_yet: int = 0  # open dossiers due later today (t = now)
    late_today: int = 0  # cohort dossiers whose deadline passed earlier today (t = now)
    net_cohort_size: int = 0  # INDEX-766 cohort records received from subordinate nodes
    net_cohort_ok: int = 0
    net_cohort_unknown: bool = False  # units fed by a subordinate, in a period no cohort record covers


@dataclass(frozen=True, slots=True)
class Scope:
    """Which rows: `codes` (None = every unit) summed as one group, or grouped by unit at `level`
    ("unit": each of `codes` on its own, its own rows only)."""

    codes: tuple[str, ...] | None = None
    level: str | None = None
    parent: str | None = None


def _between(col, s: date, e: date):
    return and_(col >= s, col < e)


def _group_and_filter(scope: Scope, unit_col):
    """(group expression or None, where clauses, needs join)."""
    if scope.level is None:
        if scope.codes is None:
            return None, [], False
        return None, [unit_col.in_(scope.codes)], False
    if scope.level == "unit":
        return unit_col, [unit_col.in_(scope.codes)], False
    if scope.level == "commune":
        group = Unit.code
        where = [Unit.level == "commune"]
    else:  # province: its own rows and its communes'
        group = case((Unit.level == "province", Unit.code), else_=Unit.parent_code)
        where = [Unit.level.in_(("province", "commune"))]
    if scope.parent is not None and scope.parent != "VN":
        if scope.level == "commune":
            where.append(Unit.parent_code == scope.parent)
        else:
            where.append(group == scope.parent)
    return group, where, True


def _select(scope: Scope, table, columns: list, extra_where: list, extra_group: list | None = None):
    group, where, join = _group_and_filter(scope, table.unit_code)
    key = (group if group is not None else literal("")).label("g")
    stmt = select(key, *(extra_group or []), *columns)
    stmt = stmt.select_from(table.__table__.join(Unit.__table__, Unit.code == table.unit_code) if join else table)
    stmt = stmt.where(*where, *extra_where)
    return stmt.group_by(key, *(extra_group or [])) if group is not None or extra_group else stmt


async def read_sums(session: AsyncSession, scope: Scope, spans: list[Span], sector: str) -> dict[str, list[Sums]]:
    """Per group (a unit code, or "" for a single group), one Sums per span."""
    out: dict[str, list[Sums]] = defaultdict(lambda: [Sums() for _ in spans])
    low = min(min(s.start, s.after) for s in spans)

    cols = []
    for i, sp in enumerate(spans):
        inside = _between(UnitDay.day, sp.start, sp.end)
        after = UnitDay.day >= sp.after
        for c in FLOW_COUNTERS:
            cols.append(func.sum(case((inside, getattr(UnitDay, c)), else_=0)).label(f"{c}_{i}"))
        cols.append(func.sum(case((after, UnitDay.p_in - UnitDay.p_out), else_=0)).label(f"pa_{i}"))
        cols.append(func.sum(case((after, UnitDay.o_in - UnitDay.o_out), else_=0)).label(f"oa_{i}"))
    stmt = _select(scope, UnitDay, cols, [UnitDay.sector == sector, UnitDay.day >= low])
    for row in (await session.execute(stmt)).mappings():
        for i, sums in enumerate(out[row["g"]]):
            sums.flows = {c: int(row[f"{c}_{i}"] or 0) for c in FLOW_COUNTERS}
            sums.pending_after = int(row[f"pa_{i}"] or 0)
            sums.overdue_after = int(row[f"oa_{i}"] or 0)

    stmt = _select(
        scope,
        UnitTotal,
        [func.sum(UnitTotal.p_in - UnitTotal.p_out).label("p"), func.sum(UnitTotal.o_in - UnitTotal.o_out).label("o")],
        [UnitTotal.sector == sector],
    )
    for row in (await session.execute(stmt)).mappings():
        for sums in out[row["g"]]:
            sums.pending_total = int(row["p"] or 0)
            sums.overdue_total = int(row["o"] or 0)

    cols = [
        func.sum(case((_between(UnitDayHist.day, sp.start, sp.end), UnitDayHist.n), else_=0)).label(f"n_{i}")
        for i, sp in enumerate(spans)
    ]
    stmt = _select(
        scope,
        UnitDayHist,
        cols,
        [UnitDayHist.sector == sector, UnitDayHist.day >= min(s.start for s in spans)],
        [UnitDayHist.bucket],
    )
    for row in (await session.execute(stmt)).mappings():
        for i, sums in enumerate(out[row["g"]]):
            if row[f"n_{i}"]:
                sums.hist[row["bucket"]] = int(row[f"n_{i}"])

    cols = [
        func.sum(
            case(
                (and_(_between(UnitCohortDue.recv_day, sp.start, sp.end), UnitCohortDue.due_day >= sp.due_from), UnitCohortDue.n),
                else_=0,
            )
        ).label(f"d_{i}")
        for i, sp in enumerate(spans)
    ]
    stmt = _select(
        scope, UnitCohortDue, cols, [UnitCohortDue.sector == sector, UnitCohortDue.recv_day >= min(s.start for s in spans)]
    )
    for row in (await session.execute(stmt)).mappings():
        for i, sums in enumerate(out[row["g"]]):
            sums.cohort_due = int(row[f"d_{i}"] or 0)

    live = [(i, sp) for i, sp in enumerate(spans) if sp.now is not None]
    if live:
        await _read_today(session, scope, live, sector, out)
    if sector == ALL_SECTORS:
        await _read_network_cohort(session, scope, spans, out)
    return out


async def _read_network_cohort(session: AsyncSession, scope: Scope, spans: list[Span], out) -> None:
    """Cohort records received from subordinates; other periods of units they feed are unknown."""
    t = NetworkCohort
    cols = [func.count().label("n")]
    for i, sp in enumerate(spans):
        if sp.cohort is not None:
            hit = and_(t.kind == sp.cohort[0], t.start == sp.cohort[1])
            cols.append(func.sum(case((hit, t.c_size), else_=0)).label(f"s_{i}"))
            cols.append(func.sum(case((hit, t.c_ok), else_=0)).label(f"k_{i}"))
    for row in (await session.execute(_select(scope, t, cols, []))).mappings():
        if not row["n"]:
            continue
        for i, sp in enumerate(spans):
            sums = out[row["g"]][i]
            if sp.cohort is None:
                sums.net_cohort_unknown = True
            else:
                sums.net_cohort_size = int(row[f"s_{i}"] or 0)
                sums.net_cohort_ok = int(row[f"k_{i}"] or 0)


async def _read_today(session: AsyncSession, scope: Scope, live: list, sector: str, out) -> None:
    """Exact counts within today for periods judged at now."""
    _, sp0 = live[0]
    cols = [
        func.sum(
            case(
                (and_(Dossier.end_at.is_(None), Dossier.eff_due_at >= sp0.now, Dossier.recv_at.is_not(None)), 1),
                else_=0,
            )
        ).label("not_yet")
    ]
    for i, sp in live:
        late = and_(
            Dossier.recv_at >= sp.start_at,
            Dossier.ok_766.is_(True),
            Dossier.eff_due_at < sp.now,
            or_(Dossier.end_at.is_(None), Dossier.end_at > Dossier.eff_due_at),
        )
        cols.append(func.sum(case((late, 1), else_=0)).label(f"l_{i}"))
    where = [Dossier.eff_due_at >= sp0.today_at, Dossier.eff_due_at < sp0.tomorrow_at]
    if sector != "*":
        where.append(Dossier.sector == sector)
    stmt = _select(scope, Dossier, cols, where)
    for row in (await session.execute(stmt)).mappings():
        for i, _ in live:
            out[row["g"]][i].overdue_not_yet = int(row["not_yet"] or 0)
            out[row["g"]][i].late_today = int(row[f"l_{i}"] or 0)


async def read_unit_aggregates(session: AsyncSession, unit_code: str) -> dict[str, dict]:
    """A unit's own local aggregate rows, keyed like contrib.Delta, zero values left out."""
    from app.db.models import DAY_COUNTERS, LOCAL_SOURCE, TOTAL_COUNTERS

    out: dict[str, dict] = {"day": {}, "hist": {}, "cohort_due": {}, "total": {}}
    mine = lambda t: and_(t.unit_code == unit_code, t.source == LOCAL_SOURCE)  # noqa: E731
    for r in (await session.execute(select(UnitDay).where(mine(UnitDay)))).scalars():
        cols = {c: getattr(r, c) for c in DAY_COUNTERS if getattr(r, c)}
        if cols:
            out["day"][(r.unit_code, r.sector, r.day)] = cols
    for r in (await session.execute(select(UnitDayHist).where(mine(UnitDayHist)))).scalars():
        if r.n:
            out["hist"][(r.unit_code, r.sector, r.day, r.bucket)] = r.n
    for r in (await session.execute(select(UnitCohortDue).where(mine(UnitCohortDue)))).scalars():
        if r.n:
            out["cohort_due"][(r.unit_code, r.sector, r.recv_day, r.due_day)] = r.n
    for r in (await session.execute(select(UnitTotal).where(mine(UnitTotal)))).scalars():
        cols = {c: getattr(r, c) for c in TOTAL_COUNTERS if getattr(r, c)}
        if cols:
            out["total"][(r.unit_code, r.sector)] = cols
    return out


async def read_spans(session: AsyncSession, scope: Scope, spans: list[Span], sector: str) -> list[Sums]:
    """One Sums per span for a single group of units, from per-day sums: three small GROUP BY day
    queries whatever the number of spans (series of hundreds of points), then prefix sums."""
    from bisect import bisect_left

    assert scope.level is None, "read_spans sums one group; rankings use read_sums"
    low = min(min(s.start, s.after) for s in spans)
    out = {"": [Sums() for _ in spans]}
    counters = (*FLOW_COUNTERS, "p_in", "p_out", "o_in", "o_out")

    stmt = _select(scope, UnitDay, [func.sum(getattr(UnitDay, c)).label(c) for c in counters],
                   [UnitDay.sector == sector, UnitDay.day >= low], [UnitDay.day])
    rows = sorted((await session.execute(stmt)).mappings(), key=lambda r: r["day"])
    days = [r["day"] for r in rows]
    prefix = {c: [0] for c in counters}
    for r in rows:
        for c in counters:
            prefix[c].append(prefix[c][-1] + int(r[c] or 0))

    def total(c: str, s: date, e: date | None = None) -> int:
        hi = len(days) if e is None else bisect_left(days, e)
        return prefix[c][hi] - prefix[c][bisect_left(days, s)]

    stmt = _select(scope, UnitDayHist, [func.sum(UnitDayHist.n).label("n")],
                   [UnitDayHist.sector == sector, UnitDayHist.day >= low], [UnitDayHist.day, UnitDayHist.bucket])
    hist_rows = sorted(((r["day"], r["bucket"], int(r["n"] or 0)) for r in (await session.execute(stmt)).mappings()))
    hist_days = [d for d, _, _ in hist_rows]

    stmt = _select(scope, UnitCohortDue, [func.sum(UnitCohortDue.n).label("n")],
                   [UnitCohortDue.sector == sector, UnitCohortDue.recv_day >= low],
                   [UnitCohortDue.recv_day, UnitCohortDue.due_day])
    due_rows = sorted(((r["recv_day"], r["due_day"], int(r["n"] or 0)) for r in (await session.execute(stmt)).mappings()))
    due_recv = [r for r, _, _ in due_rows]

    stmt = _select(scope, UnitTotal, [func.sum(UnitTotal.p_in - UnitTotal.p_out).label("p"),
                                      func.sum(UnitTotal.o_in - UnitTotal.o_out).label("o")], [UnitTotal.sector == sector])
    totals = (await session.execute(stmt)).mappings().first() or {"p": 0, "o": 0}

    for sp, sums in zip(spans, out[""], strict=True):
        sums.flows = {c: total(c, sp.start, sp.end) for c in FLOW_COUNTERS}
        sums.pending_after = total("p_in", sp.after) - total("p_out", sp.after)
        sums.overdue_after = total("o_in", sp.after) - total("o_out", sp.after)
        sums.pending_total, sums.overdue_total = int(totals["p"] or 0), int(totals["o"] or 0)
        for _, bucket, n in hist_rows[bisect_left(hist_days, sp.start) : bisect_left(hist_days, sp.end)]:
            sums.hist[bucket] = sums.hist.get(bucket, 0) + n
        sums.hist = {b: n for b, n in sums.hist.items() if n}
        sums.cohort_due = sum(
            n for _, due, n in due_rows[bisect_left(due_recv, sp.start) : bisect_left(due_recv, sp.end)] if due >= sp.due_from
        )
    live = [(i, sp) for i, sp in enumerate(spans) if sp.now is not None]
    if live:
        await _read_today(session, scope, live, sector, out)
    if sector == ALL_SECTORS:
        await _read_network_cohort(session, scope, spans, out)
    return out[""]
