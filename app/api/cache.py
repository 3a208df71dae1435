"""A per-worker cache of rendered KPI answers, so thousands of pollers cost almost nothing.

An entry's age counts from the moment its computation started (every event acknowledged before
then is in it). An entry is served:
- for `fresh_for` seconds whatever happens;
- while the data version it was computed at is still current: for `idle_for` seconds (deadlines
  pass without events), then, up to `stale_for`, while one refresh runs behind it;
- when the data changed, while it is younger than `changed_for` (under the SPEC's one second),
  while one refresh runs behind it: so under continuous ingest pollers never wait for a
  recomputation, and each polled answer is recomputed once per change, by nobody's request.
Concurrent misses for the same answer are computed once. The data version is read at most once
per `version_every` seconds for all requests of the worker. With `fresh_for` = 0 (the tests) an
answer is never served across a change: a client reads its own writes.
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
from app.db import meta
from app.db.engine import Database

log = logging.getLogger("chiso.cache")


@dataclass(frozen=True, slots=True)
class Entry:
    body: bytes
    etag: str
    version: int
    at: float


class AnswerCache:
    def __init__(
        self,
        db: Database,
        fresh_for: float = 0.3,
        idle_for: float = 10.0,
        stale_for: float = 30.0,
        changed_for: float = 0.8,
        max_entries: int = 4096,
    ):
        self.db = db
        self.fresh_for = fresh_for
        self.idle_for = idle_for
        self.stale_for = stale_for
        self.changed_for = changed_for if fresh_for > 0 else 0.0
        self.version_every = min(0.05, fresh_for)
        self._version: tuple[float, int] | None = None
        self._version_read: asyncio.Future | None = None
        self.computations = 0  # answers computed so far (refreshes included)
        self._refreshing: set[asyncio.Task] = set()
        self.max_entries = max_entries
        self._entries: OrderedDict[str, Entry] = OrderedDict()
        self._inflight: dict[str, asyncio.Future] = {}

    def invalidate(self) -> None:
        """This worker just committed new figures: the next request reads the version anew."""
        self._version = None

    async def version(self) -> int:
        """The data version, read once for every request within `version_every` seconds."""
        now = time.monotonic()
        if self._version is not None and now - self._version[0] < self.version_every:
            return self._version[1]
        if self._version_read is not None:
            return await asyncio.shield(self._version_read)
        future = self._version_read = asyncio.get_running_loop().create_future()
        try:
            async with self.db.session() as session:
                value = await meta.read_data_version(session)
            self._version = (now, value)
            future.set_result(value)
            return value
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()
            raise
        finally:
            self._version_read = None

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
                self._refresh(key, compute, version)
                return entry
        elif entry is not None and now - entry.at < self.changed_for:
            self._refresh(key, compute, version)
            return entry
        pending = self._inflight.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        return await self._compute(key, compute, version)

    def _refresh(self, key: str, compute: Callable[[], Awaitable[dict]], version: int) -> None:
        """Recompute an answer behind the one being served, unless that runs already. The answer
        is marked in flight before the task starts, so a second request never starts another."""
        if key not in self._inflight:
            future = self._claim(key)
            task = asyncio.ensure_future(self._compute(key, compute, version, future))
            self._refreshing.add(task)
            task.add_done_callback(self._refreshed)

    def _claim(self, key: str) -> asyncio.Future:
        future = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        return future

    def _refreshed(self, task: asyncio.Task) -> None:
        self._refreshing.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("refreshing a cached answer failed: %r", task.exception())

    async def _compute(self, key: str, compute: Callable[[], Awaitable[dict]], version: int, future: asyncio.Future | None = None) -> Entry:
        """Compute one answer, once however many ask for it meanwhile (they wait on `future`)."""
        future = future or self._claim(key)
        started = time.monotonic()
        self.computations += 1
        try:
            payload = await compute()
            basis = {k: v for k, v in payload.items() if k != "as_of"}
            entry = Entry(orjson.dumps(payload), etag_of(orjson.dumps(basis)), version, started)
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
            if self._inflight.get(key) is future:
                del self._inflight[key]
