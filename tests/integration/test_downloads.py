"""Downloads (SPEC revision 4, section 5) on both stores: every CSV and XLSX download holds the rows of
the JSON answer it stands for, flattened by JSON path, with headers in three languages, empty cells for
`null`, at most DOWNLOAD_MAX_ROWS rows, and an ETag honoured with 304.

The rows are compared with the JSON answer read at the same time: CSV parsed with the csv module,
XLSX read back with openpyxl; the paths are followed here by a walk of the test's own.
"""

from __future__ import annotations

import csv
import io
import random
from datetime import UTC, date, datetime, timedelta

import openpyxl
import pytest

from tests.helpers.events import post_shuffled
from tests.streams import stream

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
UNITS = ["19777", "19786", "19900", "19930", "46"]  # communes of province 46, and the province's own dossiers


def at_path(item: dict, path: str):
    value = item
    for part in path.split("."):
        if value is None:
            return None
        value = value[int(part)] if isinstance(value, list) else value.get(part)
    return value


def as_csv_text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def read_csv(body: bytes) -> list[list[str]]:
    assert body.startswith(b"\xef\xbb\xbf"), "UTF-8 with a byte-order mark"
    text = body[3:].decode("utf-8")
    assert "\r\n" in text, "RFC 4180 line ends"
    return list(csv.reader(io.StringIO(text, newline="")))


def read_xlsx(body: bytes):
    book = openpyxl.load_workbook(io.BytesIO(body))
    sheet = book.worksheets[0]
    return book, sheet, [list(r) for r in sheet.iter_rows(values_only=True)]


def as_xlsx_value(value, cell):
    """What openpyxl reads back for a JSON value: dates and times as (naive local) datetimes."""
    if isinstance(value, str) and len(value) >= 10 and value[4] == "-" and value[7] == "-" and isinstance(cell, datetime):
        parsed = datetime.fromisoformat(value)
        return parsed.replace(tzinfo=None) if isinstance(parsed, datetime) else datetime.combine(parsed, datetime.min.time())
    return value


def same_cell(cell, want, path: str) -> bool:
    """Equal; but a time to Excel's precision (a millisecond), and `hours_left`, which runs with the
    clock between the JSON request and the download, within a minute."""
    if path == "hours_left":
        return abs(float(cell) - float(want)) <= 0.02
    if isinstance(want, datetime) and isinstance(cell, datetime):
        return abs(cell - want) <= timedelta(milliseconds=1)
    return cell == want


async def get(svc, token, path, **params):
    r = await svc.get(path, token, **params)
    assert r.status_code == 200, r.text
    return r


async def check_download(svc, token, path: str, items_of, **params) -> list[dict]:
    """JSON items == CSV rows == XLSX rows, by the JSON paths the `lang=key` header names."""
    answer = (await get(svc, token, path, **{**params, "limit": 5000} if "limit" not in params else params)).json()
    items = items_of(answer)
    keyed = await get(svc, token, path, format="csv", lang="key", **params)
    assert keyed.headers["content-type"].startswith("text/csv")
    assert keyed.headers["content-disposition"].startswith('attachment; filename="chiso-')
    rows = read_csv(keyed.content)
    paths, body = rows[0], rows[1:]
    assert len(body) == len(items)
    for row, item in zip(body, items, strict=True):
        want = [as_csv_text(at_path(item, p)) for p in paths]
        assert [same_cell(c, w, p) for c, w, p in zip(row, want, paths, strict=True)] == [True] * len(row), (row, want)
    book = await get(svc, token, path, format="xlsx", lang="key", **params)
    assert book.headers["content-type"] == XLSX
    _, sheet, cells = read_xlsx(book.content)
    assert [c for c in cells[0]] == paths
    assert len(cells) - 1 == len(items)
    for row, item in zip(cells[1:], items, strict=True):
        want = [as_xlsx_value(at_path(item, p), c) for p, c in zip(paths, row, strict=True)]
        assert [same_cell(c, w, p) for c, w, p in zip(row, want, paths, strict=True)] == [True] * len(row), (row, want)
    return items


# under --dist loadgroup one process builds the module's fixtures, not each
pytestmark = pytest.mark.xdist_group("downloads")


