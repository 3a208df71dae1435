"""SPEC revision 2, point by point, on both stores: deadline and terminal precedence (section 3),
pending/overdue at t = min(end, now), orphans, rounding and previous periods (section 4), whole
requests, NDJSON lines and answer shapes (section 5), export records (section 6)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import func, select

from app.aggregates import periods
from app.db.models import DossierEvent
from app.export.exporter import Exporter
from app.scoring.kpis import KPI_NAMES
from tests import reference as ref
from tests.helpers.events import at_local, post, received, resolved
from tests.streams import wire

COMMUNE = "19777"  # in province 46


def uid() -> str:
    return uuid.uuid4().hex[:10]


def event(kind: str, dossier: str, at: datetime, event_id: str | None = None, **kw) -> dict:
    return {
        "event_id": event_id or f"{kind[:3]}-{uid()}",
        "type": kind,
        "dossier_id": dossier,
        "unit_code": kw.pop("unit", COMMUNE),
        "occurred_at": at,
        **kw,
    }


def due_changed(dossier: str, at: datetime, due: datetime, reason: str, **kw) -> dict:
    return event("due_changed", dossier, at, due_at=due, reason=reason, **kw)


async def kpis(svc, token, code: str = COMMUNE, **params) -> dict:
    r = await svc.get(f"/api/v1/units/{code}/kpis", token, **params)
    assert r.status_code == 200, r.text
    return r.json()


@pytest.fixture
async def svc(fresh_service):
    return fresh_service


@pytest.fixture
async def tokens(svc):
    return await svc.key("ingest", "VN"), await svc.key("read")


def past_day(days: int) -> date:
    return ref.local_day(datetime.now(UTC)) - timedelta(days=days)


class TestEffectiveDeadlineAndTerminal:
    """Section 3: which deadline judges a dossier, and which terminal event ends it."""

    async def test_a_moving_change_wins_over_the_receipt_and_an_apology_never_moves_it(self, svc, tokens):
        ingest, read = tokens
        day = past_day(6)
        due = at_local(day, 17)
        await post(
            svc,
            ingest,
            [
                # the extension was sent before the receipt (out of order at the source): it still wins
                received(COMMUNE, "x", at_local(day, 8), due),
                due_changed("x", at_local(day, 7), due + timedelta(days=2), "legal_extension"),
                # a later apology does not move it back or forward
                due_changed("x", at_local(day, 18), due + timedelta(days=5), "apology"),
                resolved(COMMUNE, "x", due + timedelta(days=2, hours=-1)),
            ],
        )
        k = (await kpis(svc, read, window="30d"))["kpis"]
        assert (k["resolved_on_time"], k["resolved_late"], k["resolved_early"]) == (1, 0, 0)

    async def test_without_a_receipt_the_deadline_sent_with_the_resolution_classifies_it(self, svc, tokens):
        ingest, read = tokens
        day = past_day(4)
        await post(svc, ingest, [resolved(COMMUNE, "o", at_local(day, 10), due_at=at_local(day + timedelta(days=1), 17))])
        k = (await kpis(svc, read, window="30d"))["kpis"]
        assert (k["resolved_early"], k["resolved_unclassified"]) == (1, 0)

    @pytest.mark.parametrize("res_id,wd_id,ends", [("B", "a", "resolved"), ("b", "A", "withdrawn"), ("a", "ä", "resolved")])
    async def test_the_earlier_terminal_ends_it_ties_by_binary_event_id(self, svc, tokens, res_id, wd_id, ends):
        ingest, read = tokens
        day = past_day(3)
        at = at_local(day, 15)
        await post(
            svc,
            ingest,
            [
                received(COMMUNE, "t", at_local(day, 8), at_local(day, 17)),
                event("resolved", "t", at, event_id=res_id),
                event("withdrawn", "t", at, event_id=wd_id),
            ],
        )
        k = (await kpis(svc, read, window="30d"))["kpis"]
        assert (k["resolved"], k["withdrawn"]) == ((1, 0) if ends == "resolved" else (0, 1))

    async def test_the_ignored_terminal_counts_nowhere(self, svc, tokens):
        ingest, read = tokens
        day = past_day(10)
        await post(
            svc,
            ingest,
            [
                received(COMMUNE, "w", at_local(day, 8), at_local(day, 17)),
                event("withdrawn", "w", at_local(day, 9)),
                event("resolved", "w", at_local(day + timedelta(days=2), 9)),
            ],
        )
        body = await kpis(svc, read, period="day", at=(day + timedelta(days=2)).isoformat())
        assert body["kpis"]["resolved"] == 0 and body["kpis"]["pending"] == 0 and body["kpis"]["processing_hours_mean"] is None
        assert (await kpis(svc, read, period="day", at=day.isoformat()))["kpis"]["withdrawn"] == 1


class TestPendingAndOverdueAtT:
    """Section 4: t = the earlier of the period's end and now."""

    async def test_past_period_at_its_end_current_period_at_now(self, svc, tokens):
        ingest, read = tokens
        now = datetime.now(UTC)
        day = past_day(8)
        await post(
            svc,
            ingest,
            [
                # pending at the end of `day`, overdue then; resolved exactly at that midnight: not ended before t
                received(COMMUNE, "edge", at_local(day, 9), at_local(day, 10)),
                resolved(COMMUNE, "edge", at_local(day + timedelta(days=1), 0)),
                # received exactly at t: not received before t
                received(COMMUNE, "late-recv", at_local(day + timedelta(days=1), 0), at_local(day + timedelta(days=2), 10)),
                resolved(COMMUNE, "late-recv", at_local(day + timedelta(days=1), 8)),
                # still open now: overdue now (deadline passed), and one whose deadline is still ahead
                received(COMMUNE, "open-late", now - timedelta(hours=3), now - timedelta(minutes=20)),
                received(COMMUNE, "open-ok", now - timedelta(hours=3), now + timedelta(minutes=40)),
            ],
        )
        past = (await kpis(svc, read, period="day", at=day.isoformat()))["kpis"]
        assert (past["pending"], past["overdue"]) == (1, 1)
        current = (await kpis(svc, read, window="1d"))["kpis"]
        assert (current["pending"], current["overdue"]) == (2, 1)
        year = (await kpis(svc, read, period="year", at=ref.local_day(now).isoformat()))["kpis"]
        assert (year["pending"], year["overdue"]) == (2, 1)  # a period ending after now: judged at now

    @pytest.mark.parametrize("later,due_hours", [("received", 48), ("resolved", 48), ("received", -1), ("resolved", -1)])
    async def test_now_is_now_within_today(self, svc, tokens, later, due_hours):
        ingest, read = tokens
        now = datetime.now(UTC)
        soon = now + timedelta(minutes=3)  # allowed by the clock-skew allowance
        if ref.local_day(soon) != ref.local_day(now) or ref.local_day(now - timedelta(hours=3)) != ref.local_day(now):
            pytest.skip("too close to local midnight")
        due = now + timedelta(hours=due_hours)
        if later == "received":  # not received before now: neither pending nor overdue yet
            events, pending = [received(COMMUNE, "d", soon, due)], 0
        else:  # not ended before now: still pending, and overdue when its deadline has passed
            events, pending = [received(COMMUNE, "d", now - timedelta(hours=2), due), resolved(COMMUNE, "d", soon)], 1
        await post(svc, ingest, events)
        figures = (await kpis(svc, read, window="1d"))["kpis"]
        assert (figures["pending"], figures["overdue"]) == (pending, pending if due < now else 0)


