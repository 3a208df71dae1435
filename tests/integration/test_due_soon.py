"""Due soon (`due_24h`, `due_48h`, `due_72h`) and the at-risk list (SPEC revision 3, sections 4
and 5), on both stores, against the reference computation: at the exact window boundaries for t =
now and for past midnights, on random streams with deadline extensions, apologies, corrections and
out-of-order events, through KPI answers, series, sectors, rankings and the at-risk pages."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from app.scoring import service as scoring
from tests import reference as ref
from tests.helpers.events import post_shuffled
from tests.streams import stream

C46, C46B, C79 = "19777", "19900", "26506"  # two communes of Huế (46), one of Hồ Chí Minh City (79)
UNITS = {C46: {C46}, "46": {"46", C46, C46B}, "79": {"79", C79}, "VN": {"VN", "46", "79", C46, C46B, C79}}
DUE = ("due_24h", "due_48h", "due_72h")
H = timedelta(hours=1)
S = timedelta(seconds=1)


class Events:
    """Events of one test, with unique ids."""

    def __init__(self):
        self.items: list[dict] = []
        self.n = 0

    def add(self, kind: str, dossier: str, at: datetime, unit: str = C46, **kw) -> None:
        self.n += 1
        e = {"event_id": f"{kind[:3]}-{self.n:04d}", "type": kind, "dossier_id": dossier, "unit_code": unit, "occurred_at": at}
        self.items.append(e | kw)

    def received(self, dossier: str, at: datetime, due: datetime, unit: str = C46, **kw) -> None:
        self.add("received", dossier, at, unit, channel=kw.pop("channel", "online"), due_at=due, **kw)


def boundary_set(ev: Events, t: datetime, tag: str, unit: str = C46) -> None:
    """Dossiers received well before t whose deadlines sit on every boundary around t."""
    recv = t - timedelta(days=3)
    offsets = [-S, timedelta(0), 24 * H - S, 24 * H, 48 * H - S, 48 * H, 72 * H - S, 72 * H]
    for i, off in enumerate(offsets):
        ev.received(f"{tag}-b{i}", recv, t + off, unit)
    # the same deadlines, but received exactly at t (not pending: received before t is required)
    ev.received(f"{tag}-late-recv", t, t + H, unit)
    ev.received(f"{tag}-early-recv", t - S, t + H, unit)
    # ended exactly at t: still pending at t; ended a second before: not pending
    ev.received(f"{tag}-end-at-t", recv, t + 2 * H, unit)
    ev.add("resolved", f"{tag}-end-at-t", t, unit)
    ev.received(f"{tag}-end-before", recv, t + 2 * H, unit)
    ev.add("withdrawn", f"{tag}-end-before", t - S, unit)
    # pending at t, ended between t and its deadline a day later (counts in 48 h at t only)
    ev.received(f"{tag}-ends-later", recv, t + 30 * H, unit)
    ev.add("resolved", f"{tag}-ends-later", t + H, unit) if t + H < datetime.now(UTC) else None
    # a legal extension moves the deadline out of 24 h into 48 h; an apology moves nothing
    ev.received(f"{tag}-ext", recv, t + 2 * H, unit)
    ev.add("due_changed", f"{tag}-ext", recv + H, unit, due_at=t + 30 * H, reason="legal_extension")
    ev.received(f"{tag}-apo", recv, t + 60 * H, unit)
    ev.add("due_changed", f"{tag}-apo", recv + H, unit, due_at=t + 2 * H, reason="apology")
    # a corrected receipt: the later one (deadline within 24 h) wins
    ev.received(f"{tag}-corr", recv, t + 50 * H, unit)
    ev.received(f"{tag}-corr", recv + 10 * S, t + 5 * H, unit)
    # no deadline known: never counts (an orphan resolution with no receipt either)
    ev.add("resolved", f"{tag}-orphan", t - H, unit)


def expected(events: list[dict], code: str, start, end, now: datetime, until: datetime | None = None) -> dict:
    return ref.kpis(ref.dossiers(events), UNITS[code], start, end, now, until)


async def kpis(svc, token: str, code: str, **params) -> dict:
    r = await svc.get(f"/api/v1/units/{code}/kpis", token, **params)
    assert r.status_code == 200, r.text
    return r.json()


def check_block(block: dict, events: list[dict], code: str, now: datetime, where: str) -> None:
    p = block["period"]
    until = None if p.get("until") is None else datetime.fromisoformat(p["until"])  # a previous period at the same point
    want = expected(events, code, datetime.fromisoformat(p["start"]).date(), datetime.fromisoformat(p["end"]).date(), now, until)
    for k in (*DUE, "pending", "overdue"):
        assert block["kpis"][k] == want[k], f"{where} {p} {k}: {block['kpis'][k]} != {want[k]}"


@pytest.fixture
def frozen_now(monkeypatch):
    """Reads judge 'now' at a fixed instant, so that deadlines can sit exactly on its boundaries."""

    def freeze(at: datetime) -> datetime:
        monkeypatch.setattr(scoring, "_now", lambda: at)
        return at

    return freeze


class TestBoundaries:
    async def test_at_now(self, fresh_service, frozen_now):
        svc = fresh_service
        # Read four minutes after the posts, so that events dated at t itself are ahead of their
        # arrival (within the clock-skew allowance) as they would have to be in real time.
        now = (datetime.now(UTC) + 4 * timedelta(minutes=1)).replace(microsecond=0)
        ev = Events()
        boundary_set(ev, now, "n")
        boundary_set(ev, now, "p", unit=C79)
        # ends within the clock-skew allowance after now: pending at now, and not an open dossier
        ev.received("ahead-end", now - 2 * H, now + 10 * H)
        ev.add("resolved", "ahead-end", now + 30 * S)
        ev.received("ahead-recv", now + 20 * S, now + 10 * H)  # received after now: not pending
        await post_shuffled(svc, ev.items)
        frozen_now(now)
        token = await svc.key("read")
        for code in UNITS:
            body = await kpis(svc, token, code, period="day")
            check_block(body, ev.items, code, now, f"{code} now")
            check_block(body["previous"], ev.items, code, now, f"{code} previous")
        got = (await kpis(svc, token, C46, period="day"))["kpis"]
        # 24 h: b1, b2, early-recv, end-at-t, corr, ahead-end; 48 h: + b3, b4, ends-later (open), ext;
        # 72 h: + b5, b6, apo
        assert (got["due_24h"], got["due_48h"], got["due_72h"]) == (6, 10, 13), got
        for code in UNITS:
            for within, overdue in (("24h", False), ("48h", True), ("72h", False), ("1h", True), ("720h", True)):
                await check_at_risk(svc, token, ev.items, code, now, within, overdue)

    async def test_at_past_midnights(self, fresh_service):
        svc = fresh_service
        today = ref.local_day(datetime.now(UTC))
        ev = Events()
        marks = [today - timedelta(days=n) for n in (9, 5, 4)]  # t = the midnights starting these days
        for i, day in enumerate(marks):
            boundary_set(ev, ref.midnight(day), f"m{i}", unit=(C46, C46B, C79)[i])
        await post_shuffled(svc, ev.items)
        token = await svc.key("read")
        asked = datetime.now(UTC)
        for code in UNITS:
            for day in marks:
                # the day before `day` ends at the midnight starting `day`: current block; and the
                # day itself is the previous block of the day after
                body = await kpis(svc, token, code, period="day", at=(day - timedelta(days=1)).isoformat())
                check_block(body, ev.items, code, asked, f"{code} {day}")
                body = await kpis(svc, token, code, period="day", at=(day + timedelta(days=1)).isoformat())
                check_block(body["previous"], ev.items, code, asked, f"{code} {day} previous")
            for kpi in DUE:
                await check_series(svc, token, ev.items, code, kpi, today - timedelta(days=12), today + timedelta(days=1))
        # the counts are not trivially zero
        body = await kpis(svc, token, C46, period="day", at=(marks[0] - timedelta(days=1)).isoformat())
        # 24 h: b1, b2, early-recv, end-at-t, corr; 48 h: + b3, b4, ends-later, ext; 72 h: + b5, b6, apo
        assert (body["kpis"]["due_24h"], body["kpis"]["due_48h"], body["kpis"]["due_72h"]) == (5, 9, 12), body["kpis"]


async def check_series(svc, token, events, code, kpi, start, end) -> None:
    r = await svc.get(f"/api/v1/units/{code}/series", token, kpi=kpi, interval="day", **{"from": start.isoformat(), "to": end.isoformat()})
    assert r.status_code == 200, r.text
    asked = datetime.now(UTC)
    for point in r.json()["points"]:
        s, e = datetime.fromisoformat(point["start"]).date(), datetime.fromisoformat(point["end"]).date()
        assert point["value"] == expected(events, code, s, e, asked)[kpi], f"{code} {kpi} {point}"


async def check_at_risk(svc, token, events, code, now, within: str, include_overdue: bool, page: int = 7) -> list:
    """Every page of the list, concatenated, equals the reference list; each item is consistent."""
    want = ref.at_risk(ref.dossiers(events), UNITS[code], now, timedelta(hours=int(within[:-1])), include_overdue)
    got, offset, total = [], 0, None
    while True:
        params = {"within": within, "include_overdue": str(include_overdue).lower(), "limit": page, "offset": offset}
        r = await svc.get(f"/api/v1/units/{code}/at-risk", token, **params)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["unit"]["code"] == code and body["within"] == within and body["include_overdue"] is include_overdue
        assert (body["limit"], body["offset"]) == (page, offset)
        total = body["total"] if total is None else total
        assert body["total"] == total == len(want), f"{code} {within} {include_overdue}: total {body['total']} != {len(want)}"
        for it in body["items"]:
            due = datetime.fromisoformat(it["due_at"])
            assert it["due_at"].endswith("+07:00")
            assert it["overdue"] is (due < now)
            assert it["hours_left"] == round((due - now).total_seconds() / 3600, 2)
            got.append((due, it["unit"]["code"], it["dossier_id"]))
        if not body["items"]:
            break
        assert len(body["items"]) <= page
        offset += page
    assert got == want, f"{code} {within} {include_overdue}"
    return got


class TestRandomStreams:
    @pytest.mark.parametrize("seed", [3, pytest.param(4, marks=pytest.mark.extra_seed)])
    async def test_due_soon_and_at_risk_match_the_reference(self, fresh_service, frozen_now, seed):
        svc = fresh_service
        rng = random.Random(seed)
        real_now = datetime.now(UTC)
        events = stream(rng, [C46, C46B, C79, "46"], 300, real_now, days=20)
        await post_shuffled(svc, events, seed)
        now = frozen_now(datetime.now(UTC))
        token = await svc.key("read")
        today = ref.local_day(now)
        nonzero = 0
        for code in UNITS:
            for params in (
                {"window": "7d"},
                {"period": "day"},
                {"period": "week"},
                {"period": "day", "at": str(today - timedelta(days=3))},
            ):
                body = await kpis(svc, token, code, **params)
                check_block(body, events, code, now, f"{code} {params}")
                check_block(body["previous"], events, code, now, f"{code} {params} previous")
                for k in DUE:
                    assert body["change"][k] == body["kpis"][k] - body["previous"]["kpis"][k]
                nonzero += body["kpis"]["due_72h"] + body["previous"]["kpis"]["due_72h"]
            for kpi in DUE:
                await check_series(svc, token, events, code, kpi, today - timedelta(days=25), today + timedelta(days=1))
            for within, overdue in (("48h", False), ("100h", True), ("3h", False)):
                await check_at_risk(svc, token, events, code, now, within, overdue, page=13)
        assert nonzero > 0
        # sectors: the due counts of each sector's dossiers
        ds = ref.dossiers(events)
        r = await svc.get("/api/v1/units/46/sectors", token, window="7d")
        assert r.status_code == 200, r.text
        start, end = ref.window(7, now)
        for item in r.json()["items"]:
            mine = [d for d in ds if d.sector() == item["sector"]]
            want = ref.kpis(mine, UNITS["46"], start, end, now)
            assert [item["kpis"][k] for k in DUE] == [want[k] for k in DUE], item["sector"]
        # rankings by due_48h: the communes of 46, most due first, ties by code with shared ranks
        r = await svc.get("/api/v1/rankings", token, level="commune", parent="46", window="7d", sort="-due_48h", limit=5000)
        assert r.status_code == 200, r.text
        items = r.json()["items"]
        start, end = ref.window(7, now)
        values = {it["unit"]["code"]: it["kpis"]["due_48h"] for it in items}
        for code in (C46, C46B):
            assert values[code] == ref.kpis(ds, {code}, start, end, now)["due_48h"]
        assert [(-it["kpis"]["due_48h"], it["unit"]["code"]) for it in items] == sorted((-v, c) for c, v in values.items())
        for a, b in zip(items, items[1:], strict=False):
            assert (a["rank"] == b["rank"]) is (a["kpis"]["due_48h"] == b["kpis"]["due_48h"])


class TestAtRiskRequests:
    @pytest.mark.parametrize("within", ["0h", "721h", "48", "48m", "abc", "-1h", "1.5h", ""])
    async def test_a_malformed_window_is_a_422_naming_it(self, shared_service, within):
        token = await shared_service.key("read")
        r = await shared_service.get("/api/v1/units/46/at-risk", token, within=within)
        assert r.status_code == 422, r.text
        assert any(e["loc"][-1] == "within" for e in r.json()["errors"]), r.json()

    async def test_limits_unknown_unit_and_scope(self, shared_service):
        svc = shared_service
        token = await svc.key("read")
        assert (await svc.get("/api/v1/units/99999/at-risk", token)).status_code == 404
        for params in ({"limit": 0}, {"limit": 5001}, {"offset": -1}):
            r = await svc.get("/api/v1/units/46/at-risk", token, **params)
            assert r.status_code == 422 and any(e["loc"][-1] in params for e in r.json()["errors"])
        assert (await svc.get("/api/v1/units/46/at-risk", await svc.key("ingest", "46"))).status_code == 403
        assert (await svc.get("/api/v1/units/46/at-risk")).status_code == 401
        for within in ("1h", "720h"):
            r = await svc.get("/api/v1/units/VN/at-risk", token, within=within)
            assert r.status_code == 200 and r.json()["within"] == within

    async def test_an_item_carries_the_dossier(self, fresh_service, frozen_now):
        svc = fresh_service
        now = datetime.now(UTC).replace(microsecond=0)
        ev = Events()
        ev.received("X1", now - 5 * H, now + 10 * H, unit=C46B, channel="postal", sector="land", procedure_code="1.001612")
        ev.received("X2", now - 5 * H, now - H, unit=C46)  # overdue
        await post_shuffled(svc, ev.items)
        frozen_now(now)
        token = await svc.key("read")
        body = (await svc.get("/api/v1/units/46/at-risk", token, within="24h", include_overdue="true")).json()
        assert body["total"] == 2
        first, second = body["items"]
        assert first["dossier_id"] == "X2" and first["overdue"] is True and first["hours_left"] == -1.0
        assert second == {
            "unit": {"code": C46B, "name": second["unit"]["name"], "level": "commune", "kind": second["unit"]["kind"], "parent": "46"},
            "dossier_id": "X1",
            "received_at": (now - 5 * H).astimezone(ref.TZ).isoformat(),
            "due_at": (now + 10 * H).astimezone(ref.TZ).isoformat(),
            "hours_left": 10.0,
            "overdue": False,
            "channel": "postal",
            "sector": "land",
            "procedure_code": "1.001612",
        }
        body = (await svc.get("/api/v1/units/79/at-risk", token, within="24h", include_overdue="true")).json()
        assert body["total"] == 0 and body["items"] == []


class TestStorage:
    async def test_migration_backfills_the_due_counters(self, fresh_service):
        """Down to the revision before the due counters and up again: the backfill from the dossier
        table gives the rows ingest keeps (`chiso kpis verify` is clean) and the same answers."""
        from app.aggregates import rebuild
        from app.db import migrate
        from app.db.engine import Database

        svc = fresh_service
        rng = random.Random(11)
        events = stream(rng, [C46, C46B, C79, "46"], 200, datetime.now(UTC), days=12)
        await post_shuffled(svc, events)
        token = await svc.key("read")
        queries = [("VN", {"period": "day", "at": str(ref.local_day(datetime.now(UTC)) - timedelta(days=d))}) for d in range(1, 9)]
        queries += [(code, {"window": "7d"}) for code in UNITS]

        async def answers() -> list:
            out = []
            for c, q in queries:
                body = await kpis(svc, token, c, **q)
                out.append([block["kpis"][k] for block in (body, body["previous"]) for k in DUE])
            return out

        before = await answers()
        assert any(v for row in before for v in row)
        db = Database(svc.url)
        try:
            async with db.engine.begin() as conn:
                await migrate.downgrade(conn, "c3e5f7a9b1d2")
            async with db.engine.begin() as conn:
                await migrate.upgrade(conn)
        finally:
            await db.dispose()
        report = await rebuild.verify(svc.db, svc.settings)
        assert report.differences == [] and report.dossiers > 0
        assert await answers() == before

    async def test_units_whose_deadlines_enter_a_window(self, fresh_service):
        """The exporter's units to recompute within a day: a deadline entering the 24, 48 or 72 h
        window in (since, until] counts, one just outside does not."""
        from app.aggregates.reads import read_units_due_between

        svc = fresh_service
        now = datetime.now(UTC).replace(microsecond=0)
        ev = Events()
        ev.received("w24", now - H, now + 24 * H + 5 * S, unit=C46)
        ev.received("w48", now - H, now + 48 * H + 10 * S, unit=C46B)
        ev.received("w72", now - H, now + 72 * H + 10 * S, unit=C79)
        ev.received("out", now - H, now + 72 * H + 11 * S, unit="46")
        ev.received("shut", now - H, now + 72 * H + 5 * S, unit="01")
        ev.add("resolved", "shut", now - S, unit="01")  # ended: never due again
        await post_shuffled(svc, ev.items)
        async with svc.db.session() as session:
            assert await read_units_due_between(session, now, now + 10 * S) == sorted([C46, C46B, C79])
            assert await read_units_due_between(session, now + 10 * S, now + 11 * S) == ["46"]
            assert await read_units_due_between(session, now + 11 * S, now + 20 * S) == []
