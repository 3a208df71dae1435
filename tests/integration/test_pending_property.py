"""Pending and overdue at the end of a day, one rule spelled twice (app.aggregates.pending): the SQL
sums of the grouped read of many units (group_sums.read_sums, `after_columns`) and the Python walk
over one group's rows (spans.read_spans and Backlog.after; the exporter's Backlog.ends) agree at the
end of any day, for any day and total rows, own rows and rollup rows, on both stores; and both are
the reference: the all-time total less what the days after that day changed."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st
from sqlalchemy import delete, insert

from app.aggregates import periods
from app.aggregates.pending import Backlog
from app.aggregates.reads import read_spans, read_sums
from app.aggregates.sums import Scope, overdue_of, pending_of, span_for
from app.db import models as m
from app.db.engine import Database
from tests.conftest import new_database_url

LOCAL = ZoneInfo("Asia/Ho_Chi_Minh")
DAY0 = date(2026, 10, 1)  # the first day a row may have; days asked start 3 before
NOW = datetime(2026, 12, 1, tzinfo=UTC)  # after every day asked: each is judged at its end, a past midnight
COMMUNES = ("19777", "19900", "26506")  # own rows (unit_day, unit_total), by source
PROVINCES = ("46", "79")  # rollup rows (rollup_day, rollup_total), by slot
SECTORS = ("*", "land")  # the reads below ask for every sector ("*"): the land rows must not count
TABLES = (m.UnitDay, m.UnitTotal, m.RollupDay, m.RollupTotal)

counts = st.tuples(*[st.integers(-5, 30)] * 4)  # p_in, p_out, o_in, o_out: a rollup slot holds corrections too
day_rows = st.dictionaries(
    st.tuples(st.sampled_from(COMMUNES + PROVINCES), st.sampled_from(SECTORS), st.integers(0, 40), st.integers(0, 2)),
    counts,
    max_size=40,
)  # (unit, sector, day, source or slot) -> counts
total_rows = st.dictionaries(
    st.tuples(st.sampled_from(COMMUNES + PROVINCES), st.sampled_from(SECTORS), st.integers(0, 2)), counts, max_size=12
)
asked = st.lists(st.integers(-3, 44), min_size=1, max_size=8, unique=True)  # days whose end is asked, from DAY0


def stored(unit: str, split: int) -> dict:
    """The key columns of a row of `unit`: its source (own rows) or its slot (rollup rows)."""
    return {"source": ("", "node-a", "node-b")[split]} if unit in COMMUNES else {"slot": split}


def reference(days: dict, totals: dict, unit: str, end: date) -> tuple[int, int]:
    """Pending and overdue of `unit` at the end of day `end`: totals less the days after."""
    p = sum(c[0] - c[1] for (u, s, _), c in totals.items() if u == unit and s == "*")
    o = sum(c[2] - c[3] for (u, s, _), c in totals.items() if u == unit and s == "*")
    later = [c for (u, s, d, _), c in days.items() if u == unit and s == "*" and DAY0 + timedelta(days=d) > end]
    return p - sum(c[0] - c[1] for c in later), o - sum(c[2] - c[3] for c in later)


async def check(url: str, days: dict, totals: dict, ends: list[date]) -> None:
    db = Database(url, pool_size=1)
    try:
        async with db.transaction() as session:
            for table in TABLES:
                await session.execute(delete(table))
            for (unit, sector, d, split), c in days.items():
                table = m.UnitDay if unit in COMMUNES else m.RollupDay
                values = dict(zip(("p_in", "p_out", "o_in", "o_out"), c, strict=True))
                row = {"unit_code": unit, "sector": sector, "day": DAY0 + timedelta(days=d), **stored(unit, split), **values}
                await session.execute(insert(table).values(row))
            for (unit, sector, split), c in totals.items():
                table = m.UnitTotal if unit in COMMUNES else m.RollupTotal
                values = dict(zip(("p_in", "p_out", "o_in", "o_out"), c, strict=True))
                await session.execute(insert(table).values(unit_code=unit, sector=sector, **stored(unit, split), **values))
        spans = [span_for(periods.containing("day", end), NOW, LOCAL) for end in ends]
        assert all(sp.after == end + timedelta(days=1) for sp, end in zip(spans, ends, strict=True))
        async with db.session() as session:
            # SQL: one grouped read of every commune's own rows, and of every province's rollup rows
            grouped = await read_sums(session, Scope(codes=COMMUNES, level="unit"), spans, "*", live=False)
            grouped |= await read_sums(session, Scope(level="province"), spans, "*", live=False)
            for unit in COMMUNES + PROVINCES:
                scope = Scope(codes=(unit,)) if unit in COMMUNES else Scope(rollup=unit)
                walked = await read_spans(session, scope, spans, "*")  # Python: Backlog.after
                sql = grouped.get(unit)
                for k, end in enumerate(ends):
                    want = reference(days, totals, unit, end)
                    got_sql = (pending_of(sql[k]), overdue_of(sql[k])) if sql else (0, 0)
                    assert got_sql == want, ("SQL", unit, end)
                    assert (pending_of(walked[k]), overdue_of(walked[k])) == want, ("Python", unit, end)
                # the exporter's walk back over a run of days, from the rows as stored
                rows = [(DAY0 + timedelta(days=d), *c) for (u, s, d, _), c in days.items() if u == unit and s == "*"]
                backlog = Backlog(rows, (walked[0].pending_total, walked[0].overdue_total))
                first, last = min(ends), max(ends)
                run = list(backlog.ends(first, last))
                assert [d for d, _, _ in run] == [last - timedelta(days=i) for i in range((last - first).days + 1)]
                for end, pending, overdue in run:
                    assert (pending, overdue) == reference(days, totals, unit, end), ("Backlog.ends", unit, end)
    finally:
        await db.dispose()


@pytest.fixture
async def url(store, templates, pg_server, tmp_path) -> str:
    """A database of its own (every example clears the rows it writes)."""
    return await new_database_url(store, templates, pg_server, tmp_path)


class TestPendingSpellings:
    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
    @given(days=day_rows, totals=total_rows, offsets=asked)
    def test_sql_equals_python(self, url, days, totals, offsets):
        ends = [DAY0 + timedelta(days=d) for d in offsets]
        note(f"ends {ends}")
        asyncio.run(check(url, days, totals, ends))
