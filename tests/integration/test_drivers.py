"""Drivers of a change (SPEC revision 4, section 4) against tests/reference.py, on both stores.

A random stream (late events, corrections, orphans, both terminals, shuffled and duplicated) over
communes of two provinces, the provinces' own dossiers and the nation's: every part's contribution
equals the reference's, the contributions add up to the unit's change, a province's own dossiers are
a part, `null` everywhere when a denominator is 0, and processing hours and `silent_units` are 422.
"""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta

import pytest

from tests import reference as ref
from tests.conftest import new_database_url, start_service
from tests.helpers.events import post_shuffled
from tests.streams import stream

COMMUNES_46 = ["19777", "19900", "19930"]
COMMUNES_79 = ["26506", "26526"]
STREAM_UNITS = ["46", "79", "VN", *COMMUNES_46, *COMMUNES_79]
RATES = {  # (N, D) of each rate as the reference names its counts
    "online_rate": lambda k: (k["received_online"], k["received"]),
    "on_time_rate": lambda k: (
        k["resolved_early"] + k["resolved_on_time"],
        k["resolved_early"] + k["resolved_on_time"] + k["resolved_late"],
    ),
    "settlement_rate_766": lambda k: (k["on_time_766"], k["cohort"]),
}
COUNTS = ["received", "resolved_late", "withdrawn", "pending", "overdue", "overdue_766", "orphans", "due_48h"]


# under --dist loadgroup one process builds the module's fixtures, not each
pytestmark = pytest.mark.xdist_group("drivers")


@pytest.fixture(scope="module")
async def fed(store, templates, pg_server, tmp_path_factory):
    url = await new_database_url(store, templates, pg_server, tmp_path_factory.mktemp("drivers"))
    async for svc in start_service(url):
        now = datetime.now(UTC)
        events = [e for e in stream(random.Random(2326), STREAM_UNITS, 700, now, days=75) if e["occurred_at"] < now]  # none ahead
        await post_shuffled(svc, events, seed=5)
        registry = {}
        for parent in ("VN", "46", "79"):
            r = await svc.get("/api/v1/units", await svc.key("read"), parent=parent, limit=5000)
            registry[parent] = [u["code"] for u in r.json()["items"]]
        yield svc, ref.dossiers(events), now, registry, await svc.key("read")


def subtree(code: str, registry: dict) -> set[str]:
    return {code, *(c for child in registry.get(code, []) for c in subtree(child, registry))}


def reference_parts(unit: str, registry: dict) -> list[tuple[str, bool, set[str]]]:
    """(code, own, units) of each part: the unit's own dossiers, then each unit directly below with its subtree."""
    below = registry.get(unit, [])
    return [(unit, True, {unit})] + [(c, False, subtree(c, registry)) for c in below]


def window_dates(days: int, now: datetime) -> tuple[tuple[date, date], tuple[date, date]]:
    start, end = ref.window(days, now)
    return (start, end), (start - timedelta(days=days), start)


def month_dates(now: datetime) -> tuple[tuple[date, date], tuple[date, date]]:
    today = ref.local_day(now)
    start = today.replace(day=1)
    end = (start + timedelta(days=32)).replace(day=1)
    prev = (start - timedelta(days=1)).replace(day=1)
    return (start, end), (prev, start)


async def check(fed, unit: str, kpi: str, periods, **query) -> dict:
    svc, ds, now, registry, token = fed
    r = await svc.get(f"/api/v1/units/{unit}/drivers", token, kpi=kpi, limit=5000, **query)
    assert r.status_code == 200, r.text
    answer = r.json()
    (start, end), (pstart, pend) = periods
    assert (answer["period"]["start"], answer["period"]["end"]) == (str(start), str(end))
    assert (answer["previous"]["period"]["start"], answer["previous"]["period"]["end"]) == (str(pstart), str(pend))
    until = answer["previous"]["period"].get("until")  # a period in progress: the previous one at the same point
    until = None if until is None else datetime.fromisoformat(until)
    whole = ref.kpis(ds, subtree(unit, registry), start, end, now), ref.kpis(ds, subtree(unit, registry), pstart, pend, now, until)
    got = {(it["unit"]["code"], it["own"]): it for it in answer["items"]}
    want_total = 0.0
    for code, own, units in reference_parts(unit, registry):
        cur, prev = ref.kpis(ds, units, start, end, now), ref.kpis(ds, units, pstart, pend, now, until)
        if kpi in RATES:
            (n, d), (n0, d0) = RATES[kpi](cur), RATES[kpi](prev)
            (_, du), (_, du0) = RATES[kpi](whole[0]), RATES[kpi](whole[1])
            contribution = None if du == 0 or du0 == 0 else n / du - n0 / du0
        else:
            n, d, n0, d0 = cur[kpi], None, prev[kpi], None
            contribution = n - n0
        if own and registry.get(unit) and not any((n, d, n0, d0)):
            assert (code, True) not in got, "no part for own dossiers the unit does not have"
            continue
        item = got.pop((code, own))
        assert (item["numerator"], item["denominator"], item["previous_numerator"], item["previous_denominator"]) == (n, d, n0, d0), (
            kpi,
            code,
        )
        if contribution is None:
            assert item["contribution"] is None
        elif kpi in RATES:
            assert item["contribution"] == round(contribution, 6), (kpi, code)
            want_total += contribution
        else:
            assert item["contribution"] == contribution, (kpi, code)
            want_total += contribution
    assert not got, f"parts the reference does not have: {list(got)}"
    contributions = [it["contribution"] for it in answer["items"]]
    if kpi in RATES:
        (nu, du), (nu0, du0) = RATES[kpi](whole[0]), RATES[kpi](whole[1])
        if du == 0 or du0 == 0:
            assert answer["change"] is None and contributions == [None] * len(contributions)
        else:
            assert abs(want_total - (nu / du - nu0 / du0)) < 1e-9
            assert abs(sum(contributions) - (nu / du - nu0 / du0)) <= 5e-7 * len(contributions)
            assert abs(sum(contributions) - answer["change"]) <= 1e-4 + 5e-7 * len(contributions)
    else:
        assert sum(contributions) == answer["change"] == whole[0][kpi] - whole[1][kpi]
    known = [c for c in contributions if c is not None]
    assert known == sorted(known) and contributions[: len(known)] == known, "contribution ascending, nulls last"
    return answer


