"""The figures of a past period judged at an instant t within a day (SPEC section 4, "compared at
the same point": the previous period of a period in progress stands at t = previous start + (now -
start)).

The day rows give the figures at the midnight m before t (Span.after); the dossiers of the scope
received, ended or due within [m, t), or whose deadline enters a due-soon window between m and t,
correct them to t: one grouped query per scope on the (time, unit) indexes of the dossier table
(its cost is the scope's activity in part of one day, not its history), the processing times of
those resolved in [m, t), and the events of dossiers without a receipt (orphans) in [m, t).
The same reads over [a, t) (m < a) give what the corrections at a change by at t: the dossiers
with a time within [a, t) (aggregates.tau_memo keeps each unit's and adds only that as t moves).

A central node holds its subordinates' figures as day records: it cannot cut within a day, so it
takes t back to m (Sums.until says which).
"""

from __future__ import annotations

from collections import defaultdict
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache

from sqlalchemy import and_, bindparam, case, exists, func, literal, literal_column, not_, or_, select, union
from sqlalchemy.ext.asyncio import AsyncSession

from app.aggregates.at_now import DUE_HOURS
from app.aggregates.contrib import SQL_ELAPSED_MS, elapsed_ms
from app.aggregates.counters import COHORT, FLOWS
from app.aggregates.histogram import bucket_of
from app.aggregates.network_reads import network_held
from app.aggregates.scopes import _scope_params, _scope_shape, _select
from app.aggregates.sums import Scope, Span, Sums
from app.db import dialect
from app.db.models import ALL_SECTORS, Dossier, DossierEvent

# What [m, t) adds to each flow of a day row (the rules of contrib.Delta.add, at an instant).
# (orphans and processing times are read apart)
TAU_FLOWS = tuple(f for f in FLOWS if f not in ("orphans", "proc_n", "proc_ms")) + COHORT


# The memo of corrections per unit (an aggregates.tau_memo.TauMemo) a computation may use.
TAU: ContextVar = ContextVar("chiso_tau_memo", default=None)

# A correction as one vector (and a histogram of processing times): the flows above, orphans, the
# processing sums, pending and overdue ahead of the midnight, the cohort gone late, due soon.
VECTOR = (*TAU_FLOWS, "orphans", "proc_n", "proc_ms", "pending_ahead", "overdue_ahead", "late_today", *(f"due{h}" for h in DUE_HOURS))
_N = len(TAU_FLOWS) + 3
ZERO = (0,) * len(VECTOR)


@dataclass(slots=True)
class Correction:
    """What [a, b) within one day changes in a group's figures judged at an instant (a = the
    midnight: the figures at b)."""

    vector: list[int] = field(default_factory=lambda: list(ZERO))
    hist: dict[int, int] = field(default_factory=dict)


def apply(s: Sums, vector, hist: dict[int, int]) -> None:
    """Set a Sums' corrections from a group's correction at an instant (from the midnight)."""
    s.tau_flows = dict(zip(VECTOR[:_N], vector[:_N], strict=True))
    s.pending_ahead, s.overdue_ahead, s.late_today = vector[_N : _N + 3]
    s.tau_due = tuple(vector[_N + 3 :])
    s.tau_hist = {b: n for b, n in hist.items() if n}


async def is_central(session: AsyncSession) -> bool:
    """A node holding day records of subordinates (it cannot cut within a day)."""
    return (await network_held(session))[0]


