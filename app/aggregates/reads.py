"""All reads of the aggregate model. KPI reads touch pre-aggregated rows only: a commune's own
rows, a province's or the nation's rollup rows (never its communes' rows), per day; plus, for
periods that end after now, the few dossiers whose deadline falls within today. Also the reads
of the rebuild: the event log, dossier rows, and own and rollup rows of a unit.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache

from sqlalchemy import and_, bindparam, case, func, literal, or_, select, text, tuple_, union
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from app.aggregates.counters import COHORT, DAY_COUNTERS, DUE, FLOW_COUNTERS, TOTAL_COUNTERS
from app.aggregates.silent import DEFAULT_AFTER_HOURS, cut_off, silent_condition
from app.aggregates.sums import Scope, Span, Sums
from app.aggregates.writes import DOSSIER_COLUMNS, OWN_TABLES, ROLLUP_TABLES, open_due_select_sql, rollup_select_sql
from app.db import dialect
from app.db.models import (
    ALL_SECTORS,
    LOCAL_SOURCE,
    OPEN,
    UNSETTLED,
    Dossier,
    DossierEvent,
    DossierFuture,
    NetworkCohort,
    NetworkDay,
    RollupOpenDue,
    Unit,
    UnitChange,
    UnitSource,
)

DUE_HOURS = (24, 48, 72)  # the due-soon windows of SPEC section 4


def _between(col, s: date, e: date):
    return and_(col >= s, col < e)


def _group_and_filter(scope: Scope, unit_col, rollup: bool = False):
    """(group expression or None, where clauses, needs join); the codes and the parent are bound
    parameters (see _scope_params), so a statement built once serves every scope of its shape.
    `rollup`: the table holds rollup rows (a province's or the nation's own sums)."""
    codes = bindparam("codes", expanding=True)
    if rollup:
        if scope.level is None:  # one province or the nation
            return None, [unit_col == bindparam("rollup")], False
        assert scope.level == "province", scope.level
        where = [Unit.level == "province"]
        if scope.parent is not None and scope.parent != "VN":
            where.append(unit_col == bindparam("parent"))
        return unit_col, where, True
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


def _tables(scope: Scope) -> tuple:
    """The aggregate tables a scope reads: rollup rows for a province, the nation, or a ranking of
    provinces; own rows for a commune, a ranking of communes, or units one by one."""
    return ROLLUP_TABLES if scope.rollup is not None or scope.level == "province" else OWN_TABLES


def _scope_params(scope: Scope) -> dict:
    """The bound values of a scope's filter."""
    params: dict = {} if scope.codes is None else {"codes": list(scope.codes)}
    if scope.rollup is not None:
        params["rollup"] = scope.rollup
    return params if scope.parent is None else params | {"parent": scope.parent}


def _scope_shape(level: str | None, parent: str | None, has_codes: bool) -> Scope:
    """A scope standing for every scope with these traits, to build a statement once."""
    return Scope(codes=() if has_codes else None, level=level, parent=parent)


def _select(scope: Scope, table, columns: list, extra_where: list, extra_group: list | None = None):
    group, where, join = _group_and_filter(scope, table.unit_code, table in ROLLUP_TABLES)
    key = (group if group is not None else literal("")).label("g")
    stmt = select(key, *(extra_group or []), *columns)
    stmt = stmt.select_from(table.__table__.join(Unit.__table__, Unit.code == table.unit_code) if join else table)
    stmt = stmt.where(*where, *extra_where)
    return stmt.group_by(key, *(extra_group or [])) if group is not None or extra_group else stmt


async def read_sums(
    session: AsyncSession,
    scope: Scope,
    spans: list[Span],
    sector: str,
    cohort_only: bool = False,
    stored: bool = True,
    live: bool = True,
    silent_after_hours: float = DEFAULT_AFTER_HOURS,
) -> dict[str, list[Sums]]:
    """Per group (a unit code, or "" for a single group), one Sums per span; with `cohort_only`,
    only what this node's INDEX-766 cohort needs (the exporter's calendar-period records).

    The figures come in two parts (sums.LIVE_FIELDS): `stored`, the aggregate rows, which change
    only when a unit's rows do; and `live`, the corrections within today and the cohort records of
    subordinates, which also move with time. A ranking keeps the first per unit and reads the second
    anew (scoring.ranking)."""
    # silent_units is 0, not null, for a group with no silent unit in a period judged at now
    out: dict[str, list[Sums]] = defaultdict(lambda: [Sums(silent=None if sp.now is None else 0) for sp in spans])
    params = _scope_params(scope)
    if stored:
        await _read_stored(session, scope, spans, sector, cohort_only, params, out)
    if live:
        live_spans = [(i, sp) for i, sp in enumerate(spans) if sp.now is not None]
        if live_spans:
            await _read_today(session, scope, live_spans, sector, out)
            await _read_silent(session, scope, live_spans, silent_after_hours, out)
        if sector == ALL_SECTORS and not cohort_only:
            await _read_network_cohort(session, scope, spans, out)
    return out


