"""Shared answers: a polled KPI answer is computed once for the deployment, stored rendered (body,
ETag, data version, when its computation started) in `shared_answer`, and served from there by
every worker and every replica; the refresher (app.answers.refresher) keeps polled ones fresh.

A stored answer is served when
- the data version it was computed at is still current and it is younger than `idle_for` (figures
  also move with time: deadlines pass); with `fresh_for` > 0 up to `stale_for` while one
  computation runs behind it;
- with `fresh_for` > 0, the data changed but it is younger than `changed_for` (under the SPEC's one
  second: every event acknowledged before its computation started is in it); past
  `refresh_share` of that (the refresher's turn), one computation runs behind it (unless one runs
  already, here or, claimed, in another process).
Otherwise it is computed before answering, once for all workers: the computing process claims the
row (`claimed_until`); the others wait for its answer, or, with `fresh_for` > 0, serve the stored one
while it is younger than `stale_for` (`_computed_elsewhere`: under load a request neither waits for
the refresher's computation nor makes it a second time). A worker keeps the bodies it served (by
ETag), so serving is one small lookup; with `fresh_for` > 0 a worker serves its copy for that long
without a lookup. With `fresh_for` = 0 (the tests) an answer is never served across a change: a
client reads its own writes.

Following (`fresh_for` > 0): every `follow_every` seconds a worker reads, in one small statement,
the data version and the stored answers whose change number (`seq`, new at every store and
restamp) is above the last it saw, and the bodies of those it holds a copy of whose ETag moved. A
request whose copy the last such read (younger than `fresh_for`) found servable is answered
from memory: serving costs the database nothing per poll, whatever the number of pollers; the
polls are recorded (`polled_at`) for all the worker's answers at once every `touch_every`. A copy
served so is refreshed behind only past `follow_share` of `changed_for`: the refresher vouches for
every polled answer each tick (restamped or computed) and the follower sees it, so requests do not
claim and compute, in every worker, each answer the node-wide data version moved past.

Every instant a shared answer is stamped or judged with (computed, restamped, polled, claimed) is the
scoring clock's (`scoring._now`), the one its figures stand at: the refresher's restamps and the
computations compare like with like, and the tests can stop it.
"""

from __future__ import annotations

import asyncio
import gzip
import logging
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

import orjson
from sqlalchemy.exc import DBAPIError

from app import metrics
from app.answers import kinds
from app.answers import repository as repo
from app.answers.encoding import canonical_params, figures_etag
from app.answers.kinds import ReadContext
from app.db import meta
from app.db.engine import Database
from app.loop import every
from app.scoring import service as scoring

log = logging.getLogger("chiso.answers")


SERVE, SERVE_AND_REFRESH, COMPUTE = "serve", "serve and refresh", "compute"
# seconds between two looks at an answer another process is computing: from 10 ms (a commune's
# answer) up to 80 ms (a ranking of every commune under load), doubling
WAIT_FIRST, WAIT_MOST = 0.01, 0.08


@dataclass(frozen=True, slots=True)
class Answer:
    etag: str
    body: bytes
    version: int
    computed_at: datetime
    checked: float = 0.0  # monotonic time of the lookup that last found it servable
    current: bool = False  # its version was the current one at that lookup, or it held (repository.holds)


_GZIPPED_KEPT = 8  # a worker's compressed bodies, the last made (each holds its body too: ~3 MB for the largest)