async def read_at_instant(
    session: AsyncSession, scope: Scope, spans: list[tuple[int, Span]], sector: str, out, groups: dict | None = None, memo=None
) -> None:
    """Correct the figures at the midnight before each span's `until` to that instant (see above);
    sets Sums.until of every group read to the instant the figures stand at. With a memo (default:
    the one aggregates.tau_memo.TAU names) the corrections come per unit from it, for a single group
    or for `groups` (group -> its units) of a grouped scope; without one, or for a grouped scope
    without `groups`, they are read."""
    if await is_central(session):  # day records only: the figures at the midnight
        for i, sp in spans:
            for g in list(out) or [""]:
                out[g][i].until = sp.today_at
        return
    memo = memo or TAU.get()
    if memo is not None and (scope.level is None or groups is not None or scope.level == "unit"):
        await memo.read(session, scope, spans, sector, out, groups)
        return
    conn = await session.connection()
    postgres = dialect.is_postgres(session)
    for i, sp in spans:
        by_group = await read_between(conn, postgres, scope, sector, sp, sp.today_at)
        for g, c in by_group.items():
            apply(out[g][i], c.vector, c.hist)
        for g in list(out) or [""]:
            out[g][i].until = sp.until


async def read_between(conn, postgres: bool, scope: Scope, sector: str, sp: Span, a: datetime) -> dict[str, Correction]:
    """Per group of `scope`, what [a, sp.until) adds to its figures judged at an instant of the day
    starting sp.today_at (m <= a): at a = m the correction from the midnight (one grouped query on
    the time indexes, the processing times, the orphans); at a > m the change between the figures
    at a and at sp.until (the same reads over [a, until): the dossiers with a receipt, an end, a
    deadline, or a deadline 24/48/72 h ahead within it)."""
    t, m = sp.until, sp.today_at
    params = _scope_params(scope) | {"start_at": sp.start_at, "m": m, "a": a, "t": t, "next": sp.tomorrow_at}
    params["day_like"] = f'%"{sp.after.isoformat()}"%'  # orphans: dossiers with events dated that day
    for h in DUE_HOURS:
        hours = timedelta(hours=h)
        params[f"m{h}"], params[f"a{h}"], params[f"t{h}"] = m + hours, a + hours, t + hours
    any_sector = sector == ALL_SECTORS
    if not any_sector:
        params["sector"] = sector
    # the time ranges lead; the codes filter what they find (dialect.codes_filtered)
    by_unit = None if scope.codes is None else dialect.codes_filtered(postgres, "dossier.unit_code", len(scope.codes))
    shape = (scope.level, scope.parent, by_unit, any_sector)
    got: dict[str, Correction] = defaultdict(Correction)
    for row in (await conn.execute(_counts_statement(*shape, a > m), params)).mappings():
        v = got[row["g"]].vector
        for k, name in enumerate(TAU_FLOWS):
            v[k] = int(row[name] or 0)
        v[_N] = int(row["p_in"] or 0) - int(row["p_out"] or 0)
        v[_N + 1] = int(row["o_in"] or 0) - int(row["o_out"] or 0)
        v[_N + 2] = int(row["late"] or 0)
        for k, h in enumerate(DUE_HOURS):
            v[_N + 3 + k] = int(row[f"at_t{h}"] or 0) - int(row[f"at_m{h}"] or 0)
    await _read_processing(conn, postgres, shape, params, got)
    for g, n in (await conn.execute(_orphans_statement(*shape[:2], scope.codes is not None, any_sector), params)).all():
        got[g].vector[len(TAU_FLOWS)] += int(n or 0)
    return got


async def read_units_between(session: AsyncSession, a: datetime, b: datetime) -> set[str]:
    """Units whose figures judged at an instant may differ between a and b (a <= b), both ends
    included: those with a dossier whose receipt, end, deadline, or deadline less 24/48/72 h is
    within [a, b], or with an event within it of a dossier without a receipt — every time whose
    crossing read_between counts (a superset: a time crossed may change no figure). A few ranges
    of the time indexes and the orphans' partial one."""
    d, e = Dossier, DossierEvent
    queries = [select(d.unit_code).where(col >= a, col <= b) for col in (d.recv_at, d.end_at, d.eff_due_at)]
    for h in DUE_HOURS:
        hours = timedelta(hours=h)
        queries.append(select(d.unit_code).where(d.eff_due_at >= a + hours, d.eff_due_at <= b + hours))
    events = exists().where(e.unit_code == d.unit_code, e.dossier_id == d.dossier_id, e.occurred_at >= a, e.occurred_at <= b)
    queries.append(select(d.unit_code).where(d.recv_at.is_(None), events))
    return set((await (await session.connection()).execute(union(*queries))).scalars())