async def _read_stored(session: AsyncSession, scope: Scope, spans: list[Span], sector: str, cohort_only: bool, params: dict, out):
    low = min(min(s.start, s.after) for s in spans)
    day_t, hist_t, _, total_t = _tables(scope)
    counters = COHORT if cohort_only else FLOW_COUNTERS

    cols = []
    for i, sp in enumerate(spans):
        inside = _between(day_t.day, sp.start, sp.end)
        after = day_t.day >= sp.after
        for c in counters:
            cols.append(func.sum(case((inside, getattr(day_t, c)), else_=0)).label(f"{c}_{i}"))
        if not cohort_only:  # pending and overdue at t; due soon at t when t is a past midnight
            cols.append(func.sum(case((after, day_t.p_in - day_t.p_out), else_=0)).label(f"pa_{i}"))
            cols.append(func.sum(case((after, day_t.o_in - day_t.o_out), else_=0)).label(f"oa_{i}"))
            for k, name in enumerate(DUE):
                if sp.now is None:
                    hit = day_t.day == sp.after + timedelta(days=k)
                    cols.append(func.sum(case((hit, getattr(day_t, name)), else_=0)).label(f"d{k}_{i}"))
                else:  # at now: read from the open dossiers (_read_today)
                    cols.append(literal(0).label(f"d{k}_{i}"))
    stmt = _select(scope, day_t, cols, [day_t.sector == sector, day_t.day >= low])
    width = len(counters) + (0 if cohort_only else 2 + len(DUE))
    for row in (await (await session.connection()).execute(stmt, params)).all():  # g, then per span: counters[, pa, oa, d0-d2]
        for i, sums in enumerate(out[row[0]]):
            values = [int(v or 0) for v in row[1 + i * width : 1 + (i + 1) * width]]
            sums.flows = dict(zip(counters, values, strict=False))  # values end with pa, oa, d0-d2
            if not cohort_only:
                sums.pending_after, sums.overdue_after = values[-5], values[-4]
                sums.due_stored = (values[-3], values[-2], values[-1])
    if cohort_only:
        await _read_cohort_due(session, scope, spans, sector, params, out)
        return

    stmt = _select(
        scope,
        total_t,
        [func.sum(total_t.p_in - total_t.p_out).label("p"), func.sum(total_t.o_in - total_t.o_out).label("o")],
        [total_t.sector == sector],
    )
    for row in (await (await session.connection()).execute(stmt, params)).mappings():
        for sums in out[row["g"]]:
            sums.pending_total = int(row["p"] or 0)
            sums.overdue_total = int(row["o"] or 0)

    cols = [func.sum(case((_between(hist_t.day, sp.start, sp.end), hist_t.n), else_=0)).label(f"n_{i}") for i, sp in enumerate(spans)]
    stmt = _select(
        scope,
        hist_t,
        cols,
        [hist_t.sector == sector, hist_t.day >= min(s.start for s in spans)],
        [hist_t.bucket],
    )
    for row in (await (await session.connection()).execute(stmt, params)).mappings():
        for i, sums in enumerate(out[row["g"]]):
            if row[f"n_{i}"]:
                sums.hist[row["bucket"]] = int(row[f"n_{i}"])

    await _read_cohort_due(session, scope, spans, sector, params, out)


async def _read_cohort_due(session: AsyncSession, scope: Scope, spans: list[Span], sector: str, params: dict, out) -> None:
    """The not-yet-settled cohort members by deadline day."""
    due_t = _tables(scope)[2]
    cols = [
        func.sum(
            case(
                (and_(_between(due_t.recv_day, sp.start, sp.end), due_t.due_day >= sp.due_from), due_t.n),
                else_=0,
            )
        ).label(f"d_{i}")
        for i, sp in enumerate(spans)
    ]
    stmt = _select(scope, due_t, cols, [due_t.sector == sector, due_t.recv_day >= min(s.start for s in spans)])
    for row in (await (await session.connection()).execute(stmt, params)).mappings():
        for i, sums in enumerate(out[row["g"]]):
            sums.cohort_due = int(row[f"d_{i}"] or 0)


