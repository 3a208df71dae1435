"""The Python spelling of two write rules, against references that share no code with it: whole
milliseconds floored from an integer count of microseconds, and the export mark of a change."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from app.aggregates.contrib import Delta, elapsed_ms


class TestElapsedMs:
    @settings(max_examples=500, deadline=None)
    @given(
        start=st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)),
        micro=st.integers(-(10**13), 10**13),
    )
    def test_floor_of_the_exact_duration(self, start, micro):
        assert elapsed_ms(start, start + timedelta(microseconds=micro)) == micro // 1000

    def test_a_duration_of_days_to_the_millisecond_keeps_its_last_digit(self):
        start = datetime(2026, 3, 1, 8, 0, 0, 404000, tzinfo=UTC)
        # 1352543.536 s: as a float times 1000 it is 1352543535.9999998
        assert elapsed_ms(start, start + timedelta(milliseconds=1352543536)) == 1352543536

    def test_negative_durations_floor(self):
        start = datetime(2026, 3, 1, tzinfo=UTC)
        assert elapsed_ms(start, start - timedelta(microseconds=1500)) == -2
        assert elapsed_ms(start, start - timedelta(milliseconds=1)) == -1
        assert elapsed_ms(start, start - timedelta(microseconds=1)) == -1


class TestExportMark:
    """A day record is sent again whenever any of its figures changes (SPEC section 6); the due-soon
    counters of deadline day D are end-of-day figures of D - 3 .. D - 1."""

    D = date(2026, 11, 10)

    def mark(self, cols: dict[str, int]) -> date:
        delta = Delta()
        delta.day[("19777", "*", self.D)].update(cols)
        return delta.nonzero().dirty_days()["19777"]

    def test_only_due_soon_changed(self):
        assert self.mark({"due_c0": 1}) == date(2026, 11, 7)

    def test_due_soon_and_others_changed(self):
        assert self.mark({"due_c1": -1, "o_in": 1, "received": 1}) == date(2026, 11, 7)

    def test_no_due_soon_changed(self):
        assert self.mark({"received": 1, "due_c2": 0}) == self.D
