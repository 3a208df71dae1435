"""Rollup rows: a province's and the nation's rows equal the sums of the own rows below them, after
random streams (corrections, sector changes, late and out-of-order events, both terminals), posted
concurrently; and a rebuild from the own rows gives the same rows."""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from datetime import UTC, datetime

from app.aggregates import reads, writes
from app.aggregates import rebuild as verify
from app.db import meta
from app.units.service import RegistryCache
from tests.helpers.kpis import COMMUNES_46, COMMUNES_79
from tests.streams import stream, wire

UNITS = [*COMMUNES_46, *COMMUNES_79, "46", "79", "VN"]


def _sum_below(own: dict[str, dict], registry) -> dict[str, dict]:
    """Rollup rows computed here, in Python, from each unit's own rows and the registry's tree."""
    out: dict[str, dict] = {t: defaultdict(int) for t in ("hist", "cohort_due")}
    out["day"], out["total"] = defaultdict(lambda: defaultdict(int)), defaultdict(lambda: defaultdict(int))
    for unit, tables in own.items():
        above = [a.code for a in registry.ancestors(unit) if a.level != "commune"]
        if registry.get(unit).level != "commune":
            above.append(unit)
        for name, rows in tables.items():
            for key, value in rows.items():
                for a in above:
                    k = (a, *key[1:])
                    if isinstance(value, dict):
                        for c, v in value.items():
                            out[name][k][c] += v
                    else:
                        out[name][k] += value
    plain: dict[str, dict] = {}
    for name, rows in out.items():
        if name in ("day", "total"):
            plain[name] = {k: {c: v for c, v in cols.items() if v} for k, cols in rows.items()}
            plain[name] = {k: v for k, v in plain[name].items() if v}
        else:
            plain[name] = {k: v for k, v in rows.items() if v}
    return plain


async def _post_concurrently(svc, events: list[dict], rng: random.Random) -> None:
    token = await svc.key("ingest", "VN")
    batch = [wire(e) for e in events] + [wire(e) for e in rng.sample(events, k=len(events) // 10)]
    rng.shuffle(batch)
    chunks = [batch[i : i + 150] for i in range(0, len(batch), 150)]

    async def send(part):
        for chunk in part:
            r = await svc.post(chunk, token)
            assert r.status_code == 202, r.text
            assert r.json()["rejected"] == 0, r.json()["items"][:3]

    await asyncio.gather(*(send(chunks[i::4]) for i in range(4)))


class TestRollups:
    async def test_rollup_rows_equal_the_sums_of_the_units_below(self, fresh_service):
        svc = fresh_service
        rng = random.Random(12)
        await _post_concurrently(svc, stream(rng, UNITS, 400, datetime.now(UTC), days=60), rng)
        registry = await RegistryCache(svc.db).refresh()
        async with svc.db.session() as session:
            own = {u: await reads.read_unit_aggregates(session, u) for u in UNITS}
            live = await reads.read_rollups(session)
        want = _sum_below(own, registry)
        assert live["day"], "the stream left no rollup rows"
        assert {k[0] for k in live["day"]} == {"46", "79", "VN"}
        for name in ("day", "hist", "cohort_due", "total"):
            assert live[name] == want[name], name

        report = await verify.verify(svc.db, svc.settings)
        assert report.differences == []

        async with svc.db.transaction() as session:
            await writes.rebuild_rollups(session)
        async with svc.db.session() as session:
            assert await reads.read_rollups(session) == live

    async def test_answers_read_rollups_not_communes(self, fresh_service):
        """A province's answer comes from its rollup rows: they are what it reads."""
        from sqlalchemy import text

        svc = fresh_service
        rng = random.Random(3)
        await _post_concurrently(svc, stream(rng, UNITS, 60, datetime.now(UTC), days=20), rng)
        token = await svc.key("read")
        before = (await svc.get("/api/v1/units/46/kpis", token, window="30d")).json()["kpis"]
        async with svc.db.transaction() as session:
            await session.execute(text("DELETE FROM unit_day WHERE unit_code IN ('19777', '19900', '19930')"))
            await meta.bump_data_version(session)  # cached answers are stale now
        after = (await svc.get("/api/v1/units/46/kpis", token, window="30d")).json()["kpis"]
        assert after["received"] == before["received"] > 0

    async def test_deadlines_around_the_current_minute_count_exactly(self, fresh_service):
        """Today's corrections at now are exact for deadlines just before and after now, in and out of
        the minute holding now, at a commune, its province and the nation."""
        from datetime import timedelta

        svc = fresh_service
        token = await svc.key("ingest", "VN")
        read = await svc.key("read")
        now = datetime.now(UTC)
        offsets = (-90, -1, 20, 120)  # seconds from now: two already passed, two still ahead
        events = [
            {
                "event_id": f"m{i}",
                "type": "received",
                "dossier_id": f"M{i}",
                "unit_code": COMMUNES_46[0],
                "occurred_at": (now - timedelta(hours=1)).isoformat(),
                "channel": "online",
                "due_at": (now + timedelta(seconds=s)).isoformat(),
            }
            for i, s in enumerate(offsets)
        ]
        assert (await svc.post(events, token)).status_code == 202
        for code in (COMMUNES_46[0], "46", "VN"):
            kpis = (await svc.get(f"/api/v1/units/{code}/kpis", read, window="7d")).json()["kpis"]
            assert (kpis["pending"], kpis["overdue"]) == (4, 2), code
            assert (kpis["settlement_rate_766"], kpis["overdue_766"]) == (0.5, 2), code