COHORTS_PER_QUERY = 400  # cohort spans per network_cohort query (2 columns each)


async def _read_network_cohort(session: AsyncSession, scope: Scope, spans: list[Span], out) -> None:
    """Cohort records received from subordinates; other periods of units they feed are unknown."""
    every = tuple(i for i, sp in enumerate(spans) if sp.cohort is not None)
    # Two columns per cohort: a series of 1,000 months in one select list passed PostgreSQL's 1,664 (a 503).
    for cohorts in [every[k : k + COHORTS_PER_QUERY] for k in range(0, len(every), COHORTS_PER_QUERY)] or [()]:
        stmt = _network_cohort_statement(scope.level, scope.parent, scope.codes is not None, cohorts)
        params = _scope_params(scope)
        for i in cohorts:
            params[f"kind_{i}"], params[f"start_{i}"] = spans[i].cohort
        mine = set(cohorts)
        for row in (await (await session.connection()).execute(stmt, params)).mappings():
            if not row["n"]:
                continue
            for i, sp in enumerate(spans):
                sums = out[row["g"]][i]
                if sp.cohort is None:
                    sums.net_cohort_unknown = True
                elif i in mine:
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
    params |= {f"due{h}": sp0.now + timedelta(hours=h) for h in DUE_HOURS}
    for i, sp in live:
        params[f"start_at_{i}"], params[f"now_{i}"] = sp.start_at, sp.now
    conn = await session.connection()
    for row in (await conn.execute(stmt, params)).mappings():
        for i, _ in live:
            out[row["g"]][i].overdue_not_yet = int(row["not_yet"] or 0)
            out[row["g"]][i].late_today = int(row[f"l_{i}"] or 0)
    # Due soon at now: the open dossiers due within 72 h (a partial index holds only open dossiers)
    # and, on a central node, the latest day record of each unit a subordinate feeds.
    due: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    by_hours = scope.rollup is not None and scope.level is None  # a province or the nation: whole hours from its rollup rows
    if by_hours:
        windows = [(sp0.now, sp0.now + timedelta(hours=h)) for h in DUE_HOURS]
        due[""] = await count_open_due(session, scope.rollup, sector, scope.codes, windows)
    else:
        stmt = _due_statement(scope.level, scope.parent, scope.codes is not None, sector == "*")
        for row in (await conn.execute(stmt, params)).mappings():
            due[row["g"]] = [int(row[f"d{h}"] or 0) for h in DUE_HOURS]
    if sector == ALL_SECTORS:
        stmt = _network_due_statement(scope.level, scope.parent, scope.codes is not None)
        for row in (await conn.execute(stmt, _scope_params(scope))).mappings():
            got = due[row["g"]]
            for k, h in enumerate(DUE_HOURS):
                got[k] += int(row[f"d{h}"] or 0)
    # The day rows count everything dated today as if t were the end of today; events dated a few
    # minutes ahead of now (the skew allowance) are marked at ingest, so few rows are read here,
    # and none at all (one probe of an index) in the usual case that no mark lies ahead of now.
    ahead = select(DossierFuture.at).where(DossierFuture.at >= bindparam("now", type_=DossierFuture.at.type)).limit(1)
    if (await conn.execute(ahead, {"now": sp0.now})).first() is not None:
        stmt = _ahead_statement(scope.level, scope.parent, scope.codes is not None, sector == "*")
        for row in (await conn.execute(stmt, params)).mappings():
            for i, _ in live:
                out[row["g"]][i].pending_ahead = int(row["ends_ahead"] or 0) - int(row["starts_ahead"] or 0)
                out[row["g"]][i].overdue_ahead = int(row["ends_ahead_late"] or 0) - int(row["starts_ahead_late"] or 0)
            got = due[row["g"]]  # pending at now but ending within the skew allowance: not in the open index
            for k, h in enumerate(DUE_HOURS):
                got[k] += int(row[f"due_ahead{h}"] or 0)
                if by_hours:  # the rollup rows count open dossiers received after now too
                    got[k] -= int(row[f"due_recv_ahead{h}"] or 0)
    for g, figures in due.items():
        for i, _ in live:
            out[g][i].due_live = tuple(figures)


