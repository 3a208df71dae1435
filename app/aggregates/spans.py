"""One group's sums over many spans (a KPI answer, a series of hundreds of points) from per-day
sums: a few GROUP BY day reads whatever the number of spans, then prefix sums; and its sectors.
"""

from __future__ import annotations

from datetime import date, timedelta
from functools import lru_cache

from sqlalchemy import bindparam, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.aggregates.at_tau import read_at_instant
from app.aggregates.counters import DAY_COUNTERS, DUE, FLOW_COUNTERS, TOTALS
from app.aggregates.histogram import bucket_columns, per_key, per_key_rows, with_buckets
from app.aggregates.live_memo import read_live
from app.aggregates.network_reads import _read_network_cohort
from app.aggregates.pending import Backlog, total_columns
from app.aggregates.scopes import _group_and_filter, _scope_params, _tables
from app.aggregates.silent import DEFAULT_AFTER_HOURS
from app.aggregates.sums import Scope, Span, Sums
from app.aggregates.writes import OWN_TABLES, ROLLUP_TABLES
from app.db.dialect import codes_in
from app.db.models import (
    ALL_SECTORS,
)


async def read_sectors(session: AsyncSession, scope: Scope, since: date) -> set[str]:
    """Sectors with rows in the scope from `since` on, or with pending dossiers (single group)."""
    day_t, _, _, total_t = _tables(scope)
    names: set[str] = set()
    for table, extra in ((day_t, [day_t.day >= since]), (total_t, [])):
        group, where, join = _group_and_filter(scope, table.unit_code, table in ROLLUP_TABLES)
        stmt = select(table.sector).distinct().where(table.sector != ALL_SECTORS, *extra, *where)
        names.update((await session.execute(stmt, _scope_params(scope))).scalars())
    return names


@lru_cache(maxsize=8)
def _spans_statements(has_codes: bool, rollup: bool, postgres: bool) -> tuple:
    """The four per-day reads of read_spans, built once (only their parameters change): building
    SQLAlchemy expressions took a third of a cold KPI answer's CPU."""
    sector, low = bindparam("sector"), bindparam("low")

    def mine(t) -> list:
        if rollup:
            return [t.unit_code == bindparam("rollup")]
        return [codes_in(t.unit_code)] if has_codes else []

    d, h, c, t = ROLLUP_TABLES if rollup else OWN_TABLES
    day = (
        select(d.day, *(func.sum(getattr(d, k)).label(k) for k in DAY_COUNTERS))
        .where(d.sector == sector, d.day >= low, *mine(d))
        .group_by(d.day)
    )
    bucket, n, unpacked, unpack = bucket_columns(h, postgres)
    hist = select(h.day, bucket, func.sum(n).label("n")).where(h.sector == sector, h.day >= low, *mine(h), *unpacked)
    hist = per_key(with_buckets(hist, h, unpack).group_by(h.day, bucket), 1, postgres)  # a row per day
    due = (
        select(c.recv_day, c.due_day, func.sum(c.n).label("n"))
        .where(c.sector == sector, c.recv_day >= low, *mine(c))
        .group_by(c.recv_day, c.due_day)
    )
    total = select(*total_columns(t)).where(t.sector == sector, *mine(t))
    return day, hist, due, total


async def read_spans(
    session: AsyncSession,
    scope: Scope,
    spans: list[Span],
    sector: str,
    silent_after_hours: float = DEFAULT_AFTER_HOURS,
    at_now: bool = True,
) -> list[Sums]:
    """One Sums per span for a single group of units, from per-day sums: four small GROUP BY day
    queries whatever the number of spans (series of hundreds of points), then prefix sums. Without
    `at_now`, a span judged at now lacks its figures at now (for a KPI that does not rest on them:
    scoring.kpis.AT_NOW_KPIS)."""
    from bisect import bisect_left

    assert scope.level is None, "read_spans sums one group; rankings use read_sums"
    low = min(min(s.start, s.after) for s in spans)
    out = {"": [Sums(silent=None if sp.now is None else 0) for sp in spans]}
    conn = await session.connection()  # Core execution: the ORM layer adds nothing to a plain read
    q_day, q_hist, q_due, q_total = _spans_statements(scope.codes is not None, scope.rollup is not None, conn.dialect.name == "postgresql")
    params = {"sector": sector, "low": low} | _scope_params(scope)

    rows = sorted((await conn.execute(q_day, params)).all(), key=lambda r: r[0])
    days = [r[0] for r in rows]
    columns = {c: i for i, c in enumerate(DAY_COUNTERS, start=1)}  # a day row: its day, then DAY_COUNTERS
    prefix = {c: [0] for c in (*FLOW_COUNTERS, *DUE)}  # pending and overdue: the backlog below
    for r in rows:
        for c, acc in prefix.items():
            acc.append(acc[-1] + int(r[columns[c]] or 0))

    def total(c: str, s: date, e: date | None = None) -> int:
        hi = len(days) if e is None else bisect_left(days, e)
        return prefix[c][hi] - prefix[c][bisect_left(days, s)]

    hist_rows = sorted(per_key_rows((await conn.execute(q_hist, params)).all()))  # (day, [[bucket, n], ...])
    hist_days = [d for d, _ in hist_rows]
    due_rows = sorted((r, d, int(n or 0)) for r, d, n in (await conn.execute(q_due, params)).all())
    due_recv = [r for r, _, _ in due_rows]
    p_total, o_total = (await conn.execute(q_total, params)).one()
    starts_stops = [(r[0], *(int(r[columns[c]] or 0) for c in TOTALS)) for r in rows]
    backlog = Backlog(starts_stops, (int(p_total or 0), int(o_total or 0)))

    for sp, sums in zip(spans, out[""], strict=True):
        sums.flows = {c: total(c, sp.start, sp.end) for c in FLOW_COUNTERS}
        sums.pending_after, sums.overdue_after = backlog.after(sp.after)
        sums.pending_total, sums.overdue_total = backlog.totals
        hist = sums.hist
        for _, buckets in hist_rows[bisect_left(hist_days, sp.start) : bisect_left(hist_days, sp.end)]:
            for bucket, n in buckets:
                hist[bucket] = hist.get(bucket, 0) + int(n or 0)
        sums.hist = {b: n for b, n in sums.hist.items() if n}
        sums.cohort_due = sum(
            n for _, due, n in due_rows[bisect_left(due_recv, sp.start) : bisect_left(due_recv, sp.end)] if due >= sp.due_from
        )
        if sp.now is None:  # due soon at the past midnight t = start of day `after`
            sums.due_stored = tuple(total(c, sp.after + timedelta(days=k), sp.after + timedelta(days=k + 1)) for k, c in enumerate(DUE))
    live = [(i, sp) for i, sp in enumerate(spans) if sp.now is not None and at_now]
    if live:
        await read_live(session, scope, live, sector, silent_after_hours, out)  # per unit, kept: app.aggregates.live_memo
    at_instant = [(i, sp) for i, sp in enumerate(spans) if sp.until is not None]
    if at_instant:
        await read_at_instant(session, scope, at_instant, sector, out)
    if sector == ALL_SECTORS:
        await _read_network_cohort(session, scope, spans, out)
    return out[""]
