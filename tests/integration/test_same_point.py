"""Compared at the same point (SPEC revision 4, section 4), on both stores: while a period is in
progress its previous figures are those of the previous period as it stood at t = previous start +
(now - start) — flows up to t, pending, overdue and due soon at t, the INDEX-766 cohort received
before t and judged at t — and `previous.period.until` says t; rankings' `change`, the drivers and
the report follow it; a period that is over compares whole with whole.

'now' is frozen (scoring._now) at chosen local times of a past day, so no test depends on the time
of day it runs at; events sit right at t and on both sides of it."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta

import pytest

from app.scoring import service as scoring
from tests import reference as ref
from tests.helpers.events import post_shuffled
from tests.helpers.kpis import COMMUNES_46, assert_matches
from tests.streams import stream

TZ = ref.TZ
S, H = timedelta(seconds=1), timedelta(hours=1)
UNITS = {"19777": {"19777"}, "46": {"46", *COMMUNES_46}, "VN": {"VN", "46", *COMMUNES_46}}
OFFSETS = {  # local times of day 'now' is frozen at (t lies at the same time of an earlier day)
    "midnight": timedelta(0),
    "second-past-midnight": S,
    "morning": timedelta(hours=10, minutes=54, seconds=17),
    "last-second": timedelta(hours=23, minutes=59, seconds=59),
}


def frozen_now(offset: timedelta) -> datetime:
    """A local time of day two days ago (so every event of the test lies before the real now)."""
    return ref.midnight(ref.local_day(datetime.now(UTC)) - timedelta(days=2)) + offset


def around(events: list, t: datetime, tag: str, unit: str = "19777") -> None:
    """Dossiers with their receipt, end or deadline right at t and on both sides of it."""
    n = 0

    def dossier(recv: datetime | None, due: datetime | None, end: tuple[str, datetime] | None = None, **kw) -> None:
        nonlocal n
        n += 1
        base = {"dossier_id": f"{tag}-{n}", "unit_code": unit}
        if recv is not None:
            events.append(
                base
                | {
                    "event_id": f"{tag}-{n}-r",
                    "type": "received",
                    "occurred_at": recv,
                    "channel": kw.get("channel", "online"),
                    "due_at": due,
                }
            )
        if end is not None:
            events.append(base | {"event_id": f"{tag}-{n}-e", "type": end[0], "occurred_at": end[1]})

    for off in (-H, -S, timedelta(0), S, H):
        dossier(t + off, t + 5 * H)  # received around t: counts before t only
        dossier(t - 30 * H, t + 3 * H, ("resolved", t + off))  # resolved around t: pending at t from t on
        dossier(t - 30 * H, t + off, ("resolved", t + 2 * H))  # deadline around t: overdue at t, late in the cohort
        dossier(t - 30 * H, t + 24 * H + off)  # deadline around t + 24 h: due within 24 h at t or not
        dossier(None, None, ("resolved", t + off))  # an orphan event around t
    dossier(t - 30 * H, t - H, ("resolved", t - 10 * S))  # resolved late before t
    dossier(t - 2 * H, t + 48 * H, ("withdrawn", t - S), channel="postal")
    dossier(t - 40 * H, t + 47 * H, ("resolved", t + 20 * H))  # pending at t, settled on time later: due within 48 h at t


def same_point(params: dict, now: datetime) -> datetime:
    """t of a period in progress, computed here from the calendar alone."""
    local = now.astimezone(TZ)
    if "window" in params:
        return local - timedelta(days=int(params["window"][:-1]))
    kind = params["period"]
    if kind in ("day", "week"):
        return local - timedelta(days=1 if kind == "day" else 7)
    start = local.date().replace(day=1)  # month
    prev_start = (start - timedelta(days=1)).replace(day=1)
    return min(ref.midnight(prev_start) + (local - ref.midnight(start)), ref.midnight(start))


@pytest.fixture
def fed(monkeypatch):
    async def feed(svc, offset: timedelta, seed: int = 3):
        now = frozen_now(offset)
        rng = random.Random(seed)
        events = stream(rng, ["19777", "19900", "19930", "46"], 250, now, days=45)
        for tag, days in (("w", 7), ("d", 1)):  # around t of the 7-day window and of the day
            around(events, now - timedelta(days=days), tag)
        around(events, now - timedelta(days=7), "p", unit="19900")
        await post_shuffled(svc, events)
        monkeypatch.setattr(scoring, "_now", lambda: now)
        return now, ref.dossiers(events), await svc.key("read")

    return feed


async def get(svc, token: str, path: str, **params) -> dict:
    r = await svc.get(path, token, **params)
    assert r.status_code == 200, r.text
    return r.json()


CHECKED = {*COMMUNES_46, "19753", "46", "01"}  # units with figures, and a commune and a province without
PARAMS = [{"window": "1d"}, {"window": "7d"}, {"window": "30d"}, {"period": "day"}, {"period": "week"}, {"period": "month"}]


class TestSamePoint:
    @pytest.mark.parametrize("offset", list(OFFSETS.values()), ids=list(OFFSETS))
    async def test_previous_figures_stand_at_t(self, fresh_service, fed, offset):
        svc = fresh_service
        now, ds, token = await fed(svc, offset)
        for code, units in UNITS.items():
            for params in PARAMS:
                body = await get(svc, token, f"/api/v1/units/{code}/kpis", **params)
                prev = body["previous"]["period"]
                t = same_point(params, now)
                assert datetime.fromisoformat(prev["until"]) == t, (code, params, prev)
                assert prev["until"].endswith("+07:00"), prev  # local offset
                start, end = date.fromisoformat(prev["start"]), date.fromisoformat(prev["end"])
                assert_matches(body["previous"]["kpis"], ref.kpis(ds, units, start, end, now, t), f"{code} {params} previous")
                cur = body["period"]
                current = ref.kpis(ds, units, date.fromisoformat(cur["start"]), date.fromisoformat(cur["end"]), now)
                assert_matches(body["kpis"], current, f"{code} {params} current")
                assert "until" not in cur

    async def test_the_rule_changes_the_figures(self, fresh_service, fed):
        """The dossiers placed around t tell the two rules apart: whole previous window vs up to t."""
        svc = fresh_service
        now, ds, token = await fed(svc, OFFSETS["morning"])
        body = await get(svc, token, "/api/v1/units/19777/kpis", window="7d")
        prev = body["previous"]["period"]
        start, end = date.fromisoformat(prev["start"]), date.fromisoformat(prev["end"])
        t = now - timedelta(days=7)
        at_t, whole = ref.kpis(ds, {"19777"}, start, end, now, t), ref.kpis(ds, {"19777"}, start, end, now)
        for k in ("received", "resolved", "pending", "overdue", "due_24h", "due_48h", "orphans", "overdue_766"):
            assert at_t[k] != whole[k], k  # the test can fail: each figure differs under the old rule
            assert body["previous"]["kpis"][k] == at_t[k], k
        # the dossiers right at t: received at t does not count (flows over [start, t)), received a second before does
        just_before = ref.kpis(ds, {"19777"}, start, end, now, t + S)
        assert just_before["received"] > at_t["received"]

    @pytest.mark.parametrize("offset", [OFFSETS["second-past-midnight"], OFFSETS["morning"]], ids=["early", "morning"])
    @pytest.mark.slow  # rankings of all 3,321 communes, three periods, twice each
    async def test_rankings_and_drivers_agree_with_the_kpi_answer(self, fresh_service, fed, offset):
        svc = fresh_service
        now, _, token = await fed(svc, offset)
        for params in ({"window": "7d"}, {"period": "week"}, {"period": "month"}):
            for level, parent in (("commune", "46"), ("commune", None), ("province", None)):
                query = {"level": level, **({"parent": parent} if parent else {})}
                for _ in range(2):  # the second read comes from the ranking memo
                    ranking = await get(svc, token, "/api/v1/rankings", sort="-received", limit=5000, **query, **params)
                    for item in [it for it in ranking["items"] if it["unit"]["code"] in CHECKED]:
                        answer = await get(svc, token, f"/api/v1/units/{item['unit']['code']}/kpis", **params)
                        assert item["change"] == answer["change"], (params, item["unit"]["code"])
            for kpi in ("received", "on_time_rate", "pending", "due_24h", "settlement_rate_766", "orphans"):
                for code in ("46", "VN"):
                    answer = await get(svc, token, f"/api/v1/units/{code}/kpis", **params)
                    drivers = await get(svc, token, f"/api/v1/units/{code}/drivers", kpi=kpi, limit=5000, **params)
                    assert drivers["previous"]["period"] == answer["previous"]["period"], (code, kpi)
                    assert (drivers["value"], drivers["previous_value"], drivers["change"]) == (
                        answer["kpis"][kpi],
                        answer["previous"]["kpis"][kpi],
                        answer["change"][kpi],
                    ), (code, kpi, params)
                    parts = [it["contribution"] for it in drivers["items"]]
                    if drivers["change"] is not None:
                        assert sum(parts) == pytest.approx(drivers["change"], abs=1e-4), (code, kpi)

    async def test_report_of_a_week_in_progress(self, fresh_service, fed):
        svc = fresh_service
        now, _, token = await fed(svc, OFFSETS["morning"])
        at = ref.local_day(now).isoformat()
        report = await get(svc, token, "/api/v1/units/46/report", period="week", at=at)
        answer = await get(svc, token, "/api/v1/units/46/kpis", period="week", at=at)
        assert datetime.fromisoformat(report["previous"]["period"]["until"]) == now - timedelta(days=7)
        assert report["previous"] == {"period": answer["previous"]["period"]}
        assert report["summary"]["previous"] == answer["previous"]
        drivers = await get(svc, token, "/api/v1/units/46/drivers", kpi="on_time_rate", period="week", at=at, limit=5000)
        assert report["drivers"]["on_time_rate"]["items"] == drivers["items"]
        # the previous ranks: the ranking of the previous week as it stood at t (by on_time_rate, min_count 10)
        previous = {}
        for it in report["ranking"]["items"]:
            unit = await get(svc, token, f"/api/v1/units/{it['unit']['code']}/kpis", period="week", at=at)
            assert it["change"] == unit["change"], it["unit"]["code"]
            k = unit["previous"]["kpis"]
            if k["on_time_rate"] is not None and k["resolved_early"] + k["resolved_on_time"] + k["resolved_late"] >= 10:
                previous[it["unit"]["code"]] = k["on_time_rate"]
        for it in report["ranking"]["items"]:
            rate = previous.get(it["unit"]["code"])
            want = None if rate is None else 1 + sum(1 for r in previous.values() if r > rate)
            assert it["previous_rank"] == want, it


class TestFinishedPeriods:
    @pytest.mark.parametrize("kind", ["week", "month", "day"])
    async def test_whole_with_whole(self, fresh_service, fed, kind):
        svc = fresh_service
        now, ds, token = await fed(svc, OFFSETS["morning"])
        at = (ref.local_day(now) - timedelta(days=35 if kind == "month" else 8)).isoformat()
        for code, units in UNITS.items():
            body = await get(svc, token, f"/api/v1/units/{code}/kpis", period=kind, at=at)
            prev = body["previous"]["period"]
            assert "until" not in prev
            start, end = date.fromisoformat(prev["start"]), date.fromisoformat(prev["end"])
            assert_matches(body["previous"]["kpis"], ref.kpis(ds, units, start, end, now), f"{code} {kind} previous")
            drivers = await get(svc, token, f"/api/v1/units/{code}/drivers", kpi="received", period=kind, at=at)
            assert drivers["previous"]["period"] == prev
            assert drivers["previous_value"] == body["previous"]["kpis"]["received"]
        report = await get(svc, token, "/api/v1/units/46/report", period="week", at=(ref.local_day(now) - timedelta(days=8)).isoformat())
        assert "until" not in report["previous"]["period"]
