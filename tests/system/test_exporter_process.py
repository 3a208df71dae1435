"""`chiso serve` runs the exporter in a process of its own, at a lower CPU priority, and starts it
again when it dies; the records it produces are readable from the web workers' pull feed."""

from __future__ import annotations

import os
import signal
import time
from datetime import UTC, datetime, timedelta

import httpx
import psutil

from app.export.process import NICE
from tests.conftest import new_database_url
from tests.helpers.server import Server, token


def exporters(server: Server) -> list[psutil.Process]:
    found = []
    for p in psutil.Process(server.proc.pid).children(recursive=True):
        try:
            if p.status() != psutil.STATUS_ZOMBIE and p.cmdline()[-2:] == ["export", "run"]:
                found.append(p)
        except psutil.Error:  # gone meanwhile
            pass
    return found


def wait_for(check, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.2)
    raise AssertionError("timed out")


async def test_the_exporter_runs_apart_niced_and_comes_back(store, templates, pg_server, tmp_path):
    url = await new_database_url(store, templates, pg_server, tmp_path)
    env = {
        "DATABASE_URL": url,
        "EXPORT_INTERVAL": "0.5",
        "INGEST_RATE_PER_MINUTE": "0",
        "PUBLIC_READ": "true",
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"),
    }
    with Server(env, workers=2, log=tmp_path / "serve.log") as server:
        (first,) = wait_for(lambda: exporters(server))
        niced = first.nice()
        assert niced == os.getpriority(os.PRIO_PROCESS, 0) + NICE
        workers = [p for p in psutil.Process(server.proc.pid).children(recursive=True) if p.pid != first.pid]
        assert all(p.nice() < niced for p in workers)

        key = token(env, "ingest", "46")
        at = datetime.now(UTC) - timedelta(hours=2)
        event = {
            "event_id": "r-1",
            "type": "received",
            "dossier_id": "d-1",
            "unit_code": "19777",
            "occurred_at": at.isoformat(),
            "channel": "online",
            "due_at": (at + timedelta(days=1)).isoformat(),
        }
        r = httpx.post(f"{server.url}/api/v1/events", json={"events": [event]}, headers={"Authorization": f"Bearer {key}"})
        assert r.status_code == 202 and r.json()["accepted"] == 1

        def records():
            feed = httpx.get(f"{server.url}/api/v1/export/snapshots").json()
            return [x for x in feed["records"] if x["unit"] == "19777"]

        assert wait_for(records)  # produced by the exporter process, served by a web worker

        first.send_signal(signal.SIGKILL)
        (second,) = wait_for(lambda: [p for p in exporters(server) if p.pid != first.pid])
        assert second.nice() == niced

        server.proc.send_signal(signal.SIGKILL)  # the server alone, not its process group
        server.proc.wait(10)
        try:
            assert wait_for(lambda: not second.is_running() or second.status() == psutil.STATUS_ZOMBIE)
        finally:
            os.killpg(server.proc.pid, signal.SIGKILL)  # the orphaned web workers
