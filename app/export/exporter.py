"""The exporter loop: the active exporter produces changed records into the outbox and pushes them
to the central node. It composes three parts: the leadership (app.db.leadership: exactly one exporter
is active per database, an advisory lock on PostgreSQL, a lease row on SQLite), the producer
(app.export.producer: makes the snapshot records) and the pusher (app.export.pusher: sends them,
retries, counts).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass

import httpx

from app.db.engine import Database
from app.db.leadership import Leadership
from app.export.producer import Producer
from app.export.pusher import Pusher
from app.settings import Settings

log = logging.getLogger("chiso.export")

LOCK_KEY = 0x6368_6973_6F65_7870  # "chisoexp": the advisory lock of the one active exporter
LEASE = "exporter"


@dataclass
class RunResult:
    leader: bool
    produced: int = 0
    sent: int = 0
    parked: int = 0
    failed: bool = False


class Exporter:
    def __init__(self, db: Database, settings: Settings, client: httpx.AsyncClient | None = None):
        self.db = db
        self.settings = settings
        self.holder = f"{settings.node_id}-{uuid.uuid4().hex[:12]}"
        ttl = max(30.0, 5 * settings.export_interval)
        self.leadership = Leadership(db, LOCK_KEY, LEASE, self.holder, ttl)
        self.producer = Producer(db, settings)
        self.pusher = Pusher(db, settings, client)

    async def run_once(self) -> RunResult:
        """One tick: when this is the active exporter, produce and push; always refresh the metrics."""
        try:
            leader = await self.leadership.acquire()
            result = RunResult(leader)
            if leader:
                result.produced = await self.producer.produce(budget=self._budget())
                pushed = await self.pusher.push()
                result.sent, result.parked, result.failed = pushed.sent, pushed.parked, pushed.failed
        finally:
            await self.pusher.update_metrics()
        return result

    def _budget(self) -> float:
        """Seconds one tick may spend producing: a big back-fill (every unit dirty over months) is
        spread over several ticks, so CPU per tick stays bounded (and, when the app runs the loop
        itself rather than `chiso serve`'s exporter process, requests on its event loop go on)."""
        return max(1.0, self.settings.export_produce_share * self.settings.export_interval)

    async def run_forever(self) -> None:
        """Tick every EXPORT_INTERVAL until cancelled; a failed tick is logged and the loop goes on."""
        while True:
            await asyncio.sleep(self.settings.export_interval)
            try:
                await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("export tick failed")

    async def close(self) -> None:
        """Give up leadership and the HTTP client."""
        await self.leadership.release()
        await self.pusher.close()