async def _read_silent(session: AsyncSession, scope: Scope, live: list, after_hours: float, out) -> None:
    """silent_units at now: the units of each group that are silent (aggregates.silent), counted
    from `unit_source` (a row per unit) and at most 14 day rows per candidate."""
    own = Scope(codes=scope.codes, level=scope.level, parent=scope.parent)  # units, never rollup rows
    cut = cut_off(live[0][1].now, after_hours)
    stmt = _select(own, UnitSource, [func.count().label("n")], [silent_condition(cut)])
    for g, n in (await (await session.connection()).execute(stmt, _scope_params(own))).all():
        for i, _ in live:
            out[g][i].silent = int(n or 0)


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

    cols = [
        count(starts, "starts_ahead"),
        count(ends, "ends_ahead"),
        count(and_(starts, late), "starts_ahead_late"),
        count(and_(ends, late), "ends_ahead_late"),
    ]
    for h in DUE_HOURS:  # pending at now, ended later (so not open), due in [now, now + h)
        window = and_(d.eff_due_at >= now, d.eff_due_at < bindparam(f"due{h}", type_=d.eff_due_at.type))
        cols.append(count(and_(d.recv_at < now, d.end_at >= now, window), f"due_ahead{h}"))
        cols.append(count(and_(d.recv_at >= now, d.end_at.is_(None), window), f"due_recv_ahead{h}"))
    ahead = select(f.unit_code, f.dossier_id).where(f.at >= now).distinct()
    where = [tuple_(d.unit_code, d.dossier_id).in_(ahead)]
    if not any_sector:
        where.append(d.sector == bindparam("sector"))
    return _select(_scope_shape(level, parent, has_codes), d, cols, where)


def _hour_floor(dt: datetime) -> datetime:
    return dt.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


async def count_open_due(
    session: AsyncSession, rollup: str, sector: str, codes: tuple[str, ...] | None, windows: list[tuple[datetime | None, datetime]]
) -> list[int]:
    """Per window [a, b) (a None: no lower bound), the open dossiers with a receipt and a deadline
    in it of a province or the nation (`rollup`, whose units are `codes`; None: every unit): whole
    UTC hours from its rollup rows (only those with n <> 0 are read), the partial hours at the ends
    from the open-dossier index. Open dossiers received after now are included: callers correct."""
    conn = await session.connection()
    r, d = RollupOpenDue, Dossier
    parts, slices = [], []
    for a, b in windows:
        top = _hour_floor(b)
        low = None if a is None else _hour_floor(a) + (timedelta(0) if _hour_floor(a) == a else timedelta(hours=1))
        if low is not None and low > top:  # within one hour
            slices.append([(a, b)])
            parts.append(None)
            continue
        slices.append([x for x in ((a, low), (top, b)) if x[0] is not None and x[0] < x[1]])
        parts.append((low, top))
    cols = []
    for i, part in enumerate(parts):
        if part is None:
            cols.append(literal(0).label(f"h{i}"))
            continue
        low, top = part
        inside = r.hour < top if low is None else and_(r.hour >= low, r.hour < top)
        cols.append(func.sum(case((inside, r.n), else_=0)).label(f"h{i}"))
    bounds = [p for p in parts if p is not None]
    out = [0] * len(windows)
    if bounds:
        where = [r.unit_code == rollup, r.sector == sector, r.n != 0, r.hour < max(t for _, t in bounds)]
        if all(low is not None for low, _ in bounds):
            where.append(r.hour >= min(low for low, _ in bounds))
        row = (await conn.execute(select(*cols).where(*where))).first()
        out = [int(v or 0) for v in row]
    ranges = [x for sl in slices for x in sl]
    if ranges:
        if dialect.is_postgres(session):  # plan the few index ranges for what they are, not generically
            await conn.execute(text("SET LOCAL plan_cache_mode = force_custom_plan"))
        cols = [
            func.sum(case((or_(*(and_(d.eff_due_at >= x, d.eff_due_at < y) for x, y in sl)), 1), else_=0)).label(f"s{i}")
            for i, sl in enumerate(slices)
        ]
        where = [OPEN, d.recv_at.is_not(None), or_(*(and_(d.eff_due_at >= x, d.eff_due_at < y) for x, y in ranges))]
        if sector != ALL_SECTORS:
            where.append(d.sector == sector)
        if codes is not None:
            where.append(d.unit_code.in_(codes))
        row = (await conn.execute(select(*cols).where(*where))).first()
        out = [o + int(v or 0) for o, v in zip(out, row, strict=True)]
    return out


