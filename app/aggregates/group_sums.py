"""Sums per group of units (a ranking's units, or one group) over several spans, in one grouped read
per table; and the change counts a ranking reads to re-read only the units that changed.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta
from functools import lru_cache

from sqlalchemy import and_, bindparam, case, func, literal, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.aggregates.at_now import _read_silent, _read_today
from app.aggregates.at_tau import read_at_instant
from app.aggregates.counters import COHORT, DUE, FLOW_COUNTERS
from app.aggregates.histogram import bucket_columns, per_key, per_key_rows, with_buckets
from app.aggregates.network_reads import _read_network_cohort
from app.aggregates.pending import after_columns, total_columns
from app.aggregates.scopes import _between, _scope_params, _select, _shape_of, _tables
from app.aggregates.silent import DEFAULT_AFTER_HOURS
from app.aggregates.sums import Scope, Span, Sums
from app.db.models import (
    ALL_SECTORS,
    Unit,
    UnitChange,
)


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
        at_instant = [(i, sp) for i, sp in enumerate(spans) if sp.until is not None]
        if at_instant:
            await read_at_instant(session, scope, at_instant, sector, out)
        if sector == ALL_SECTORS and not cohort_only:
            await _read_network_cohort(session, scope, spans, out)
    return out


@lru_cache(maxsize=64)
def _stored_statements(shape: Scope, past: tuple[bool, ...], cohort_only: bool, postgres: bool) -> tuple:
    """The reads of _read_stored for scopes of one shape and spans of one kind (`past`: each span
    judged at a past midnight, not at now), built once: a span's days are bound parameters
    (_span_params). Building them anew took ~5 % of a refresher tick."""
    day_t, hist_t, due_t, total_t = _tables(shape)
    counters = COHORT if cohort_only else FLOW_COUNTERS
    sector, low, first = bindparam("sector"), bindparam("low"), bindparam("first")
    cols = []
    for i, at_past in enumerate(past):
        inside = _between(day_t.day, bindparam(f"s{i}"), bindparam(f"e{i}"))
        for c in counters:
            cols.append(func.sum(case((inside, getattr(day_t, c)), else_=0)).label(f"{c}_{i}"))
        if not cohort_only:  # pending and overdue at t; due soon at t when t is a past midnight
            pa, oa = after_columns(day_t, bindparam(f"a{i}"))
            cols += [pa.label(f"pa_{i}"), oa.label(f"oa_{i}")]
            for k, name in enumerate(DUE):
                if at_past:
                    hit = day_t.day == bindparam(f"a{i}_{k}")
                    cols.append(func.sum(case((hit, getattr(day_t, name)), else_=0)).label(f"d{k}_{i}"))
                else:  # at now: read from the open dossiers (_read_today)
                    cols.append(literal(0).label(f"d{k}_{i}"))
    day = _select(shape, day_t, cols, [day_t.sector == sector, day_t.day >= low])

    cols = []
    for i in range(len(past)):
        member = and_(_between(due_t.recv_day, bindparam(f"s{i}"), bindparam(f"e{i}")), due_t.due_day >= bindparam(f"f{i}"))
        cols.append(func.sum(case((member, due_t.n), else_=0)))
    due = _select(shape, due_t, cols, [due_t.sector == sector, due_t.recv_day >= first])
    if cohort_only:
        return day, None, None, due

    p, o = total_columns(total_t)
    total = _select(shape, total_t, [p, o], [total_t.sector == sector])

    bucket, n, unpacked, unpack = bucket_columns(hist_t, postgres)
    cols = [func.sum(case((_between(hist_t.day, bindparam(f"s{i}"), bindparam(f"e{i}")), n), else_=0)) for i in range(len(past))]
    hist = _select(shape, hist_t, cols, [hist_t.sector == sector, hist_t.day >= first, *unpacked], [bucket])
    hist = per_key(with_buckets(hist, hist_t, unpack), 1, postgres)
    return day, total, hist, due


def _span_params(spans: list[Span], sector: str) -> dict:
    """The bound values of _stored_statements for these spans."""
    params: dict = {"sector": sector, "low": min(min(s.start, s.after) for s in spans), "first": min(s.start for s in spans)}
    for i, sp in enumerate(spans):
        params |= {f"s{i}": sp.start, f"e{i}": sp.end, f"a{i}": sp.after, f"f{i}": sp.due_from}
        if sp.now is None:
            params |= {f"a{i}_{k}": sp.after + timedelta(days=k) for k in range(len(DUE))}
    return params


async def _read_stored(session: AsyncSession, scope: Scope, spans: list[Span], sector: str, cohort_only: bool, params: dict, out):
    conn = await session.connection()
    q_day, q_total, q_hist, q_due = _stored_statements(
        _shape_of(scope), tuple(sp.now is None for sp in spans), cohort_only, conn.dialect.name == "postgresql"
    )
    params = params | _span_params(spans, sector)
    counters = COHORT if cohort_only else FLOW_COUNTERS
    width = len(counters) + (0 if cohort_only else 2 + len(DUE))
    for row in (await conn.execute(q_day, params)).all():  # g, then per span: counters[, pa, oa, d0-d2]
        for i, sums in enumerate(out[row[0]]):
            values = [int(v or 0) for v in row[1 + i * width : 1 + (i + 1) * width]]
            sums.flows = dict(zip(counters, values, strict=False))  # values end with pa, oa, d0-d2
            if not cohort_only:
                sums.pending_after, sums.overdue_after = values[-5], values[-4]
                sums.due_stored = (values[-3], values[-2], values[-1])
    if not cohort_only:
        for g, p, o in (await conn.execute(q_total, params)).all():
            for sums in out[g]:
                sums.pending_total, sums.overdue_total = int(p or 0), int(o or 0)
        for g, buckets in per_key_rows((await conn.execute(q_hist, params)).all()):  # [bucket, n per span] each
            for i, sums in enumerate(out[g], start=1):
                hist = sums.hist
                for r in buckets:
                    if r[i]:
                        hist[r[0]] = int(r[i])
    # the not-yet-settled cohort members by deadline day
    for g, *due in (await conn.execute(q_due, params)).all():
        for sums, n in zip(out[g], due, strict=True):
            sums.cohort_due = int(n or 0)


async def read_unit_changes(session: AsyncSession, level: str, parent: str | None) -> dict[str, int]:
    """How many times the own rows of each unit of a level (under `parent`) changed."""
    stmt = select(UnitChange.unit_code, UnitChange.changes).join(Unit, Unit.code == UnitChange.unit_code).where(Unit.level == level)
    if parent is not None and parent != "VN":
        stmt = stmt.where(Unit.parent_code == parent)
    return {u: int(n) for u, n in (await (await session.connection()).execute(stmt)).all()}
