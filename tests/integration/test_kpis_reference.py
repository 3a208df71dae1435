"""The service's KPIs equal a reference computation for random streams, shuffled and duplicated."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta

import pytest

from tests import reference as ref
from tests.helpers.kpis import COMMUNES_46, COMMUNES_79, PERIODS, assert_matches, post_all
from tests.streams import stream

UNITS = {
    "19777": {"19777"},
    "46": {"46", *COMMUNES_46},
    "79": {"79", *COMMUNES_79},
    "VN": {"VN", "46", "79", *COMMUNES_46, *COMMUNES_79},
}


class TestKpisMatchReference:
    @pytest.mark.parametrize("seed", [1, pytest.param(2, marks=pytest.mark.extra_seed)])
    async def test_random_stream(self, fresh_service, seed):
        svc = fresh_service
        rng = random.Random(seed)
        now = datetime.now(UTC)
        events = stream(rng, COMMUNES_46 + COMMUNES_79 + ["46"], 400, now)
        await post_all(svc, await svc.key("ingest", "VN"), events, rng)
        token = await svc.key("read")
        ds = ref.dossiers(events)
        past_day = (ref.local_day(now) - timedelta(days=40)).isoformat()
        for code, units in UNITS.items():
            for params in [*PERIODS, {"period": "week", "at": past_day}, {"period": "month", "at": past_day}]:
                r = await svc.get(f"/api/v1/units/{code}/kpis", token, **params)
                assert r.status_code == 200, r.text
                body = r.json()
                asked_at = datetime.now(UTC)
                for block, figures in (("current", body), ("previous", body["previous"])):
                    period = figures["period"]
                    start, end = date.fromisoformat(period["start"]), date.fromisoformat(period["end"])
                    until = period.get("until")  # the previous period of one in progress: as it stood at the same point
                    expected = ref.kpis(ds, units, start, end, asked_at, None if until is None else datetime.fromisoformat(until))
                    assert_matches(figures["kpis"], expected, f"{code} {params} {block}")
                for k, v in body["change"].items():
                    a, b = body["kpis"][k], body["previous"]["kpis"][k]
                    assert v == (None if a is None or b is None else pytest.approx(a - b, abs=1e-4)), k

    async def test_order_and_duplicates_do_not_matter(self, make_service):
        rng = random.Random(7)
        now = datetime.now(UTC)
        events = stream(rng, COMMUNES_46, 150, now)
        answers = []
        for attempt in range(2):
            async with make_service() as svc:
                order = list(events)
                random.Random(attempt).shuffle(order)
                await post_all(svc, await svc.key("ingest", "46"), order, random.Random(attempt + 10))
                token = await svc.key("read")
                answers.append(
                    [(await svc.get(f"/api/v1/units/{c}/kpis", token, window="90d")).json()["kpis"] for c in ("46", *COMMUNES_46)]
                )
        assert answers[0] == answers[1]