@lru_cache(maxsize=64)
def _due_statement(level: str | None, parent: str | None, has_codes: bool, any_sector: bool):
    """Open dossiers received before now and due in [now, now + 24/48/72 h)."""
    d = Dossier
    now = bindparam("now", type_=d.eff_due_at.type)
    cols = [func.sum(case((d.eff_due_at < bindparam(f"due{h}", type_=d.eff_due_at.type), 1), else_=0)).label(f"d{h}") for h in DUE_HOURS]
    where = [OPEN, d.eff_due_at >= now, d.eff_due_at < bindparam(f"due{DUE_HOURS[-1]}", type_=d.eff_due_at.type), d.recv_at < now]
    if not any_sector:
        where.append(d.sector == bindparam("sector"))
    return _select(_scope_shape(level, parent, has_codes), d, cols, where)


@lru_cache(maxsize=64)
def _network_due_statement(level: str | None, parent: str | None, has_codes: bool):
    """The due-soon figures of the latest day record per unit and subordinate (central mode)."""
    n, later = NetworkDay, aliased(NetworkDay)
    latest = (
        select(func.max(later.day)).where(later.unit_code == n.unit_code, later.source == n.source).correlate(n.__table__).scalar_subquery()
    )
    cols = [func.sum(getattr(n, f"due_{h}h")).label(f"d{h}") for h in DUE_HOURS]
    return _select(_scope_shape(level, parent, has_codes), n, cols, [n.day == latest])


@lru_cache(maxsize=64)
def _today_statement(level: str | None, parent: str | None, has_codes: bool, live: tuple[int, ...], any_sector: bool):
    d = Dossier
    now = bindparam("now", type_=d.eff_due_at.type)
    cols = [func.sum(case((and_(d.end_at.is_(None), d.eff_due_at >= now, d.recv_at.is_not(None)), 1), else_=0)).label("not_yet")]
    for i in live:
        late = and_(
            d.recv_at >= bindparam(f"start_at_{i}", type_=d.recv_at.type),
            d.ok_766.is_(True),
            d.eff_due_at < bindparam(f"now_{i}", type_=d.eff_due_at.type),
            or_(d.end_at.is_(None), d.end_at > d.eff_due_at),
        )
        cols.append(func.sum(case((late, 1), else_=0)).label(f"l_{i}"))
    where = [
        d.eff_due_at >= bindparam("today_at", type_=d.eff_due_at.type),
        d.eff_due_at < bindparam("tomorrow_at", type_=d.eff_due_at.type),
        UNSETTLED,  # both counts need it; the partial indexes hold only these dossiers
    ]
    if not any_sector:
        where.append(d.sector == bindparam("sector"))
    return _select(_scope_shape(level, parent, has_codes), d, cols, where)


async def read_unit_aggregates(session: AsyncSession, unit_code: str) -> dict[str, dict]:
    """A unit's own local aggregate rows, keyed like contrib.Delta, zero values left out."""
    day_t, hist_t, due_t, total_t = OWN_TABLES
    out: dict[str, dict] = {"day": {}, "hist": {}, "cohort_due": {}, "total": {}}
    mine = lambda t: and_(t.unit_code == unit_code, t.source == LOCAL_SOURCE)  # noqa: E731
    for r in (await session.execute(select(day_t).where(mine(day_t)))).scalars():
        cols = {c: getattr(r, c) for c in DAY_COUNTERS if getattr(r, c)}
        if cols:
            out["day"][(r.unit_code, r.sector, r.day)] = cols
    for r in (await session.execute(select(hist_t).where(mine(hist_t)))).scalars():
        if r.n:
            out["hist"][(r.unit_code, r.sector, r.day, r.bucket)] = r.n
    for r in (await session.execute(select(due_t).where(mine(due_t)))).scalars():
        if r.n:
            out["cohort_due"][(r.unit_code, r.sector, r.recv_day, r.due_day)] = r.n
    for r in (await session.execute(select(total_t).where(mine(total_t)))).scalars():
        cols = {c: getattr(r, c) for c in TOTAL_COUNTERS if getattr(r, c)}
        if cols:
            out["total"][(r.unit_code, r.sector)] = cols
    return out