@pytest.fixture(scope="module")
async def data(shared_service):
    """A random stream (late events, corrections, orphans) over four communes of 46 and the province itself."""
    svc = shared_service
    now = datetime.now(UTC)
    rng = random.Random(23)
    events = stream(rng, UNITS, 400, now, days=60)
    for e in events:  # unique ids in the shared service
        e["event_id"] = "dl-" + e["event_id"]
        e["dossier_id"] = "dl-" + e["dossier_id"]
    await post_shuffled(svc, events)
    return svc, await svc.key("read")


class TestRowsEqualJson:
    async def test_kpis(self, data):
        svc, token = data
        answer = (await get(svc, token, "/api/v1/units/46/kpis", window="30d")).json()
        rows = read_csv((await get(svc, token, "/api/v1/units/46/kpis", window="30d", format="csv", lang="key")).content)
        assert rows[0] == ["kpi", "value", "previous", "change"]
        want = [
            [k, as_csv_text(v), as_csv_text(answer["previous"]["kpis"][k]), as_csv_text(answer["change"][k])]
            for k, v in answer["kpis"].items()
        ]
        assert rows[1:] == want
        _, sheet, cells = read_xlsx((await get(svc, token, "/api/v1/units/46/kpis", window="30d", format="xlsx")).content)
        assert [r[0] for r in cells[1:]] == list(answer["kpis"])
        assert [r[1] for r in cells[1:]] == list(answer["kpis"].values())
        rate_row = list(answer["kpis"]).index("on_time_rate") + 2
        assert "%" in sheet.cell(rate_row, 2).number_format

    @pytest.mark.slow
    async def test_ranking_of_every_commune_in_one_file(self, data):
        svc, token = data
        items = await check_download(svc, token, "/api/v1/rankings", lambda a: a["items"], level="commune", window="30d")
        assert len(items) == 3321
        assert {it["unit"]["code"] for it in items} >= set(UNITS[:4])

    async def test_ranking_of_a_province_by_period(self, data):
        svc, token = data
        today = datetime.now(UTC).date()
        await check_download(
            svc, token, "/api/v1/rankings", lambda a: a["items"], level="commune", parent="46", period="month", at=str(today)
        )

    async def test_series(self, data):
        svc, token = data
        start = datetime.now(UTC).date() - timedelta(days=70)
        items = await check_download(
            svc, token, "/api/v1/units/46/series", lambda a: a["points"], kpi="on_time_rate", interval="week", **{"from": str(start)}
        )
        assert any(p["value"] is not None for p in items)

    async def test_sectors(self, data):
        svc, token = data
        items = await check_download(svc, token, "/api/v1/units/46/sectors", lambda a: a["items"], window="90d")
        assert any(it["sector"] is None for it in items) and len(items) > 1

    async def test_at_risk(self, data):
        svc, token = data
        items = await check_download(svc, token, "/api/v1/units/46/at-risk", lambda a: a["items"], within="720h", include_overdue="true")
        assert items and any(it["overdue"] for it in items)

    async def test_at_risk_read_in_pages(self, data, monkeypatch):
        from app.api import downloads

        monkeypatch.setattr(downloads, "PAGE_ROWS", 7)  # many pages of a short list, each read as the renderer comes to it
        svc, token = data
        items = await check_download(svc, token, "/api/v1/units/46/at-risk", lambda a: a["items"], within="720h", include_overdue="true")
        assert len(items) > 3 * 7

    async def test_silent_and_units(self, data):
        svc, token = data
        await check_download(svc, token, "/api/v1/units/46/silent", lambda a: a["items"])
        items = await check_download(svc, token, "/api/v1/units", lambda a: a["items"], parent="46")
        assert len(items) > 30  # Huế's 40 communes
        await check_download(svc, token, "/api/v1/units/46", lambda a: [{k: v for k, v in a.items() if k != "parents"}])


