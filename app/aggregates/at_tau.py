"""The figures of a past period judged at an instant t within a day (SPEC section 4, "compared at
the same point": the previous period of a period in progress stands at t = previous start + (now -
start)).

The day rows give the figures at the midnight m before t (Span.after); the dossiers of the scope
received, ended or due within [m, t), or whose deadline enters a due-soon window between m and t,
correct them to t: one grouped query per scope on the (time, unit) indexes of the dossier table
(its cost is the scope's activity in part of one day, not its history), the processing times of
those resolved in [m, t), and the events of dossiers without a receipt (orphans) in [m, t).

A central node holds its subordinates' figures as day records: it cannot cut within a day, so it
takes t back to m (Sums.until says which).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta
from functools import lru_cache

from sqlalchemy import and_, bindparam, case, func, literal_column, not_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.aggregates.at_now import DUE_HOURS
from app.aggregates.contrib import SQL_ELAPSED_MS, elapsed_ms
from app.aggregates.histogram import bucket_of
from app.aggregates.scopes import _scope_params, _scope_shape, _select
from app.aggregates.sums import Scope, Span
from app.db import dialect
from app.db.models import ALL_SECTORS, Dossier, DossierEvent, NetworkDay

# What [m, t) adds to each flow of a day row (the rules of contrib.Delta.add, at an instant).
TAU_FLOWS = (
    "received",
    "received_online",
    "resolved_early",
    "resolved_on_time",
    "resolved_late",
    "resolved_unclassified",
    "withdrawn",
    "c_size",
    "c_final_ok",
)


async def read_at_instant(session: AsyncSession, scope: Scope, spans: list[tuple[int, Span]], sector: str, out) -> None:
    """Correct the figures at the midnight before each span's `until` to that instant (see above);
    sets Sums.until of every group read to the instant the figures stand at."""
    conn = await session.connection()
    central = (await conn.execute(select(NetworkDay.unit_code).limit(1))).first() is not None
    for i, sp in spans:
        t = sp.until
        m = sp.today_at  # the local midnight starting the day of t
        if central:  # day records only: the figures at the midnight
            for g in list(out) or [""]:
                out[g][i].until = m
            continue
        params = _scope_params(scope) | {"start_at": sp.start_at, "m": m, "t": t, "next": sp.tomorrow_at}
        params["day_like"] = f'%"{sp.after.isoformat()}"%'  # orphans: dossiers with events dated that day
        for h in DUE_HOURS:
            params[f"m{h}"], params[f"t{h}"] = m + timedelta(hours=h), t + timedelta(hours=h)
        any_sector = sector == ALL_SECTORS
        if not any_sector:
            params["sector"] = sector
        # SQLite would take the unit's whole history by its primary key for `unit_code IN (...)`: a
        # unary plus keeps it on the time indexes (PostgreSQL filters the codes within their ranges)
        by_unit = None if scope.codes is None else ("dossier.unit_code" if dialect.is_postgres(session) else "+dossier.unit_code")
        shape = (scope.level, scope.parent, by_unit, any_sector)
        for row in (await conn.execute(_counts_statement(*shape), params)).mappings():
            s = out[row["g"]][i]
            s.tau_flows = {k: int(row[k] or 0) for k in TAU_FLOWS}
            s.pending_ahead = int(row["p_in"] or 0) - int(row["p_out"] or 0)
            s.overdue_ahead = int(row["o_in"] or 0) - int(row["o_out"] or 0)
            s.late_today = int(row["late"] or 0)
            s.tau_due = tuple(int(row[f"at_t{h}"] or 0) - int(row[f"at_m{h}"] or 0) for h in DUE_HOURS)
        await _read_processing(session, shape, params, i, out)
        for g, n in (await conn.execute(_orphans_statement(*shape[:2], scope.codes is not None, any_sector), params)).all():
            flows = out[g][i].tau_flows
            flows["orphans"] = flows.get("orphans", 0) + int(n or 0)
        for g in list(out) or [""]:
            out[g][i].until = t


def _bounds():
    at = lambda name: bindparam(name, type_=Dossier.recv_at.type)  # noqa: E731
    return at("m"), at("t"), at("next"), at("start_at"), {h: (at(f"m{h}"), at(f"t{h}")) for h in DUE_HOURS}


def _within(col, a, b):
    return and_(col >= a, col < b)


def _latest_within(cols: list, m, t):
    """max(cols) in [m, t) (every col not null)."""
    return and_(*(c < t for c in cols), or_(*(c >= m for c in cols)))


def _is_resolved(d):
    """The dossier's end is its winning resolved (contrib: the earlier of the winning resolved and
    withdrawn by (occurred_at, event_id))."""
    return and_(
        d.res_at.is_not(None),
        d.end_at == d.res_at,
        or_(d.wd_at.is_(None), d.wd_at != d.res_at, d.res_event_id <= d.wd_event_id),
    )


def _where(d, by_unit: str | None, any_sector: bool, extra) -> list:
    """The scope's units (a subtree's codes, filtered on the column spelled `by_unit`; every unit,
    or a level's, need no list: the time ranges lead the indexes) and sector, and `extra`."""
    where = [extra]
    if by_unit is not None:
        where.append(literal_column(by_unit).in_(bindparam("codes", expanding=True)))
    if not any_sector:
        where.append(d.sector == bindparam("sector"))
    return where


