"""The service's KPIs equal a reference computation for random streams, shuffled and duplicated."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta

import pytest

from tests import reference as ref
from tests.streams import stream, wire

COMMUNES_46 = ["19777", "19900", "19930"]  # Thành phố Huế
COMMUNES_79 = ["26506", "26526"]  # Thành phố Hồ Chí Minh
UNITS = {
    "19777": {"19777"},
    "46": {"46", *COMMUNES_46},
    "79": {"79", *COMMUNES_79},
    "VN": {"VN", "46", "79", *COMMUNES_46, *COMMUNES_79},
}


def assert_matches(answer: dict, expected: dict, where: str) -> None:
    exact = [
        "received",
        "received_online",
        "resolved",
        "resolved_early",
        "resolved_on_time",
        "resolved_late",
        "resolved_unclassified",
        "withdrawn",
        "pending",
        "overdue",
        "orphans",
        "overdue_766",
        "due_24h",
        "due_48h",
        "due_72h",
    ]
    for k in exact:
        assert answer[k] == expected[k], f"{where}: {k} {answer[k]} != {expected[k]}"
    for k in ("online_rate", "on_time_rate", "settlement_rate_766"):
        want = None if expected[k] is None else round(expected[k], 4)
        assert answer[k] == want, f"{where}: {k} {answer[k]} != {want}"
    rate = expected["settlement_rate_766"]
    assert answer["settlement_score"] == (None if rate is None else round(20 * rate, 2)), where
    mean = expected["processing_hours_mean"]
    if mean is None:
        assert answer["processing_hours_mean"] is None
    else:
        assert abs(answer["processing_hours_mean"] - mean) <= 0.0051, f"{where}: mean"
    for k in ("processing_hours_p50", "processing_hours_p90"):
        if expected[k] is None:
            assert answer[k] is None, f"{where}: {k}"
        else:
            tolerance = max(0.05 * abs(expected[k]), 0.02)  # histogram estimate, 2-decimal rounding
            assert abs(answer[k] - expected[k]) <= tolerance, f"{where}: {k} {answer[k]} vs {expected[k]}"


async def post_all(svc, token: str, events: list[dict], rng: random.Random) -> None:
    wire_events = [wire(e) for e in events]
    dupes = rng.sample(wire_events, k=len(wire_events) // 10)
    batch = wire_events + dupes
    rng.shuffle(batch)
    for i in range(0, len(batch), 700):
        r = await svc.post(batch[i : i + 700], token)
        assert r.status_code == 202, r.text
        assert r.json()["rejected"] == 0, r.json()["items"][:3]


PERIODS = [
    {"window": "1d"},
    {"window": "7d"},
    {"window": "30d"},
    {"window": "90d"},
    {"period": "day"},
    {"period": "week"},
    {"period": "month"},
    {"period": "quarter"},
    {"period": "year"},
]


class TestKpisMatchReference:
    @pytest.mark.parametrize("seed", [1, 2])
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
                    expected = ref.kpis(ds, units, start, end, asked_at)
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
