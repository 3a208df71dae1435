"""Pending and overdue at the end of a day: one rule, two spellings, side by side.

A day row counts the dossiers that became pending on its local day (p_in) and those that stopped
being pending (p_out), and likewise overdue (o_in, o_out: counters.TOTALS); a total row counts the
same over all time. Pending at the local midnight starting day `after` (at the end of the day
before) is the all-time total less what the days from `after` on changed:

    pending = sum(p_in - p_out) over the total rows - sum(p_in - p_out) over the day rows >= after

and overdue likewise with o_in and o_out. The reads keep the two terms apart (sums.Sums
`pending_total`, `pending_after`), and sums.pending_of subtracts, adding the corrections within a
day when t is not a midnight.

- Python, `Backlog`: one group's day rows read once, asked at any number of days (the spans of a
  series, aggregates.spans; every day of a unit's run, export.producer).
- SQL, `after_columns`: summed within a grouped read of many units' day rows (aggregates.group_sums),
  which returns sums, never rows. `total_columns` is the all-time term, for every read.

tests/integration/test_pending_property.py holds the two spellings equal on both stores.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Iterator
from datetime import date, timedelta

from sqlalchemy import case, func


class Backlog:
    """Pending and overdue of one group at the local midnights of its days, from its day rows
    (`rows`: (day, p_in, p_out, o_in, o_out), in any order, a day in one row or several; every row
    from the earliest day asked on) and its all-time `totals` (pending, overdue)."""

    __slots__ = ("_days", "_after", "totals")

    def __init__(self, rows: Iterable[tuple[date, int, int, int, int]], totals: tuple[int, int]):
        rows = sorted(rows)
        self._days = [r[0] for r in rows]
        self._after = [(0, 0)] * (len(rows) + 1)  # [i]: the change over rows[i:], summed from the last day back
        p, o = 0, 0
        for i in range(len(rows) - 1, -1, -1):
            _, p_in, p_out, o_in, o_out = rows[i]
            p, o = p + p_in - p_out, o + o_in - o_out
            self._after[i] = (p, o)
        self.totals = totals

    def after(self, day: date) -> tuple[int, int]:
        """What the days from `day` on changed pending and overdue by (Sums.pending_after, overdue_after)."""
        return self._after[bisect_left(self._days, day)]

    def ends(self, first: date, last: date) -> Iterator[tuple[date, int, int]]:
        """(day, pending, overdue) at the end of each day from `last` back to `first`: a run of days
        walked back a step a day, not searched for each."""
        one = timedelta(days=1)
        i = bisect_left(self._days, last + one)
        p_total, o_total = self.totals
        day = last
        while day >= first:
            p, o = self._after[i]
            yield day, p_total - p, o_total - o
            while i and self._days[i - 1] >= day:  # the rows of `day` lie after the day before
                i -= 1
            day -= one


def after_columns(day_t, after: date) -> list:
    """The SQL spelling of Backlog.after: what the day rows from `after` on changed pending and
    overdue by, as two sums of a grouped read of `day_t` (unit_day or rollup_day; a zero counter
    is stored as NULL, so each side of a difference is coalesced)."""
    on = day_t.day >= after
    z = lambda c: func.coalesce(c, 0)  # noqa: E731
    return [
        func.sum(case((on, z(day_t.p_in) - z(day_t.p_out)), else_=0)),
        func.sum(case((on, z(day_t.o_in) - z(day_t.o_out)), else_=0)),
    ]


def total_columns(total_t) -> list:
    """Pending and overdue over all time, as two sums of a read of `total_t` (unit_total or rollup_total)."""
    return [func.sum(total_t.p_in - total_t.p_out), func.sum(total_t.o_in - total_t.o_out)]
