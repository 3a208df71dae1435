"""Silent sources (SPEC section 4): the last accepted event per unit, by acceptance time, and the
3-of-14-days rule; `silent_units` in KPI answers and rankings, rolled up to province and nation;
GET /units/{code}/silent; the chiso_silent_units gauge; the migration's back-fill. Both stores.

Acceptance times are set honestly: batches go through the real ingest service (`accept_batch`)
with its `now` parameter, the time a batch is accepted at (its events' `ingested_at`). Reads at
an exact moment use the scoring service's `now`; the HTTP reads use the real clock with margins of
hours, never a timed assertion.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text, update

from app.aggregates.rebuild import verify
from app.db import migrate
from app.db.engine import Database
from app.db.models import UnitSource
from app.ingest.service import accept_batch
from app.units.model import NATION
from tests.helpers.feed import VN_KEY, Feed, on_days
from tests.reference import TZ

H = timedelta(hours=1)


def silent_codes(answer: dict) -> list[str]:
    return [it["unit"]["code"] for it in answer["items"]]


async def communes_of(svc, province: str, n: int) -> list[str]:
    registry = await svc.app.state.registry.get()
    return [u.code for u in registry.at_level("commune", province)[:n]]


async def test_three_of_fourteen_days_gaps_and_a_unit_that_never_sent(fresh_service):
    svc, feed = fresh_service, Feed(fresh_service)
    now = datetime.now(UTC)
    last = now - 50 * H  # accepted more than 48 h ago
    a, b, c, d, e, never = await communes_of(svc, "46", 6)
    await feed.send(a, on_days(last, 0, 4, 9), last)  # 3 days of 14: silent
    await feed.send(b, on_days(last, 0, 9), last)  # 2 days: not silent
    await feed.send(b, on_days(last, 9), last - 3 * H)  # the same day again: still 2 days
    await feed.send(c, on_days(last, 0, 5, 14, 20), last)  # 2 days within the 14, 2 before: not silent
    await feed.send(d, on_days(last, 0, 1, 13), last)  # days 0 and 13 are the window's ends: silent
    # a stream with gaps, accepted over days: the window ends on the day of the last acceptance
    await feed.send(e, on_days(last - 400 * H, 0, 1, 2, 3), last - 400 * H)  # 16 to 20 days before
    await feed.send(e, on_days(last, 0), last)  # 1 day within 14 of it: not silent
    answer = await feed.silent("46", now)
    assert silent_codes(answer) == sorted([a, d])
    assert answer["total"] == 2 and never not in silent_codes(answer)
    # e sends on two more days, dated back: its window now holds 3 days
    await feed.send(e, on_days(last, 2, 6), last - 1 * H)
    assert silent_codes(await feed.silent("46", now)) == sorted([a, d, e])
    for code, expected in ((a, 1), (b, 0), (c, 0), (never, 0), (e, 1)):
        r = await svc.get(f"/api/v1/units/{code}/kpis", await svc.key("read"), window="7d")
        assert r.status_code == 200
        assert r.json()["kpis"]["silent_units"] == expected, code


async def test_acceptance_time_not_occurred_at_and_a_unit_that_resumes(fresh_service):
    svc, feed = fresh_service, Feed(fresh_service)
    now = datetime.now(UTC)
    last = now - 60 * H
    a, b, c = await communes_of(svc, "79", 3)
    for code in (a, b, c):
        await feed.send(code, on_days(last, 0, 2, 3), last)
    assert silent_codes(await feed.silent("79", now)) == sorted([a, b, c])
    await feed.send(a, on_days(now - H, 0), now - H)  # resumes with a fresh event
    await feed.send(b, on_days(last, 8), now - H)  # resumes with an old event, accepted just now
    answer = await feed.silent("79", now)
    assert silent_codes(answer) == [c]
    # acceptance times are a maximum: a batch said to be accepted earlier changes nothing
    await feed.send(a, on_days(last, 1), last - 10 * H)
    assert silent_codes(await feed.silent("79", now)) == [c]
    # and a later read sees a and b fall silent again when they stop
    later = now + 50 * H
    assert silent_codes(await feed.silent("79", later)) == [c, *sorted([a, b])]  # longest silent first, then by code
    # the list: longest silent first; silent_hours and the acceptance time in local time
    item = (await feed.silent("79", later))["items"][0]
    assert item["unit"]["code"] == c
    assert item["silent_hours"] == round((later - last).total_seconds() / 3600, 2)
    assert item["last_event_at"] == last.astimezone(TZ).isoformat(timespec="seconds")


async def test_exact_boundary_at_silent_after_hours(fresh_service):
    svc, feed = fresh_service, Feed(fresh_service)
    last = datetime.now(UTC).replace(microsecond=0) - 100 * H
    (a,) = await communes_of(svc, "01", 1)
    await feed.send(a, on_days(last, 0, 1, 2), last)
    boundary = last + timedelta(hours=48)
    assert (await feed.silent(a, boundary))["total"] == 0  # exactly 48 h: not more than 48 h
    assert (await feed.silent(a, boundary + timedelta(microseconds=1)))["total"] == 1
    assert (await feed.silent(a, boundary - timedelta(seconds=1)))["total"] == 0
    # fractions of an hour
    half = last + timedelta(minutes=30)
    assert (await feed.silent(a, half, hours=0.5))["total"] == 0
    answer = await feed.silent(a, half + timedelta(seconds=1), hours=0.5)
    assert answer["total"] == 1 and answer["silent_after_hours"] == 0.5
    assert answer["items"][0]["silent_hours"] == round(1801 / 3600, 2)


async def test_silent_units_roll_up_to_province_and_nation(make_service):
    async with make_service(silent_after_hours=47.5) as svc:
        feed = Feed(svc)
        now = datetime.now(UTC)
        read = await svc.key("read")
        c46 = await communes_of(svc, "46", 4)
        c79 = await communes_of(svc, "79", 2)
        for k, code in enumerate(c46[:3]):
            last = now - (60 + k) * H
            await feed.send(code, on_days(last, 0, 1, 2), last)
        await feed.send(c46[3], on_days(now - 49 * H, 0, 1, 2), now - 49 * H)
        await feed.send(c46[3], on_days(now - 47 * H, 0), now - 47 * H)  # last accepted 47 h ago: not silent (47.5 h)
        await feed.send("46", on_days(now - 80 * H, 0, 3, 5), now - 80 * H)  # the province's own centre
        for code in c79:
            await feed.send(code, on_days(now - 2 * H, 0, 1, 2, 3), now - 2 * H)  # sending
        await feed.send(c79[0], on_days(now - 100 * H, 5, 6), now - 100 * H)

        async def kpis(code: str, **params) -> dict:
            r = await svc.get(f"/api/v1/units/{code}/kpis", read, **params)
            assert r.status_code == 200, r.text
            return r.json()

        expected = {"46": 4, "79": 0, NATION: 4, c46[0]: 1, c46[3]: 0, c79[0]: 0}
        for code, n in expected.items():
            body = await kpis(code, window="30d")
            assert body["kpis"]["silent_units"] == n, code
            assert body["previous"]["kpis"]["silent_units"] is None  # a period that ended before now
            assert body["change"]["silent_units"] is None
        assert (await kpis("46", period="month", at=(now - timedelta(days=62)).astimezone(TZ).date().isoformat()))["kpis"][
            "silent_units"
        ] is None
        assert (await kpis("46", period="day"))["kpis"]["silent_units"] == 4

        # rankings: provinces (rollup of their communes and themselves) and communes, both ways
        r = await svc.get("/api/v1/rankings", read, level="province", window="7d", sort="-silent_units", limit=3)
        top = r.json()["items"][0]
        assert (top["unit"]["code"], top["kpis"]["silent_units"], top["rank"]) == ("46", 4, 1)
        r = await svc.get("/api/v1/rankings", read, level="commune", parent="46", window="7d", sort="-silent_units", limit=5000)
        by_code = {it["unit"]["code"]: it["kpis"]["silent_units"] for it in r.json()["items"]}
        assert {c for c, n in by_code.items() if n} == set(c46[:3]) and set(by_code.values()) == {0, 1}

        # the list: the province itself and its communes, longest silent first, paginated
        r = await svc.get("/api/v1/units/46/silent", read)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["silent_after_hours"] == 47.5 and body["total"] == 4
        assert silent_codes(body) == ["46", c46[2], c46[1], c46[0]]
        assert body["unit"]["code"] == "46" and body["items"][1]["unit"]["parent"] == "46"
        assert 61.9 < body["items"][1]["silent_hours"] < 70
        page = (await svc.get("/api/v1/units/VN/silent", read, limit=2, offset=1)).json()
        assert (page["total"], page["limit"], page["offset"], silent_codes(page)) == (4, 2, 1, [c46[2], c46[1]])
        assert (await svc.get("/api/v1/units/79/silent", read)).json()["total"] == 0
        assert (await svc.get(f"/api/v1/units/{c46[0]}/silent", read)).json()["total"] == 1
        assert (await svc.get("/api/v1/units/99999/silent", read)).status_code == 404
        assert (await svc.get("/api/v1/units/46/silent", read, limit=0)).status_code == 422

        # the gauge per province, read from the database
        metrics = (await svc.client.get("/metrics")).text
        values = {
            s.labels["unit"]: s.value for f in text_string_to_metric_families(metrics) if f.name == "chiso_silent_units" for s in f.samples
        }
        assert values["46"] == 4 and values["79"] == 0 and values[NATION] == 4 and len(values) == 35


async def test_migration_backfills_from_the_event_log(fresh_service):
    svc, feed = fresh_service, Feed(fresh_service)
    now = datetime.now(UTC)
    a, b = await communes_of(svc, "46", 2)
    await feed.send(a, on_days(now - 55 * H, 0, 3, 12, 13, 15), now - 55 * H)
    await feed.send(b, on_days(now - 70 * H, 0, 1), now - 70 * H)
    await feed.send(b, on_days(now - 90 * H, 4), now - 90 * H)
    before = await feed.silent(NATION, now)
    assert silent_codes(before) == [b, a]  # longest silent first
    db = Database(svc.url)
    try:
        async with db.engine.begin() as conn:
            await migrate.downgrade(conn, "f2b3c4d5e6f7-1")
        async with db.engine.begin() as conn:
            await migrate.upgrade(conn)
        async with db.engine.connect() as conn:
            days = (await conn.execute(text("SELECT count(*) FROM unit_event_day"))).scalar_one()
    finally:
        await db.dispose()
    assert days == 4 + 3  # a: the days within 14 of its last acceptance; b: all three
    assert await feed.silent(NATION, now) == before


async def test_verify_checks_and_repairs_the_bookkeeping(fresh_service):
    svc, feed = fresh_service, Feed(fresh_service)
    now = datetime.now(UTC)
    a, b = await communes_of(svc, "46", 2)
    await feed.send(a, on_days(now - 55 * H, 0, 1, 2), now - 55 * H)
    await feed.send(b, on_days(now - 3 * H, 0, 1, 2), now - 3 * H)
    report = await verify(svc.db, svc.settings)
    assert report.differences == [] and report.units == 2
    async with svc.db.transaction() as session:  # the bookkeeping of b forgets its last batch
        await session.execute(update(UnitSource).where(UnitSource.unit_code == b).values(last_at=now - 70 * H))
        await session.execute(text("DELETE FROM unit_event_day WHERE unit_code = :u"), {"u": a})
    assert silent_codes(await feed.silent("46", now)) == [b]  # wrong both ways: a lost its days, b looks silent
    report = await verify(svc.db, svc.settings)
    assert sorted(d.split()[0] for d in report.differences) == sorted([a, b]), report.differences
    assert all("silent-source bookkeeping" in d for d in report.differences)
    report = await verify(svc.db, svc.settings, repair=True)
    assert {a, b} <= set(report.repaired)
    assert (await verify(svc.db, svc.settings)).differences == []
    assert silent_codes(await feed.silent("46", now)) == [a]


async def test_one_batch_naming_many_units(fresh_service):
    """A batch from a VN key may name thousands of units: all are recorded (statements in chunks)."""
    svc, feed = fresh_service, Feed(fresh_service)
    now = datetime.now(UTC)
    last = now - 50 * H
    registry = await feed.registry()
    units = [u.code for u in registry.at_level("commune")][:1200]
    events = []
    for code in units:
        for k, at in enumerate(on_days(last, 0, 1, 2)):
            events.append(
                {"event_id": f"m{k}", "type": "received", "dossier_id": f"M{k}", "unit_code": code, "occurred_at": at.isoformat(),
                 "channel": "online", "due_at": (at + timedelta(days=5)).isoformat()}
            )  # fmt: skip
    result = await accept_batch(svc.db, registry, svc.settings, VN_KEY, events, now=last)
    assert result["accepted"] == len(events) == 3600
    answer = await feed.silent(NATION, now, limit=5000)
    assert answer["total"] == 1200 and silent_codes(answer) == sorted(units)
    r = await svc.get("/api/v1/units/VN/kpis", await svc.key("read"), window="1d")
    assert r.json()["kpis"]["silent_units"] == 1200
