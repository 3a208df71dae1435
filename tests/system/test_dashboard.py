"""The dashboard in a real headless browser against a real `chiso serve` with private reads.

Debian's Chromium (/usr/bin/chromium, installed by .ci/run) driven by Playwright for Python; no
browser is downloaded. Without Chromium or Playwright the test skips, except under CI=true where
it fails. Screenshots go to test-output/dashboard/ in the repository (git-ignored).
"""

from __future__ import annotations

import asyncio
import csv
import io
import re
import time
from pathlib import Path

import httpx
import openpyxl
import pytest

from app.db.engine import Database
from app.demo import DemoConfig, Simulator
from app.ingest.service import accept_batch
from app.keys.service import Principal
from app.settings import Settings
from app.units.seed import package_units
from app.units.service import RegistryCache
from tests.conftest import new_database_url
from tests.helpers.browser import CHROMIUM_ARGS
from tests.helpers.server import ROOT, Server, token

SHOTS = ROOT / "test-output" / "dashboard"
WINDOWS = ("7d", "30d", "90d")
MIN_COUNT = 10  # the dashboard's rankings: min_count=10
FIGURES = {  # kpi: how the dashboard shows it (see FIGURES in app/static/app.js)
    "on_time_rate": "rate",
    "settlement_score": "score",
    "received": "count",
    "resolved": "count",
    "pending": "point",
    "overdue": "point",
    "online_rate": "rate",
    "processing_hours_p50": "hours",
}


def vi_number(text: str) -> float:
    """A number as the Vietnamese dashboard shows it: '1.234', '91,2%', '32,6 giờ'."""
    m = re.search(r"[−-]?[\d.]+(,\d+)?", text)
    assert m, text
    return float(m.group(0).replace("−", "-").replace(".", "").replace(",", "."))


def raw(value: str) -> float | None:
    return None if value == "" else float(value)


def check_figures(page, answers: dict[str, dict]) -> None:
    """Every key figure and change on the page is the API's, shown in the Vietnamese format."""
    for kpi, kind in FIGURES.items():
        card = page.locator(f'article.fig[data-kpi="{kpi}"]')
        if kind == "point":
            now = card.locator(".now .val")
            assert raw(now.get_attribute("data-raw")) == answers["7d"]["kpis"][kpi], kpi
            assert vi_number(now.inner_text()) == answers["7d"]["kpis"][kpi], kpi
        for w in WINDOWS:
            a = answers[w]
            row = card.locator(f'tr[data-window="{w}"]')
            change = row.locator(".chg")
            assert raw(change.get_attribute("data-raw")) == a["change"][kpi], (kpi, w)
            if kind == "point":
                prev = row.locator("td.prev")
                assert raw(prev.get_attribute("data-raw")) == a["previous"]["kpis"][kpi], (kpi, w)
                continue
            cell = row.locator("td.val")
            value = a["kpis"][kpi]
            assert raw(cell.get_attribute("data-raw")) == value, (kpi, w)
            text = cell.inner_text()
            if value is None:
                assert text.strip().startswith("—"), (kpi, w, text)
            elif kind == "rate":
                assert text.strip().endswith("%") and abs(vi_number(text) - value * 100) <= 0.05 + 1e-9, (kpi, w, text)
            elif kind == "count":
                assert vi_number(text) == value, (kpi, w, text)
            else:
                assert abs(vi_number(text) - value) <= (0.005 if kind == "score" else 0.05) + 1e-9, (kpi, w, text)
            if a["change"][kpi] is not None and a["change"][kpi] != 0:
                cls = change.get_attribute("class")
                assert any(v in cls for v in ("better", "worse", "neutral", "same")), cls


def codes_in_ranking(page) -> list[str]:
    return page.locator("#ranking tbody tr[data-code]").evaluate_all("rows => rows.map(r => r.dataset.code)")


@pytest.fixture
async def env(templates, pg_server, tmp_path) -> dict:
    url = await new_database_url("sqlite", templates, pg_server, tmp_path)
    return {"DATABASE_URL": url, "INGEST_RATE_PER_MINUTE": "0", "PUBLIC_READ": "false"}


