"""KPI answers on both stores: rounding (the score from the unrounded rate, hours to two decimals),
nulls for empty cohorts, and the previous period of calendar periods and windows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests import reference as ref
from tests.helpers.dossiers import COMMUNE, kpis, past_day
from tests.helpers.events import at_local, post, received, resolved


class TestRoundingAndNulls:
    async def test_score_from_the_unrounded_rate_and_null_for_an_empty_cohort(self, svc, tokens):
        ingest, read = tokens
        day = past_day(12)
        due = at_local(day, 17)
        events = [received(COMMUNE, f"c{i}", at_local(day, 8), due) for i in range(3)]
        events += [
            resolved(COMMUNE, "c0", at_local(day, 9)),
            resolved(COMMUNE, "c1", at_local(day, 10)),
            resolved(COMMUNE, "c2", due + timedelta(hours=1)),
        ]
        await post(svc, ingest, events)
        k = (await kpis(svc, read, period="day", at=day.isoformat()))["kpis"]
        assert k["settlement_rate_766"] == 0.6667 and k["settlement_score"] == 13.33  # 20 * 2/3, not 20 * 0.6667
        assert k["on_time_rate"] == 0.6667 and k["overdue_766"] == 1
        # the next day resolves nothing received that day: its cohort is empty, the score null
        nxt = (await kpis(svc, read, period="day", at=(day + timedelta(days=1)).isoformat()))["kpis"]
        assert nxt["settlement_rate_766"] is None and nxt["settlement_score"] is None and nxt["overdue_766"] == 0

    async def test_hours_to_two_decimals(self, svc, tokens):
        ingest, read = tokens
        day = past_day(9)
        recv = at_local(day, 8)
        await post(
            svc, ingest, [received(COMMUNE, "h", recv, at_local(day, 20)), resolved(COMMUNE, "h", recv + timedelta(hours=1, seconds=30))]
        )
        k = (await kpis(svc, read, period="day", at=day.isoformat()))["kpis"]
        assert k["processing_hours_mean"] == 1.01  # 1.00833 h


class TestPreviousPeriods:
    @pytest.mark.parametrize(
        "params,current,previous",
        [
            ({"period": "day", "at": "2025-03-01"}, ("2025-03-01", "2025-03-02"), ("2025-02-28", "2025-03-01")),
            ({"period": "week", "at": "2026-01-01"}, ("2025-12-29", "2026-01-05"), ("2025-12-22", "2025-12-29")),
            ({"period": "month", "at": "2025-03-31"}, ("2025-03-01", "2025-04-01"), ("2025-02-01", "2025-03-01")),
            ({"period": "quarter", "at": "2025-01-15"}, ("2025-01-01", "2025-04-01"), ("2024-10-01", "2025-01-01")),
            ({"period": "year", "at": "2025-06-01"}, ("2025-01-01", "2026-01-01"), ("2024-01-01", "2025-01-01")),
        ],
    )
    async def test_calendar_periods(self, shared_service, params, current, previous):
        body = await kpis(shared_service, await shared_service.key("read"), "46", **params)
        assert (body["period"]["start"], body["period"]["end"]) == current
        assert (body["previous"]["period"]["start"], body["previous"]["period"]["end"]) == previous
        assert body["previous"]["period"]["kind"] == params["period"]

    async def test_windows_have_the_same_length_just_before(self, shared_service):
        body = await kpis(shared_service, await shared_service.key("read"), "46", window="7d")
        today = ref.local_day(datetime.now(UTC))
        assert body["period"] == {
            "kind": "window",
            "window": "7d",
            "start": (today - timedelta(days=6)).isoformat(),
            "end": (today + timedelta(days=1)).isoformat(),
        }
        # a window is always in progress: its previous one stands at the same point, 7 days before now
        until = (datetime.fromisoformat(body["as_of"]) - timedelta(days=7)).isoformat()
        assert body["previous"]["period"] == {
            "kind": "window",
            "window": "7d",
            "start": (today - timedelta(days=13)).isoformat(),
            "end": (today - timedelta(days=6)).isoformat(),
            "until": until,
        }
