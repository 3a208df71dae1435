"""The reference KPI fixtures: communes of two provinces, the periods, posting a stream and comparing answers."""

from __future__ import annotations

import random

from tests.streams import wire

COMMUNES_46 = ["19777", "19900", "19930"]  # Thành phố Huế


COMMUNES_79 = ["26506", "26526"]  # Thành phố Hồ Chí Minh


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
