"""Real processes: several workers ingesting concurrently, and kill -9 right after a 202."""

from __future__ import annotations

import random
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tests.conftest import new_database_url
from tests.helpers.server import Server, cli, token

COMMUNES = ["19777", "19900", "19930", "26506"]


def events(n: int) -> list[dict]:
    now = datetime.now(UTC)
    out = []
    for i in range(n):
        unit = COMMUNES[i % len(COMMUNES)]
        d = f"d-{uuid.uuid4().hex[:10]}"
        at = now - timedelta(hours=random.randint(1, 200))
        out.append(
            {
                "event_id": f"r-{d}",
                "type": "received",
                "dossier_id": d,
                "unit_code": unit,
                "occurred_at": at.isoformat(),
                "channel": "online",
                "due_at": (at + timedelta(days=2)).isoformat(),
            }
        )
        out.append(
            {
                "event_id": f"s-{d}",
                "type": "resolved",
                "dossier_id": d,
                "unit_code": unit,
                "occurred_at": min(at + timedelta(minutes=random.randint(1, 3000)), now - timedelta(minutes=1)).isoformat(),
            }
        )
    return out


def post(url: str, key: str, batch: list[dict], **params) -> dict:
    r = httpx.post(f"{url}/api/v1/events", json={"events": batch}, headers={"Authorization": f"Bearer {key}"}, params=params, timeout=60)
    assert r.status_code == 202, r.text
    return r.json()


@pytest.fixture
async def env(store, templates, pg_server, tmp_path) -> dict:
    url = await new_database_url(store, templates, pg_server, tmp_path)
    return {"DATABASE_URL": url, "INGEST_RATE_PER_MINUTE": "0"}


class TestSeveralWorkers:
    def test_concurrent_overlapping_batches_count_once(self, env, tmp_path):
        key = token(env, "ingest", "VN")
        read = token(env, "read")
        all_events = events(300)
        with Server(env, workers=2, log=tmp_path / "serve.log") as server:

            def client(seed: int) -> tuple[int, int]:
                order = list(all_events)
                random.Random(seed).shuffle(order)
                acc = dup = 0
                for i in range(0, len(order), 150):
                    body = post(server.url, key, order[i : i + 150])
                    acc, dup = acc + body["accepted"], dup + body["duplicates"]
                return acc, dup

            with ThreadPoolExecutor(6) as pool:
                results = list(pool.map(client, range(6)))
            assert sum(a for a, _ in results) == len(all_events)  # every event accepted exactly once
            assert sum(d for _, d in results) == 5 * len(all_events)
            kpis = httpx.get(
                f"{server.url}/api/v1/units/VN/kpis", params={"window": "30d"}, headers={"Authorization": f"Bearer {read}"}
            ).json()["kpis"]
            assert kpis["received"] == len(all_events) // 2
            assert kpis["resolved"] + kpis["pending"] == len(all_events) // 2
        assert "live state matches the events" in cli(env, "kpis", "verify")


class TestKillAfterAck:
    def test_an_acknowledged_batch_survives_kill_9(self, env, tmp_path):
        key = token(env, "ingest", "VN")
        batch = events(500)
        server = Server(env, workers=1, log=tmp_path / "serve.log").start()
        try:
            body = post(server.url, key, batch)
            assert body["accepted"] == len(batch)
        finally:
            server.kill()  # SIGKILL the moment the 202 is read
        with Server(env, workers=1, log=tmp_path / "serve.log") as again:
            replay = post(again.url, key, batch, dry_run="true")
        assert replay["duplicates"] == len(batch)
        assert "live state matches the events" in cli(env, "kpis", "verify")