def load_demo_data(url: str, key: str, database_url: str) -> tuple[Simulator, int]:
    """A small back-fill of the demo's simulated stream, posted over HTTP like a source would; the
    silent sources' history is accepted as they sent it (in the past, before they stopped), through
    the real ingest service on the server's database, as `chiso demo` does."""
    communes = [u for u in package_units() if u.level == "commune"]
    settings = Settings(_env_file=None, database_url=database_url)
    sim = Simulator(communes, settings.tz, DemoConfig(days=100, per_commune_per_day=0.02, seed=766))
    sent, replays = 0, []
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=120) as client:
        for batch in sim.backfill():
            current, replayed = sim.acceptance(batch)
            replays.extend(replayed)
            r = client.post("/api/v1/events", json={"events": current})
            assert r.status_code == 202, r.text
            assert r.json()["rejected"] == 0, r.json()["items"][:3]
            sent += r.json()["accepted"]

    async def replay() -> int:
        db = Database(database_url, pool_size=1)
        try:
            registry = await RegistryCache(db).refresh()
            n = 0
            for accepted_at, events in replays:
                result = await accept_batch(db, registry, settings, Principal(None, "ingest", "VN"), events, now=accepted_at)
                assert result["accepted"] == len(events), result["items"][:3]
                n += result["accepted"]
            return n
        finally:
            await db.dispose()

    return sim, sent + asyncio.run(replay())


