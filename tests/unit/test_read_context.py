"""The scoring service's read context (app.scoring.context.Reader): its clock and its settings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from app.scoring import service as scoring
from app.scoring.context import Reader
from app.settings import Settings

AT = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)


def test_a_reader_without_a_clock_reads_the_scoring_clock_at_each_reading(monkeypatch):
    # the shared answers stamp with scoring._now: a test that stops it there stops every reader's too,
    # readers made before it was stopped (a request's, a refresher tick's) included
    reader = Reader.of(None, None, Settings(_env_file=None))
    monkeypatch.setattr(scoring, "_now", lambda: AT)
    assert reader.now() == AT
    monkeypatch.setattr(scoring, "_now", lambda: AT + timedelta(hours=1))
    assert reader.now() == AT + timedelta(hours=1)


def test_a_reader_at_an_instant_stands_there_and_leaves_its_own_clock(monkeypatch):
    monkeypatch.setattr(scoring, "_now", lambda: AT)
    reader = Reader(None, None, UTC, clock=lambda: AT + timedelta(days=1))
    stopped = reader.at(AT - timedelta(days=1))
    assert [stopped.now(), stopped.now()] == [AT - timedelta(days=1)] * 2
    assert reader.now() == AT + timedelta(days=1)
    assert (stopped.db, stopped.registry, stopped.tz, stopped.silent_after_hours) == (None, None, UTC, reader.silent_after_hours)


def test_a_reader_of_settings_has_their_time_zone_and_silent_hours():
    settings = Settings(_env_file=None, timezone="Asia/Bangkok", silent_after_hours=12)
    reader = Reader.of(None, None, settings)
    assert (reader.tz, reader.silent_after_hours) == (settings.tz, 12.0)
