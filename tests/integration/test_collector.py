"""A service process sets its collector's policy (app.collector) when its app starts."""

from __future__ import annotations

import gc

from app import collector


async def test_a_service_starting_sets_the_collector_policy(make_service):
    gc.set_threshold(700, 10, 10)  # CPython's defaults
    async with make_service():
        assert gc.get_threshold() == collector.THRESHOLDS
        assert gc.get_freeze_count() > 0  # what was alive at the first start
