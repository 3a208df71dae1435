"""Rankings with `min_count` (SPEC revision 3, section 5), on both stores: a unit whose sort KPI
rests on fewer dossiers than `min_count` ranks after the others, with `rank: null`, by code, with
the units whose KPI is null; ties share a rank; count KPIs are not affected."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from tests import reference as ref
from tests.helpers.events import post_shuffled
from tests.streams import stream

H = timedelta(hours=1)
SAMPLE = {  # the count behind each rate or average, as the reference names it
    "on_time_rate": lambda k: k["resolved_early"] + k["resolved_on_time"] + k["resolved_late"],
    "online_rate": lambda k: k["received"],
    "settlement_rate_766": lambda k: k["cohort"],
    "settlement_score": lambda k: k["cohort"],
    "processing_hours_mean": lambda k: k["timed"],
    "processing_hours_p50": lambda k: k["timed"],
}


def settled(events: list, unit: str, n: int, late: int, tag: str, now: datetime) -> None:
    """n dossiers of a unit received yesterday and resolved today, `late` of them after the deadline."""
    for i in range(n):
        recv = now - 30 * H
        due = now - 2 * H if i < late else now + 5 * H
        base = {"dossier_id": f"{tag}{i}", "unit_code": unit}
        events.append(base | {"event_id": f"{tag}{i}r", "type": "received", "occurred_at": recv, "channel": "online", "due_at": due})
        events.append(base | {"event_id": f"{tag}{i}x", "type": "resolved", "occurred_at": now - H})


async def ranking(svc, token, **params) -> list[dict]:
    r = await svc.get("/api/v1/rankings", token, level="commune", parent="46", window="7d", limit=5000, **params)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["min_count"] == int(params.get("min_count", 0))
    return body["items"]


def check_order(items: list[dict], key: str, descending: bool, sample_of, min_count: int) -> None:
    """Ranked units by value (ties by code, shared ranks 1, 2, 2, 4), then the others by code, rank null."""
    ok = [it for it in items if it["kpis"][key] is not None and sample_of(it["unit"]["code"]) >= min_count]
    rest = [it for it in items if it not in ok]
    assert items == ok + rest
    assert [it["unit"]["code"] for it in rest] == sorted(it["unit"]["code"] for it in rest)
    assert all(it["rank"] is None for it in rest)
    sign = -1 if descending else 1
    assert [(sign * it["kpis"][key], it["unit"]["code"]) for it in ok] == sorted((sign * it["kpis"][key], it["unit"]["code"]) for it in ok)
    for i, it in enumerate(ok):
        want = 1 if i == 0 else (ok[i - 1]["rank"] if it["kpis"][key] == ok[i - 1]["kpis"][key] else i + 1)
        assert it["rank"] == want, (key, it)


class TestMinCount:
    async def test_few_dossiers_do_not_outrank_many(self, fresh_service):
        svc = fresh_service
        now = datetime.now(UTC)
        events: list[dict] = []
        settled(events, "19777", 2, 0, "a", now)  # 100 % of 2
        settled(events, "19900", 12, 1, "b", now)  # 91.67 % of 12
        settled(events, "19930", 12, 0, "c", now)  # 100 % of 12
        settled(events, "19786", 10, 1, "d", now)  # 90 % of exactly 10
        settled(events, "19810", 9, 0, "e", now)  # 100 % of 9
        settled(events, "19813", 12, 0, "f", now)  # 100 % of 12: ties with 19930
        await post_shuffled(svc, events)
        token = await svc.key("read")
        items = await ranking(svc, token, sort="-on_time_rate", min_count=10)
        head = [(it["rank"], it["unit"]["code"], it["kpis"]["on_time_rate"]) for it in items[:6]]
        assert head == [
            (1, "19813", 1.0),
            (1, "19930", 1.0),
            (3, "19900", 0.9167),
            (4, "19786", 0.9),
            (None, "19768", None),  # then every other commune by code, rank null: with no dossier or few
            (None, "19777", 1.0),
        ], head
        rest = items[4:]
        assert [it["unit"]["code"] for it in rest] == sorted(it["unit"]["code"] for it in rest)
        assert "19810" in {it["unit"]["code"] for it in rest}
        # without min_count, 2 and 9 settled dossiers at 100 % rank first
        items = await ranking(svc, token, sort="-on_time_rate")
        assert [(it["rank"], it["unit"]["code"]) for it in items[:6]] == [
            (1, "19777"),
            (1, "19810"),
            (1, "19813"),
            (1, "19930"),
            (5, "19900"),
            (6, "19786"),
        ]
        # ascending, and min_count above everyone: nobody is ranked
        items = await ranking(svc, token, sort="on_time_rate", min_count=10)
        assert [it["unit"]["code"] for it in items[:4]] == ["19786", "19900", "19813", "19930"]
        items = await ranking(svc, token, sort="on_time_rate", min_count=13)
        assert all(it["rank"] is None for it in items)
        assert [it["unit"]["code"] for it in items] == sorted(it["unit"]["code"] for it in items)
        # a count KPI is its own evidence: min_count changes nothing
        assert await ranking(svc, token, sort="-received", min_count=10) == await ranking(svc, token, sort="-received")

    @pytest.mark.parametrize("min_count", [0, 3, 8])
    async def test_random_stream_every_sort(self, fresh_service, min_count):
        svc = fresh_service
        rng = random.Random(min_count)
        now = datetime.now(UTC)
        communes = ["19768", "19777", "19786", "19810", "19813", "19815", "19900", "19930"]
        events = stream(rng, communes, 250, now, days=7)
        await post_shuffled(svc, events, min_count)
        token = await svc.key("read")
        ds = ref.dossiers(events)
        asked = datetime.now(UTC)
        start, end = ref.window(7, asked)
        figures = {c: ref.kpis(ds, {c}, start, end, asked) for c in communes}
        for key, sample in SAMPLE.items():
            for descending in (True, False):
                items = await ranking(svc, token, sort=("-" if descending else "") + key, min_count=min_count)
                check_order(items, key, descending, lambda c, s=sample: s(figures[c]) if c in figures else 0, min_count)
        for key in ("received", "pending", "due_48h"):
            items = await ranking(svc, token, sort="-" + key, min_count=min_count)
            check_order(items, key, True, lambda c: 10**9, min_count)

    async def test_min_count_is_validated(self, shared_service):
        token = await shared_service.key("read")
        for bad in ("-1", "x", "1.5"):
            r = await shared_service.get("/api/v1/rankings", token, min_count=bad)
            assert r.status_code == 422 and any(e["loc"][-1] == "min_count" for e in r.json()["errors"]), r.text