@lru_cache(maxsize=64)
def _counts_statement(level: str | None, parent: str | None, by_unit: str | None, any_sector: bool):
    d = Dossier
    m, t, nxt, start_at, shifted = _bounds()
    recv, end, due = d.recv_at, d.end_at, d.eff_due_at
    recv_in, end_in = _within(recv, m, t), _within(end, m, t)
    res = and_(end_in, _is_resolved(d))
    unsettled = or_(end.is_(None), end > due)
    ok = d.ok_766.is_(True)

    def count(cond, label):
        return func.sum(case((cond, 1), else_=0)).label(label)

    cols = [
        count(recv_in, "received"),
        count(and_(recv_in, d.channel == "online"), "received_online"),
        count(and_(res, due.is_not(None), end <= due, due >= nxt), "resolved_early"),
        count(and_(res, end <= due, due < nxt), "resolved_on_time"),
        count(and_(res, end > due), "resolved_late"),
        count(and_(res, due.is_(None)), "resolved_unclassified"),
        count(and_(end_in, not_(_is_resolved(d))), "withdrawn"),
        count(recv_in, "c_size"),
        # on time at t: ended no later than the deadline, or not (yet) and the deadline not passed
        count(and_(recv_in, ok, or_(and_(end.is_not(None), end <= due), and_(unsettled, due >= t))), "c_final_ok"),
        count(recv_in, "p_in"),
        count(and_(recv.is_not(None), end.is_not(None), _latest_within([recv, end], m, t)), "p_out"),
        count(and_(recv.is_not(None), due.is_not(None), _latest_within([recv, due], m, t)), "o_in"),
        count(and_(recv.is_not(None), due.is_not(None), end.is_not(None), _latest_within([recv, due, end], m, t)), "o_out"),
        # cohort members received before m, on time at m, whose deadline passed in [m, t)
        count(and_(recv >= start_at, recv < m, ok, _within(due, m, t), unsettled), "late"),
    ]
    for h, (mh, th) in shifted.items():  # pending at x and due in [x, x + h), at x = t and x = m
        for x, xh, name in ((t, th, f"at_t{h}"), (m, mh, f"at_m{h}")):
            cols.append(count(and_(recv < x, or_(end.is_(None), end >= x), due >= x, due < xh), name))
    candidates = or_(recv_in, end_in, _within(due, m, t), *(_within(due, mh, th) for mh, th in shifted.values()))
    return _select(_scope_shape(level, parent, False), d, cols, _where(d, by_unit, any_sector, candidates))


async def _read_processing(session: AsyncSession, shape: tuple, params: dict, i: int, out) -> None:
    """Processing times of the dossiers resolved in [m, t) with a receipt: bucketed and summed in
    PostgreSQL (the write pass's bucket function), from the rows in Python on SQLite (small stores)."""
    conn = await session.connection()
    if dialect.is_postgres(session):
        from app.aggregates.pgpass import current

        stmt = _processing_statement(*shape, current().bucket)
        for g, bucket, n, ms in (await conn.execute(stmt, params)).all():
            s = out[g][i]
            s.tau_hist[int(bucket)] = s.tau_hist.get(int(bucket), 0) + int(n)
            s.tau_flows["proc_n"] = s.tau_flows.get("proc_n", 0) + int(n)
            s.tau_flows["proc_ms"] = s.tau_flows.get("proc_ms", 0) + int(ms)
        return
    sums: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for g, recv_at, end_at in (await conn.execute(_processing_statement(*shape, None), params)).all():
        ms = elapsed_ms(recv_at, end_at)
        s = out[g][i]
        s.tau_hist[bucket_of(ms)] = s.tau_hist.get(bucket_of(ms), 0) + 1
        sums[g][0] += 1
        sums[g][1] += ms
    for g, (n, ms) in sums.items():
        flows = out[g][i].tau_flows
        flows["proc_n"], flows["proc_ms"] = flows.get("proc_n", 0) + n, flows.get("proc_ms", 0) + ms


@lru_cache(maxsize=64)
def _processing_statement(level: str | None, parent: str | None, by_unit: str | None, any_sector: bool, bucket_fn: str | None):
    d = Dossier
    m, t, *_ = _bounds()
    where = _where(d, by_unit, any_sector, and_(_within(d.end_at, m, t), d.recv_at.is_not(None), _is_resolved(d)))
    if bucket_fn is None:
        stmt = _select(_scope_shape(level, parent, False), d, [d.recv_at, d.end_at], where)
        return stmt.group_by(None)  # one row per dossier
    ms = literal_column(SQL_ELAPSED_MS("dossier.recv_at", "dossier.end_at"))
    bucket = getattr(func, bucket_fn)(ms).label("bucket")
    return _select(_scope_shape(level, parent, False), d, [func.count().label("n"), func.sum(ms).label("ms")], where, [bucket])


@lru_cache(maxsize=64)
def _orphans_statement(level: str | None, parent: str | None, has_codes: bool, any_sector: bool):
    """Events in [m, t) of dossiers without a receipt, less an ignored terminal event in it."""
    d, e = Dossier, DossierEvent
    m, t, *_ = _bounds()
    events = (
        select(func.count())
        .where(e.unit_code == d.unit_code, e.dossier_id == d.dossier_id, _within(e.occurred_at, m, t))
        .correlate(d)
        .scalar_subquery()
    )
    resolved = _is_resolved(d)
    ignored_at = case((and_(d.res_at.is_not(None), d.wd_at.is_not(None)), case((resolved, d.wd_at), else_=d.res_at)))
    n = func.sum(events - case((_within(ignored_at, m, t), 1), else_=0)).label("n")
    return _select(
        _scope_shape(level, parent, False),
        d,
        [n],
        _where(
            d, "dossier.unit_code" if has_codes else None, any_sector, and_(d.recv_at.is_(None), d.event_days.like(bindparam("day_like")))
        ),
    )
