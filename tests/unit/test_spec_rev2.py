"""SPEC revision 2 on the pure parts: a dossier's sector, deadline and terminal, in the service and the reference."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests import reference as ref
from tests.unit.test_dossier_merge import fold

T0 = datetime(2025, 9, 30, 2, 0, tzinfo=UTC)


def ev(event_id: str, kind: str, hours: int, sector: str | None = None) -> dict:
    e = {
        "event_id": event_id,
        "type": kind,
        "dossier_id": "D1",
        "unit_code": "19777",
        "occurred_at": T0 + timedelta(hours=hours),
        "due_at": T0 + timedelta(days=2),
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
        due = T0 + timedelta(days=2)
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
