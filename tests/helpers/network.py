"""Two real chiso nodes, a province and the national one, and waiting for them to agree."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import httpx

from app.db.engine import Database
from app.keys import service as keys
from app.units.service import RegistryCache
from tests.helpers.export import diff_kpis
from tests.helpers.server import free_port
from tests.reference import TZ

BIN = Path(sys.executable).parent


SECRET = "hue-to-vn"


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


def getter(client: httpx.AsyncClient, base: str, token: str):
    async def get(path, params):
        r = await client.get(base + path, params=params, headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200, r.text
        return r.json()

    return get


async def converge(sub_get, nat_get, units, timeout: float = 90.0) -> float:
    """Seconds until the national node answers what it should for these units; fails after timeout."""
    t0 = time.monotonic()
    while True:
        bad = await diff_kpis(sub_get, nat_get, units, datetime.now(TZ).date())
        if not bad:
            return time.monotonic() - t0
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"no convergence after {timeout} s: {bad[:5]}")
        await asyncio.sleep(0.5)
