"""Dossier state is a function of the set of events: any order, any duplicates; which event names its
sector, which deadline judges it and which terminal event ends it, in the service and the reference."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.aggregates.contrib import Delta
from app.aggregates.dossier import DossierState
from tests import reference as ref

TZ = ZoneInfo("Asia/Ho_Chi_Minh")
T0 = datetime(2025, 9, 30, 16, 0, tzinfo=UTC)

times = st.integers(min_value=0, max_value=6).map(lambda h: T0 + timedelta(hours=h * 5))
event = st.fixed_dictionaries(
    {
        "event_id": st.sampled_from(["a", "b", "B", "c", "ä", "a1"]),
        "type": st.sampled_from(["received", "resolved", "withdrawn", "due_changed"]),
        "occurred_at": times,
        "due_at": st.one_of(st.none(), times),
        "channel": st.sampled_from(["online", "in_person"]),
        "reason": st.sampled_from(["supplement_requested", "legal_extension", "apology"]),
        "sector": st.one_of(st.none(), st.sampled_from(["land", "business"])),
    }
)


def fold(events: list[dict]) -> DossierState:
    state, seen = DossierState("19777", "D1"), set()
    for e in events:
        if e["event_id"] in seen:  # the store keeps the first copy of an event id
            continue
        seen.add(e["event_id"])
        state.apply(e, TZ)
    return state


def unique(events: list[dict]) -> list[dict]:
    out, seen = [], set()
    for e in events:
        if e["event_id"] not in seen:
            seen.add(e["event_id"])
            out.append(e)
    return out


def contribution(state: DossierState) -> dict:
    d = Delta()
    d.add(state, TZ, +1)
    d = d.nonzero()
    return {
        "day": {k: dict(v) for k, v in d.day.items()},
        "hist": dict(d.hist),
        "due": dict(d.cohort_due),
        "total": {k: dict(v) for k, v in d.total.items()},
    }


class TestMerge:
    @settings(max_examples=300, deadline=None)
    @given(st.lists(event, min_size=1, max_size=8), st.randoms(use_true_random=False), st.integers(0, 3))
    def test_any_permutation_with_duplicates_gives_the_same_state(self, events, rnd, copies):
        events = unique(events)
        shuffled = events + [rnd.choice(events) for _ in range(copies)]
        rnd.shuffle(shuffled)
        a, b = fold(events), fold(shuffled)
        assert a.to_row() == b.to_row()
        assert contribution(a) == contribution(b)

    def test_latest_correction_wins_and_ties_go_to_greater_event_id(self):
        r1 = {"event_id": "b", "type": "received", "occurred_at": T0, "channel": "online", "due_at": T0}
        r2 = {"event_id": "a", "type": "received", "occurred_at": T0, "channel": "postal", "due_at": T0}
        assert fold([r1, r2]).channel == fold([r2, r1]).channel == "online"

    def test_apology_does_not_move_the_deadline(self):
        recv = {"event_id": "r", "type": "received", "occurred_at": T0, "channel": "online", "due_at": T0 + timedelta(days=1)}
        apology = {"event_id": "x", "type": "due_changed", "occurred_at": T0, "reason": "apology", "due_at": T0 + timedelta(days=9)}
        ext = {"event_id": "y", "type": "due_changed", "occurred_at": T0, "reason": "legal_extension", "due_at": T0 + timedelta(days=5)}
        assert fold([recv, apology]).effective_due() == T0 + timedelta(days=1)
        assert fold([recv, apology, ext]).effective_due() == T0 + timedelta(days=5)

    def test_earlier_terminal_ends_the_dossier(self):
        res = {"event_id": "r", "type": "resolved", "occurred_at": T0 + timedelta(hours=2)}
        wd = {"event_id": "w", "type": "withdrawn", "occurred_at": T0 + timedelta(hours=1)}
        state = fold([res, wd])
        assert state.terminal() == ("withdrawn", T0 + timedelta(hours=1))
        assert state.ignored_terminal_at() == T0 + timedelta(hours=2)

    def test_resolution_before_receipt_is_completed_later(self):
        res = {"event_id": "r", "type": "resolved", "occurred_at": T0 + timedelta(days=2)}
        recv = {"event_id": "q", "type": "received", "occurred_at": T0, "channel": "online", "due_at": T0 + timedelta(days=3)}
        early = fold([res])
        assert early.recv_at is None and contribution(early)["day"]
        full = fold([res, recv])
        assert full.to_row() == fold([recv, res]).to_row()
        day = T0.astimezone(TZ).date()
        assert contribution(full)["day"][("19777", "*", day)]["received"] == 1


T_EV = datetime(2025, 9, 30, 2, 0, tzinfo=UTC)


def ev(event_id: str, kind: str, hours: int, sector: str | None = None) -> dict:
    e = {
        "event_id": event_id,
        "type": kind,
        "dossier_id": "D1",
        "unit_code": "19777",
        "occurred_at": T_EV + timedelta(hours=hours),
        "due_at": T_EV + timedelta(days=2),
        "channel": "online",
    }
    if sector:
        e["sector"] = sector
    return e


SECTOR_CASES = [
    # the winning received names one: it, whatever came later
    ([ev("r1", "received", 0, "land"), ev("s1", "resolved", 5, "business")], "land"),
    # a correction of the receipt that names none: the latest other event that names one, the
    # superseded receipt included
    ([ev("r1", "received", 0, "land"), ev("r2", "received", 1)], "land"),
    ([ev("r1", "received", 0, "land"), ev("r2", "received", 1), ev("s1", "resolved", 2, "business")], "business"),
    ([ev("r1", "received", 3, "land"), ev("r2", "received", 4), ev("s1", "resolved", 2, "business")], "land"),
    # the winning received names one, a superseded receipt another
    ([ev("r1", "received", 0, "land"), ev("r2", "received", 1, "business")], "business"),
    # no receipt
    ([ev("s1", "resolved", 2, "business"), ev("w1", "withdrawn", 1, "land")], "business"),
    ([ev("s1", "resolved", 2)], None),
]


class TestSector:
    @pytest.mark.parametrize("events,sector", SECTOR_CASES)
    def test_service_in_any_order(self, events, sector):
        for order in (events, list(reversed(events))):
            assert fold(order).sector() == sector
            assert fold(order).to_row()["sector"] == (sector or "")

    @pytest.mark.parametrize("events,sector", SECTOR_CASES)
    def test_reference(self, events, sector):
        (dossier,) = ref.dossiers(events)
        assert dossier.sector() == sector


class TestDeadlineAndTerminal:
    def test_apology_never_moves_the_deadline_even_when_latest(self):
        due = T_EV + timedelta(days=2)
        events = [
            ev("r1", "received", 0),
            {**ev("c1", "due_changed", 1), "reason": "legal_extension", "due_at": due + timedelta(days=3)},
            {**ev("c2", "due_changed", 2), "reason": "apology", "due_at": due + timedelta(days=9)},
        ]
        assert fold(events).effective_due() == due + timedelta(days=3)
        (dossier,) = ref.dossiers(events)
        assert dossier.due() == due + timedelta(days=3)

    @pytest.mark.parametrize("res_id,wd_id,kind", [("B", "a", "resolved"), ("b", "A", "withdrawn"), ("a", "ä", "resolved")])
    def test_same_instant_terminals_by_binary_event_id(self, res_id, wd_id, kind):
        events = [ev("r1", "received", 0), ev(res_id, "resolved", 3), ev(wd_id, "withdrawn", 3)]
        assert fold(events).terminal()[0] == kind
        (dossier,) = ref.dossiers(events)
        assert dossier.terminal()["type"] == kind
