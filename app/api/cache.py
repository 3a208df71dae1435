"""A per-worker cache of rendered KPI answers, so thousands of pollers cost almost nothing.

An entry is served while the data version it was computed at is still current (for `idle_for`
seconds, because deadlines pass without events; then, up to `stale_for`, while one refresh runs
behind it), or for `fresh_for` seconds whatever happens: under continuous ingest that bounds
staleness well within the SPEC's one second. A worker's own writes bump the version, so a client reads its own writes. Concurrent
misses for the same answer are computed once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import orjson

from app.api.etag import etag_of
from app.db.engine import Database
from app.db import meta

log = logging.getLogger("chiso.cache")


@dataclass(frozen=True, slots=True)
class Entry:
    body: bytes
    etag: str
    version: int
    at: float


class AnswerCache:
    def __init__(
        self, db: Database, fresh_for: float = 0.3, idle_for: float = 10.0, stale_for: float = 30.0, max_entries: int = 4096
    ):
        self.db = db
        self.fresh_for = fresh_for
        self.idle_for = idle_for
        self.stale_for = stale_for
        self._refreshing: set[asyncio.Task] = set()
        self.max_entries = max_entries
        self._entries: OrderedDict[str, Entry] = OrderedDict()
        self._inflight: dict[str, asyncio.Future] = {}

    def invalidate(self) -> None:
        """Forget every answer: this worker just committed new events."""
        self._entries.clear()

    async def version(self) -> int:
        async with self.db.session() as session:
            return await meta.read_meta(session, meta.DATA_VERSION)

    async def get(self, key: str, compute: Callable[[], Awaitable[dict]]) -> Entry:
        """The cached answer for `key`, or a freshly computed one.

        When no event arrived since an answer was computed and it is only old by time (deadlines
        pass without events), it is served at once while one refresh runs behind it, so pollers of
        an unchanged answer never wait for its recomputation; past `stale_for` it is recomputed first.
        """
        now = time.monotonic()
        entry = self._entries.get(key)
        if entry is not None and now - entry.at < self.fresh_for:
            return entry
        version = await self.version()
        if entry is not None and entry.version == version:
            if now - entry.at < self.idle_for:
                return entry
            if now - entry.at < self.stale_for:
                if key not in self._inflight:
                    task = asyncio.ensure_future(self._compute(key, compute, version))
                    self._refreshing.add(task)
                    task.add_done_callback(self._refreshed)
                return entry
        pending = self._inflight.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        return await self._compute(key, compute, version)

    def _refreshed(self, task: asyncio.Task) -> None:
        self._refreshing.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("refreshing a cached answer failed: %r", task.exception())

    async def _compute(self, key: str, compute: Callable[[], Awaitable[dict]], version: int) -> Entry:
        """Compute one answer, once however many ask for it meanwhile."""
        future = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            payload = await compute()
            basis = {k: v for k, v in payload.items() if k != "as_of"}
            entry = Entry(orjson.dumps(payload), etag_of(orjson.dumps(basis)), version, time.monotonic())
            self._entries[key] = entry
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
            future.set_result(entry)
            return entry
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: waiters re-raise it, nobody else must
            raise
        finally:
            del self._inflight[key]