class TestOrphans:
    async def test_every_stored_event_of_a_dossier_without_receipt_but_the_ignored_terminal(self, svc, tokens):
        ingest, read = tokens
        day = past_day(5)
        await post(
            svc,
            ingest,
            [
                due_changed("o", at_local(day, 8), at_local(day, 20), "supplement_requested"),
                event("resolved", "o", at_local(day, 9)),
                event("resolved", "o", at_local(day, 10)),  # a correction: counted
                event("withdrawn", "o", at_local(day, 11)),  # loses to the earlier resolution: not counted
            ],
        )
        assert (await kpis(svc, read, period="day", at=day.isoformat()))["kpis"]["orphans"] == 3
        await post(svc, ingest, [received(COMMUNE, "o", at_local(day, 7), at_local(day, 20))])
        assert (await kpis(svc, read, period="day", at=day.isoformat()))["kpis"]["orphans"] == 0


class TestRoundingAndNulls:
    async def test_score_from_the_unrounded_rate_and_null_for_an_empty_cohort(self, svc, tokens):
        ingest, read = tokens
        day = past_day(12)
        due = at_local(day, 17)
        events = [received(COMMUNE, f"c{i}", at_local(day, 8), due) for i in range(3)]
        events += [
            resolved(COMMUNE, "c0", at_local(day, 9)),
            resolved(COMMUNE, "c1", at_local(day, 10)),
            resolved(COMMUNE, "c2", due + timedelta(hours=1)),
        ]
        await post(svc, ingest, events)
        k = (await kpis(svc, read, period="day", at=day.isoformat()))["kpis"]
        assert k["settlement_rate_766"] == 0.6667 and k["settlement_score"] == 13.33  # 20 * 2/3, not 20 * 0.6667
        assert k["on_time_rate"] == 0.6667 and k["overdue_766"] == 1
        # the next day resolves nothing received that day: its cohort is empty, the score null
        nxt = (await kpis(svc, read, period="day", at=(day + timedelta(days=1)).isoformat()))["kpis"]
        assert nxt["settlement_rate_766"] is None and nxt["settlement_score"] is None and nxt["overdue_766"] == 0

    async def test_hours_to_two_decimals(self, svc, tokens):
        ingest, read = tokens
        day = past_day(9)
        recv = at_local(day, 8)
        await post(
            svc, ingest, [received(COMMUNE, "h", recv, at_local(day, 20)), resolved(COMMUNE, "h", recv + timedelta(hours=1, seconds=30))]
        )
        k = (await kpis(svc, read, period="day", at=day.isoformat()))["kpis"]
        assert k["processing_hours_mean"] == 1.01  # 1.00833 h