def test_dashboard_in_a_browser(env, chromium, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    started = time.monotonic()
    SHOTS.mkdir(parents=True, exist_ok=True)
    ingest_key, read_key = token(env, "ingest", "VN"), token(env, "read")
    with Server(env, log=tmp_path / "serve.log") as server:
        # the page and its files are served, with ETags
        home = httpx.get(server.url + "/")
        assert home.status_code == 200 and home.headers["content-type"].startswith("text/html")
        js = httpx.get(server.url + "/static/app.js")
        assert js.status_code == 200 and "javascript" in js.headers["content-type"]
        assert httpx.get(server.url + "/static/app.js", headers={"If-None-Match": js.headers["etag"]}).status_code == 304
        assert httpx.get(server.url + "/static/nothing.js").status_code == 404

        sim, sent = load_demo_data(server.url, ingest_key, env["DATABASE_URL"])
        assert sent > 5000
        api = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {read_key}"}, timeout=60)

        def get(path: str, **params) -> dict:
            r = api.get(path, params=params)
            assert r.status_code == 200, r.text
            return r.json()

        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="vi-VN", accept_downloads=True)
            page = context.new_page()
            errors: list[str] = []
            statuses: list[int] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("response", lambda r: statuses.append(r.status) if "/api/v1/" in r.url else None)
            page.set_default_timeout(30_000)

            # reads are private: the page asks for a read key, refuses a wrong one, keeps a good one
            page.goto(server.url + "/")
            dialog = page.locator("#key-dialog")
            expect(dialog).to_be_visible()
            page.fill("#key-input", "chiso_not-a-key")
            page.click("#key-save")
            expect(page.locator("#key-error")).to_be_visible()
            expect(page.locator("#key-error")).to_contain_text("không hợp lệ")
            page.fill("#key-input", read_key)
            page.click("#key-save")
            expect(dialog).to_be_hidden()
            assert page.evaluate("localStorage.getItem('chiso.readKey')") == read_key

            # national figures = the API's
            expect(page.locator("#unit-name")).to_have_text("Toàn quốc")
            expect(page.locator('article.fig[data-kpi="on_time_rate"] tr[data-window="90d"] td.val')).not_to_have_text("")
            answers = {w: get("/api/v1/units/VN/kpis", window=w) for w in WINDOWS}
            assert answers["30d"]["kpis"]["received"] > 0
            check_figures(page, answers)
            expect(page.locator("#as-of")).to_contain_text("Số liệu tính đến")

            # provinces ranked as the API ranks them (min_count=10, and the page says so), by on-time rate and by the 766 score
            ranking = get("/api/v1/rankings", level="province", window="30d", sort="-on_time_rate", limit=5000, min_count=MIN_COUNT)
            assert codes_in_ranking(page) == [it["unit"]["code"] for it in ranking["items"]]
            assert len(ranking["items"]) == 34
            expect(page.locator("#ranking-note")).to_contain_text("Chỉ xếp hạng đơn vị có ít nhất 10 hồ sơ")
            page.click('#rank-sort button[data-sort="-settlement_score"]')
            by_score = get("/api/v1/rankings", level="province", window="30d", sort="-settlement_score", limit=5000, min_count=MIN_COUNT)
            expect(page.locator("#ranking tbody tr[data-code]").first).to_have_attribute("data-code", by_score["items"][0]["unit"]["code"])
            page.wait_for_function(
                "codes => [...document.querySelectorAll('#ranking tbody tr[data-code]')].map(r => r.dataset.code).join() === codes",
                arg=",".join(it["unit"]["code"] for it in by_score["items"]),
            )
            page.click('#rank-sort button[data-sort="-on_time_rate"]')
            page.wait_for_function(
                "codes => [...document.querySelectorAll('#ranking tbody tr[data-code]')].map(r => r.dataset.code).join() === codes",
                arg=",".join(it["unit"]["code"] for it in ranking["items"]),
            )

            # downloads: the ranking shown, as XLSX and as CSV, and the sectors; the files hold the tables shown
            shown = codes_in_ranking(page)
            with page.expect_download() as got:
                page.click('.downloads[data-table="ranking"] button[data-format="xlsx"]')
            assert got.value.suggested_filename == "chiso-ranking-province-VN-30d.xlsx"
            sheet = openpyxl.load_workbook(io.BytesIO(Path(got.value.path()).read_bytes())).worksheets[0]
            rows = [list(r) for r in sheet.iter_rows(values_only=True)]
            column = rows[0].index("Đơn vị – Mã")
            assert [r[column] for r in rows[1:]] == shown
            with page.expect_download() as got:
                page.click('.downloads[data-table="ranking"] button[data-format="csv"]')
            lines = list(csv.reader(io.StringIO(Path(got.value.path()).read_bytes().decode("utf-8-sig"), newline="")))
            assert [line[column] for line in lines[1:]] == shown
            expect(page.locator("#sectors tbody tr[data-sector]").first).to_be_visible()
            with page.expect_download() as got:
                page.click('.downloads[data-table="sectors"] button[data-format="xlsx"]')
            sectors = [
                r[0]
                for r in openpyxl.load_workbook(io.BytesIO(Path(got.value.path()).read_bytes()))
                .worksheets[0]
                .iter_rows(min_row=2, values_only=True)
            ]
            on_page = page.locator("#sectors tbody tr[data-sector]").evaluate_all("rows => rows.map(r => r.dataset.sector)")
            assert sorted(s or "" for s in sectors) == sorted(on_page)
            with page.expect_download() as got:
                page.click('#reports button[data-report="week"]')
            assert got.value.suggested_filename.startswith("chiso-report-VN-")
            assert openpyxl.load_workbook(io.BytesIO(Path(got.value.path()).read_bytes())).worksheets[0].title == "Tổng hợp"

            # Vì sao thay đổi? the five parts that pulled the on-time rate down most and the five that pushed it up
            drivers = get("/api/v1/units/VN/drivers", kpi="on_time_rate", window="30d", limit=5000)
            known = [it for it in drivers["items"] if it["contribution"] is not None]
            down = [it["unit"]["code"] for it in known if it["contribution"] < 0][:5]
            up = [it["unit"]["code"] for it in reversed(known) if it["contribution"] > 0][:5]
            assert down or up
            for table, codes in (("drivers-down", down), ("drivers-up", up)):
                page.wait_for_function(
                    "([id, codes]) => [...document.querySelectorAll(`#${id} tr[data-code]`)].map(r => r.dataset.code).join() === codes",
                    arg=[table, ",".join(codes)],
                )
            contributions = page.locator("#drivers-down td.chg").evaluate_all("cells => cells.map(c => Number(c.dataset.raw))")
            assert contributions == [it["contribution"] for it in known if it["contribution"] < 0][:5]

            # printed on A4: a PDF of A4 pages, and in print no table is cut by a scrolling box
            page.emulate_media(media="print")
            clipped = page.locator(".table-wrap").evaluate_all("boxes => boxes.filter(b => b.scrollHeight > b.clientHeight + 1).length")
            assert clipped == 0
            pdf = page.pdf(prefer_css_page_size=True)
            boxes = set(re.findall(rb"/MediaBox\s*\[\s*0 0 ([\d.]+) ([\d.]+)\s*\]", pdf))
            assert boxes and all(abs(float(w) - 595.3) < 2 and abs(float(h) - 841.9) < 2 for w, h in boxes), boxes
            (SHOTS / "national-a4.pdf").write_bytes(pdf)
            page.emulate_media(media="screen")

            # the trend chart of the nation: one point per week with a value
            series = get("/api/v1/units/VN/series", kpi="on_time_rate", interval="week")
            with_value = sum(1 for p in series["points"] if p["value"] is not None)
            assert with_value >= 12
            expect(page.locator("#chart svg")).to_have_attribute("data-points", str(with_value))
            assert page.locator("#chart svg circle.pt").count() == with_value
            expect(page.locator("#sectors tbody tr[data-sector]").first).to_be_visible()
            # data quality: the communes sending most orphan events are named
            orphans = get("/api/v1/rankings", level="commune", window="30d", sort="-orphans", limit=5)
            worst = [it["unit"]["name"] for it in orphans["items"] if it["kpis"]["orphans"] > 0]
            if answers["30d"]["kpis"]["orphans"]:
                warning = page.locator('#quality li[data-warning="orphans"]')
                for name in worst:
                    expect(warning).to_contain_text(name)
            else:
                expect(page.locator('#quality li[data-warning="none"]')).to_be_visible()
            page.screenshot(path=str(SHOTS / "national.png"), full_page=True)

            # into the best province: its communes, ranked as the API ranks them
            province = ranking["items"][0]["unit"]
            page.click(f'#ranking tr[data-code="{province["code"]}"] a')
            expect(page.locator("#unit-name")).to_have_text(province["name"])
            expect(page).to_have_url(re.compile(rf"#/u/{province['code']}$"))
            by_commune = {"level": "commune", "parent": province["code"], "window": "30d", "sort": "-on_time_rate"}
            communes = get("/api/v1/rankings", **by_commune, limit=5000, min_count=MIN_COUNT)
            page.wait_for_function(
                "codes => [...document.querySelectorAll('#ranking tbody tr[data-code]')].map(r => r.dataset.code).join() === codes",
                arg=",".join(it["unit"]["code"] for it in communes["items"]),
            )
            expect(page.locator("#crumbs")).to_contain_text("Toàn quốc")
            answers = {w: get(f"/api/v1/units/{province['code']}/kpis", window=w) for w in WINDOWS}
            check_figures(page, answers)
            expect(page.locator("#chart svg")).to_be_visible()
            expect(page.locator("#chart-legend .key.ref")).to_contain_text("Toàn quốc")  # compared with the nation
            page.screenshot(path=str(SHOTS / "province.png"), full_page=True)

            # into its best commune (or its first, when none has the dossiers to be ranked)
            ranked = [it["unit"] for it in communes["items"] if it["rank"] is not None]
            commune = (ranked or [communes["items"][0]["unit"]])[0]
            page.click(f'#ranking tr[data-code="{commune["code"]}"] a')
            expect(page.locator("#unit-name")).to_have_text(commune["name"])
            expect(page.locator("#unit-extra")).to_contain_text(f"Hạng 1/{communes['total']}" if ranked else "Chưa đủ số liệu để xếp hạng")
            expect(page.locator(f'#ranking tr.current[data-code="{commune["code"]}"]')).to_be_visible()
            answers = {w: get(f"/api/v1/units/{commune['code']}/kpis", window=w) for w in WINDOWS}
            check_figures(page, answers)
            points = get(f"/api/v1/units/{commune['code']}/series", kpi="on_time_rate", interval="week")["points"]
            expect(page.locator("#chart svg")).to_have_attribute("data-points", str(sum(p["value"] is not None for p in points)))
            expect(page.locator("#chart-legend .key.ref")).to_contain_text(province["name"])
            page.screenshot(path=str(SHOTS / "commune.png"), full_page=True)

            # a province with a silent source: the banner says its figures are incomplete, the silent
            # communes are listed with how long they have been silent, as the API says
            parent_of = {u.code: u.parent_code for u in package_units()}
            silent_province = parent_of[sim.stale_units[0]]
            page.goto(f"{server.url}/#/u/{silent_province}")
            k7 = get(f"/api/v1/units/{silent_province}/kpis", window="7d")
            silent = get(f"/api/v1/units/{silent_province}/silent")
            assert k7["kpis"]["silent_units"] == silent["total"] >= 1
            assert sim.stale_units[0] in [it["unit"]["code"] for it in silent["items"]]
            banner = page.locator("#silent-banner")
            expect(banner).to_be_visible()
            expect(banner).to_have_attribute("data-silent", str(silent["total"]))
            expect(banner).to_contain_text("Số liệu có thể chưa đầy đủ")
            page.wait_for_function(
                "codes => [...document.querySelectorAll('#silent-list tr[data-code]')].map(r => r.dataset.code).join() === codes",
                arg=",".join(it["unit"]["code"] for it in silent["items"]),
            )
            first = page.locator("#silent-list tr[data-code]").first
            assert float(first.locator("td.num").get_attribute("data-raw")) > 48
            expect(first).to_contain_text("ngày")  # silent for days
            for it in silent["items"]:
                expect(page.locator('#quality li[data-warning="silent"]')).to_contain_text(it["unit"]["name"])
            page.screenshot(path=str(SHOTS / "silent.png"), full_page=True)

            # at risk: a backlogged commune's dossiers due within 72 hours or overdue, with their deadlines
            backlog = sim.at_risk_units[0]
            page.goto(f"{server.url}/#/u/{backlog}")
            risky = get(f"/api/v1/units/{backlog}/at-risk", within="72h", include_overdue="true", limit=100)
            assert risky["total"] >= 10 and any(it["overdue"] for it in risky["items"])
            page.wait_for_function(
                "ids => [...document.querySelectorAll('#risk-list tr[data-dossier]')].map(r => r.dataset.dossier).join() === ids",
                arg=",".join(it["dossier_id"] for it in risky["items"]),
            )
            expect(page.locator("#risk-list-title")).to_contain_text(str(risky["total"]))
            expect(page.locator("#risk-list tr.overdue").first).to_contain_text("quá hạn")
            k7 = get(f"/api/v1/units/{backlog}/kpis", window="7d")
            for kpi in ("due_24h", "due_48h", "due_72h"):
                card = page.locator(f'#risk-counts article[data-kpi="{kpi}"]')
                assert raw(card.locator(".now .val").get_attribute("data-raw")) == k7["kpis"][kpi], kpi
                assert raw(card.locator("td.prev").get_attribute("data-raw")) == k7["previous"]["kpis"][kpi], kpi
                assert raw(card.locator(".chg").get_attribute("data-raw")) == k7["change"][kpi], kpi
            assert k7["kpis"]["due_72h"] > 0
            page.screenshot(path=str(SHOTS / "at-risk.png"), full_page=True)

            # at risk, nationally: the counts against last week and the provinces with most due within 48 h
            page.goto(f"{server.url}/#/")
            expect(page.locator("#unit-name")).to_have_text("Toàn quốc")
            k7 = get("/api/v1/units/VN/kpis", window="7d")
            top = get("/api/v1/rankings", level="province", window="7d", sort="-due_48h", limit=10, min_count=MIN_COUNT)
            page.wait_for_function(
                "codes => [...document.querySelectorAll('#risk-list tr[data-code]')].map(r => r.dataset.code).join() === codes",
                arg=",".join(it["unit"]["code"] for it in top["items"] if it["kpis"]["due_48h"] > 0),
            )
            for kpi in ("due_24h", "due_48h", "due_72h"):
                card = page.locator(f'#risk-counts article[data-kpi="{kpi}"]')
                expect(card.locator(".now .val")).to_have_attribute("data-raw", str(k7["kpis"][kpi]))
            expect(page.locator("#silent-banner")).to_be_visible()  # the nation holds the silent communes too
            page.goto(f"{server.url}/#/u/{commune['code']}")
            expect(page.locator("#unit-name")).to_have_text(commune["name"])

            # English on demand; the choice is kept
            page.click("#lang-en")
            expect(page.locator('[data-t="figures"]')).to_have_text("Key figures")
            assert page.evaluate("document.documentElement.lang") == "en"
            rate = answers["30d"]["kpis"]["on_time_rate"]
            if rate is not None:
                shown = page.locator('article.fig[data-kpi="on_time_rate"] tr[data-window="30d"] td.val').inner_text()
                assert re.fullmatch(r"\d{1,3}\.\d%", shown.strip()), shown
            page.screenshot(path=str(SHOTS / "commune-en.png"), full_page=True)
            page.click("#lang-vi")
            expect(page.locator('[data-t="figures"]')).to_have_text("Số liệu chính")

            # at phone width: the key is not asked again, nothing overflows sideways
            phone = context.new_page()
            phone.set_viewport_size({"width": 360, "height": 740})
            phone.on("pageerror", lambda e: errors.append(str(e)))
            phone.goto(server.url + "/")
            expect(phone.locator('article.fig[data-kpi="on_time_rate"]')).to_be_visible()
            assert phone.locator("#key-dialog").is_hidden()
            expect(phone.locator("#chart svg")).to_be_visible()
            expect(phone.locator("#sectors tbody tr[data-sector]").first).to_be_visible()
            assert phone.evaluate("document.documentElement.scrollWidth") <= 360
            phone.screenshot(path=str(SHOTS / "phone.png"), full_page=True)

            # polling: unchanged answers come back as 304 (If-None-Match)
            deadline = time.monotonic() + 15
            while 304 not in statuses and time.monotonic() < deadline:
                page.wait_for_timeout(500)
            assert 304 in statuses, "the dashboard did not poll with If-None-Match"
            assert not errors, errors
            browser.close()
        api.close()
    assert time.monotonic() - started < 180
