"""The corrections at now: the figures of periods judged at now that the day rows cannot give (the
dossiers whose deadline falls within today, due soon, events dated ahead of now, silent units),
and the units whose figures at now moved with time alone.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from functools import lru_cache

from sqlalchemy import and_, bindparam, case, func, literal, literal_column, or_, select, tuple_, union
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from app.aggregates.network_reads import network_held
from app.aggregates.scopes import _scope_params, _scope_shape, _select
from app.aggregates.silent import cut_off, silent_condition
from app.aggregates.sums import Scope
from app.db import dialect
from app.db.models import (
    ALL_SECTORS,
    OPEN,
    UNSETTLED,
    Dossier,
    DossierFuture,
    NetworkDay,
    RollupOpenDue,
    UnitSource,
)

DUE_HOURS = (24, 48, 72)  # the due-soon windows of SPEC section 4


async def _read_today(session: AsyncSession, scope: Scope, live: list, sector: str, out, network: bool = True) -> None:
    """Exact counts within today for periods judged at now (without `network`: from this node's
    dossiers only, not the due-soon figures of subordinates' day records)."""
    _, sp0 = live[0]
    stmt = _today_statement(scope.level, scope.parent, scope.codes is not None, tuple(i for i, _ in live), sector == "*")
    params = _scope_params(scope) | {"now": sp0.now, "today_at": sp0.today_at, "tomorrow_at": sp0.tomorrow_at, "sector": sector}
    params |= {f"due{h}": sp0.now + timedelta(hours=h) for h in DUE_HOURS}
    for i, sp in live:
        params[f"start_at_{i}"], params[f"now_{i}"] = sp.start_at, sp.now
    conn = await session.connection()
    by_hours = scope.rollup is not None and scope.level is None  # a province or the nation: whole hours from its rollup rows
    if not by_hours:
        # A commune (or a list of units): generically planned, the due-soon count read the whole
        # country's open dossiers due within 72 h to count one commune's (bench.at_now, "commune
        # KPI, after a change": 29-30 -> 10-13 ms).
        await dialect.plan_each_run(session)
    for row in (await conn.execute(stmt, params)).mappings():
        for i, _ in live:
            out[row["g"]][i].overdue_not_yet = int(row["not_yet"] or 0)
            out[row["g"]][i].late_today = int(row[f"l_{i}"] or 0)
    # Due soon at now: the open dossiers due within 72 h (a partial index holds only open dossiers)
    # and, on a central node, the latest day record of each unit a subordinate feeds.
    due: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    if by_hours:
        windows = [(sp0.now, sp0.now + timedelta(hours=h)) for h in DUE_HOURS]
        due[""] = await count_open_due(session, scope.rollup, sector, scope.codes, windows)
    else:
        stmt = _due_statement(scope.level, scope.parent, scope.codes is not None, sector == "*")
        for row in (await conn.execute(stmt, params)).mappings():
            due[row["g"]] = [int(row[f"d{h}"] or 0) for h in DUE_HOURS]
    if sector == ALL_SECTORS and network and (await network_held(session))[0]:
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
        await dialect.plan_each_run(session)  # the few index ranges for what they are
        cols = [
            func.sum(case((or_(*(and_(d.eff_due_at >= x, d.eff_due_at < y) for x, y in sl)), 1), else_=0)).label(f"s{i}")
            for i, sl in enumerate(slices)
        ]
        where = [OPEN, d.recv_at.is_not(None), or_(*(and_(d.eff_due_at >= x, d.eff_due_at < y) for x, y in ranges))]
        if sector != ALL_SECTORS:
            where.append(d.sector == sector)
        if codes is not None:  # the deadline ranges lead (dialect.codes_filtered)
            spelled = dialect.codes_filtered(dialect.is_postgres(session), "dossier.unit_code", len(codes))
            where.append(literal_column(spelled).in_(codes))
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
    rows = await (await session.connection()).execute(union(*queries))
    return sorted(set(rows.scalars()))