class TestPreviousPeriods:
    @pytest.mark.parametrize(
        "params,current,previous",
        [
            ({"period": "day", "at": "2025-03-01"}, ("2025-03-01", "2025-03-02"), ("2025-02-28", "2025-03-01")),
            ({"period": "week", "at": "2026-01-01"}, ("2025-12-29", "2026-01-05"), ("2025-12-22", "2025-12-29")),
            ({"period": "month", "at": "2025-03-31"}, ("2025-03-01", "2025-04-01"), ("2025-02-01", "2025-03-01")),
            ({"period": "quarter", "at": "2025-01-15"}, ("2025-01-01", "2025-04-01"), ("2024-10-01", "2025-01-01")),
            ({"period": "year", "at": "2025-06-01"}, ("2025-01-01", "2026-01-01"), ("2024-01-01", "2025-01-01")),
        ],
    )
    async def test_calendar_periods(self, shared_service, params, current, previous):
        body = await kpis(shared_service, await shared_service.key("read"), "46", **params)
        assert (body["period"]["start"], body["period"]["end"]) == current
        assert (body["previous"]["period"]["start"], body["previous"]["period"]["end"]) == previous
        assert body["previous"]["period"]["kind"] == params["period"]

    async def test_windows_have_the_same_length_just_before(self, shared_service):
        body = await kpis(shared_service, await shared_service.key("read"), "46", window="7d")
        today = ref.local_day(datetime.now(UTC))
        assert body["period"] == {
            "kind": "window",
            "window": "7d",
            "start": (today - timedelta(days=6)).isoformat(),
            "end": (today + timedelta(days=1)).isoformat(),
        }
        assert body["previous"]["period"] == {
            "kind": "window",
            "window": "7d",
            "start": (today - timedelta(days=13)).isoformat(),
            "end": (today - timedelta(days=6)).isoformat(),
        }


class TestSectors:
    async def test_a_superseded_receipt_still_names_the_sector_when_the_winning_one_does_not(self, svc, tokens):
        ingest, read = tokens
        day = past_day(7)
        due = at_local(day, 17)
        await post(
            svc,
            ingest,
            [
                received(COMMUNE, "s", at_local(day, 8), due, sector="land", event_id="r1"),
                received(COMMUNE, "s", at_local(day, 9), due, event_id="r2"),  # the correction names no sector
            ],
        )
        body = (await svc.get(f"/api/v1/units/{COMMUNE}/sectors", read, window="30d")).json()
        assert [(i["sector"], i["kpis"]["received"]) for i in body["items"]] == [("land", 1)]
        assert (await kpis(svc, read, window="30d", sector="land"))["kpis"]["received"] == 1

    async def test_the_winning_receipt_names_it_before_any_later_event(self, svc, tokens):
        ingest, read = tokens
        day = past_day(7)
        await post(
            svc,
            ingest,
            [
                received(COMMUNE, "s", at_local(day, 8), at_local(day, 17), sector="land"),
                resolved(COMMUNE, "s", at_local(day, 9), sector="business"),
            ],
        )
        body = (await svc.get(f"/api/v1/units/{COMMUNE}/sectors", read, window="30d")).json()
        assert [i["sector"] for i in body["items"]] == ["land"]


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


