"""The shapes of the read API's answers: units, KPIs, rankings and their sort keys, series, sectors."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from app.scoring.kpis import KPI_NAMES
from tests.helpers.dossiers import COMMUNE, kpis


class TestAnswerShapes:
    UNIT_KEYS = {"code", "name", "level", "kind", "parent"}

    async def test_units(self, shared_service):
        read = await shared_service.key("read")
        listing = (await shared_service.get("/api/v1/units", read, parent="46", limit=2)).json()
        assert set(listing) == {"items", "total", "limit", "offset"} and (listing["limit"], listing["offset"]) == (2, 0)
        assert all(set(u) == self.UNIT_KEYS for u in listing["items"])
        nation = (await shared_service.get("/api/v1/units/VN", read)).json()
        assert nation == {"code": "VN", "name": nation["name"], "level": "nation", "kind": None, "parent": None, "parents": []}
        province = (await shared_service.get("/api/v1/units/46", read)).json()
        assert province["kind"] is None and province["parents"] == [{"code": "VN", "name": nation["name"], "level": "nation"}]

    async def test_units_of_an_unknown_parent_is_404(self, shared_service):
        r = await shared_service.get("/api/v1/units", await shared_service.key("read"), parent="99")
        assert r.status_code == 404

    async def test_kpi_answer(self, shared_service):
        body = await kpis(shared_service, await shared_service.key("read"), COMMUNE, window="30d")
        assert set(body) == {"unit", "period", "as_of", "kpis", "previous", "change"}
        assert set(body["unit"]) == self.UNIT_KEYS and body["unit"]["kind"] in ("xa", "phuong", "dac_khu")
        assert set(body["previous"]) == {"period", "kpis"}
        assert set(body["kpis"]) == set(body["previous"]["kpis"]) == set(body["change"])
        assert datetime.fromisoformat(body["as_of"]).utcoffset() == timedelta(hours=7)

    async def test_ranking(self, shared_service):
        body = (
            await shared_service.get(
                "/api/v1/rankings", await shared_service.key("read"), level="commune", parent="46", window="7d", sort="-received", limit=3
            )
        ).json()
        assert {"level", "parent", "sort", "period", "as_of", "total", "items"} <= set(body)
        assert (body["level"], body["parent"], body["sort"], len(body["items"])) == ("commune", "46", "-received", 3)
        assert all(set(i) == {"rank", "unit", "kpis", "change"} and set(i["unit"]) == self.UNIT_KEYS for i in body["items"])

    @pytest.mark.parametrize("sort", ["--received", "-", "received-", "+received"])
    async def test_ranking_sort_is_one_kpi_with_at_most_one_minus(self, shared_service, sort):
        r = await shared_service.get("/api/v1/rankings", await shared_service.key("read"), sort=sort)
        assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["sort"]

    async def test_every_kpi_sorts_both_ways(self, shared_service):
        read = await shared_service.key("read")
        for kpi in KPI_NAMES:
            for sort in (kpi, "-" + kpi):
                r = await shared_service.get("/api/v1/rankings", read, sort=sort, limit=1)
                assert r.status_code == 200 and r.json()["sort"] == sort, r.text

    async def test_series_every_interval_is_a_point(self, shared_service):
        body = (
            await shared_service.get(
                "/api/v1/units/46/series",
                await shared_service.key("read"),
                kpi="on_time_rate",
                interval="month",
                **{"from": "2025-01-15", "to": "2025-03-02"},
            )
        ).json()
        assert set(body) == {"unit", "kpi", "interval", "points"} and set(body["unit"]) == self.UNIT_KEYS
        assert body["points"] == [
            {"start": "2025-01-01", "end": "2025-02-01", "value": None},
            {"start": "2025-02-01", "end": "2025-03-01", "value": None},
            {"start": "2025-03-01", "end": "2025-04-01", "value": None},
        ]

    async def test_sectors(self, shared_service):
        body = (await shared_service.get("/api/v1/units/46/sectors", await shared_service.key("read"), window="7d")).json()
        assert set(body) == {"unit", "period", "as_of", "items"} and set(body["unit"]) == self.UNIT_KEYS