class TestSilentDownload:
    async def test_silent_units_rows(self, fresh_service):
        from tests.helpers.feed import Feed, on_days

        svc = fresh_service
        stopped = datetime.now(UTC) - timedelta(hours=72)
        await Feed(svc).send("19777", on_days(stopped, 0, 1, 2), stopped)
        feed = Feed(svc)
        feed.n = 100
        await feed.send("19900", on_days(stopped - timedelta(hours=5), 0, 2, 4), stopped - timedelta(hours=5))
        token = await svc.key("read")
        items = await check_download(svc, token, "/api/v1/units/46/silent", lambda a: a["items"])
        assert [it["unit"]["code"] for it in items] == ["19900", "19777"]  # longest silent first
        _, _, cells = read_xlsx((await get(svc, token, "/api/v1/units/46/silent", format="xlsx", lang="en")).content)
        assert cells[0][-2:] == ["Last event accepted at", "Hours silent"] and isinstance(cells[1][-2], datetime)


class TestHeadersAndCells:
    async def test_three_languages(self, data):
        svc, token = data
        heads = {}
        for lang in ("vi", "en", "key"):
            r = await get(svc, token, "/api/v1/rankings", level="province", window="7d", format="csv", lang=lang)
            heads[lang] = read_csv(r.content)[0]
        assert "unit.code" in heads["key"] and "kpis.on_time_rate" in heads["key"]
        i = heads["key"].index("kpis.on_time_rate")
        assert heads["vi"][i] == "Tỷ lệ giải quyết đúng hạn"
        assert heads["en"][i] == "On-time rate"
        assert heads["vi"][heads["key"].index("change.on_time_rate")] == "Thay đổi – Tỷ lệ giải quyết đúng hạn"
        assert len(set(heads["vi"])) == len(heads["vi"]) == len(heads["en"]) == len(set(heads["en"]))

    async def test_null_is_an_empty_cell(self, data):
        svc, token = data
        answer = (await get(svc, token, "/api/v1/rankings", level="commune", parent="46", window="7d", limit=5000)).json()
        nulls = [(i, it) for i, it in enumerate(answer["items"]) if it["kpis"]["on_time_rate"] is None]
        assert nulls, "communes without dossiers have no on-time rate"
        r = await get(svc, token, "/api/v1/rankings", level="commune", parent="46", window="7d", format="xlsx", lang="key")
        _, sheet, cells = read_xlsx(r.content)
        col = cells[0].index("kpis.on_time_rate")
        i, _ = nulls[0]
        assert cells[i + 1][col] is None
        rows = read_csv(
            (await get(svc, token, "/api/v1/rankings", level="commune", parent="46", window="7d", format="csv", lang="key")).content
        )
        assert rows[i + 1][col] == ""

    async def test_xlsx_frozen_filtered_dates_and_about_sheet(self, data):
        svc, token = data
        r = await get(svc, token, "/api/v1/units/46/at-risk", within="720h", include_overdue="true", format="xlsx", lang="en")
        book, sheet, cells = read_xlsx(r.content)
        assert sheet.freeze_panes == "A2"
        assert sheet.auto_filter.ref and sheet.auto_filter.ref.startswith("A1:")
        due = cells[0].index("Due at")
        assert isinstance(cells[1][due], datetime)
        about = [list(row) for row in book.worksheets[1].iter_rows(values_only=True)]
        flat = [str(c) for row in about for c in row if c is not None]
        assert "Due soon" in flat and any("46 – " in c for c in flat) and any(c.startswith("/api/v1/units/46/at-risk?") for c in flat)
        assert "due_at" in flat  # each column's path, title and meaning
        assert r.headers["content-disposition"] == 'attachment; filename="chiso-at-risk-46-720h-overdue.xlsx"'

    async def test_series_dates_are_dates_and_rates_percent(self, data):
        svc, token = data
        r = await get(svc, token, "/api/v1/units/46/series", kpi="online_rate", interval="month", format="xlsx", lang="key")
        _, sheet, cells = read_xlsx(r.content)
        assert isinstance(cells[1][0], datetime) and cells[1][0].date() == date.fromisoformat(
            (await get(svc, token, "/api/v1/units/46/series", kpi="online_rate", interval="month")).json()["points"][0]["start"]
        )
        filled = [i for i, row in enumerate(cells[1:], start=2) if row[2] is not None]
        assert filled and all("%" in sheet.cell(i, 3).number_format for i in filled)

    async def test_accept_header_and_bad_format(self, data):
        svc, token = data
        r = await svc.client.get(
            "/api/v1/units/46/sectors", params={"window": "7d"}, headers={"Authorization": f"Bearer {token}", "Accept": XLSX}
        )
        assert r.status_code == 200 and r.headers["content-type"] == XLSX
        r = await svc.client.get(
            "/api/v1/units/46/sectors", params={"window": "7d"}, headers={"Authorization": f"Bearer {token}", "Accept": "text/csv"}
        )
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
        r = await svc.get("/api/v1/units/46/sectors", token, window="7d", format="pdf")
        assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["format"]
        r = await svc.get("/api/v1/units/46/sectors", token, window="7d", format="json")
        assert r.status_code == 200 and r.headers["content-type"] == "application/json"

    async def test_read_key_needed(self, data):
        svc, _ = data
        r = await svc.get("/api/v1/rankings", None, format="csv")
        assert r.status_code == 401