async def read_rollups(session: AsyncSession, expected: bool = False) -> dict[str, dict]:
    """Every rollup row summed over its slots (or, with `expected`, as summed from the own rows
    below), keyed like contrib.Delta, zero values left out."""
    out: dict[str, dict] = {}
    for name, own, rollup in zip(("day", "hist", "cohort_due", "total"), OWN_TABLES, ROLLUP_TABLES, strict=True):
        sql, cols = rollup_select_sql(own.__tablename__)
        if not expected:
            keys = ", ".join(c for c in cols if c in ("unit_code", "sector", "day", "bucket", "recv_day", "due_day"))
            sums = ", ".join(f"SUM({c}) AS {c}" for c in cols if c not in keys.split(", "))
            sql = f"SELECT {keys}, {sums} FROM {rollup.__tablename__} GROUP BY {keys}"
        values = [c for c in cols if c in (*DAY_COUNTERS, "n")]
        nkeys = len(cols) - len(values)
        table: dict = {}
        for row in (await session.execute(text(sql))).all():
            key = tuple(_as_date(v) for v in row[:nkeys])
            if name in ("day", "total"):
                figures = {c: int(v) for c, v in zip(values, row[nkeys:], strict=True) if v}
                if figures:
                    table[key] = figures
            elif row[nkeys]:
                table[key] = int(row[nkeys])
        out[name] = table
    # open dossiers by deadline hour: from the dossier table, or as kept (summed over slots)
    if expected:
        sql = open_due_select_sql(dialect.is_postgres(session))
    else:
        sql = "SELECT unit_code, sector, hour, SUM(n) AS n FROM rollup_open_due GROUP BY unit_code, sector, hour"
    out["open_due"] = {(u, s, h): int(n) for u, s, h, n in (await session.execute(text(sql))).all() if n}
    return out


def _as_date(v):
    """SQLite answers dates of raw SQL as text."""
    if isinstance(v, str) and len(v) == 10 and v[4] == "-" and v[7] == "-":
        return date.fromisoformat(v)
    return v


async def read_unit_changes(session: AsyncSession, level: str, parent: str | None) -> dict[str, int]:
    """How many times the own rows of each unit of a level (under `parent`) changed."""
    stmt = select(UnitChange.unit_code, UnitChange.changes).join(Unit, Unit.code == UnitChange.unit_code).where(Unit.level == level)
    if parent is not None and parent != "VN":
        stmt = stmt.where(Unit.parent_code == parent)
    return {u: int(n) for u, n in (await session.execute(stmt)).all()}


async def read_units_due_between(session: AsyncSession, since: datetime, until: datetime) -> list[str]:
    """Units whose figures at now moved with time alone in (since, until]: an open (or late-settled)
    dossier's deadline passed (overdue, the INDEX-766 cohort), an open dossier's deadline entered the
    24, 48 or 72 h window (due soon), or an event dated ahead of its arrival came due (pending).
    Reads the partial deadline indexes and the few future marks."""
    d, f = Dossier, DossierFuture
    due = select(d.unit_code).where(UNSETTLED, d.eff_due_at > since, d.eff_due_at <= until)
    queries = [due, select(f.unit_code).where(f.at > since, f.at <= until)]
    for h in DUE_HOURS:
        ahead = timedelta(hours=h)
        queries.append(select(d.unit_code).where(OPEN, d.eff_due_at > since + ahead, d.eff_due_at <= until + ahead))
    rows = await session.execute(union(*queries))
    return sorted(set(rows.scalars()))


async def read_event_units(session: AsyncSession) -> list[str]:
    """Every unit that has stored events."""
    return list((await session.execute(select(DossierEvent.unit_code).distinct().order_by(DossierEvent.unit_code))).scalars())


async def read_unit_events(session: AsyncSession, unit_code: str) -> list[dict]:
    """Every stored event of one unit."""
    stmt = select(DossierEvent.__table__).where(DossierEvent.unit_code == unit_code)
    return [dict(r) for r in (await session.execute(stmt)).mappings()]


async def read_unit_dossiers(session: AsyncSession, unit_code: str) -> dict[str, dict]:
    """Every dossier row of one unit, by dossier_id."""
    stmt = select(*(getattr(Dossier, c) for c in DOSSIER_COLUMNS)).where(Dossier.unit_code == unit_code)
    return {r["dossier_id"]: dict(r) for r in (await session.execute(stmt)).mappings()}


