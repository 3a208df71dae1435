"""All aggregate SQL of scoring. Reads touch pre-aggregated rows only (per unit and day), plus,
for periods that end after now, the few dossiers whose deadline falls within today.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import lru_cache

from sqlalchemy import and_, bindparam, case, func, literal, or_, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.models import ALL_SECTORS, Dossier, DossierFuture, NetworkCohort, Unit, UnitCohortDue, UnitDay, UnitDayHist, UnitTotal

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
COHORT_COUNTERS = ("c_size", "c_final_ok")
SPAN_COUNTERS = (*FLOW_COUNTERS, "p_in", "p_out", "o_in", "o_out")


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
    pending_ahead: int = 0  # t = now: received before now but ending later today, minus received later today
    overdue_ahead: int = 0  # the same among those whose deadline is before now
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
    """(group expression or None, where clauses, needs join); the codes and the parent are bound
    parameters (see _scope_params), so a statement built once serves every scope of its shape."""
    codes = bindparam("codes", expanding=True)
    if scope.level is None:
        if scope.codes is None:
            return None, [], False
        return None, [unit_col.in_(codes)], False
    if scope.level == "unit":
        return unit_col, [unit_col.in_(codes)], False
    if scope.level == "commune":
        group = Unit.code
        where = [Unit.level == "commune"]
    else:  # province: its own rows and its communes'
        group = case((Unit.level == "province", Unit.code), else_=Unit.parent_code)
        where = [Unit.level.in_(("province", "commune"))]
    if scope.parent is not None and scope.parent != "VN":
        if scope.level == "commune":
            where.append(Unit.parent_code == bindparam("parent"))
        else:
            where.append(group == bindparam("parent"))
    return group, where, True


def _scope_params(scope: Scope) -> dict:
    """The bound values of a scope's filter."""
    params: dict = {} if scope.codes is None else {"codes": list(scope.codes)}
    return params if scope.parent is None else params | {"parent": scope.parent}


def _scope_shape(level: str | None, parent: str | None, has_codes: bool) -> Scope:
    """A scope standing for every scope with these traits, to build a statement once."""
    return Scope(codes=() if has_codes else None, level=level, parent=parent)


def _select(scope: Scope, table, columns: list, extra_where: list, extra_group: list | None = None):
    group, where, join = _group_and_filter(scope, table.unit_code)
    key = (group if group is not None else literal("")).label("g")
    stmt = select(key, *(extra_group or []), *columns)
    stmt = stmt.select_from(table.__table__.join(Unit.__table__, Unit.code == table.unit_code) if join else table)
    stmt = stmt.where(*where, *extra_where)
    return stmt.group_by(key, *(extra_group or [])) if group is not None or extra_group else stmt


async def read_sums(
    session: AsyncSession, scope: Scope, spans: list[Span], sector: str, cohort_only: bool = False
) -> dict[str, list[Sums]]:
    """Per group (a unit code, or "" for a single group), one Sums per span; with `cohort_only`,
    only what this node's INDEX-766 cohort needs (the exporter's calendar-period records)."""
    out: dict[str, list[Sums]] = defaultdict(lambda: [Sums() for _ in spans])
    low = min(min(s.start, s.after) for s in spans)
    params = _scope_params(scope)
    counters = COHORT_COUNTERS if cohort_only else FLOW_COUNTERS

    cols = []
    for i, sp in enumerate(spans):
        inside = _between(UnitDay.day, sp.start, sp.end)
        after = UnitDay.day >= sp.after
        for c in counters:
            cols.append(func.sum(case((inside, getattr(UnitDay, c)), else_=0)).label(f"{c}_{i}"))
        if not cohort_only:  # pending and overdue at t
            cols.append(func.sum(case((after, UnitDay.p_in - UnitDay.p_out), else_=0)).label(f"pa_{i}"))
            cols.append(func.sum(case((after, UnitDay.o_in - UnitDay.o_out), else_=0)).label(f"oa_{i}"))
    stmt = _select(scope, UnitDay, cols, [UnitDay.sector == sector, UnitDay.day >= low])
    width = len(counters) + (0 if cohort_only else 2)
    for row in (await session.execute(stmt, params)).all():  # g, then per span: counters[, pa, oa]
        for i, sums in enumerate(out[row[0]]):
            values = [int(v or 0) for v in row[1 + i * width : 1 + (i + 1) * width]]
            sums.flows = dict(zip(counters, values))
            if not cohort_only:
                sums.pending_after, sums.overdue_after = values[-2], values[-1]
    if cohort_only:
        return await _read_cohort(session, scope, spans, sector, params, out)

    stmt = _select(
        scope,
        UnitTotal,
        [func.sum(UnitTotal.p_in - UnitTotal.p_out).label("p"), func.sum(UnitTotal.o_in - UnitTotal.o_out).label("o")],
        [UnitTotal.sector == sector],
    )
    for row in (await session.execute(stmt, params)).mappings():
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
    for row in (await session.execute(stmt, params)).mappings():
        for i, sums in enumerate(out[row["g"]]):
            if row[f"n_{i}"]:
                sums.hist[row["bucket"]] = int(row[f"n_{i}"])

    await _read_cohort(session, scope, spans, sector, params, out)
    if sector == ALL_SECTORS:
        await _read_network_cohort(session, scope, spans, out)
    return out