def _bounds():
    at = lambda name: bindparam(name, type_=Dossier.recv_at.type)  # noqa: E731
    shifted = {h: (at(f"m{h}"), at(f"a{h}"), at(f"t{h}")) for h in DUE_HOURS}
    return at("m"), at("a"), at("t"), at("next"), at("start_at"), shifted


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


def _conditions(d, m, x, nxt, start_at, shifted: dict) -> dict:
    """Per column, whether a dossier counts in the figures judged at instant x of the day starting at
    m (flows over [m, x), pending and overdue at x as what starts minus what stops in [m, x), the
    cohort at x, due soon at x); `shifted`: h -> x + h hours."""
    recv, end, due = d.recv_at, d.end_at, d.eff_due_at
    recv_in, end_in = _within(recv, m, x), _within(end, m, x)
    res = and_(end_in, _is_resolved(d))
    unsettled = or_(end.is_(None), end > due)
    ok = d.ok_766.is_(True)
    conds = {
        "received": recv_in,
        "received_online": and_(recv_in, d.channel == "online"),
        "resolved_early": and_(res, due.is_not(None), end <= due, due >= nxt),
        "resolved_on_time": and_(res, end <= due, due < nxt),
        "resolved_late": and_(res, end > due),
        "resolved_unclassified": and_(res, due.is_(None)),
        "withdrawn": and_(end_in, not_(_is_resolved(d))),
        "c_size": recv_in,
        # on time at x: ended no later than the deadline, or not (yet) and the deadline not passed
        "c_final_ok": and_(recv_in, ok, or_(and_(end.is_not(None), end <= due), and_(unsettled, due >= x))),
        "p_in": recv_in,
        "p_out": and_(recv.is_not(None), end.is_not(None), _latest_within([recv, end], m, x)),
        "o_in": and_(recv.is_not(None), due.is_not(None), _latest_within([recv, due], m, x)),
        "o_out": and_(recv.is_not(None), due.is_not(None), end.is_not(None), _latest_within([recv, due, end], m, x)),
        # cohort members received before m, on time at m, whose deadline passed in [m, x)
        "late": and_(recv >= start_at, recv < m, ok, _within(due, m, x), unsettled),
    }
    for h, xh in shifted.items():  # pending at x and due in [x, x + h)
        conds[f"at{h}"] = and_(recv < x, or_(end.is_(None), end >= x), due >= x, due < xh)
    return conds


@lru_cache(maxsize=64)
def _counts_statement(level: str | None, parent: str | None, by_unit: str | None, any_sector: bool, delta: bool = False):
    """The corrections from the midnight m to t; with `delta`, their change from a (> m) to t: each
    column counts at t less at a, over the dossiers with a time (receipt, end, deadline, deadline
    less 24/48/72 h) within [a, t), the only ones whose count can differ between a and t."""
    d = Dossier
    m, a, t, nxt, start_at, shifted = _bounds()

    def count(cond, label):
        return func.sum(case((cond, 1), else_=0)).label(label)

    at_t = _conditions(d, m, t, nxt, start_at, {h: th for h, (_, _, th) in shifted.items()})
    lo = a if delta else m
    cols = []
    if delta:
        at_a = _conditions(d, m, a, nxt, start_at, {h: ah for h, (_, ah, _) in shifted.items()})
        for name, cond in at_t.items():
            label = f"at_t{name[2:]}" if name.startswith("at") else name
            cols.append(func.sum(case((cond, 1), else_=0) - case((at_a[name], 1), else_=0)).label(label))
        cols += [literal(0).label(f"at_m{h}") for h in DUE_HOURS]
    else:
        at_m = _conditions(d, m, m, nxt, start_at, {h: mh for h, (mh, _, _) in shifted.items()})
        cols = [count(cond, f"at_t{name[2:]}" if name.startswith("at") else name) for name, cond in at_t.items()]
        cols += [count(at_m[f"at{h}"], f"at_m{h}") for h in DUE_HOURS]
    due = d.eff_due_at
    windows = [_within(d.recv_at, lo, t), _within(d.end_at, lo, t), _within(due, lo, t)]
    windows += [_within(due, (mh, ah)[delta], th) for mh, ah, th in shifted.values()]
    return _select(_scope_shape(level, parent, False), d, cols, _where(d, by_unit, any_sector, or_(*windows)))


