"""The period report (SPEC revision 4, section 5) on both stores: each part equals the answer it
summarises, read through the API at the same time; the workbook holds the same rows, one sheet per
part; `chiso report --all-provinces` writes the nation's and the 34 provinces' workbooks."""

from __future__ import annotations

import io
import os
import random
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import openpyxl
import pytest

from tests import reference as ref
from tests.conftest import new_database_url, start_service
from tests.helpers.events import post_shuffled
from tests.streams import stream

UNITS = ["46", "19777", "19900", "19930", "19786", "79", "26506", "26526"]
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


# under --dist loadgroup one process builds the module's fixtures, not each
pytestmark = pytest.mark.xdist_group("report")


@pytest.fixture(scope="module")
async def fed(store, templates, pg_server, tmp_path_factory):
    url = await new_database_url(store, templates, pg_server, tmp_path_factory.mktemp("report"))
    async for svc in start_service(url):
        now = datetime.now(UTC)
        events = [e for e in stream(random.Random(2327), UNITS, 900, now, days=40) if e["occurred_at"] < now]
        await post_shuffled(svc, events, seed=7)
        yield svc, await svc.key("read"), now


def without_as_of(answer: dict) -> dict:
    return {k: v for k, v in answer.items() if k != "as_of"}


async def get(svc, token, path, **params) -> dict:
    r = await svc.get(path, token, **params)
    assert r.status_code == 200, r.text
    return r.json()


class TestPartsEqualTheirAnswers:
    @pytest.mark.parametrize("unit", ["46", "VN"])
    async def test_every_part(self, fed, unit):
        svc, token, now = fed
        week_ago = str(ref.local_day(now) - timedelta(days=7))
        report = await get(svc, token, f"/api/v1/units/{unit}/report", period="week", at=week_ago)
        q = {"period": "week", "at": week_ago}
        assert without_as_of(report["summary"]) == without_as_of(await get(svc, token, f"/api/v1/units/{unit}/kpis", **q))
        level, parent = ("commune", {"parent": unit}) if unit != "VN" else ("province", {})
        ranking = await get(svc, token, "/api/v1/rankings", level=level, sort="-on_time_rate", min_count=10, limit=5000, **parent, **q)
        assert [{k: v for k, v in it.items() if k != "previous_rank"} for it in report["ranking"]["items"]] == ranking["items"]
        prev_at = report["previous"]["period"]["start"]
        before = await get(
            svc, token, "/api/v1/rankings", level=level, sort="-on_time_rate", min_count=10, limit=5000, period="week", at=prev_at, **parent
        )
        prev_rank = {it["unit"]["code"]: it["rank"] for it in before["items"]}
        assert [it["previous_rank"] for it in report["ranking"]["items"]] == [prev_rank[it["unit"]["code"]] for it in ranking["items"]]
        assert any(it["rank"] is not None for it in report["ranking"]["items"]) or unit == "VN"
        for kpi in ("on_time_rate", "online_rate", "overdue"):
            drivers = await get(svc, token, f"/api/v1/units/{unit}/drivers", kpi=kpi, limit=5000, **q)
            assert without_as_of(report["drivers"][kpi]) == without_as_of(drivers)
        today = await get(svc, token, f"/api/v1/units/{unit}/kpis", window="1d")
        due = report["due_soon"]
        assert [due[k] for k in ("due_24h", "due_48h", "due_72h")] == [today["kpis"][k] for k in ("due_24h", "due_48h", "due_72h")]
        most = await get(svc, token, "/api/v1/rankings", level=level, window="1d", sort="-due_48h", limit=10, **parent)
        assert due["units"]["items"] == [it for it in most["items"] if it["kpis"]["due_48h"]]
        assert without_as_of(report["silent"]) == without_as_of(await get(svc, token, f"/api/v1/units/{unit}/silent", limit=5000))
        assert without_as_of(report["sectors"]) == without_as_of(await get(svc, token, f"/api/v1/units/{unit}/sectors", **q))

    async def test_default_is_the_last_whole_period(self, fed):
        svc, token, now = fed
        today = ref.local_day(now)
        for kind in ("week", "month", "quarter", "year"):
            p = (await get(svc, token, "/api/v1/units/46/report", period=kind))["period"]
            assert p["kind"] == kind and p["end"] <= str(today)
            following = (await get(svc, token, "/api/v1/units/46/kpis", period=kind, at=p["end"]))["period"]
            assert following["start"] == p["end"] and following["end"] > str(today), "the next one is in progress"
        week = (await get(svc, token, "/api/v1/units/46/report"))["period"]
        monday = today - timedelta(days=today.weekday())
        assert (week["start"], week["end"]) == (str(monday - timedelta(days=7)), str(monday))

    async def test_a_commune_has_no_ranking(self, fed):
        svc, token, _ = fed
        report = await get(svc, token, "/api/v1/units/19777/report", period="month")
        assert report["ranking"] is None and report["due_soon"]["units"] is None
        assert [it["unit"]["code"] for it in report["drivers"]["overdue"]["items"]] == ["19777"]

    async def test_refusals(self, fed):
        svc, token, _ = fed
        assert (await svc.get("/api/v1/units/46/report", token, period="day")).status_code == 422
        assert (await svc.get("/api/v1/units/46/report", token, format="csv")).status_code == 422
        assert (await svc.get("/api/v1/units/99999/report", token)).status_code == 404
        assert (await svc.get("/api/v1/units/46/report", None)).status_code == 401