async def _read_cohort(session: AsyncSession, scope: Scope, spans: list[Span], sector: str, params: dict, out) -> dict:
    """The not-yet-settled cohort members by deadline day, and the exact corrections within today."""
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
    for row in (await session.execute(stmt, params)).mappings():
        for i, sums in enumerate(out[row["g"]]):
            sums.cohort_due = int(row[f"d_{i}"] or 0)

    live = [(i, sp) for i, sp in enumerate(spans) if sp.now is not None]
    if live:
        await _read_today(session, scope, live, sector, out)
    return out


async def _read_network_cohort(session: AsyncSession, scope: Scope, spans: list[Span], out) -> None:
    """Cohort records received from subordinates; other periods of units they feed are unknown."""
    cohorts = tuple(i for i, sp in enumerate(spans) if sp.cohort is not None)
    stmt = _network_cohort_statement(scope.level, scope.parent, scope.codes is not None, cohorts)
    params = _scope_params(scope)
    for i in cohorts:
        params[f"kind_{i}"], params[f"start_{i}"] = spans[i].cohort
    for row in (await (await session.connection()).execute(stmt, params)).mappings():
        if not row["n"]:
            continue
        for i, sp in enumerate(spans):
            sums = out[row["g"]][i]
            if sp.cohort is None:
                sums.net_cohort_unknown = True
            else:
                sums.net_cohort_size = int(row[f"s_{i}"] or 0)
                sums.net_cohort_ok = int(row[f"k_{i}"] or 0)


@lru_cache(maxsize=64)
def _network_cohort_statement(level: str | None, parent: str | None, has_codes: bool, cohorts: tuple[int, ...]):
    t = NetworkCohort
    cols = [func.count().label("n")]
    for i in cohorts:
        hit = and_(t.kind == bindparam(f"kind_{i}"), t.start == bindparam(f"start_{i}"))
        cols.append(func.sum(case((hit, t.c_size), else_=0)).label(f"s_{i}"))
        cols.append(func.sum(case((hit, t.c_ok), else_=0)).label(f"k_{i}"))
    return _select(_scope_shape(level, parent, has_codes), t, cols, [])


async def _read_today(session: AsyncSession, scope: Scope, live: list, sector: str, out) -> None:
    """Exact counts within today for periods judged at now."""
    _, sp0 = live[0]
    stmt = _today_statement(scope.level, scope.parent, scope.codes is not None, tuple(i for i, _ in live), sector == "*")
    params = _scope_params(scope) | {"now": sp0.now, "today_at": sp0.today_at, "tomorrow_at": sp0.tomorrow_at, "sector": sector}
    for i, sp in live:
        params[f"start_at_{i}"], params[f"now_{i}"] = sp.start_at, sp.now
    conn = await session.connection()
    for row in (await conn.execute(stmt, params)).mappings():
        for i, _ in live:
            out[row["g"]][i].overdue_not_yet = int(row["not_yet"] or 0)
            out[row["g"]][i].late_today = int(row[f"l_{i}"] or 0)
    # The day rows count everything dated today as if t were the end of today; events dated a few
    # minutes ahead of now (the skew allowance) are marked at ingest, so few rows are read here.
    stmt = _ahead_statement(scope.level, scope.parent, scope.codes is not None, sector == "*")
    for row in (await conn.execute(stmt, params)).mappings():
        for i, _ in live:
            out[row["g"]][i].pending_ahead = int(row["ends_ahead"] or 0) - int(row["starts_ahead"] or 0)
            out[row["g"]][i].overdue_ahead = int(row["ends_ahead_late"] or 0) - int(row["starts_ahead_late"] or 0)


@lru_cache(maxsize=64)
def _ahead_statement(level: str | None, parent: str | None, has_codes: bool, any_sector: bool):
    d, f = Dossier, DossierFuture
    now = bindparam("now", type_=d.recv_at.type)
    tomorrow = bindparam("tomorrow_at", type_=d.recv_at.type)
    starts = and_(d.recv_at >= now, d.recv_at < tomorrow, or_(d.end_at.is_(None), d.end_at >= tomorrow))
    ends = and_(d.recv_at < now, d.end_at >= now, d.end_at < tomorrow)
    late = d.eff_due_at < now

    def count(cond, label):
        return func.sum(case((cond, 1), else_=0)).label(label)

    cols = [count(starts, "starts_ahead"), count(ends, "ends_ahead"),
            count(and_(starts, late), "starts_ahead_late"), count(and_(ends, late), "ends_ahead_late")]
    ahead = select(f.unit_code, f.dossier_id).where(f.at >= now).distinct()
    where = [tuple_(d.unit_code, d.dossier_id).in_(ahead)]
    if not any_sector:
        where.append(d.sector == bindparam("sector"))
    return _select(_scope_shape(level, parent, has_codes), d, cols, where)


