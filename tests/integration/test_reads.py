"""Rankings, series, sectors, ETags and edge cases of KPI reads, against the reference."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, date, datetime, timedelta

import pytest

from app.aggregates import periods
from app.scoring import service as scoring
from app.scoring.context import Reader
from app.scoring.drivers import drivers
from app.scoring.kpis import KPI_NAMES
from app.scoring.ranking import RankingMemo, level_kpis, ranking
from app.units.service import RegistryCache
from tests import reference as ref
from tests.helpers.events import at_local, post, received, resolved
from tests.helpers.kpis import COMMUNES_46, assert_matches, post_all
from tests.streams import stream


@pytest.fixture
async def loaded(fresh_service):
    rng = random.Random(11)
    now = datetime.now(UTC)
    events = stream(rng, COMMUNES_46 + ["26506", "26526", "00070"], 300, now)
    await post_all(fresh_service, await fresh_service.key("ingest", "VN"), events, rng)
    return fresh_service, await fresh_service.key("read"), ref.dossiers(events)


class TestRankings:
    async def test_communes_of_a_province_ranked_with_shared_ranks_and_nulls_last(self, loaded):
        svc, token, ds = loaded
        body = (
            await svc.get("/api/v1/rankings", token, level="commune", parent="46", window="90d", sort="-on_time_rate", limit=5000)
        ).json()
        assert body["total"] == len([u for u in (await svc.get("/api/v1/units", token, parent="46", limit=5000)).json()["items"]])
        items = body["items"]
        ranked = [i for i in items if i["rank"] is not None]
        assert {i["unit"]["code"] for i in ranked} == set(COMMUNES_46)
        values = [i["kpis"]["on_time_rate"] for i in ranked]
        assert values == sorted(values, reverse=True)
        for a, b in zip(ranked, ranked[1:], strict=False):
            if a["kpis"]["on_time_rate"] == b["kpis"]["on_time_rate"]:
                assert a["rank"] == b["rank"] and a["unit"]["code"] < b["unit"]["code"]
            else:
                assert b["rank"] == ranked.index(b) + 1
        nulls = items[len(ranked) :]
        assert all(i["rank"] is None and i["kpis"]["on_time_rate"] is None for i in nulls)
        assert [i["unit"]["code"] for i in nulls] == sorted(i["unit"]["code"] for i in nulls)
        now = datetime.now(UTC)
        start, end = ref.window(90, now)
        for item in ranked:
            assert_matches(item["kpis"], ref.kpis(ds, {item["unit"]["code"]}, start, end, now), item["unit"]["code"])

    async def test_provinces_include_their_own_rows_and_ascending_sort(self, loaded):
        svc, token, ds = loaded
        body = (await svc.get("/api/v1/rankings", token, level="province", window="90d", sort="received", limit=100)).json()
        assert body["total"] == 34 and len(body["items"]) == 34
        by_code = {i["unit"]["code"]: i for i in body["items"]}
        now = datetime.now(UTC)
        start, end = ref.window(90, now)
        assert_matches(by_code["46"]["kpis"], ref.kpis(ds, {"46", *COMMUNES_46}, start, end, now), "46")
        received = [i["kpis"]["received"] for i in body["items"]]
        assert received == sorted(received)

    async def test_ties_share_a_rank(self, fresh_service):
        svc = fresh_service
        token = await svc.key("ingest", "VN")
        now = datetime.now(UTC) - timedelta(hours=2)
        events = [received(u, f"{u}-{i}", now, now + timedelta(days=1)) for u in ("19777", "19900") for i in range(2)]
        events += [received("19930", "x", now, now + timedelta(days=1))]
        await post(svc, token, events)
        body = (
            await svc.get("/api/v1/rankings", await svc.key("read"), level="commune", parent="46", window="7d", sort="-received")
        ).json()
        top = [(i["rank"], i["unit"]["code"]) for i in body["items"][:3]]
        assert top == [(1, "19777"), (1, "19900"), (3, "19930")]

    @pytest.mark.parametrize("params", [{"sort": "-happiness"}, {"level": "district"}, {"limit": 0}, {"window": "2d"}])
    async def test_bad_parameters_are_422(self, shared_service, params):
        r = await shared_service.get("/api/v1/rankings", await shared_service.key("read"), **params)
        assert r.status_code == 422 and r.json()["errors"]


class TestSeries:
    async def test_weekly_points_equal_the_reference(self, loaded):
        svc, token, ds = loaded
        now = datetime.now(UTC)
        today = ref.local_day(now)
        body = (
            await svc.get(
                "/api/v1/units/46/series",
                token,
                kpi="received",
                interval="week",
                **{"from": (today - timedelta(days=70)).isoformat(), "to": (today + timedelta(days=1)).isoformat()},
            )
        ).json()
        points = body["points"]
        assert len(points) >= 10
        starts = [date.fromisoformat(p["start"]) for p in points]
        assert all(s.weekday() == 0 for s in starts)
        assert all(date.fromisoformat(a["end"]) == date.fromisoformat(b["start"]) for a, b in zip(points, points[1:], strict=False))
        for p in points:
            expected = ref.kpis(ds, {"46", *COMMUNES_46}, date.fromisoformat(p["start"]), date.fromisoformat(p["end"]), now)
            assert p["value"] == expected["received"], p

    async def test_monthly_pending_and_null_rates(self, loaded):
        svc, token, ds = loaded
        now = datetime.now(UTC)
        for kpi in ("pending", "on_time_rate"):
            body = (await svc.get("/api/v1/units/19777/series", token, kpi=kpi, interval="month", **{"from": "2025-01-01"})).json()
            for p in body["points"]:
                expected = ref.kpis(ds, {"19777"}, date.fromisoformat(p["start"]), date.fromisoformat(p["end"]), now)[kpi]
                assert p["value"] == (None if expected is None else round(expected, 4) if kpi != "pending" else expected)

    @pytest.mark.parametrize("later", [0, 49], ids=["an event dated ahead", "49 h later: silent units"])
    async def test_every_kpi_of_the_week_in_progress_equals_its_kpi_answer(self, loaded, monkeypatch, later):
        # a series reads the figures at now only for the KPIs resting on them (scoring.kpis.AT_NOW_KPIS):
        # for every KPI, the point of the week in progress is the week's KPI answer, figures at now included
        svc, token, _ = loaded
        now = datetime.now(UTC)
        tag = uuid.uuid4().hex[:6]
        ahead = received("19777", f"ahead-{tag}", now + timedelta(minutes=3), now + timedelta(hours=30))  # pending 3 minutes from now
        soon = received("19777", f"soon-{tag}", now - timedelta(hours=1), now + timedelta(hours=20))  # due within 24 h
        late = received("19777", f"late-{tag}", now - timedelta(hours=1), now + timedelta(hours=later) - timedelta(minutes=1))  # late today
        await post(svc, await svc.key("ingest", "VN"), [ahead, soon, late])
        if later:
            monkeypatch.setattr(scoring, "_now", lambda: now + timedelta(hours=later))
        for code in ("46", "19777"):
            answer = (await svc.get(f"/api/v1/units/{code}/kpis", token, period="week")).json()
            assert answer["kpis"]["silent_units"] if later else answer["kpis"]["due_24h"], "the data has figures at now"
            for kpi in KPI_NAMES:
                body = (await svc.get(f"/api/v1/units/{code}/series", token, kpi=kpi, interval="week")).json()
                assert body["points"][-1]["start"] == answer["period"]["start"]
                assert body["points"][-1]["value"] == answer["kpis"][kpi], (code, kpi)

    async def test_too_many_points_is_422(self, shared_service):
        r = await shared_service.get(
            "/api/v1/units/46/series", await shared_service.key("read"), interval="day", **{"from": "2020-01-01", "to": "2026-01-01"}
        )
        assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["from"]


class TestSectors:
    async def test_split_by_sector_adds_up(self, loaded):
        svc, token, ds = loaded
        now = datetime.now(UTC)
        body = (await svc.get("/api/v1/units/46/sectors", token, window="90d")).json()
        names = [i["sector"] for i in body["items"]]
        assert None in names and "land" in names
        total = (await svc.get("/api/v1/units/46/kpis", token, window="90d")).json()["kpis"]
        for k in ("received", "resolved", "withdrawn", "pending", "orphans"):
            assert sum(i["kpis"][k] for i in body["items"]) == total[k], k
        start, end = ref.window(90, now)
        land = [d for d in ds if d.sector() == "land"]
        assert_matches(
            next(i for i in body["items"] if i["sector"] == "land")["kpis"], ref.kpis(land, {"46", *COMMUNES_46}, start, end, now), "land"
        )

    async def test_kpis_of_one_sector(self, loaded):
        svc, token, ds = loaded
        now = datetime.now(UTC)
        body = (await svc.get("/api/v1/units/VN/kpis", token, window="30d", sector="business")).json()
        start, end = ref.window(30, now)
        business = [d for d in ds if d.sector() == "business"]
        assert_matches(body["kpis"], ref.kpis(business, {d.unit for d in ds}, start, end, now), "business")
        assert body["sector"] == "business"  # the answer says what it counts
        assert (await svc.get("/api/v1/units/VN/kpis", token, window="30d", sector="null")).json()["sector"] is None
        assert "sector" not in (await svc.get("/api/v1/units/VN/kpis", token, window="30d")).json()

    async def test_the_all_sector_key_is_no_sector(self, loaded):
        svc, token, _ = loaded
        r = await svc.get("/api/v1/units/VN/kpis", token, window="30d", sector="*")
        assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["sector"], r.text


class TestEdges:
    @pytest.mark.parametrize(
        "path,params",
        [
            ("/api/v1/units", {}),
            ("/api/v1/units/12/silent", {}),
            ("/api/v1/units/12/at-risk", {"within": "48h"}),
            ("/api/v1/rankings", {"level": "province", "window": "7d", "sort": "-received"}),
        ],
    )
    @pytest.mark.parametrize("offset", ["206509875357566571919831033970688", "10000001", "-1"])
    async def test_an_offset_out_of_range_is_a_422_naming_it(self, shared_service, path, params, offset):
        r = await shared_service.get(path, await shared_service.key("read"), offset=offset, limit="764", **params)
        assert r.status_code == 422, r.text
        assert r.json()["errors"][0]["loc"] == ["offset"], r.text
        ok = await shared_service.get(path, await shared_service.key("read"), offset="10000000", **params)
        assert ok.status_code == 200 and ok.json()["items"] == [], ok.text

    async def test_empty_unit_has_null_rates_not_zero(self, shared_service):
        body = (
            await shared_service.get("/api/v1/units/00070/kpis", await shared_service.key("read"), period="year", at="2020-05-05")
        ).json()
        k = body["kpis"]
        assert k["received"] == 0 and k["online_rate"] is None and k["on_time_rate"] is None
        assert k["settlement_rate_766"] is None and k["settlement_score"] is None and k["processing_hours_p50"] is None
        assert body["change"]["on_time_rate"] is None and body["change"]["received"] == 0

    async def test_day_boundaries_in_local_time(self, fresh_service):
        svc = fresh_service
        token = await svc.key("ingest", "VN")
        day = ref.local_day(datetime.now(UTC)) - timedelta(days=3)
        due = at_local(day, 17)
        events = [
            received("19777", "early", at_local(day - timedelta(days=1), 9), due),
            resolved("19777", "early", at_local(day, 0, 0, 0) - timedelta(seconds=1)),  # 23:59:59 the day before
            received("19777", "ontime", at_local(day, 8), due),
            resolved("19777", "ontime", due),  # exactly at the deadline
            received("19777", "late", at_local(day, 8), due),
            resolved("19777", "late", due + timedelta(seconds=1)),
        ]
        await post(svc, token, events)
        read = await svc.key("read")
        k = (await svc.get("/api/v1/units/19777/kpis", read, period="day", at=day.isoformat())).json()
        assert (k["kpis"]["resolved_on_time"], k["kpis"]["resolved_late"]) == (1, 1)
        assert k["previous"]["kpis"]["resolved_early"] == 1 and k["previous"]["kpis"]["pending"] == 0
        assert k["kpis"]["pending"] == 0 and k["kpis"]["received"] == 2

    async def test_apology_keeps_the_deadline_and_extension_moves_it(self, fresh_service):
        svc = fresh_service
        token = await svc.key("ingest", "VN")
        day = ref.local_day(datetime.now(UTC)) - timedelta(days=5)
        due = at_local(day, 17)
        events = []
        for name, reason in (("apology", "apology"), ("extension", "legal_extension")):
            events += [
                received("19900", name, at_local(day, 8), due),
                {
                    "event_id": f"c-{name}",
                    "type": "due_changed",
                    "dossier_id": name,
                    "unit_code": "19900",
                    "occurred_at": at_local(day, 16),
                    "due_at": due + timedelta(days=2),
                    "reason": reason,
                },
                resolved("19900", name, due + timedelta(days=1)),
            ]
        await post(svc, token, events)
        k = (await svc.get("/api/v1/units/19900/kpis", await svc.key("read"), window="30d")).json()["kpis"]
        assert (k["resolved_late"], k["resolved_early"]) == (1, 1)
        assert k["settlement_rate_766"] == 0.5 and k["settlement_score"] == 10.0

    async def test_late_event_changes_a_past_period(self, fresh_service):
        svc = fresh_service
        token = await svc.key("ingest", "VN")
        day = ref.local_day(datetime.now(UTC)) - timedelta(days=20)
        read = await svc.key("read")
        await post(svc, token, [received("19930", "d", at_local(day, 9), at_local(day, 17))])
        before = (await svc.get("/api/v1/units/46/kpis", read, period="day", at=day.isoformat())).json()["kpis"]
        await post(svc, token, [resolved("19930", "d", at_local(day, 12))])
        after = (await svc.get("/api/v1/units/46/kpis", read, period="day", at=day.isoformat())).json()["kpis"]
        assert (before["resolved"], before["pending"]) == (0, 1)
        assert (after["resolved"], after["pending"], after["resolved_on_time"]) == (1, 0, 1)


class TestETag:
    async def test_304_until_something_changes(self, fresh_service):
        svc = fresh_service
        read = await svc.key("read")
        first = await svc.get("/api/v1/units/46/kpis", read, window="7d")
        tag = first.headers["etag"]
        again = await svc.client.get(
            "/api/v1/units/46/kpis", params={"window": "7d"}, headers={"Authorization": f"Bearer {read}", "If-None-Match": tag}
        )
        assert again.status_code == 304 and again.content == b""
        await post(
            svc,
            await svc.key("ingest", "46"),
            [received("19777", uuid.uuid4().hex, datetime.now(UTC) - timedelta(minutes=1), datetime.now(UTC) + timedelta(days=1))],
        )
        changed = await svc.client.get(
            "/api/v1/units/46/kpis", params={"window": "7d"}, headers={"Authorization": f"Bearer {read}", "If-None-Match": tag}
        )
        assert changed.status_code == 200 and changed.headers["etag"] != tag
        assert changed.json()["kpis"]["received"] == 1  # read-your-writes

    @pytest.mark.parametrize(
        "path", ["/api/v1/units", "/api/v1/units/46", "/api/v1/rankings", "/api/v1/units/46/series", "/api/v1/units/46/sectors"]
    )
    async def test_every_get_has_an_etag(self, shared_service, path):
        read = await shared_service.key("read")
        r = await shared_service.get(path, read)
        assert r.status_code == 200 and r.headers["etag"]
        again = await shared_service.client.get(path, headers={"Authorization": f"Bearer {read}", "If-None-Match": r.headers["etag"]})
        assert again.status_code == 304


class TestReadContext:
    async def test_every_read_stands_at_one_reading_of_its_clock(self, loaded):
        # every instant a computation stands at (`as_of`, the figures at now, the same point of the
        # previous period) comes from one reading of its reader's clock, at its start
        svc, _, _ = loaded
        at, readings = datetime.now(UTC), []

        def clock() -> datetime:
            readings.append(at)
            return at

        reader = Reader(svc.db, await RegistryCache(svc.db).refresh(), svc.settings.tz, clock=clock)
        week = periods.containing("week", periods.today(at, reader.tz))
        memo = RankingMemo()
        reads = {
            "kpis of a commune": lambda: scoring.unit_kpis(reader, "19777", week, None),
            "kpis of the nation": lambda: scoring.unit_kpis(reader, "VN", week, None),
            "ranking": lambda: ranking(reader, "commune", "46", week, "-on_time_rate", 100, 0),
            "ranking, kept": lambda: ranking(reader, "commune", "46", week, "-on_time_rate", 100, 0, memo=memo),
            "ranking of provinces, kept": lambda: ranking(reader, "province", None, week, "-received", 100, 0, memo=memo),
            "kpis of communes at once": lambda: level_kpis(reader, "commune", ["19777"], week, memo),
            "series": lambda: scoring.series(reader, "46", "pending", "week", None, None),
            "sectors": lambda: scoring.sectors(reader, "46", week),
            "at risk": lambda: scoring.at_risk(reader, "46", "48h", True, 100, 0),
            "silent units": lambda: scoring.silent_units(reader, "VN", 100, 0),
            "drivers": lambda: drivers(reader, "46", "on_time_rate", week),
        }
        for name, read in reads.items():
            readings.clear()
            answer = await read()
            assert len(readings) == 1, name
            got = answer["19777"] if name == "kpis of communes at once" else answer
            assert got.get("as_of", scoring.as_of(at, reader.tz)) == scoring.as_of(at, reader.tz), name