class TestWholeRequestsAndNdjson:
    async def _raw(self, svc, token, content: bytes, content_type: str):
        return await svc.client.post(
            "/api/v1/events", content=content, headers={"Authorization": f"Bearer {token}", "Content-Type": content_type}
        )

    async def _stored(self, svc, ids) -> int:
        async with svc.db.session() as session:
            q = select(func.count()).select_from(DossierEvent).where(DossierEvent.event_id.in_(ids))
            return (await session.execute(q)).scalar_one()

    def _event(self, **kw) -> dict:
        now = datetime.now(UTC)
        return wire(received(COMMUNE, uid(), now - timedelta(hours=1), now + timedelta(days=1), event_id=f"n-{uid()}", **kw))

    async def test_ndjson_lines_that_are_not_objects_are_items_and_blank_lines_are_skipped(self, shared_service):
        token = await shared_service.key("ingest", "46")
        good = [self._event(), self._event()]
        body = "\n".join([json.dumps(good[0]), "", "   ", "[1, 2]", "not json", "\t", json.dumps(good[1]), ""]) + "\r\n"
        r = await self._raw(shared_service, token, body.encode(), "application/x-ndjson")
        assert r.status_code == 202
        assert r.json() == {
            "accepted": 2,
            "duplicates": 0,
            "rejected": 2,
            "items": [
                {"index": 1, "event_id": None, "status": "rejected", "errors": [{"loc": [], "msg": "an event must be a JSON object"}]},
                {"index": 2, "event_id": None, "status": "rejected", "errors": [{"loc": [], "msg": "line is not JSON"}]},
            ],
        }

    async def test_ndjson_lines_end_only_at_newline(self, shared_service):
        token = await shared_service.key("ingest", "46")
        events = [self._event(dossier_id=f"a\u2028b-{uid()}"), self._event(dossier_id=f"c\u0085d-{uid()}")]
        body = "\n".join(json.dumps(e, ensure_ascii=False) for e in events)
        r = await self._raw(shared_service, token, body.encode(), "application/x-ndjson")
        assert r.json()["accepted"] == 2, r.json()

    async def test_ndjson_not_utf8_is_400_and_stores_nothing(self, shared_service):
        token = await shared_service.key("ingest", "46")
        good = self._event()
        r = await self._raw(shared_service, token, json.dumps(good).encode() + b"\n\xff\xfe\n", "application/x-ndjson")
        assert r.status_code == 400 and await self._stored(shared_service, [good["event_id"]]) == 0

    async def test_a_foreign_unit_in_an_invalid_event_refuses_the_request_naming_it(self, shared_service):
        token = await shared_service.key("ingest", "46")
        good = self._event()
        foreign = {"unit_code": "26506", "type": "nonsense"}
        r = await shared_service.post([good, foreign], token)
        assert r.status_code == 403 and r.json()["unit"] == "26506" and "26506" in r.json()["detail"]
        assert await self._stored(shared_service, [good["event_id"]]) == 0


class TestExportRecords:
    async def test_day_records_carry_counters_and_end_of_day_pending(self, make_service):
        async with make_service(node_id="p46") as svc:
            ingest, read = await svc.key("ingest", "VN"), await svc.key("read")
            day = past_day(3)
            await post(
                svc,
                ingest,
                [
                    received(COMMUNE, "a", at_local(day, 8), at_local(day, 12)),  # overdue from noon
                    received(COMMUNE, "b", at_local(day, 9), at_local(day + timedelta(days=1), 12)),
                    resolved(COMMUNE, "b", at_local(day + timedelta(days=1), 10)),
                ],
            )
            await Exporter(svc.db, svc.settings).produce()
            recs = (await svc.get("/api/v1/export/snapshots", read, limit=5000)).json()["records"]
            days = {r["day"]: r for r in recs if r["kind"] == "day" and r["unit"] == COMMUNE}
            first, second = days[day.isoformat()], days[(day + timedelta(days=1)).isoformat()]
            for name in (
                "received",
                "received_online",
                "resolved_early",
                "resolved_on_time",
                "resolved_late",
                "resolved_unclassified",
                "withdrawn",
                "orphans",
                "histogram",
                "pending",
                "overdue",
            ):
                assert name in first, name
            assert (first["received"], first["pending"], first["overdue"]) == (2, 2, 1)
            assert (second["resolved_early"] + second["resolved_on_time"], second["pending"], second["overdue"]) == (1, 1, 1)
            today = ref.local_day(datetime.now(UTC))
            assert today.isoformat() in days  # pending: a record every day, today's at the snapshot
            month = periods.containing("month", day)
            cohorts = [
                r
                for r in recs
                if r["kind"] == "cohort"
                and r["unit"] == COMMUNE
                and r["period"]["start"] == month.start.isoformat()
                and r["period"]["kind"] == "month"
            ]
            assert [(c["cohort_size"], c["cohort_on_time"]) for c in cohorts] == [(2, 1)]
            assert all(r["node_id"] == "p46" for r in recs)
            assert [r["sequence"] for r in recs] == sorted({r["sequence"] for r in recs})