class TestAgainstReference:
    @pytest.mark.parametrize("kpi", [*RATES, *COUNTS])
    async def test_province_window(self, fed, kpi):
        answer = await check(fed, "46", kpi, window_dates(30, fed[2]), window="30d")
        assert any(it["own"] for it in answer["items"]), "the province's own dossiers are a part"

    @pytest.mark.parametrize("kpi", ["on_time_rate", "online_rate", "overdue", "received"])
    async def test_nation_month(self, fed, kpi):
        answer = await check(fed, "VN", kpi, month_dates(fed[2]), period="month", at=str(ref.local_day(fed[2])))
        assert len(answer["items"]) == 35  # its own dossiers and 34 provinces

    @pytest.mark.parametrize("kpi", ["on_time_rate", "pending"])
    async def test_commune_is_its_only_part(self, fed, kpi):
        answer = await check(fed, "19777", kpi, window_dates(7, fed[2]), window="7d")
        assert [(it["unit"]["code"], it["own"]) for it in answer["items"]] == [("19777", True)]
        if answer["change"] is not None and kpi == "pending":
            assert answer["items"][0]["contribution"] == answer["change"]

    async def test_province_of_other_province_and_previous_week(self, fed):
        today = ref.local_day(fed[2])
        monday = today - timedelta(days=today.weekday() + 7)
        periods = (monday, monday + timedelta(days=7)), (monday - timedelta(days=7), monday)
        await check(fed, "79", "on_time_rate", periods, period="week", at=str(monday))

    async def test_sort_descending(self, fed):
        svc, _, _, _, token = fed
        up = (await svc.get("/api/v1/units/46/drivers", token, kpi="received", window="30d", sort="-contribution", limit=5000)).json()
        down = (await svc.get("/api/v1/units/46/drivers", token, kpi="received", window="30d", limit=5000)).json()
        assert [it["contribution"] for it in up["items"]] == sorted((it["contribution"] for it in down["items"]), reverse=True)
        ties = [it["unit"]["code"] for it in down["items"] if it["contribution"] == 0]
        assert ties == sorted(ties)


class TestNullsAndRefusals:
    async def test_a_zero_denominator_makes_every_contribution_null(self, fed):
        svc, _, now, _, token = fed
        far = str(ref.local_day(now) - timedelta(days=300))  # no dossier then, nor in the month before
        r = await svc.get("/api/v1/units/46/drivers", token, kpi="on_time_rate", period="month", at=far, limit=5000)
        body = r.json()
        assert body["change"] is None and body["items"] and all(it["contribution"] is None for it in body["items"])
        r = await svc.get("/api/v1/units/46/drivers", token, kpi="received", period="month", at=far, limit=5000)
        assert {it["contribution"] for it in r.json()["items"]} == {0}

    @pytest.mark.parametrize("kpi", ["processing_hours_p50", "processing_hours_mean", "silent_units", "nonsense"])
    async def test_no_drivers_is_a_422(self, fed, kpi):
        svc, _, _, _, token = fed
        r = await svc.get("/api/v1/units/46/drivers", token, kpi=kpi)
        assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["kpi"]

    async def test_unknown_unit_is_a_404(self, fed):
        svc, _, _, _, token = fed
        assert (await svc.get("/api/v1/units/99999/drivers", token)).status_code == 404

    async def test_download_holds_the_parts(self, fed):
        svc, _, _, _, token = fed
        answer = (await svc.get("/api/v1/units/46/drivers", token, kpi="on_time_rate", window="30d", limit=5000)).json()
        r = await svc.get("/api/v1/units/46/drivers", token, kpi="on_time_rate", window="30d", format="csv", lang="key")
        assert r.status_code == 200 and 'filename="chiso-drivers-on_time_rate-46-30d.csv"' in r.headers["content-disposition"]
        lines = r.content.decode("utf-8-sig").splitlines()
        head = lines[0].split(",")
        codes = [line.split(",")[head.index("unit.code")] for line in lines[1:]]
        assert codes == [it["unit"]["code"] for it in answer["items"]]
