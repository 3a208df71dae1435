"""Outbox delivery rules: what an answer does to a batch, and the retry backoff."""

from __future__ import annotations

import random

import pytest

from app.export.outbox import PARK, PARKED, PENDING, RETRY, SEND, SENT, TRANSITIONS, Backoff, classify, next_state


class TestClassify:
    @pytest.mark.parametrize("status", [200, 201, 202, 204])
    def test_success_is_sent(self, status):
        assert classify(status) == SEND

    @pytest.mark.parametrize("status", [None, 429, 500, 502, 503, 504])
    def test_no_answer_too_many_and_server_errors_are_retried(self, status):
        assert classify(status) == RETRY

    @pytest.mark.parametrize("status", [301, 400, 401, 403, 404, 409, 413, 415, 422])
    def test_other_client_errors_are_parked(self, status):
        assert classify(status) == PARK


class TestStateTransitions:
    def test_pending_moves_by_outcome(self):
        assert next_state(PENDING, SEND) == SENT
        assert next_state(PENDING, PARK) == PARKED
        assert next_state(PENDING, RETRY) == PENDING

    @pytest.mark.parametrize("state", [SENT, PARKED])
    def test_only_pending_records_are_delivered(self, state):
        with pytest.raises(ValueError):
            next_state(state, SEND)

    def test_every_outcome_is_an_allowed_transition(self):
        for outcome in (SEND, PARK):
            assert (PENDING, next_state(PENDING, outcome)) in TRANSITIONS
        assert (PARKED, PENDING) in TRANSITIONS  # retry-parked
        assert (SENT, PENDING) not in TRANSITIONS  # a delivered record is never sent again


class TestBackoff:
    def test_grows_exponentially_within_jitter_bounds(self):
        b = Backoff(base=1.0, cap=1000.0, rng=random.Random(7))
        for n in range(8):
            delay = b.failed()
            assert 2**n / 2 <= delay <= 2**n

    def test_is_capped(self):
        b = Backoff(base=1.0, cap=30.0, rng=random.Random(1))
        delays = [b.failed() for _ in range(200)]
        assert max(delays) <= 30.0
        assert min(delays[10:]) >= 15.0

    def test_jitter_spreads_retries(self):
        delays = {Backoff(base=4.0, cap=60.0, rng=random.Random(seed), failures=3).failed() for seed in range(20)}
        assert len(delays) == 20

    def test_success_resets(self):
        b = Backoff(base=2.0, cap=60.0)
        for _ in range(5):
            b.failed()
        b.succeeded()
        assert 1.0 <= b.failed() <= 2.0

    def test_retry_after_is_honoured_up_to_the_cap(self):
        b = Backoff(base=1.0, cap=50.0)
        assert b.failed(retry_after=20) >= 20
        assert b.failed(retry_after=10_000) <= 50.0
