"""`chiso demo`'s feeder on both stores: the simulated stream through the real ingest service."""

from __future__ import annotations

import time

import pytest

from app.demo import STALE_DAYS, DemoConfig, feed, has_data
from tests.conftest import test_settings as settings_for  # (not collected as a test)


async def test_backfill_goes_through_ingest_and_shows_in_the_kpis(fresh_service):
    settings = settings_for(fresh_service.url)
    registry = await fresh_service.app.state.registry.refresh()
    assert not await has_data(fresh_service.db, registry, settings)

    stats = await feed(settings, DemoConfig(days=40, per_commune_per_day=0.005, seed=11), live=False)
    assert stats["rejected"] == 0 and stats["accepted"] == stats["events"] > 500
    assert stats["batches"] >= 2
    assert await has_data(fresh_service.db, registry, settings)

    token = await fresh_service.key("read")
    k = (await fresh_service.get("/api/v1/units/VN/kpis", token, window="30d")).json()["kpis"]
    assert k["received"] > 0 and k["resolved"] > 0
    assert k["resolved_early"] > 0 and k["resolved_on_time"] > 0 and k["resolved_late"] > 0
    assert 0.7 < k["on_time_rate"] < 0.99 and 0.7 < k["online_rate"] < 0.95
    ranking = (await fresh_service.get("/api/v1/rankings", token, level="province", window="30d", limit=100)).json()
    rated = [it["kpis"]["on_time_rate"] for it in ranking["items"] if it["kpis"]["on_time_rate"] is not None]
    assert len(rated) >= 20 and len(set(rated)) > 5  # provinces differ

    # the silent sources were accepted as they sent, until they stopped nine days ago: silent now
    silent = (await fresh_service.get("/api/v1/units/VN/silent", token)).json()
    assert sorted(it["unit"]["code"] for it in silent["items"]) == sorted(stats["stale_units"])
    # accepted last a few minutes after their last event, which was before they stopped, but may
    # be a day or two before it: few events come at night and on weekends (240.06 h was seen on a
    # Monday evening, stopped on the Saturday)
    assert all(STALE_DAYS * 24 - 1 < it["silent_hours"] < (STALE_DAYS + 3) * 24 for it in silent["items"])
    assert k["silent_units"] == len(stats["stale_units"]) == 3


@pytest.mark.slow  # a day's volume of the demo (make test-fast leaves it out)
async def test_the_volume_fits_the_time_budget(fresh_service):
    settings = settings_for(fresh_service.url)
    started = time.monotonic()
    stats = await feed(settings, DemoConfig(days=30, backfill_seconds=4, seed=12), live=False)
    assert stats["rejected"] == 0 and stats["events"] > 0
    assert stats["per_commune_per_day"] > 0
    assert time.monotonic() - started < 15  # about the budget, with room for a slow machine
