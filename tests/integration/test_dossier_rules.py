"""Dossier rules through the API, on both stores: which deadline judges a dossier and which terminal event
ends it, pending and overdue at t = min(end, now), orphans, and which receipt names the sector."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests import reference as ref
from tests.helpers.dossiers import COMMUNE, due_changed, event, kpis, past_day
from tests.helpers.events import at_local, post, received, resolved


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