class SharedAnswers:
    """One process's access to the shared answers (see the module's docstring)."""

    def __init__(
        self,
        db: Database,
        fresh_for: float = 0.3,
        idle_for: float = 10.0,
        stale_for: float = 30.0,
        changed_for: float = 0.8,
        claim_for: float = 30.0,
        wait_for: float = 2.0,
        refresh_share: float = 0.0,
        touch_every: float = 10.0,
        max_entries: int = 1024,
        holder: str | None = None,
        follow_every: float = 0.1,
        follow_share: float = 0.5,
    ):
        self.db = db
        self.fresh_for = fresh_for
        self.idle_for = idle_for
        self.stale_for = stale_for
        self.changed_for = changed_for if fresh_for > 0 else 0.0
        self.claim_for = claim_for
        self.wait_for = wait_for
        self.refresh_share = refresh_share
        self.touch_every = touch_every
        self.max_entries = max_entries
        self.holder = holder or f"{uuid.uuid4().hex[:12]}"
        self.computations = 0  # answers this process computed (refreshes included)
        self._local: OrderedDict[str, Answer] = OrderedDict()
        self._gzipped: dict[str, tuple[bytes, bytes]] = {}  # key -> (the body, it gzipped): gzipped()
        self._inflight: dict[str, asyncio.Future] = {}
        self._background: set[asyncio.Task] = set()
        self._looked_after = 0.0  # copies checked before then are looked up again (invalidate)
        self.follow_every = follow_every if fresh_for > 0 else 0.0
        self._follower: asyncio.Task | None = None
        self._followed_at = float("-inf")  # monotonic start of the last read of the changes
        self._followed_version = 0  # the data version that read saw
        self._seen = (0, 0)  # the largest change number seen by the read before the last, and by the last
        self._polled: set[str] = set()  # answers served from memory since their polls were last recorded
        self._polled_at = time.monotonic()
        self.follows = 0  # reads of the changes (bench, tests)
        # served from memory, a changed answer is left to the refresher (whose restamps and answers the
        # follower sees within follow_every) for this share of changed_for before a request refreshes it
        self.follow_share = follow_share

    def invalidate(self) -> None:
        """This worker just committed new figures: its copies are looked up again (read-your-writes)."""
        self._looked_after = time.monotonic()

    async def version(self) -> int:
        """The current data version (for answers made outside the store, e.g. the downloads' ETags)."""
        async with self.db.autocommit() as session:
            return await meta.read_data_version(session)

    # --- serving -------------------------------------------------------------------------------

    async def get(self, ctx: ReadContext, kind: str, key: str, params: dict) -> Answer:
        """The answer for `key`: served as stored when fresh enough, else computed once for all."""
        local = self._local.get(key)
        if self.follow_every > 0:
            self._follow()
            followed = self._followed_at
            if local is not None and followed > self._looked_after and time.monotonic() - followed < self.fresh_for:
                share = max(self.refresh_share, self.follow_share)
                held = local.current and time.monotonic() - local.checked < self.fresh_for  # a lookup just found it holding
                decision = self._judge(local.version == self._followed_version or held, local.computed_at, scoring._now(), share)
                # the follower knows only the node's data version: one lookup tells whether the figures
                # of an answer of one unit (kinds.scope_of) changed, before it is computed again
                if decision == SERVE or (decision == SERVE_AND_REFRESH and kinds.scope_of(kind, params) is None):
                    self._polled.add(key)
                    if decision == SERVE_AND_REFRESH:
                        self.refresh_behind(ctx, kind, key, params)
                    return local
        elif local is not None and local.checked > self._looked_after and time.monotonic() - local.checked < self.fresh_for:
            if self._judge(local.current, local.computed_at, scoring._now()) != COMPUTE:
                return local
        checked = time.monotonic()
        async with self.db.autocommit() as session:
            current, stored = await repo.read_answer(session, key)
        if stored is not None and stored.version != repo.NONE_YET:
            now = scoring._now()
            decision = self._judge(stored.version == current or stored.holds, stored.computed_at, now)
            if decision != COMPUTE:
                if stored.polled_at < now - timedelta(seconds=self.touch_every):
                    self._behind(self._touch(key, now))
                if decision == SERVE_AND_REFRESH and (stored.claimed_until is None or stored.claimed_until < now):
                    self.refresh_behind(ctx, kind, key, params)
            if decision != COMPUTE or self._computed_elsewhere(key, stored, now):
                try:
                    return await self._body(key, stored, stored.version == current or stored.holds, checked)
                except LookupError:  # forgotten since the lookup: compute it
                    pass
        return await self._compute_or_wait(ctx, kind, key, canonical_params(params))

    def _computed_elsewhere(self, key: str, stored: repo.Stored, now: datetime) -> bool:
        """With `fresh_for` > 0: an answer too old to serve by `_judge` that a computation is
        making again (claimed by another process, or by this worker) is served as stored while it
        is younger than `stale_for`, rather than waited for and then computed a second time: under
        load a poller gets the last figures at once, and the next poll the new ones."""
        if self.fresh_for <= 0 or (now - stored.computed_at).total_seconds() >= self.stale_for:
            return False
        return key in self._inflight or (stored.claimed_until is not None and stored.claimed_until >= now)

    def _judge(self, current: bool, computed_at: datetime, now: datetime, share: float | None = None) -> str:
        age = (now - computed_at).total_seconds()
        share = self.refresh_share if share is None else share
        if current:
            if age < self.idle_for:
                return SERVE
            return SERVE_AND_REFRESH if self.fresh_for > 0 and age < self.stale_for else COMPUTE
        if age < self.changed_for:  # the refresher (usually) gets the first half to refresh it
            return SERVE if age < self.changed_for * share else SERVE_AND_REFRESH
        return COMPUTE

    async def _body(self, key: str, stored: repo.Stored, current: bool, checked: float) -> Answer:
        """The stored answer's body (`current`: it is at the current data version, or holds): this
        worker's copy when it has the same ETag, else read."""
        local = self._local.get(key)
        if local is None or local.etag != stored.etag:
            async with self.db.autocommit() as session:
                got = await repo.read_body(session, key)
            if got is None:  # forgotten meanwhile: keep what we had checked
                raise LookupError(key)
            local = Answer(*got)
        local = Answer(local.etag, local.body, local.version, local.computed_at, checked, current)
        self._keep(key, local)
        return local

    # --- following the stored answers ------------------------------------------------------------

    def _follow(self) -> None:
        """Start following the stored answers (once per worker; again after settle)."""
        if self._follower is None or self._follower.done():
            self._follower = asyncio.ensure_future(self._follow_forever())

    async def _follow_forever(self) -> None:
        # a failed read is only a warning: requests look answers up meanwhile
        await every(self.follow_every, self.follow_once, "following the shared answers failed", log, logging.WARNING, 0.01)

    async def follow_once(self) -> None:
        """Read the changes of the stored answers since the read before the last (commits land out
        of change-number order; one read of overlap), bring this worker's copies up to date, and
        record the polls of the answers served from memory every `touch_every`."""
        started = time.monotonic()
        async with self.db.autocommit() as session:
            version, changes = await repo.read_changes(session, self._seen[0])
        moved = []
        for c in changes:
            local = self._local.get(c.key)
            if local is None or c.computed_at <= local.computed_at:
                continue
            if c.etag == local.etag:  # the same figures, found to hold later (restamped): its stamp
                self._local[c.key] = replace(local, version=c.version, computed_at=c.computed_at)
            else:
                moved.append(c.key)
        if moved:
            async with self.db.autocommit() as session:
                for c, body in await repo.read_bodies(session, moved):
                    local = self._local.get(c.key)
                    if local is not None and c.computed_at > local.computed_at:
                        self._local[c.key] = Answer(c.etag, body, c.version, c.computed_at)
        self._seen = (self._seen[1], max([self._seen[1], *(c.seq for c in changes)]))
        self._followed_version, self._followed_at = version, started
        self.follows += 1
        if self._polled and started - self._polled_at >= self.touch_every:
            keys, self._polled, self._polled_at = sorted(self._polled), set(), started
            now = scoring._now()
            async with self.db.autocommit(write=True) as session:
                await repo.touch_many(session, keys, now, now - timedelta(seconds=self.touch_every))

    def gzipped(self, key: str, answer: Answer) -> bytes:
        """The answer's body gzipped, made once per body by this worker (level 1: ~15 ms for the
        2.9 MB ranking of all communes) and served to every poller that accepts it until the body
        changes (a computation or a restamp)."""
        got = self._gzipped.get(key)
        if got is None or got[0] is not answer.body:
            got = self._gzipped[key] = (answer.body, gzip.compress(answer.body, compresslevel=1, mtime=0))
            while len(self._gzipped) > _GZIPPED_KEPT:
                self._gzipped.pop(next(iter(self._gzipped)))
        return got[1]

    def _keep(self, key: str, answer: Answer) -> None:
        self._local[key] = answer
        self._local.move_to_end(key)
        while len(self._local) > self.max_entries:
            self._local.popitem(last=False)

    # --- computing -----------------------------------------------------------------------------

    async def _compute_or_wait(self, ctx: ReadContext, kind: str, key: str, params: str, wait: bool = True) -> Answer | None:
        """Compute the answer, or wait for the process computing it (without `wait`: leave it to
        that process, None); once per worker however many ask."""
        pending = self._inflight.get(key)
        if pending is not None:
            answer = await asyncio.shield(pending)
            if answer is not None or not wait:
                return answer
            return await self._compute_or_wait(ctx, kind, key, params)  # that one left it to another process
        future = self._inflight[key] = asyncio.get_running_loop().create_future()
        try:
            if wait:
                answer = await self._claimed_or_awaited(ctx, kind, key, params)
            else:  # behind an answer served
                answer = await self.compute(ctx, kind, key, params, by="behind")
            future.set_result(answer)
            return answer
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: waiters re-raise it, nobody else must
            raise
        finally:
            if self._inflight.get(key) is future:
                del self._inflight[key]

    async def _claimed_or_awaited(self, ctx: ReadContext, kind: str, key: str, params: str) -> Answer:
        while True:
            answer = await self.compute(ctx, kind, key, params, by="request")
            if answer is not None:
                return answer
            deadline, step = time.monotonic() + self.wait_for, WAIT_FIRST
            while True:  # another process computes it: wait for its answer
                if time.monotonic() >= deadline:  # it is slow (a loaded or niced process): compute it here too
                    return await self.compute(ctx, kind, key, params, by="request", claim=False)
                await asyncio.sleep(step)
                step = min(WAIT_MOST, 2 * step)
                checked = time.monotonic()
                async with self.db.autocommit() as session:
                    current, stored = await repo.read_answer(session, key)
                if stored is None or stored.claimed_until is None or stored.claimed_until < scoring._now():
                    if stored is not None and stored.version != repo.NONE_YET:
                        holds = stored.version == current or stored.holds
                        if self._judge(holds, stored.computed_at, scoring._now()) != COMPUTE:
                            return await self._body(key, stored, holds, checked)
                    break  # its computation ended without a servable answer (or died): claim it ourselves

    async def compute(
        self, ctx: ReadContext, kind: str, key: str, params: str, by: str, claim: bool = True, create: bool = True
    ) -> Answer | None:
        """Claim, compute and store one answer; None when another process holds the claim (without
        `claim`: compute it whoever holds the claim, and store it if the stored one is older;
        without `create`: only an answer stored already is claimed, none is created). The claim, the
        data version the computation starts from (read after the claim) and the store are each their
        own statements (Database.autocommit); so is the reading of its scope's stamp (before its figures)."""
        writable, version, stamps = True, None, None
        started = scoring._now()
        query = orjson.loads(params)
        scopes = {key: scope} if (scope := kinds.scope_of(kind, query)) is not None else {}
        if claim:
            try:
                async with self.db.autocommit(write=True) as session:
                    until = started + timedelta(seconds=self.claim_for)
                    mine = await repo.claim(session, key, kind, params, self.holder, started, until, create)
                    if mine:  # read after `started`: every batch acknowledged before then is in it
                        version, stamps = await repo.read_start(session, scopes)
            except DBAPIError:
                # A database that takes no write (read-only, a standby, a full disk) still answers
                # reads: the answer is computed here and served, just not shared. Unreachable, the
                # computation below fails too (503).
                log.warning("answer %s computed unshared: the claim was refused", key, exc_info=True)
                mine = writable = False
                claim = False
            if claim and not mine:
                return None
        try:
            if version is None:
                async with self.db.autocommit() as session:
                    version, stamps = await repo.read_start(session, scopes)
            payload = await kinds.compute(ctx, kind, query)
            body = orjson.dumps(payload)
            etag = figures_etag(payload)
            if writable:
                try:
                    async with self.db.autocommit(write=True) as session:
                        await repo.store_many(session, [(key, body, etag)], version, started, self.holder, stamps)
                except DBAPIError:
                    log.warning("answer %s served unshared: storing it was refused", key, exc_info=True)
        except BaseException:
            await asyncio.shield(self._release([key]))
            raise
        self.computations += 1
        metrics.ANSWER_COMPUTATIONS.labels(kind, by).inc()
        answer = Answer(etag, body, version, started, time.monotonic(), True)
        self._keep(key, answer)
        return answer

    async def compute_many(self, ctx: ReadContext, kind: str, items: list[tuple[str, str]], by: str) -> list[Answer]:
        """Compute the stored answers of `items` (key, params) of one kinds.batched group at once and
        store them in one statement, each unless the stored one was computed later. Those no other
        computation claims are claimed meanwhile (requests serve them as stored rather than compute
        them too), all the same computed: a request computing one of them meanwhile stores its own,
        and the later computation stays. The data version is read after `started` and before the
        figures: every batch acknowledged before `started` is in them."""
        started = scoring._now()
        keys = [key for key, _ in items]
        queries = [orjson.loads(params) for _, params in items]
        scopes = {key: scope for key, q in zip(keys, queries, strict=True) if (scope := kinds.scope_of(kind, q)) is not None}
        try:  # the claims only spare requests a computation: refused (a lock conflict), it runs without
            async with self.db.autocommit(write=True) as session:
                await repo.claim_many(session, keys, self.holder, started, started + timedelta(seconds=self.claim_for))
        except DBAPIError:
            log.info("claiming %d answers computed together was refused", len(keys), exc_info=True)
        async with self.db.autocommit() as session:
            version, stamps = await repo.read_start(session, scopes)
        try:
            payloads = await kinds.compute_many(ctx, queries)
            rows = [(key, orjson.dumps(payload), figures_etag(payload)) for key, payload in zip(keys, payloads, strict=True)]
            async with self.db.autocommit(write=True) as session:
                await repo.store_many(session, rows, version, started, self.holder, stamps)
        except BaseException:
            await asyncio.shield(self._release(keys))
            raise
        answers = [(key, Answer(etag, body, version, started, time.monotonic(), True)) for key, body, etag in rows]
        for key, answer in answers:
            self._keep(key, answer)
        self.computations += len(answers)
        metrics.ANSWER_COMPUTATIONS.labels(kind, by).inc(len(answers))
        return [a for _, a in answers]

    async def _release(self, keys: list[str]) -> None:
        try:
            async with self.db.autocommit(write=True) as session:
                await repo.release(session, keys, self.holder)
        except Exception:  # noqa: BLE001 - the claims expire by themselves
            log.warning("releasing the claims on %s failed", keys, exc_info=True)

    def refresh_behind(self, ctx: ReadContext, kind: str, key: str, params: dict) -> None:
        """Compute an answer again behind the one being served, unless this worker (or, by its
        claim, another process) does already."""
        if key not in self._inflight:
            self._behind(self._compute_or_wait(ctx, kind, key, canonical_params(params), wait=False))

    async def _touch(self, key: str, now: datetime) -> None:
        async with self.db.autocommit(write=True) as session:
            await repo.touch(session, key, now, now - timedelta(seconds=self.touch_every))

    def _behind(self, work) -> None:
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("work behind a shared answer failed: %r", task.exception())

    async def settle(self) -> None:
        """Stop following the stored answers, and wait for the work running behind served answers
        (tests; shutdown)."""
        if self._follower is not None:
            self._follower.cancel()
            await asyncio.gather(self._follower, return_exceptions=True)
            self._follower = None
        while self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
