"""Local-time periods and the processing-time histogram."""

from __future__ import annotations

import math
import random
from datetime import date

import pytest

from app.aggregates import histogram, periods
from app.db import types


class TestPeriods:
    @pytest.mark.parametrize(
        "kind,at,label,start,end",
        [
            ("day", date(2025, 9, 30), "2025-09-30", date(2025, 9, 30), date(2025, 10, 1)),
            ("week", date(2025, 9, 30), "2025-W40", date(2025, 9, 29), date(2025, 10, 6)),
            ("week", date(2026, 1, 1), "2026-W01", date(2025, 12, 29), date(2026, 1, 5)),
            ("week", date(2027, 1, 1), "2026-W53", date(2026, 12, 28), date(2027, 1, 4)),
            ("month", date(2025, 12, 31), "2025-12", date(2025, 12, 1), date(2026, 1, 1)),
            ("quarter", date(2025, 9, 30), "2025-Q3", date(2025, 7, 1), date(2025, 10, 1)),
            ("quarter", date(2025, 10, 1), "2025-Q4", date(2025, 10, 1), date(2026, 1, 1)),
            ("year", date(2025, 6, 1), "2025", date(2025, 1, 1), date(2026, 1, 1)),
        ],
    )
    def test_containing(self, kind, at, label, start, end):
        p = periods.containing(kind, at)
        assert (p.name, p.start, p.end) == (label, start, end)

    def test_previous_calendar_periods(self):
        assert periods.previous(periods.containing("month", date(2025, 3, 31))).name == "2025-02"
        assert periods.previous(periods.containing("quarter", date(2025, 1, 5))).name == "2024-Q4"
        assert periods.previous(periods.containing("week", date(2026, 1, 1))).name == "2025-W52"

    def test_windows_end_today_and_previous_has_same_length(self):
        w = periods.window("30d", date(2025, 9, 30))
        assert (w.start, w.end) == (date(2025, 9, 1), date(2025, 10, 1))
        prev = periods.previous(w)
        assert (prev.start, prev.end) == (date(2025, 8, 2), date(2025, 9, 1))

    def test_intervals_are_widened_to_whole_ones(self):
        weeks = periods.intervals("week", date(2025, 9, 30), date(2025, 10, 7))
        assert [w.name for w in weeks] == ["2025-W40", "2025-W41"]


class TestHistogram:
    def test_bucket_bounds(self):
        for ms in (0, 59_999, 60_000, 66_000, 10**9):
            i = histogram.bucket_of(ms)
            assert histogram.lower_ms(i) <= ms < max(histogram.lower_ms(i + 1), 60_000)

    def test_percentiles_within_five_percent(self):
        rng = random.Random(3)
        values = [rng.lognormvariate(11, 1.5) + 60_000 for _ in range(2000)]
        counts: dict[int, int] = {}
        for v in values:
            counts[histogram.bucket_of(int(v))] = counts.get(histogram.bucket_of(int(v)), 0) + 1
        ordered = sorted(values)
        for p in (0.5, 0.9, 0.99):
            exact = ordered[math.ceil(p * len(values)) - 1]
            assert abs(histogram.percentile_ms(counts, p) - exact) / exact <= 0.05

    def test_empty_is_none(self):
        assert histogram.percentile_ms({}, 0.5) is None


class TestPackedHistogram:
    """The stored form of a day's bucket counts (app.db.types.hist_pack): one list per row."""

    def test_pack_trims_zeros_and_keeps_inner_ones(self):
        assert types.hist_pack({}) == []
        assert types.hist_pack({5: 0}) == []
        assert types.hist_pack({7: 2, 4: 1, 9: 0, 3: 0}) == [4, 1, 0, 0, 2]
        assert types.hist_unpack([4, 1, 0, 0, 2]) == {4: 1, 7: 2}
        assert types.hist_unpack([]) == {} and types.hist_unpack(None) == {}

    def test_add_is_the_sum_of_the_counts_and_cancels_to_empty(self):
        rng = random.Random(5)
        for _ in range(300):
            a = {rng.randrange(0, 160): rng.randint(-3, 3) for _ in range(rng.randrange(0, 6))}
            b = {rng.randrange(0, 160): rng.randint(-3, 3) for _ in range(rng.randrange(0, 6))}
            want = {k: a.get(k, 0) + b.get(k, 0) for k in a.keys() | b.keys()}
            got = types.hist_add(types.hist_encode(a), types.hist_encode(b))
            assert got == types.hist_encode(want)
            assert types.hist_decode(got) == {k: v for k, v in want.items() if v}
        assert types.hist_add("3,2", "3,-2") == ""
        assert types.hist_add("3,2,1", "4,-1") == "3,2"
        assert types.hist_add("3,2", None) == "3,2" and types.hist_add(None, "5,1") == "5,1"

    def test_stored_as_text(self):
        assert types.hist_encode({7: 2, 4: 1, 9: 0}) == "4,1,0,0,2" and types.hist_encode({5: 0}) == ""
        assert types.hist_decode("4,1,0,0,2") == {4: 1, 7: 2}
        assert types.hist_decode("") == {} and types.hist_decode(None) == {}
        assert types.hist_decode("12,-3") == {12: -3}