async def _read_processing(conn, postgres: bool, shape: tuple, params: dict, got: dict[str, Correction]) -> None:
    """Processing times of the dossiers resolved in [a, t) with a receipt: bucketed and summed in
    PostgreSQL (the write pass's bucket function), from the rows in Python on SQLite (small stores)."""
    n_at, ms_at = len(TAU_FLOWS) + 1, len(TAU_FLOWS) + 2
    if postgres:
        from app.aggregates.pgpass import current

        for g, bucket, n, ms in (await conn.execute(_processing_statement(*shape, current().bucket), params)).all():
            c = got[g]
            c.hist[int(bucket)] = c.hist.get(int(bucket), 0) + int(n)
            c.vector[n_at] += int(n)
            c.vector[ms_at] += int(ms)
        return
    for g, recv_at, end_at in (await conn.execute(_processing_statement(*shape, None), params)).all():
        ms = elapsed_ms(recv_at, end_at)
        c = got[g]
        c.hist[bucket_of(ms)] = c.hist.get(bucket_of(ms), 0) + 1
        c.vector[n_at] += 1
        c.vector[ms_at] += ms


@lru_cache(maxsize=64)
def _processing_statement(level: str | None, parent: str | None, by_unit: str | None, any_sector: bool, bucket_fn: str | None):
    d = Dossier
    _, a, t, *_ = _bounds()
    where = _where(d, by_unit, any_sector, and_(_within(d.end_at, a, t), d.recv_at.is_not(None), _is_resolved(d)))
    if bucket_fn is None:
        stmt = _select(_scope_shape(level, parent, False), d, [d.recv_at, d.end_at], where)
        return stmt.group_by(None)  # one row per dossier
    ms = literal_column(SQL_ELAPSED_MS("dossier.recv_at", "dossier.end_at"))
    bucket = getattr(func, bucket_fn)(ms).label("bucket")
    return _select(_scope_shape(level, parent, False), d, [func.count().label("n"), func.sum(ms).label("ms")], where, [bucket])


@lru_cache(maxsize=64)
def _orphans_statement(level: str | None, parent: str | None, has_codes: bool, any_sector: bool):
    """Events in [a, t) of dossiers without a receipt, less an ignored terminal event in it."""
    d, e = Dossier, DossierEvent
    _, a, t, *_ = _bounds()
    events = (
        select(func.count())
        .where(e.unit_code == d.unit_code, e.dossier_id == d.dossier_id, _within(e.occurred_at, a, t))
        .correlate(d)
        .scalar_subquery()
    )
    resolved = _is_resolved(d)
    ignored_at = case((and_(d.res_at.is_not(None), d.wd_at.is_not(None)), case((resolved, d.wd_at), else_=d.res_at)))
    n = func.sum(events - case((_within(ignored_at, a, t), 1), else_=0)).label("n")
    return _select(
        _scope_shape(level, parent, False),
        d,
        [n],
        _where(
            d, "dossier.unit_code" if has_codes else None, any_sector, and_(d.recv_at.is_(None), d.event_days.like(bindparam("day_like")))
        ),
    )
