"""Group commit (app.ingest.groups), on both stores: batches posted while a worker's write passes are
busy share one pass and one commit; each batch keeps its own answer, and the figures are those of
the same batches posted one by one."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select

from app import metrics
from app.aggregates.rebuild import verify
from app.db.models import DossierEvent
from app.ingest import groups
from app.ingest.service import screen, store_events
from tests.helpers.kpis import COMMUNES_46, COMMUNES_79, PERIODS
from tests.streams import stream, wire


def grouped_batches() -> tuple[float, float]:
    """(batches, passes) the group commit has stored in this process so far."""
    (family,) = metrics.GROUP_BATCHES.collect()
    got = {s.name: s.value for s in family.samples}
    return got["chiso_ingest_group_batches_sum"], got["chiso_ingest_group_batches_count"]


def without_as_of(answer: dict) -> dict:
    return {k: v for k, v in answer.items() if k != "as_of"}


async def screened(svc, items: list[dict]) -> list[dict]:
    """Items as accept_batch hands them to the store: validated, with `ingested_at`."""
    registry = await svc.app.state.registry.refresh()
    now = datetime.now(UTC)
    got = screen(items, registry, now, timedelta(seconds=svc.settings.skew_seconds), timedelta(days=400), set())
    assert all(status == "valid" for status, _, _ in got), got
    return [e for _, _, e in got]


async def stored(svc, event_ids: list[str]) -> int:
    async with svc.db.session() as session:
        q = select(func.count()).select_from(DossierEvent).where(DossierEvent.event_id.in_(event_ids))
        return (await session.execute(q)).scalar_one()


class TestPosted:
    async def test_concurrent_batches_share_passes_and_give_the_figures_of_one_by_one(self, make_service):
        rng = random.Random(11)
        events = [wire(e) for e in stream(rng, COMMUNES_46 + COMMUNES_79, 150, datetime.now(UTC), days=40)]
        batches = [events[i : i + 25] for i in range(0, len(events), 25)]
        for b in batches[1::3]:  # events of other batches again: duplicates, some in the same group
            b += rng.sample(events, 4)
        async with make_service() as grouped, make_service(ingest_group_events=0) as alone:
            token_g, token_a = await grouped.key("ingest", "VN"), await alone.key("ingest", "VN")
            before = grouped_batches()
            answers = await asyncio.gather(*(grouped.post(b, token_g) for b in batches))
            after = grouped_batches()
            assert all(r.status_code == 202 for r in answers), [r.text for r in answers if r.status_code != 202]
            assert after[0] - before[0] == len(batches)  # every batch went through the group commit
            assert after[1] - before[1] < len(batches)  # and some shared a pass
            one_by_one = [await alone.post(b, token_a) for b in batches]
            assert grouped_batches() == after  # group commit off: no batch through it
            for key in ("accepted", "duplicates", "rejected"):
                assert sum(r.json()[key] for r in answers) == sum(r.json()[key] for r in one_by_one), key
            assert sum(r.json()["accepted"] for r in answers) == len({e["event_id"] for e in events})
            for unit in [*COMMUNES_46, *COMMUNES_79, "46", "79", "VN"]:
                for q in PERIODS:
                    got = (await grouped.get(f"/api/v1/units/{unit}/kpis", **q)).json()
                    want = (await alone.get(f"/api/v1/units/{unit}/kpis", **q)).json()
                    assert without_as_of(got) == without_as_of(want), (unit, q)
            ranked = (await grouped.get("/api/v1/rankings", level="commune", window="30d")).json()
            assert without_as_of(ranked) == without_as_of((await alone.get("/api/v1/rankings", level="commune", window="30d")).json())
            report = await verify(grouped.db, grouped.settings)
            assert report.differences == [] and report.events == len({e["event_id"] for e in events})


class TestGroupCommit:
    """The group commit driven directly (the store function is the real store_events), so that which
    batches share a pass is known: the first batches take the worker's turns (groups.PASSES) alone,
    the rest wait and the first of them takes them all."""

    async def test_an_event_two_batches_of_a_group_carry_is_the_first_ones(self, fresh_service):
        svc = fresh_service
        items = [wire(e) for e in stream(random.Random(3), COMMUNES_46, 12, datetime.now(UTC), days=10)]
        b = [await screened(svc, part) for part in (items[0:4], items[4:8], items[8:14], items[14:])]
        b.append(await screened(svc, [items[9], *items[14:16]]))  # of batches 3 and 4, earlier in its group
        wg = groups.WriteGroups(5000)
        registry = await svc.app.state.registry.refresh()

        def store(events, now):
            return store_events(svc.db, registry, svc.settings, events, now)

        before = grouped_batches()
        got = await asyncio.gather(*(wg.store(store, batch, datetime.now(UTC)) for batch in b))
        assert grouped_batches()[1] - before[1] == groups.PASSES + 1  # (one pass a turn:) [1], [2, 3, 4, 5]
        keys = [{(e["unit_code"], e["event_id"]) for e in batch} for batch in b]
        assert got[:4] == keys[:4]  # each inserted all its own
        assert got[4] == set()  # its events are batch 3's and batch 4's
        assert await stored(svc, [e["event_id"] for e in items]) == len(items)

    async def test_a_group_whose_pass_fails_is_stored_batch_by_batch(self, fresh_service):
        svc = fresh_service
        items = [wire(e) for e in stream(random.Random(4), COMMUNES_79, 10, datetime.now(UTC), days=10)]
        b = [await screened(svc, items[i : i + 5]) for i in range(0, 20, 5)]
        poison = [dict(e, event_id="poison", occurred_at=None) for e in b[3][:1]]  # past the screen: not storable
        wg = groups.WriteGroups(5000)
        registry = await svc.app.state.registry.refresh()

        def store(events, now):
            return store_events(svc.db, registry, svc.settings, events, now)

        before = grouped_batches()
        got = await asyncio.gather(*(wg.store(store, batch, datetime.now(UTC)) for batch in [*b[:3], poison, b[3]]), return_exceptions=True)
        assert grouped_batches()[0] - before[0] == 5 and grouped_batches()[1] - before[1] == groups.PASSES + 1
        assert isinstance(got[3], Exception)  # the poisoned batch's request gets the error
        assert got[:3] + got[4:] == [{(e["unit_code"], e["event_id"]) for e in batch} for batch in b]  # the others are stored
        assert await stored(svc, [e["event_id"] for e in items[:20]]) == 20
        assert await stored(svc, ["poison"]) == 0
