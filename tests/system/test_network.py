"""The reference topology with two real running instances: a province node (`chiso serve`, its own
PostgreSQL database) pushing to a national node (another `chiso serve`, another database) with
EXPORT_INTERVAL=1. A randomised stream with late events, corrections and pending dossiers whose
deadlines pass during the test; the national node stopped and restarted; delay and throughput.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from app.db.engine import Database
from app.keys import service as keys
from app.units.service import RegistryCache
from tests.conftest import new_database_url
from tests.integration.test_export import PROVINCE, diff_kpis
from tests.reference import TZ
from tests.streams import stream, wire

BIN = Path(sys.executable).parent
SECRET = "hue-to-vn"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Node:
    def __init__(self, url: str, tmp: Path, name: str, **env):
        self.url, self.port, self.name = url, free_port(), name
        self.env = {
            **os.environ,
            "DATABASE_URL": url,
            "NODE_ID": name,
            "EXPORT_INTERVAL": "1",
            "EXPORT_BACKOFF_MAX": "2",
            "INGEST_RATE_PER_MINUTE": "0",
            "SEED_REGISTRY": "false",
            "DB_POOL_SIZE": "4",  # two nodes, their workers and exporters share the server with the suite
            **env,
        }
        self.log = tmp / f"{name}.log"
        self.proc: subprocess.Popen | None = None
        self.base = f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        with self.log.open("ab") as out:  # the child holds its own copy
            self.proc = subprocess.Popen(
                [str(BIN / "chiso"), "serve", "--port", str(self.port)],
                env=self.env,
                cwd=self.log.parent,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.base + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise AssertionError(f"{self.name} did not start: {self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    async def key(self, scope: str, unit: str | None = None) -> str:
        db = Database(self.url, 1)
        try:
            registry = await RegistryCache(db).refresh()
            return (await keys.create_key(db, registry, scope, f"{self.name} {scope}", unit))[1]
        finally:
            await db.dispose()


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


def getter(client: httpx.AsyncClient, base: str, token: str):
    async def get(path, params):
        r = await client.get(base + path, params=params, headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200, r.text
        return r.json()

    return get


async def converge(sub_get, nat_get, units, timeout: float = 30.0) -> float:
    """Seconds until the national node answers what it should for these units; fails after timeout."""
    t0 = time.monotonic()
    while True:
        bad = await diff_kpis(sub_get, nat_get, units, datetime.now(TZ).date())
        if not bad:
            return time.monotonic() - t0
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"no convergence after {timeout} s: {bad[:5]}")
        await asyncio.sleep(0.5)


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
            assert time.monotonic() - t0 < 30, "backlog not drained"
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
