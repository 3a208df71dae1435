"""The reference topology with two real running instances: a province node (`chiso serve`, its own
PostgreSQL database) pushing to a national node (another `chiso serve`, another database) with
EXPORT_INTERVAL=1. A randomised stream with late events, corrections and pending dossiers whose
deadlines pass during the test; the national node stopped and restarted; delay and throughput.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tests.conftest import new_database_url
from tests.helpers.export import PROVINCE
from tests.helpers.network import SECRET, Node, converge, getter
from tests.streams import stream, wire


@pytest.fixture
async def nodes(templates, pg_server, tmp_path):
    prov_url = await new_database_url("postgres", templates, pg_server, tmp_path)
    nat_url = await new_database_url("postgres", templates, pg_server, tmp_path)
    national = Node(nat_url, tmp_path, "vn", SUBORDINATES=f'{{"hue": "{SECRET}"}}')
    province = Node(prov_url, tmp_path, "hue", CENTRAL_URL=national.base, EXPORT_SECRET=SECRET)
    try:
        national.start()
        province.start()
        yield province, national
    finally:
        province.stop()
        national.stop()


def pending_soon(rng: random.Random, units: list[str], n: int, tag: str) -> list[dict]:
    """Dossiers received an hour ago whose deadlines pass, or enter the 24, 48 or 72 h due-soon
    window, within the next seconds."""
    now = datetime.now(UTC)
    return [
        {
            "event_id": f"{tag}-{i}",
            "type": "received",
            "dossier_id": f"{tag}-{i}",
            "unit_code": rng.choice(units),
            "occurred_at": (now - timedelta(hours=1)).isoformat(),
            "channel": "online",
            "due_at": (now + timedelta(hours=rng.choice((0, 24, 48, 72)), seconds=rng.uniform(3, 6))).isoformat(),
        }
        for i in range(n)
    ]


@pytest.mark.postgres
async def test_province_to_national(nodes, tmp_path):
    province, national = nodes
    rng = random.Random(2025)
    ingest, read_p, read_n = await province.key("ingest", PROVINCE), await province.key("read"), await national.key("read")
    async with httpx.AsyncClient(timeout=30) as client:
        sub_get = getter(client, province.base, read_p)
        nat_get = getter(client, national.base, read_n)
        communes = [u["code"] for u in (await sub_get("/api/v1/units", {"parent": PROVINCE, "limit": 5000}))["items"]]
        units = [PROVINCE, *communes[:8]]

        async def post(events):
            for i in range(0, len(events), 500):
                r = await client.post(
                    province.base + "/api/v1/events", json={"events": events[i : i + 500]}, headers={"Authorization": f"Bearer {ingest}"}
                )
                assert r.status_code == 202, r.text

        events = [wire(e) for e in stream(rng, units, 600, datetime.now(UTC), days=120)]
        rng.shuffle(events)
        first, late = events[: len(events) * 2 // 3], events[len(events) * 2 // 3 :]
        await post(first + pending_soon(rng, units, 15, "soon-a"))
        await converge(sub_get, nat_get, units[:3])
        await asyncio.sleep(6)  # the deadlines pass or come within 24/48/72 h, with no event: today's overdue and due soon change
        await converge(sub_get, nat_get, units[:3])

        # The national node goes away; the province keeps ingesting (late events, corrections, duplicates).
        national.stop()
        await post(late + first[:100] + pending_soon(rng, units, 10, "soon-b"))
        t0 = time.monotonic()
        while not (ready := (await client.get(province.base + "/readyz")).json()["checks"]["export"])["backlog"]:
            assert time.monotonic() - t0 < 60, f"nothing produced for the absent central node: {ready}"
            await asyncio.sleep(0.2)
        await asyncio.sleep(2)  # a few failed pushes
        ready = (await client.get(province.base + "/readyz")).json()["checks"]["export"]
        backlog = ready["backlog"]
        assert backlog > 0 and ready["parked"] == 0 and ready["lag_seconds"] > 0, ready
        metrics_text = (await client.get(province.base + "/metrics")).text
        assert "chiso_export_backlog_records" in metrics_text and "chiso_export_lag_seconds" in metrics_text
        national.start()
        t0 = time.monotonic()
        while (await client.get(province.base + "/readyz")).json()["checks"]["export"]["backlog"]:
            assert time.monotonic() - t0 < 120, "backlog not drained"  # a liveness bound: the drain time is the figure
            await asyncio.sleep(0.05)
        drain = time.monotonic() - t0
        await converge(sub_get, nat_get, units)
        status = (await client.get(province.base + "/readyz")).json()["checks"]["export"]
        seen = (await client.get(national.base + "/readyz")).json()["checks"]["export"]["subordinates"]["hue"]
        assert status["parked"] == 0 and seen["last_sequence"] == status["last_sequence"]

        # End-to-end delay: an acknowledged event until its effect is visible at the national node.
        delays = []
        commune = communes[0]
        for i in range(20):
            before = (await nat_get(f"/api/v1/units/{commune}/kpis", {"window": "1d"}))["kpis"]["received"]
            await post(
                [
                    {
                        "event_id": f"lat-{i}",
                        "type": "received",
                        "dossier_id": f"lat-{i}",
                        "unit_code": commune,
                        "occurred_at": datetime.now(UTC).isoformat(),
                        "channel": "online",
                        "due_at": (datetime.now(UTC) + timedelta(days=3)).isoformat(),
                    }
                ]
            )
            t1 = time.monotonic()
            while (await nat_get(f"/api/v1/units/{commune}/kpis", {"window": "1d"}))["kpis"]["received"] == before:
                assert time.monotonic() - t1 < 10
                await asyncio.sleep(0.02)
            delays.append(time.monotonic() - t1)
        report = (
            f"end-to-end delay p50 {statistics.median(delays):.2f} s, max {max(delays):.2f} s over {len(delays)}; "
            f"backlog of {backlog} records drained in {drain:.2f} s ({backlog / drain:.0f} records/s)"
        )
        print(report)
        (tmp_path / "network-measurements.txt").write_text(report)
        assert max(delays) < 5