async def read_sectors(session: AsyncSession, scope: Scope, since: date) -> set[str]:
    """Sectors with rows in the scope from `since` on, or with pending dossiers (single group)."""
    day_t, _, _, total_t = _tables(scope)
    names: set[str] = set()
    for table, extra in ((day_t, [day_t.day >= since]), (total_t, [])):
        group, where, join = _group_and_filter(scope, table.unit_code, table in ROLLUP_TABLES)
        stmt = select(table.sector).distinct().where(table.sector != ALL_SECTORS, *extra, *where)
        names.update((await session.execute(stmt, _scope_params(scope))).scalars())
    return names


@lru_cache(maxsize=4)
def _spans_statements(has_codes: bool, rollup: bool) -> tuple:
    """The four per-day reads of read_spans, built once (only their parameters change): building
    SQLAlchemy expressions took a third of a cold KPI answer's CPU."""
    sector, low = bindparam("sector"), bindparam("low")

    def mine(t) -> list:
        if rollup:
            return [t.unit_code == bindparam("rollup")]
        return [t.unit_code.in_(bindparam("codes", expanding=True))] if has_codes else []

    d, h, c, t = ROLLUP_TABLES if rollup else OWN_TABLES
    day = (
        select(d.day, *(func.sum(getattr(d, k)).label(k) for k in DAY_COUNTERS))
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


async def read_spans(
    session: AsyncSession, scope: Scope, spans: list[Span], sector: str, silent_after_hours: float = DEFAULT_AFTER_HOURS
) -> list[Sums]:
    """One Sums per span for a single group of units, from per-day sums: four small GROUP BY day
    queries whatever the number of spans (series of hundreds of points), then prefix sums."""
    from bisect import bisect_left

    assert scope.level is None, "read_spans sums one group; rankings use read_sums"
    low = min(min(s.start, s.after) for s in spans)
    out = {"": [Sums(silent=None if sp.now is None else 0) for sp in spans]}
    q_day, q_hist, q_due, q_total = _spans_statements(scope.codes is not None, scope.rollup is not None)
    params = {"sector": sector, "low": low} | _scope_params(scope)
    conn = await session.connection()  # Core execution: the ORM layer adds nothing to a plain read

    rows = sorted((await conn.execute(q_day, params)).all(), key=lambda r: r[0])
    days = [r[0] for r in rows]
    prefix = {c: [0] for c in DAY_COUNTERS}
    for r in rows:
        for i, c in enumerate(DAY_COUNTERS, start=1):
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
        if sp.now is None:  # due soon at the past midnight t = start of day `after`
            sums.due_stored = tuple(total(c, sp.after + timedelta(days=k), sp.after + timedelta(days=k + 1)) for k, c in enumerate(DUE))
    live = [(i, sp) for i, sp in enumerate(spans) if sp.now is not None]
    if live:
        await _read_today(session, scope, live, sector, out)
        await _read_silent(session, scope, live, silent_after_hours, out)
    if sector == ALL_SECTORS:
        await _read_network_cohort(session, scope, spans, out)
    return out[""]


# --- the at-risk list (SPEC section 5): pending dossiers by deadline -----------------------------

AT_RISK_COLUMNS = ("unit_code", "dossier_id", "recv_at", "eff_due_at", "channel", "sector", "recv_event_id")


@lru_cache(maxsize=16)
def _at_risk_statements(has_codes: bool, include_overdue: bool, ahead: bool) -> tuple:
    """(count, page) over the pending dossiers due before `until` (and from `now` on unless
    `include_overdue`), soonest first, ties by unit and dossier id.

    Open dossiers come from the partial indexes over open dossiers by deadline (ix_dossier_open_due,
    nation-wide in this very order; ix_dossier_unit_open_due per unit), so neither the count nor a
    page reads an ended dossier. With `ahead`, also the few dossiers pending at now whose end is
    dated later (within the clock-skew allowance; they carry a future mark)."""
    d, f = Dossier, DossierFuture
    now = bindparam("now", type_=d.eff_due_at.type)
    until = bindparam("until", type_=d.eff_due_at.type)
    common = [d.eff_due_at < until, d.recv_at < now]
    if not include_overdue:
        common.append(d.eff_due_at >= now)
    if has_codes:
        common.append(d.unit_code.in_(bindparam("codes", expanding=True)))
    cols = [getattr(d, c) for c in AT_RISK_COLUMNS]
    parts = [select(*cols).where(OPEN, *common)]
    if ahead:
        marked = select(f.unit_code, f.dossier_id).where(f.at >= now).distinct()
        parts.append(
            select(*cols).where(d.end_at >= now, d.eff_due_at.is_not(None), tuple_(d.unit_code, d.dossier_id).in_(marked), *common)
        )
    if len(parts) == 1:
        page = parts[0].order_by(d.eff_due_at, d.unit_code, d.dossier_id)
        count = select(func.count()).select_from(d).where(OPEN, *common)
    else:
        both = union(*parts).subquery()
        page = select(both).order_by(both.c.eff_due_at, both.c.unit_code, both.c.dossier_id)
        count = select(func.count()).select_from(both)
    page = page.limit(bindparam("limit")).offset(bindparam("offset"))
    return count, page


@lru_cache(maxsize=8)
def _at_risk_ahead_statement(has_codes: bool, include_overdue: bool):
    """Among dossiers with a mark ahead of now, in the at-risk window: (pending at now but ended
    later, open but received after now)."""
    d, f = Dossier, DossierFuture
    now = bindparam("now", type_=d.eff_due_at.type)
    where = [d.eff_due_at.is_not(None), d.eff_due_at < bindparam("until", type_=d.eff_due_at.type)]
    if not include_overdue:
        where.append(d.eff_due_at >= now)
    if has_codes:
        where.append(d.unit_code.in_(bindparam("codes", expanding=True)))
    where.append(tuple_(d.unit_code, d.dossier_id).in_(select(f.unit_code, f.dossier_id).where(f.at >= now).distinct()))
    ends = and_(d.end_at >= now, d.recv_at < now)
    starts = and_(d.end_at.is_(None), d.recv_at >= now)
    return select(func.sum(case((ends, 1), else_=0)), func.sum(case((starts, 1), else_=0))).where(*where)


async def read_at_risk(
    session: AsyncSession,
    codes: tuple[str, ...] | None,
    now: datetime,
    until: datetime,
    include_overdue: bool,
    limit: int,
    offset: int,
    rollup: str | None = None,
) -> tuple[int, list[dict]]:
    """(total, one page of rows) of the pending dossiers of `codes` (None: every unit) due before
    `until`, from `now` on unless `include_overdue`; each row with its `procedure_code` (the one
    its winning `received` names). For a province or the nation (`rollup`), the total sums whole
    hours of its open-deadline rollup rows (count_open_due) instead of counting the window."""
    conn = await session.connection()
    if dialect.is_postgres(session):
        # A generic plan (PostgreSQL's choice after five runs of a prepared statement) does not know
        # how narrow the deadline window is and reads a unit's every open dossier: plan each run.
        await conn.execute(text("SET LOCAL plan_cache_mode = force_custom_plan"))
    marks = select(DossierFuture.at).where(DossierFuture.at >= bindparam("now", type_=DossierFuture.at.type)).limit(1)
    ahead = (await conn.execute(marks, {"now": now})).first() is not None
    count, page = _at_risk_statements(codes is not None, include_overdue, ahead)
    params: dict = {"now": now, "until": until, "limit": limit, "offset": offset}
    if codes is not None:
        params["codes"] = list(codes)
    rows = [dict(r) for r in (await conn.execute(page, params)).mappings()]
    if rows and len(rows) < limit:  # the last page: the total needs no count
        total = offset + len(rows)
    elif rollup is not None:
        (total,) = await count_open_due(session, rollup, ALL_SECTORS, codes, [(None if include_overdue else now, until)])
        if ahead:  # pending but not open (ends ahead of now); open but not pending (received ahead of now)
            row = (await conn.execute(_at_risk_ahead_statement(codes is not None, include_overdue), params)).first()
            total += int(row[0] or 0) - int(row[1] or 0)
    else:
        total = int((await conn.execute(count, params)).scalar() or 0)
    keys = sorted({(r["unit_code"], r["recv_event_id"]) for r in rows if r["recv_event_id"]})
    procedures: dict[tuple[str, str], str | None] = {}
    for chunk in (keys[i : i + 500] for i in range(0, len(keys), 500)):
        e = DossierEvent
        stmt = select(e.unit_code, e.event_id, e.procedure_code).where(tuple_(e.unit_code, e.event_id).in_(chunk))
        procedures.update({(u, i): p for u, i, p in (await conn.execute(stmt)).all()})
    for r in rows:
        r["procedure_code"] = procedures.get((r["unit_code"], r.pop("recv_event_id")))
    return total, rows
