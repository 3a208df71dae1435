"""Group commit: the batches posted to one worker while its write passes are busy are stored
together, in one transaction and one write pass, and each is acknowledged after that commit.

A write pass costs the database per batch as well as per event: each touches its units' day rows
and, above them, the same province and nation rows as every other batch, and commits (for 100-event
batches about 4 rollup-row updates per event; in 1,000-event groups many are shared: bench/README).
So a worker runs one pass at a time (`PASSES`); a batch that finds it busy waits, and the first of
the waiting to get the turn takes every batch waiting then (up to `ingest_group_events` events, in
arrival order) into the next pass. Under light load a batch is alone and waits for nothing; under
load the groups grow with the queue, and the database's work per event falls as the load rises.
One pass a worker, not two: at saturation (`bench.post_cost --rate 20000`, three runs each) two
passes made groups of 3.7 batches and took 3,574 events/s (median), one made groups of 7.2 and took
4,710; at 2,000 events/s the two were alike (groups of 1.0, ack p50 74-89 ms either way).

Each batch keeps its own answer:
- an event whose (unit_code, event_id) an earlier batch of the group carries is that batch's, and a
  duplicate for this one (as it would be if posted right after);
- the group's acceptance time is the latest of its batches' (each event keeps the `ingested_at` of
  its own batch), and its registry the latest request's (which knows every unit an earlier one
  screened against); only batches accepted at the current time are grouped (`accept_batch` without
  a `now`);
- a group whose pass fails is stored again batch by batch (its transaction rolled back: nothing of
  it was stored), so that an error reaches only the batch it belongs to;
- the pass runs in a task of its own: a request cancelled while its group is stored does not take
  the other batches' answers with it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime

from app import metrics
from app.db.engine import Database

PASSES = 1  # write passes at once per worker (the deployment's passes: one per worker of each replica)

Key = tuple[str, str]
Store = Callable[[list[dict], datetime], Awaitable[set[Key]]]  # ingest.service.store_events, bound


@dataclass(eq=False, slots=True)
class _Batch:
    events: list[dict]
    now: datetime
    store: Store  # with the request's own registry (a later request's may know more units)
    answer: asyncio.Future = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class WriteGroups:
    """The group commit of one worker (one Database)."""

    def __init__(self, most_events: int):
        self.most_events = most_events
        self._turns = asyncio.Semaphore(PASSES)
        self._waiting: list[_Batch] = []

    async def store(self, store: Store, events: list[dict], now: datetime) -> set[Key]:
        """`store(events, now)` for one batch, in a group if others wait with it: the keys it inserted."""
        me = _Batch(events, now, store)
        self._waiting.append(me)
        while me in self._waiting:  # not taken into a pass yet
            async with self._turns:
                if me in self._waiting:
                    await asyncio.shield(asyncio.ensure_future(_store_group(self._take())))
        return await asyncio.shield(me.answer)

    def _take(self) -> list[_Batch]:
        """The waiting batches in arrival order, up to `most_events` events (at least one batch)."""
        taken, n = 0, 0
        for b in self._waiting:
            if taken and n + len(b.events) > self.most_events:
                break
            taken, n = taken + 1, n + len(b.events)
        group, self._waiting = self._waiting[:taken], self._waiting[taken:]
        return group


async def _store_group(group: list[_Batch]) -> None:
    try:
        metrics.GROUP_BATCHES.observe(len(group))
        if len(group) > 1:
            owner: dict[Key, _Batch] = {}
            events = []
            for b in group:
                for e in b.events:
                    key = (e["unit_code"], e["event_id"])
                    if key not in owner:
                        owner[key] = b
                        events.append(e)
            try:
                inserted = await group[-1].store(events, max(b.now for b in group))  # the latest request's
            except Exception:  # noqa: BLE001 - each batch alone below: its own answer, error or not
                pass
            else:
                for b in group:
                    b.answer.set_result({k for k in ((e["unit_code"], e["event_id"]) for e in b.events) if k in inserted and owner[k] is b})
                return
        for b in group:
            try:
                b.answer.set_result(await b.store(b.events, b.now))
            except Exception as exc:  # noqa: BLE001 - the batch's request answers with it
                b.answer.set_exception(exc)
                b.answer.exception()  # retrieved: its request may be gone (cancelled) and never ask
    finally:
        for b in group:  # cancelled (the worker stopping): no request waits for ever
            if not b.answer.done():
                b.answer.cancel()


def of(db: Database, most_events: int) -> WriteGroups:
    """The WriteGroups of a Database (one per worker process)."""
    found = getattr(db, "_write_groups", None)
    if found is None:
        found = db._write_groups = WriteGroups(most_events)
    return found
