"""The communes' ranking kept per unit (scoring.RankingMemo) answers exactly what a computation from
scratch answers, after every change: posts to some communes, late events, corrections, a central
node's merge aside (receiver writes go through the same change counts)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from app.aggregates import periods
from app.scoring import service
from app.scoring.context import Reader
from app.scoring.service import RankingMemo
from app.units.service import RegistryCache
from tests.helpers.kpis import COMMUNES_46, COMMUNES_79
from tests.streams import stream, wire

COMMUNES = [*COMMUNES_46, *COMMUNES_79]


async def _both(svc, memo, parent, window="30d"):
    registry = await RegistryCache(svc.db).refresh()
    tz = svc.settings.tz
    p = periods.window(window, periods.today(service._now(), tz))
    args = (Reader(svc.db, registry, tz), "commune", parent, p, "-on_time_rate", 5000, 0)
    kept, fresh = await service.ranking(*args, memo=memo), await service.ranking(*args)
    for answer in (kept, fresh):
        answer.pop("as_of")
    return kept, fresh


class TestRankingMemo:
    @pytest.mark.slow
    async def test_kept_figures_equal_a_fresh_computation_after_every_change(self, fresh_service):
        svc = fresh_service
        rng = random.Random(21)
        token = await svc.key("ingest", "VN")
        memo = RankingMemo()
        events = [wire(e) for e in stream(rng, COMMUNES, 300, datetime.now(UTC), days=40)]
        rng.shuffle(events)
        for part in range(6):  # each part changes some communes only
            chunk = events[part * 60 : (part + 1) * 60] if part < 5 else events[300:]
            r = await svc.post(chunk, token)
            assert r.status_code == 202, r.text
            for parent in (None, "46"):
                for window in ("7d", "30d"):
                    kept, fresh = await _both(svc, memo, parent, window)
                    assert kept == fresh, (part, parent, window)
        figures = next(iter(memo._entries.values()))
        assert set(figures.rows) >= set(COMMUNES)

    async def test_only_changed_units_are_read_again(self, fresh_service):
        svc = fresh_service
        token = await svc.key("ingest", "VN")
        memo = RankingMemo()
        now = datetime.now(UTC)

        def received(unit, n):
            return {
                "event_id": f"r-{unit}-{n}",
                "type": "received",
                "dossier_id": f"D{n}",
                "unit_code": unit,
                "occurred_at": (now - timedelta(hours=3)).isoformat(),
                "channel": "online",
                "due_at": (now + timedelta(days=2)).isoformat(),
            }

        assert (await svc.post([received(u, 1) for u in COMMUNES], token)).status_code == 202
        await _both(svc, memo, "46")
        figures = next(iter(memo._entries.values()))
        before = dict(figures.stored)
        assert (await svc.post([received(COMMUNES_46[0], 2)], token)).status_code == 202
        kept, fresh = await _both(svc, memo, "46")
        assert kept == fresh
        changed = {u for u in before if figures.stored[u] is not before[u]}
        assert changed == {COMMUNES_46[0]}
        row = next(it for it in kept["items"] if it["unit"]["code"] == COMMUNES_46[0])
        assert row["kpis"]["received"] == 2 and row["kpis"]["pending"] == 2

    async def test_a_deadline_passing_moves_a_kept_unit_without_any_change(self, fresh_service, monkeypatch):
        svc = fresh_service
        token = await svc.key("ingest", "VN")
        memo = RankingMemo()
        now = datetime.now(UTC)
        event = {
            "event_id": "soon",
            "type": "received",
            "dossier_id": "S",
            "unit_code": COMMUNES_46[1],
            "occurred_at": (now - timedelta(hours=1)).isoformat(),
            "channel": "online",
            "due_at": (now + timedelta(seconds=2)).isoformat(),
        }
        assert (await svc.post([event], token)).status_code == 202
        # the clock stands still while a memo's answer and a fresh one are computed (a busy machine
        # may take seconds over them), then moves past the deadline
        monkeypatch.setattr(service, "_now", lambda: now)
        kept, fresh = await _both(svc, memo, "46", "7d")
        assert kept == fresh
        monkeypatch.setattr(service, "_now", lambda: now + timedelta(seconds=2.5))
        kept, fresh = await _both(svc, memo, "46", "7d")
        assert kept == fresh
        row = next(it for it in kept["items"] if it["unit"]["code"] == COMMUNES_46[1])
        assert row["kpis"]["overdue"] == 1