class TestEtag:
    async def test_304_when_unchanged_and_200_when_the_format_differs(self, data):
        svc, token = data
        first = await get(svc, token, "/api/v1/rankings", level="commune", parent="46", window="30d", format="csv")
        tag = first.headers["etag"]
        r = await svc.client.get(
            "/api/v1/rankings",
            params={"level": "commune", "parent": "46", "window": "30d", "format": "csv"},
            headers={"Authorization": f"Bearer {token}", "If-None-Match": tag},
        )
        assert r.status_code == 304 and r.content == b""
        other = await get(svc, token, "/api/v1/rankings", level="commune", parent="46", window="30d", format="xlsx")
        assert other.headers["etag"] != tag

    async def test_new_event_changes_the_tag(self, data):
        svc, token = data
        first = await get(svc, token, "/api/v1/units/19777/kpis", window="7d", format="csv")
        now = datetime.now(UTC)
        await post_shuffled(
            svc,
            [
                {
                    "event_id": "dl-new-r",
                    "type": "received",
                    "dossier_id": "dl-new",
                    "unit_code": "19777",
                    "occurred_at": now - timedelta(hours=1),
                    "channel": "online",
                    "due_at": now + timedelta(days=3),
                }
            ],
        )
        second = await get(svc, token, "/api/v1/units/19777/kpis", window="7d", format="csv")
        assert second.headers["etag"] != first.headers["etag"]


class TestRowLimit:
    async def test_more_rows_than_the_limit_is_a_422(self, make_service):
        async with make_service(download_max_rows=35) as svc:
            token = await svc.key("read")
            r = await svc.get("/api/v1/units", token, parent="46", format="xlsx")  # 40 communes
            assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["format"]
            assert (await svc.get("/api/v1/units", token, level="province", format="csv")).status_code == 200  # 34 rows
            now = datetime.now(UTC)
            due = [
                {
                    "event_id": f"lim-{i}",
                    "type": "received",
                    "dossier_id": f"lim-{i}",
                    "unit_code": "19777",
                    "occurred_at": now - timedelta(hours=2),
                    "channel": "online",
                    "due_at": now + timedelta(hours=5.5 + i),
                }
                for i in range(36)
            ]
            await post_shuffled(svc, due)
            assert (await svc.get("/api/v1/units/46/at-risk", token, within="72h", format="csv")).status_code == 422
            r = await svc.get("/api/v1/units/46/at-risk", token, within="29h", format="csv")  # 24 rows
            assert r.status_code == 200 and len(read_csv(r.content)) == 1 + 24

    def test_the_default_limit_is_100000(self):
        from app.settings import Settings

        assert Settings(_env_file=None).download_max_rows == 100_000


class TestOpenApi:
    async def test_media_types_and_parameters_are_documented(self, data):
        svc, _ = data
        spec = (await svc.client.get("/openapi.json")).json()
        for path in ("/api/v1/rankings", "/api/v1/units/{code}/kpis", "/api/v1/units/{code}/at-risk", "/api/v1/units"):
            op = spec["paths"][path]["get"]
            assert {"application/json", "text/csv", XLSX} <= set(op["responses"]["200"]["content"]), path
            assert {"format", "lang"} <= {p["name"] for p in op["parameters"]}, path
        assert "text/csv" not in spec["paths"]["/api/v1/export/snapshots"]["get"]["responses"]["200"]["content"]