@lru_cache(maxsize=64)
def _today_statement(level: str | None, parent: str | None, has_codes: bool, live: tuple[int, ...], any_sector: bool):
    d = Dossier
    now = bindparam("now", type_=d.eff_due_at.type)
    cols = [
        func.sum(case((and_(d.end_at.is_(None), d.eff_due_at >= now, d.recv_at.is_not(None)), 1), else_=0)).label("not_yet")
    ]
    for i in live:
        late = and_(
            d.recv_at >= bindparam(f"start_at_{i}", type_=d.recv_at.type),
            d.ok_766.is_(True),
            d.eff_due_at < bindparam(f"now_{i}", type_=d.eff_due_at.type),
            or_(d.end_at.is_(None), d.end_at > d.eff_due_at),
        )
        cols.append(func.sum(case((late, 1), else_=0)).label(f"l_{i}"))
    where = [d.eff_due_at >= bindparam("today_at", type_=d.eff_due_at.type), d.eff_due_at < bindparam("tomorrow_at", type_=d.eff_due_at.type)]
    if not any_sector:
        where.append(d.sector == bindparam("sector"))
    return _select(_scope_shape(level, parent, has_codes), d, cols, where)


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


@lru_cache(maxsize=2)
def _spans_statements(has_codes: bool) -> tuple:
    """The four per-day reads of read_spans, built once (only their parameters change): building
    SQLAlchemy expressions took a third of a cold KPI answer's CPU."""
    sector, low = bindparam("sector"), bindparam("low")

    def mine(t) -> list:
        return [t.unit_code.in_(bindparam("codes", expanding=True))] if has_codes else []

    d, h, c, t = UnitDay, UnitDayHist, UnitCohortDue, UnitTotal
    day = (
        select(d.day, *(func.sum(getattr(d, k)).label(k) for k in SPAN_COUNTERS))
        .where(d.sector == sector, d.day >= low, *mine(d))
        .group_by(d.day)
    )
    hist = select(h.day, h.bucket, func.sum(h.n).label("n")).where(h.sector == sector, h.day >= low, *mine(h)).group_by(h.day, h.bucket)
    due = (
        select(c.recv_day, c.due_day, func.sum(c.n).label("n"))
        .where(c.sector == sector, c.recv_day >= low, *mine(c))
        .group_by(c.recv_day, c.due_day)
    )
    total = select(func.sum(t.p_in - t.p_out).label("p"), func.sum(t.o_in - t.o_out).label("o")).where(t.sector == sector, *mine(t))
    return day, hist, due, total


async def read_spans(session: AsyncSession, scope: Scope, spans: list[Span], sector: str) -> list[Sums]:
    """One Sums per span for a single group of units, from per-day sums: four small GROUP BY day
    queries whatever the number of spans (series of hundreds of points), then prefix sums."""
    from bisect import bisect_left

    assert scope.level is None, "read_spans sums one group; rankings use read_sums"
    low = min(min(s.start, s.after) for s in spans)
    out = {"": [Sums() for _ in spans]}
    q_day, q_hist, q_due, q_total = _spans_statements(scope.codes is not None)
    params = {"sector": sector, "low": low} | ({"codes": list(scope.codes)} if scope.codes is not None else {})
    conn = await session.connection()  # Core execution: the ORM layer adds nothing to a plain read

    rows = sorted((await conn.execute(q_day, params)).all(), key=lambda r: r[0])
    days = [r[0] for r in rows]
    prefix = {c: [0] for c in SPAN_COUNTERS}
    for r in rows:
        for i, c in enumerate(SPAN_COUNTERS, start=1):
            prefix[c].append(prefix[c][-1] + int(r[i] or 0))

    def total(c: str, s: date, e: date | None = None) -> int:
        hi = len(days) if e is None else bisect_left(days, e)
        return prefix[c][hi] - prefix[c][bisect_left(days, s)]

    hist_rows = sorted((d, b, int(n or 0)) for d, b, n in (await conn.execute(q_hist, params)).all())
    hist_days = [d for d, _, _ in hist_rows]
    due_rows = sorted((r, d, int(n or 0)) for r, d, n in (await conn.execute(q_due, params)).all())
    due_recv = [r for r, _, _ in due_rows]
    totals = (await conn.execute(q_total, params)).mappings().first() or {"p": 0, "o": 0}

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
