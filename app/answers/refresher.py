"""The refresher: one process of the deployment (app.db.leadership) keeps the answers polled in the
last few minutes fresh, so pollers never pay for a computation.

Each tick it computes again the polled answers that are behind the current data version, or that are
about to be too old to serve although nothing changed (deadlines pass with time): those polled in
the last ON_SCREEN seconds first, the oldest first, and `concurrency` at a time (each claimed with
the data version it starts from in one transaction, stored in another; the KPIs of communes of one
period, when there are `batch_from` or more to compute, at once from the rows of the ranking of
every commune: kinds.batched); answers nobody
polled for `keep_for` seconds are left alone, and forgotten after `forget_after`. On PostgreSQL it
has a pool of its own, sized for that concurrency and without a ping per checkout (a failed tick is
tried again at the next). Stored answers outlive a restart (on PostgreSQL, not a crash: the table is
unlogged), so after one the answers polled before are warm again at the first tick.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import defaultdict
from datetime import timedelta

import orjson

from app.answers import repository as repo
from app.answers.dependencies import Dependencies
from app.answers.kinds import COMPARED_KINDS, ReadContext, batched, compared_point
from app.answers.service import SharedAnswers
from app.db.engine import Database
from app.db.leadership import Leadership
from app.errors import ChisoError
from app.loop import every
from app.scoring import service as scoring
from app.scoring.ranking import RankingMemo
from app.settings import Settings
from app.units.service import RegistryCache

log = logging.getLogger("chiso.answers")

LOCK_KEY = 0x6368_6973_6F61_6E73  # "chisoans": the advisory lock of the one active refresher
LEASE = "answers"
LEAD_EVERY = 2.0  # seconds between two checks of the leadership
FORGET_EVERY = 60.0  # seconds between two sweeps of answers nobody polls
# An answer polled this recently is on a screen now (workers record polls every 10 s): when a tick
# cannot refresh everything in time, these go first, then those polled minutes ago (keep_for)
ON_SCREEN = 30.0


class AnswerRefresher:
    def __init__(
        self,
        db: Database,
        settings: Settings,
        keep_for: float = 180.0,
        forget_after: float = 3600.0,
        concurrency: int | None = None,
        batch_from: int = 8,
    ):
        self.settings = settings
        self.interval = settings.answer_refresh_seconds
        self.concurrency = concurrency or settings.answer_refresh_concurrency
        # its own connections (opened when it first leads): `concurrency` computations, each a claim, its
        # reads and a store, and the tick's own statements; the leadership keeps the process's pool
        self._own = None if db.is_sqlite else Database(db.url, pool_size=self.concurrency + 2)
        self.db = self._own or db
        holder = f"refresher-{settings.node_id}-{uuid.uuid4().hex[:12]}"
        self.answers = SharedAnswers(self.db, fresh_for=settings.answer_cache_seconds, holder=holder)
        self.leadership = Leadership(db, LOCK_KEY, LEASE, self.answers.holder, ttl=30.0)
        self.registry = RegistryCache(db)
        self.rankings = RankingMemo()
        self.keep_for = keep_for
        self.forget_after = forget_after
        self._led_at = -LEAD_EVERY
        self._leader = False
        self._swept_at = 0.0
        self.deps = Dependencies(settings.tz)
        # answers of one kinds.batched group computed together once there are this many to compute
        self.batch_from = batch_from
        self.restamped = 0  # answers found to hold still, not computed again

    async def run_once(self) -> int:
        """One tick: when this process leads, refresh what needs it; the number of answers refreshed
        (computed again, or found to hold still and restamped)."""
        if time.monotonic() - self._led_at >= LEAD_EVERY:
            led, self._leader = self._leader, await self.leadership.acquire()
            self._led_at = time.monotonic()
            if led and not self._leader and self._own is not None:
                await self._own.dispose()  # its connections go back to the server until it leads again
        if not self._leader:
            self.deps.forget()
            return 0
        now = scoring._now()  # the scoring clock: the instant restamps stand at (`as_of`, `until`)
        # refreshed a little before they would be too old to serve, so no poller waits for one
        older = now - timedelta(seconds=max(0.0, self.answers.idle_for - 2.0))
        on_screen = now - timedelta(seconds=ON_SCREEN)
        registry = await self.registry.get()
        prev_version = self.deps.version
        tz = self.settings.tz
        async with self.db.session() as session:
            polled = await repo.read_polled(session, now - timedelta(seconds=self.keep_for))
            asked = {row.key: orjson.loads(row.params) for row in polled}
            since = self.deps.since(polled, now)
            compared = [(row.kind, asked[row.key]) for row in polled if row.kind in COMPARED_KINDS]
            version, touched = await self.deps.tick(session, registry, now, since, self.settings.silent_after_hours, compared)
        held, todo = [], []
        for row in polled:
            key, kind, params, etag = row.key, row.kind, row.params, row.etag
            holds = self.deps.holds(row, asked[key], touched, registry, prev_version, now)
            if row.version == version and row.computed_at >= older:
                if not holds:
                    self.deps.drop(key)
                continue  # current: nothing to do
            if row.claimed_until is not None and row.claimed_until >= now:
                continue  # being computed elsewhere
            # no unit of it changed, no deadline of it passed: the same figures, at now
            (held if holds else todo).append((key, kind, params, etag, row.computed_at, row.polled_at < on_screen))
        done = 0
        if held:  # one statement for all (on PostgreSQL)
            stamps = []
            for key, kind, _, etag, *_ in held:  # a KPI answer of a period in progress: its previous figures stand at t now
                cp = compared_point(kind, asked[key], now, tz) if kind == "kpis" else None
                stamps.append((key, etag, None if cp is None else scoring.as_of(cp[1], tz)))
            async with self.db.autocommit(write=True) as session:
                stamped = await repo.restamp(session, stamps, version, now, scoring.as_of(now, tz))
            self.restamped += len(stamped)
            done += len(stamped)
            todo += [h for h in held if h[0] not in stamped]  # computed (or claimed) elsewhere meanwhile
        ctx = ReadContext.of(self.db, registry, self.settings, self.rankings)
        todo.sort(key=lambda t: (t[5], t[4]))  # on a screen now first, then the oldest first: what waited longest
        groups: dict[tuple, list] = defaultdict(list)  # answers computed together (the KPIs of communes, per period)
        for item in todo:
            if (group := batched(item[1], asked[item[0]], registry)) is not None:
                groups[group].append(item)
        batches = [items for items in groups.values() if len(items) >= self.batch_from]
        together = {item[0] for items in batches for item in items}
        todo = [item for item in todo if item[0] not in together]
        slots = asyncio.Semaphore(self.concurrency)

        async def many(items: list) -> int:
            async with slots:
                for item in items:
                    self.deps.drop(item[0])
                answers = await self.answers.compute_many(ctx, items[0][1], [(key, params) for key, _, params, *_ in items], by="refresher")
                for (key, kind, *_), answer in zip(items, answers, strict=True):
                    self.deps.computed(key, kind, answer.etag, registry, now)
                return len(answers)

        async def one(key: str, kind: str, params: str) -> int:
            async with slots:
                self.deps.drop(key)
                try:
                    answer = await self.answers.compute(ctx, kind, key, params, by="refresher", create=False)
                except ChisoError as exc:  # the unit went, say: nobody can get this answer any more
                    log.info("forgetting the shared answer %s: %s", key, exc)
                    async with self.db.autocommit(write=True) as session:
                        await repo.delete_answer(session, key)
                    return 0
                if answer is None:  # claimed elsewhere meanwhile (or forgotten)
                    return 0
                self.deps.computed(key, kind, answer.etag, registry, now)
                return 1

        results = await asyncio.gather(
            *(many(items) for items in batches), *(one(key, kind, params) for key, kind, params, *_ in todo), return_exceptions=True
        )
        failed = [r for r in results if isinstance(r, BaseException)]
        done += sum(r for r in results if not isinstance(r, BaseException))
        if time.monotonic() - self._swept_at >= FORGET_EVERY:
            self._swept_at = time.monotonic()
            async with self.db.autocommit(write=True) as session:
                await repo.delete_unpolled(session, now - timedelta(seconds=self.forget_after))
        if failed:  # the others ran to their end: the tick fails with the first failure
            raise failed[0]
        return done

    async def run_forever(self) -> None:
        """Tick every ANSWER_REFRESH_SECONDS until cancelled; a failed tick is logged and the loop goes on."""
        await every(self.interval, self.run_once, "answer refresh tick failed", log)

    async def close(self) -> None:
        """Give the leadership up (and close the refresher's own connections)."""
        await self.leadership.release()
        if self._own is not None:
            await self._own.dispose()