class TestWorkbook:
    async def test_sheets_hold_the_parts(self, fed):
        svc, token, now = fed
        week_ago = str(ref.local_day(now) - timedelta(days=7))
        report = await get(svc, token, "/api/v1/units/46/report", period="week", at=week_ago)
        r = await svc.get("/api/v1/units/46/report", token, period="week", at=week_ago, format="xlsx")
        assert r.status_code == 200 and r.headers["content-type"] == XLSX
        label = report["period"]["label"]
        assert r.headers["content-disposition"] == f'attachment; filename="chiso-report-46-{label}.xlsx"'
        book = openpyxl.load_workbook(io.BytesIO(r.content))
        sheets = {ws.title: [list(row) for row in ws.iter_rows(values_only=True)] for ws in book.worksheets}
        names = list(sheets)
        assert names[:2] == ["Tổng hợp", "Xếp hạng"] and names[-1] == "about"
        assert "Vì sao thay đổi – on_time_rate" in names and "Sắp đến hạn" in names and "Theo lĩnh vực" in names
        summary = sheets["Tổng hợp"]
        assert [row[1] for row in summary[1:]] == list(report["summary"]["kpis"].values())
        assert summary[1 + list(report["summary"]["kpis"]).index("on_time_rate")][0] == "Tỷ lệ giải quyết đúng hạn"
        ranking = sheets["Xếp hạng"]
        assert ranking[0][:4] == ["Hạng", "Hạng kỳ trước", "Đơn vị – Mã", "Đơn vị – Tên"]
        assert [(row[0], row[1], row[2]) for row in ranking[1:]] == [
            (it["rank"], it["previous_rank"], it["unit"]["code"]) for it in report["ranking"]["items"]
        ]
        drivers = sheets["Vì sao thay đổi – on_time_rate"]
        assert [row[-1] for row in drivers[1:]] == [it["contribution"] for it in report["drivers"]["on_time_rate"]["items"]]
        assert [row[0] for row in sheets["Theo lĩnh vực"][1:]] == [it["sector"] for it in report["sectors"]["items"]]
        due = sheets["Sắp đến hạn"]
        assert due[1][:1] + due[1][2:] == [
            "46",
            report["due_soon"]["due_24h"],
            report["due_soon"]["due_48h"],
            report["due_soon"]["due_72h"],
        ]
        assert any("46 – " in str(c) for row in sheets["about"] for c in row)

    async def test_english(self, fed):
        svc, token, _ = fed
        r = await svc.get("/api/v1/units/VN/report", token, period="month", format="xlsx", lang="en")
        book = openpyxl.load_workbook(io.BytesIO(r.content))
        assert [ws.title for ws in book.worksheets][:2] == ["Summary", "Ranking"]
        assert book.worksheets[1].cell(1, 1).value == "Rank"


@pytest.mark.slow
class TestCommand:
    async def test_all_provinces_writes_35_workbooks(self, fed, tmp_path):
        svc, _, _ = fed
        env = {**os.environ, "DATABASE_URL": svc.url, "DB_POOL_SIZE": "2"}
        out = tmp_path / "reports"
        cmd = [sys.executable, "-m", "app.cli", "report", "VN", "--period", "week", "--all-provinces", "--out", str(out)]
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]
        files = sorted(p.name for p in out.iterdir())
        assert len(files) == 35 and all(f.startswith("chiso-report-") and f.endswith(".xlsx") for f in files)
        assert any(f.startswith("chiso-report-VN-") for f in files) and any(f.startswith("chiso-report-46-") for f in files)
        hue = next(out.glob("chiso-report-46-*.xlsx"))
        book = openpyxl.load_workbook(hue)
        assert book.worksheets[0].title == "Tổng hợp" and book.worksheets[1].max_row == 1 + 40  # Huế's 40 communes
