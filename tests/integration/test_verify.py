"""`chiso kpis verify` rebuilds from the events and finds a corrupted aggregate."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from datetime import UTC, datetime

import pytest
from sqlalchemy import text

from app.aggregates import rebuild as verify
from app.db import meta
from tests.helpers.kpis import COMMUNES_46, post_all
from tests.streams import stream


async def _loaded(svc):
    rng = random.Random(5)
    events = stream(rng, COMMUNES_46, 120, datetime.now(UTC))
    await post_all(svc, await svc.key("ingest", "46"), events, rng)


async def _changed(session, unit: str) -> None:
    """Mark the unit's figures changed, as every write does: answers stored before are stale now."""
    count = (
        "INSERT INTO unit_change (unit_code, changes, changed_at) VALUES (:u, 1, :t) "
        "ON CONFLICT (unit_code) DO UPDATE SET changes = unit_change.changes + 1"
    )
    await session.execute(text(count), {"u": unit, "t": datetime.now(UTC)})
    await meta.bump_data_version(session)


def _cli(url: str, *args) -> subprocess.CompletedProcess:
    env = {**os.environ, "DATABASE_URL": url}
    return subprocess.run([sys.executable, "-m", "app.cli", "kpis", "verify", *args], env=env, capture_output=True, text=True)


class TestVerify:
    async def test_clean_state_verifies(self, fresh_service):
        await _loaded(fresh_service)
        report = await verify.verify(fresh_service.db, fresh_service.settings)
        assert report.units == 3 and report.events > 120
        assert report.differences == []

    @pytest.mark.slow
    async def test_finds_and_repairs_a_corrupted_aggregate(self, fresh_service):
        svc = fresh_service
        await _loaded(svc)
        token = await svc.key("read")
        commune = f"/api/v1/units/{COMMUNES_46[0]}/kpis"
        before = (await svc.get(commune, token, window="90d")).json()["kpis"]
        async with svc.db.transaction() as session:
            await session.execute(
                text("UPDATE unit_day SET received = received + 5 WHERE unit_code = :u AND sector = '*'"),
                {"u": COMMUNES_46[0]},
            )
            await _changed(session, COMMUNES_46[0])
        corrupted = (await svc.get(commune, token, window="90d")).json()["kpis"]
        assert corrupted["received"] != before["received"]

        result = _cli(svc.url)
        assert result.returncode == 1, result.stdout + result.stderr
        assert "DIFFERENCE" in result.stdout and COMMUNES_46[0] in result.stdout

        result = _cli(svc.url, "--repair")
        assert result.returncode == 0, result.stdout + result.stderr
        assert _cli(svc.url).returncode == 0
        after = (await svc.get(commune, token, window="90d")).json()["kpis"]
        assert after == before

    @pytest.mark.slow
    async def test_finds_and_repairs_a_corrupted_rollup(self, fresh_service):
        """A province's rollup rows must equal the sums of the own rows below it."""
        svc = fresh_service
        await _loaded(svc)
        token = await svc.key("read")
        before = (await svc.get("/api/v1/units/46/kpis", token, window="90d")).json()["kpis"]
        async with svc.db.transaction() as session:
            await session.execute(text("UPDATE rollup_day SET resolved_late = resolved_late + 3 WHERE unit_code = '46'"))
            await _changed(session, "46")
        corrupted = (await svc.get("/api/v1/units/46/kpis", token, window="90d")).json()["kpis"]
        assert corrupted["resolved_late"] > before["resolved_late"]

        result = _cli(svc.url)
        assert result.returncode == 1, result.stdout + result.stderr
        assert "rollup" in result.stdout and "'46'" in result.stdout

        result = _cli(svc.url, "--repair")
        assert result.returncode == 0, result.stdout + result.stderr
        assert _cli(svc.url).returncode == 0
        after = (await svc.get("/api/v1/units/46/kpis", token, window="90d")).json()["kpis"]
        assert after == before
