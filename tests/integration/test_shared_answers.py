"""Shared answers (app.answers): made once for every worker and replica, equal to a fresh
computation, kept fresh by the refresher, and read-your-writes with fresh_for = 0."""

from __future__ import annotations

import asyncio
import dataclasses
import random
import uuid
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from sqlalchemy import select, update

from app.aggregates import periods
from app.answers import kinds
from app.answers.kinds import ReadContext, compute
from app.answers.refresher import AnswerRefresher
from app.db.models import NetworkSource, SharedAnswer
from app.scoring import service as scoring
from app.scoring.ranking import RankingMemo
from app.units.model import UnitRow
from app.units.service import import_units
from tests.conftest import start_service
from tests.helpers.dossiers import due_changed
from tests.helpers.events import resolved
from tests.integration.test_kpis_reference import COMMUNES_46, post_all
from tests.integration.test_reads import post, received
from tests.streams import stream

KPIS = "/api/v1/units/46/kpis"
URLS = [
    ("/api/v1/units/46/kpis", {"window": "30d"}, "kpis", {"code": "46", "period": None, "at": None, "window": "30d", "sector": None}),
    ("/api/v1/units/VN/kpis", {"window": "7d"}, "kpis", {"code": "VN", "period": None, "at": None, "window": "7d", "sector": None}),
    (
        "/api/v1/units/19777/kpis",
        {"period": "month"},
        "kpis",
        {"code": "19777", "period": "month", "at": None, "window": None, "sector": None},
    ),
    (
        "/api/v1/rankings",
        {"level": "commune", "parent": "46", "window": "30d"},
        "rankings",
        {
            "level": "commune",
            "parent": "46",
            "period": None,
            "at": None,
            "window": "30d",
            "sort": "-on_time_rate",
            "limit": 50,
            "offset": 0,
            "min_count": 0,
        },
    ),
    (
        "/api/v1/units/46/at-risk",
        {"within": "720h", "include_overdue": "true"},
        "at_risk",
        {"code": "46", "within": "720h", "include_overdue": True, "limit": 100, "offset": 0},
    ),
]


def figures(answer: dict) -> dict:
    """The answer without what moves with the clock alone: `as_of`, a previous period's `until` (a
    worker keeps serving its copy of an answer restamped since, whose figures are the same),
    an at-risk item's `hours_left`."""
    out = {k: v for k, v in answer.items() if k != "as_of"}
    if "until" in out.get("previous", {}).get("period", {}):
        out["previous"] = out["previous"] | {"period": {k: v for k, v in out["previous"]["period"].items() if k != "until"}}
    if "items" in out:
        out["items"] = [{k: v for k, v in item.items() if k != "hours_left"} for item in out["items"]]
    return out


def freeze(monkeypatch) -> None:
    """Stop the scoring clock at this instant: a period in progress compares its previous figures at
    the same point t, which moves with now, so an answer equals a fresh one computed at its instant."""
    at = datetime.now(UTC)
    monkeypatch.setattr(scoring, "_now", lambda: at)


def ahead(monkeypatch, seconds: float) -> None:
    """Stop the scoring clock (the refresher's too) `seconds` ahead of now."""
    at = datetime.now(UTC) + timedelta(seconds=seconds)
    monkeypatch.setattr(scoring, "_now", lambda: at)


async def fresh(svc, kind: str, params: dict) -> dict:
    """The answer computed now, straight from the scoring service (no shared answer involved)."""
    ctx = ReadContext.of(svc.db, await svc.app.state.registry.refresh(), svc.settings, RankingMemo())
    return await compute(ctx, kind, params)


async def rows(svc) -> dict[str, SharedAnswer]:
    async with svc.db.session() as session:
        return {r.key: r for r in (await session.execute(select(SharedAnswer))).scalars()}


async def age(svc, seconds: float) -> None:
    """Make every stored answer, and the service's copies of them, look computed `seconds` earlier
    (time passed: a worker following the store sees no change to them)."""
    async with svc.db.transaction() as session:
        for r in (await session.execute(select(SharedAnswer))).scalars():
            r.computed_at = r.computed_at - timedelta(seconds=seconds)
    answers = svc.app.state.answers
    for key, copy in list(answers._local.items()):
        answers._local[key] = dataclasses.replace(copy, computed_at=copy.computed_at - timedelta(seconds=seconds))


def one_received(unit: str = "19777") -> list[dict]:
    now = datetime.now(UTC)
    return [received(unit, uuid.uuid4().hex, now - timedelta(minutes=1), now + timedelta(days=1))]


class TestSameAsAFreshComputation:
    async def test_after_random_streams_with_corrections_late_events_and_deadlines_passing(self, fresh_service, monkeypatch):
        svc = fresh_service
        rng = random.Random(20)
        ingest, read = await svc.key("ingest", "VN"), await svc.key("read")
        now = datetime.now(UTC)
        events = stream(rng, COMMUNES_46 + ["26506"], 240, now, days=40)
        rng.shuffle(events)  # late events: any order
        refresher = AnswerRefresher(svc.db, svc.settings)
        try:
            for part in range(3):
                await post_all(svc, ingest, events[part::3], rng)
                freeze(monkeypatch)
                for path, query, kind, params in URLS:
                    served = (await svc.get(path, read, **query)).json()
                    assert figures(served) == figures(await fresh(svc, kind, params)), (part, path)
            # time passes without events (deadlines pass): the refresher computes the polled answers again
            await age(svc, svc.app.state.answers.idle_for)
            freeze(monkeypatch)
            assert await refresher.run_once() == len(URLS)
            for path, query, kind, params in URLS:
                served = (await svc.get(path, read, **query)).json()
                assert figures(served) == figures(await fresh(svc, kind, params)), path
        finally:
            await refresher.close()


class TestMadeOnce:
    async def test_a_second_service_serves_the_first_ones_answer_without_computing(self, fresh_service):
        a = fresh_service
        read = await a.key("read")
        first = await a.get(KPIS, read, window="7d")
        assert a.app.state.answers.computations == 1
        async for b in start_service(a.url):  # a second process on the same database
            second = await b.get(KPIS, read, window="7d")
            assert second.content == first.content and second.headers["etag"] == first.headers["etag"]
            assert b.app.state.answers.computations == 0
            (row,) = (await rows(b)).values()
            assert row.computed_by == a.app.state.answers.holder and row.body == first.content

    async def test_two_services_answer_the_same_figures_after_writes_to_either(self, fresh_service):
        a = fresh_service
        read, ingest = await a.key("read"), await a.key("ingest", "46")
        async for b in start_service(a.url):
            for writer in (a, b, a):
                await post(writer, ingest, one_received())
                got = [(await s.get(KPIS, read, window="7d")).json() for s in (a, b)]
                assert figures(got[0]) == figures(got[1])
            assert got[0]["kpis"]["received"] == 3

    async def test_concurrent_first_requests_compute_once(self, fresh_service):
        svc = fresh_service
        read = await svc.key("read")
        answers = await asyncio.gather(*(svc.get(KPIS, read, window="30d") for _ in range(10)))
        assert {a.content for a in answers} == {answers[0].content} and svc.app.state.answers.computations == 1

    async def test_a_claim_held_elsewhere_is_waited_for(self, fresh_service):
        """A request finding another process computing the answer waits for it, and computes it
        itself only when that claim runs out."""
        svc = fresh_service
        read = await svc.key("read")
        await svc.get(KPIS, read, window="30d")
        await age(svc, 3600)
        until = datetime.now(UTC) + timedelta(seconds=1)
        async with svc.db.transaction() as session:
            await session.execute(update(SharedAnswer).values(claimed_until=until, claimed_by="elsewhere"))
        answers = svc.app.state.answers
        before = answers.computations
        r = await svc.get(KPIS, read, window="30d")
        assert r.status_code == 200 and answers.computations == before + 1 and datetime.now(UTC) >= until

    @pytest.mark.slow  # waits out `wait_for` in real time (make test-fast leaves it out)
    async def test_a_slow_claim_elsewhere_is_waited_for_only_so_long(self, fresh_service):
        """A process holding a claim but slow to answer (loaded, or niced) makes requests wait at
        most `wait_for`; then they compute the answer themselves."""
        svc = fresh_service
        read = await svc.key("read")
        await svc.get(KPIS, read, window="30d")
        await age(svc, 3600)
        async with svc.db.transaction() as session:
            await session.execute(update(SharedAnswer).values(claimed_until=datetime.now(UTC) + timedelta(hours=1), claimed_by="slow"))
        answers = svc.app.state.answers
        before, started = answers.computations, datetime.now(UTC)
        r = await svc.get(KPIS, read, window="30d")
        assert r.status_code == 200 and answers.computations == before + 1
        assert datetime.now(UTC) - started >= timedelta(seconds=answers.wait_for)
        (row,) = (await rows(svc)).values()
        assert row.claimed_by == "slow" and row.computed_by == answers.holder and row.body == r.content


class TestReadYourWrites:
    async def test_another_workers_write_is_seen(self, fresh_service):
        a = fresh_service
        read = await a.key("read")
        ingest = await a.key("ingest", "46")
        before = (await a.get(KPIS, read, window="7d")).json()["kpis"]["received"]
        async for b in start_service(a.url):  # a second worker on the same database
            await post(b, ingest, one_received())
        after = (await a.get(KPIS, read, window="7d")).json()["kpis"]["received"]
        assert after == before + 1

    async def test_unchanged_data_is_served_as_stored(self, fresh_service):
        svc = fresh_service
        read = await svc.key("read")
        first = await svc.get("/api/v1/rankings", read, level="province")
        second = await svc.get("/api/v1/rankings", read, level="province")
        assert second.content == first.content and svc.app.state.answers.computations == 1

    async def test_changed_data_is_served_under_a_second_then_recomputed(self, make_service):
        """With fresh_for > 0 an answer the data moved past is served while younger than
        `changed_for` (one computation runs behind it past half of that); older, it is computed first."""
        async with make_service(answer_cache_seconds=0.3) as svc:
            read, ingest = await svc.key("read"), await svc.key("ingest", "46")
            answers = svc.app.state.answers
            assert 0 < answers.changed_for < 1.0  # the SPEC's second
            answers.changed_for = 60.0  # the same rule on a scale no slow machine can blur
            first = (await svc.get(KPIS, read, window="7d")).json()["kpis"]["received"]
            await post(svc, ingest, one_received())
            answers._local.clear()  # as another worker: no copy of its own
            async with svc.db.transaction() as session:
                (row,) = (await session.execute(select(SharedAnswer))).scalars()
                row.computed_at = datetime.now(UTC) - timedelta(seconds=answers.changed_for * 0.75)
            computed = answers.computations
            got = await asyncio.gather(*(svc.get(KPIS, read, window="7d") for _ in range(10)))
            # the stored answer at once (a poller served after the computation behind it ended may
            # already get the new one: the order of the two on one event loop is not the point)
            assert {g.json()["kpis"]["received"] for g in got} <= {first, first + 1}
            await answers.settle()
            assert answers.computations == computed + 1  # one computation behind ten pollers
            assert (await svc.get(KPIS, read, window="7d")).json()["kpis"]["received"] == first + 1
            await post(svc, ingest, one_received())
            await age(svc, answers.changed_for)
            late = (await svc.get(KPIS, read, window="7d")).json()["kpis"]["received"]
            assert late == first + 2 and answers.computations == computed + 2

    async def test_a_stale_copy_is_served_while_a_refresh_runs_elsewhere(self, make_service):
        """Within the SPEC's second (`changed_for`), an answer the data moved past that another
        process is computing again is served as stored: no request claims it, computes it or waits."""
        async with make_service(answer_cache_seconds=0.3) as svc:
            read, ingest = await svc.key("read"), await svc.key("ingest", "46")
            answers = svc.app.state.answers
            answers.changed_for = 60.0  # the same rule on a scale no slow machine can blur
            first = await svc.get(KPIS, read, window="7d")
            await post(svc, ingest, one_received())
            answers._local.clear()  # as another worker: no copy of its own
            async with svc.db.transaction() as session:
                (row,) = (await session.execute(select(SharedAnswer))).scalars()
                row.computed_at = datetime.now(UTC) - timedelta(seconds=answers.changed_for * 0.75)
                row.claimed_until, row.claimed_by = datetime.now(UTC) + timedelta(hours=1), "refresher-elsewhere"
            computed = answers.computations
            got = await asyncio.gather(*(svc.get(KPIS, read, window="7d") for _ in range(5)))
            await answers.settle()
            assert {g.content for g in got} == {first.content} and answers.computations == computed
            (row,) = (await rows(svc)).values()
            assert row.claimed_by == "refresher-elsewhere"

    async def test_past_the_second_a_copy_computed_elsewhere_is_served_until_its_claim_runs_out(self, make_service):
        """Past `changed_for` (a refresher slowed by load), an answer the data moved past that another
        process is computing again is served as stored while younger than `stale_for`: no request
        waits for that computation or makes it a second time. Once the claim has run out (its
        process died), a request computes it."""
        async with make_service(answer_cache_seconds=0.3) as svc:
            read, ingest = await svc.key("read"), await svc.key("ingest", "46")
            answers = svc.app.state.answers
            assert answers.changed_for < answers.stale_for
            first = await svc.get(KPIS, read, window="7d")
            await post(svc, ingest, one_received())
            answers._local.clear()  # as another worker: no copy of its own
            past_the_second = datetime.now(UTC) - timedelta(seconds=(answers.changed_for + answers.stale_for) / 2)
            async with svc.db.transaction() as session:
                (row,) = (await session.execute(select(SharedAnswer))).scalars()
                row.computed_at = past_the_second
                row.claimed_until, row.claimed_by = datetime.now(UTC) + timedelta(hours=1), "refresher-elsewhere"
            computed = answers.computations
            got = await asyncio.gather(*(svc.get(KPIS, read, window="7d") for _ in range(5)))
            await answers.settle()
            assert {g.content for g in got} == {first.content} and answers.computations == computed
            async with svc.db.transaction() as session:  # the claimer died: its claim runs out
                await session.execute(update(SharedAnswer).values(claimed_until=datetime.now(UTC) - timedelta(seconds=1)))
            answers._local.clear()
            late = (await svc.get(KPIS, read, window="7d")).json()["kpis"]["received"]
            assert late == first.json()["kpis"]["received"] + 1 and answers.computations == computed + 1


class TestHeldByItsUnit:
    """An answer of one unit's figures (a commune's, a province's) records the change counts of that
    unit and those under it: a batch elsewhere moves the node's data version past it, but not its
    figures, so it is served as stored (read-your-writes still holds: fresh_for = 0 here)."""

    async def test_a_change_elsewhere_leaves_it_served_and_a_change_of_its_unit_computes_it(self, fresh_service):
        svc = fresh_service
        read, ingest = await svc.key("read"), await svc.key("ingest", "VN")
        answers = svc.app.state.answers
        held = [
            (
                "/api/v1/units/19777/kpis",
                {"window": "7d"},
                "kpis",
                {"code": "19777", "period": None, "at": None, "window": "7d", "sector": None},
            ),
            ("/api/v1/units/46/kpis", {"window": "7d"}, "kpis", {"code": "46", "period": None, "at": None, "window": "7d", "sector": None}),
        ]
        nation = ("/api/v1/units/VN/kpis", {"window": "7d"})
        await post(svc, ingest, one_received("19777") + one_received("26506"))
        for path, query, _, _ in held:
            await svc.get(path, read, **query)
        await svc.get(nation[0], read, **nation[1])
        computed = answers.computations

        async def served() -> list[dict]:
            return [(await svc.get(path, read, **query)).json() for path, query, _, _ in held]

        await post(svc, ingest, one_received("26506"))  # province 79: nothing of 46 moves
        got = await served()
        assert answers.computations == computed  # held: served as stored
        for answer, (_, _, kind, params) in zip(got, held, strict=True):
            assert figures(answer) == figures(await fresh(svc, kind, params))
        await svc.get(nation[0], read, **nation[1])
        assert answers.computations == computed + 1  # the nation's figures moved: computed again

        await post(svc, ingest, one_received("19777"))  # the commune and its province move
        before, got = got, await served()
        assert answers.computations == computed + 3
        assert [a["kpis"]["received"] for a in got] == [a["kpis"]["received"] + 1 for a in before]
        for answer, (_, _, kind, params) in zip(got, held, strict=True):
            assert figures(answer) == figures(await fresh(svc, kind, params))

    async def test_not_held_across_a_registry_change_or_on_a_central_node(self, fresh_service):
        svc = fresh_service
        read, ingest = await svc.key("read"), await svc.key("ingest", "VN")
        answers = svc.app.state.answers
        path, query = "/api/v1/units/19777/kpis", {"window": "7d"}
        await post(svc, ingest, one_received("19777"))
        await svc.get(path, read, **query)
        computed = answers.computations
        await post(svc, ingest, one_received("26506"))
        await svc.get(path, read, **query)
        assert answers.computations == computed  # held
        registry = await svc.app.state.registry.refresh()
        unit = registry.get("19777")
        renamed = UnitRow(unit.code, unit.name + " (renamed)", unit.level, unit.kind, unit.parent_code)
        await import_units(svc.db, [renamed])
        await svc.app.state.registry.refresh()  # at once, not within the worker's 2 s
        assert (await svc.get(path, read, **query)).json()["unit"]["name"] == renamed.name
        assert answers.computations == computed + 1
        await post(svc, ingest, one_received("26506"))
        await svc.get(path, read, **query)
        assert answers.computations == computed + 1  # held again
        async with svc.db.transaction() as session:  # records of subordinates: figures no count shows
            session.add(NetworkSource(source="subordinate", last_sequence=0, received_at=datetime.now(UTC)))
        await post(svc, ingest, one_received("26506"))
        await svc.get(path, read, **query)
        assert answers.computations == computed + 2


class TestRefresher:
    async def test_polled_answers_are_fresh_again_after_a_change_without_a_request_computing(self, fresh_service):
        svc = fresh_service
        read, ingest = await svc.key("read"), await svc.key("ingest", "46")
        first = (await svc.get(KPIS, read, window="7d")).json()["kpis"]["received"]
        await post(svc, ingest, one_received())
        refresher = AnswerRefresher(svc.db, svc.settings)
        try:
            assert await refresher.run_once() == 1
            assert await refresher.run_once() == 0  # nothing changed since
        finally:
            await refresher.close()
        answers = svc.app.state.answers
        computed = answers.computations
        assert (await svc.get(KPIS, read, window="7d")).json()["kpis"]["received"] == first + 1
        assert answers.computations == computed
        (row,) = (await rows(svc)).values()
        assert row.computed_by == refresher.answers.holder

    async def test_answers_computed_together_are_claimed_while_computed(self, fresh_service, monkeypatch):
        """The KPIs of communes computed together (kinds.batched) are claimed by the refresher while
        it computes them (so requests serve them as stored meanwhile), and the claims end with the
        store; the answers are then the new figures."""
        svc = fresh_service
        read, ingest = await svc.key("read"), await svc.key("ingest", "46")
        communes = sorted(COMMUNES_46)[:3]
        for code in communes:
            await svc.get(f"/api/v1/units/{code}/kpis", read, window="7d")
        for code in communes:
            await post(svc, ingest, one_received(code))
        seen: list[dict] = []
        together = kinds.compute_many

        async def watched(ctx, params):
            async with svc.db.session() as session:
                seen.append({r.key: r.claimed_by for r in (await session.execute(select(SharedAnswer))).scalars()})
            return await together(ctx, params)

        monkeypatch.setattr(kinds, "compute_many", watched)
        refresher = AnswerRefresher(svc.db, svc.settings, batch_from=2)
        try:
            assert await refresher.run_once() == len(communes)
        finally:
            await refresher.close()
        assert len(seen) == 1 and set(seen[0].values()) == {refresher.answers.holder}
        after = await rows(svc)
        assert {r.claimed_by for r in after.values()} == {None} and {r.claimed_until for r in after.values()} == {None}
        for code in communes:
            got = (await svc.get(f"/api/v1/units/{code}/kpis", read, window="7d")).json()
            params = {"code": code, "period": None, "at": None, "window": "7d", "sector": None}
            assert figures(got) == figures(await fresh(svc, "kpis", params))
            assert got["kpis"]["received"] == 1

    async def test_answers_refreshed_several_at_a_time_on_screen_and_oldest_first_equal_fresh_ones(self, fresh_service, monkeypatch):
        svc = fresh_service
        read, ingest = await svc.key("read"), await svc.key("ingest", "VN")
        await post(svc, ingest, one_received())
        for path, query, _, _ in URLS:
            await svc.get(path, read, **query)
        refresher = AnswerRefresher(svc.db, svc.settings, concurrency=1)
        try:
            # one at a time, the answer computed longest ago comes first
            await post(svc, ingest, one_received())
            async with svc.db.transaction() as session:
                rs = {r.key: r for r in (await session.execute(select(SharedAnswer))).scalars()}
                for i, key in enumerate(random.Random(7).sample(sorted(rs), len(rs))):
                    rs[key].computed_at -= timedelta(seconds=i)
            aged = {k: r.computed_at for k, r in (await rows(svc)).items()}
            assert await refresher.run_once() == len(URLS)
            after = {k: r.computed_at for k, r in (await rows(svc)).items()}
            assert sorted(after, key=after.get) == sorted(aged, key=aged.get)
            # those polled a minute ago (off screen) come after those polled now, however old
            await post(svc, ingest, one_received())
            async with svc.db.transaction() as session:
                rs = {r.key: r for r in (await session.execute(select(SharedAnswer))).scalars()}
                keys = sorted(rs)
                off = set(keys[len(keys) // 2 :])
                for i, key in enumerate(keys):
                    rs[key].computed_at -= timedelta(seconds=100 + i)  # the ones off screen are the oldest
                    if key in off:
                        rs[key].polled_at -= timedelta(seconds=60)
            assert await refresher.run_once() == len(URLS)
            after = {k: r.computed_at for k, r in (await rows(svc)).items()}
            assert set(sorted(after, key=after.get)[len(keys) - len(off) :]) == off
            # all at once: each equals a fresh computation
            refresher.concurrency = len(URLS)
            await post(svc, ingest, one_received())
            freeze(monkeypatch)
            computed = refresher.answers.computations
            assert await refresher.run_once() == len(URLS)
            assert refresher.answers.computations == computed + len(URLS)
            for path, query, kind, params in URLS:
                assert figures((await svc.get(path, read, **query)).json()) == figures(await fresh(svc, kind, params)), path
        finally:
            await refresher.close()

    @pytest.mark.slow  # waits for a deadline to pass in real time (make test-fast leaves it out)
    async def test_only_answers_whose_units_changed_or_whose_deadlines_passed_are_computed_again(self, fresh_service):
        svc = fresh_service
        read, ingest = await svc.key("read"), await svc.key("ingest", "VN")
        now = datetime.now(UTC)
        await post_all(svc, ingest, stream(random.Random(4), COMMUNES_46 + ["26506"], 60, now, days=20), random.Random(4))
        URLS = _over(svc)  # noqa: N806 -- KPIs and rankings of a period that is over: only those can hold
        for path, query, _, _ in URLS:
            await svc.get(path, read, **query)
        refresher = AnswerRefresher(svc.db, svc.settings)
        made = refresher.answers

        async def tick() -> tuple[int, int]:
            """(answers computed, answers found holding) by one tick; every one served equals a fresh one."""
            computed, stamped = made.computations, refresher.restamped
            assert await refresher.run_once() == len(URLS)
            for path, query, kind, params in URLS:
                assert figures((await svc.get(path, read, **query)).json()) == figures(await fresh(svc, kind, params)), path
            return made.computations - computed, refresher.restamped - stamped

        try:
            await post(svc, ingest, one_received("26506"))
            assert await tick() == (len(URLS), 0)  # the first tick knows nothing: all computed
            soon = datetime.now(UTC) + timedelta(seconds=6)  # a deadline of 19777 that passes between two ticks
            await post(svc, ingest, [received("19777", "soon", now - timedelta(hours=1), soon)])
            assert await tick() == (len(URLS), 0)  # 19777 changed: all depend on it
            await post(svc, ingest, one_received("26506"))  # province 79: nothing of 46 moves
            # the nation's KPIs and the at-risk list (hours_left moves) computed; 46's KPIs, 19777's
            # and the ranking of 46's communes found holding
            assert await tick() == (2, 3)
            while datetime.now(UTC) <= soon:
                await asyncio.sleep(0.2)
            await post(svc, ingest, one_received("26506"))
            assert await tick() == (len(URLS), 0)  # 19777's deadline passed
            await post(svc, ingest, one_received("19930"))
            assert await tick() == (4, 1)  # all of 46 and the nation; 19777's KPIs hold
            # an answer a request computed at the data version of the last tick is adopted: it holds
            other = "/api/v1/units/19900/kpis"
            week = {"period": "week", "at": URLS[0][1]["at"]}
            await svc.get(other, read, **week)
            await post(svc, ingest, one_received("26506"))
            computed, stamped = made.computations, refresher.restamped
            assert await refresher.run_once() == len(URLS) + 1
            assert (made.computations - computed, refresher.restamped - stamped) == (2, 4)
            params = {"code": "19900", "window": None, "sector": None} | week
            assert figures((await svc.get(other, read, **week)).json()) == figures(await fresh(svc, "kpis", params))
        finally:
            await refresher.close()

    async def test_an_answer_of_a_period_in_progress_holds_while_t_crosses_nothing(self, fresh_service, monkeypatch):
        """Its previous figures stand at the same point t of the previous period, which moves with
        now: a batch elsewhere (nothing of 46 moves) and a step of t over no time of 46's dossiers
        let it hold; its restamp rewrites `until` with `as_of`, as a computation at that instant has them."""
        svc = fresh_service
        read, ingest = await svc.key("read"), await svc.key("ingest", "VN")
        await post(svc, ingest, one_received())
        path, query, kind, params = URLS[0]
        await svc.get(path, read, **query)
        refresher = AnswerRefresher(svc.db, svc.settings)
        try:
            await refresher.run_once()  # the first tick reads the counts (the answer is current)
            for _ in range(3):
                await post(svc, ingest, one_received("26506"))  # province 79
                computed, stamped = refresher.answers.computations, refresher.restamped
                assert await refresher.run_once() == 1
                assert (refresher.answers.computations - computed, refresher.restamped - stamped) == (0, 1)
            ahead(monkeypatch, 3)  # t moves 3 s on, over no time of 46's dossiers
            await post(svc, ingest, one_received("26506"))
            computed, stamped = refresher.answers.computations, refresher.restamped
            assert await refresher.run_once() == 1
            assert (refresher.answers.computations - computed, refresher.restamped - stamped) == (0, 1)
            expected = await fresh(svc, kind, params)
            (row,) = (await rows(svc)).values()
            stored = orjson.loads(row.body)  # as restamped: its instants are those of a computation now
            assert stored["previous"]["period"]["until"] == expected["previous"]["period"]["until"]
            assert stored["as_of"] == expected["as_of"] and figures(stored) == figures(expected)
            assert figures((await svc.get(path, read, **query)).json()) == figures(expected)
        finally:
            await refresher.close()

    @pytest.mark.parametrize("shape", ["receipt", "end", "deadline", "due in 24 h", "due in 48 h", "due in 72 h", "orphan event"])
    async def test_an_answer_of_a_period_in_progress_is_computed_again_when_t_crosses_a_time_of_its_dossiers(
        self, fresh_service, monkeypatch, shape
    ):
        """A time of a dossier of the previous period a few seconds after t (a receipt, an end, a
        deadline, a deadline 24/48/72 h ahead entering the due-soon window, an event of a dossier
        without a receipt): once t passes it, the previous figures differ, and the answer is
        computed, not restamped."""
        svc = fresh_service
        read, ingest = await svc.key("read"), await svc.key("ingest", "VN")
        path, query, kind = "/api/v1/units/19777/kpis", {"window": "7d"}, "kpis"
        params = {"code": "19777", "period": None, "at": None, "window": "7d", "sector": None}
        x = datetime.now(UTC) - timedelta(days=7) + timedelta(seconds=30)  # t, 30 s from now
        d = "then"
        if shape == "receipt":
            events = [received("19777", d, x, x + timedelta(days=3))]
        elif shape == "end":
            events = [received("19777", d, x - timedelta(days=1), x + timedelta(days=3)), resolved("19777", d, x)]
        elif shape == "deadline":
            events = [received("19777", d, x - timedelta(days=1), x)]
        elif shape.startswith("due in"):
            events = [received("19777", d, x - timedelta(days=1), x + timedelta(hours=int(shape.split()[2])))]
        else:
            events = [due_changed(d, x, x + timedelta(days=20), "legal_extension")]  # a deadline far from any window
        await post(svc, ingest, events)
        first = (await svc.get(path, read, **query)).json()
        refresher = AnswerRefresher(svc.db, svc.settings)
        try:
            await refresher.run_once()
            await post(svc, ingest, one_received("26506"))
            computed, stamped = refresher.answers.computations, refresher.restamped
            assert await refresher.run_once() == 1
            assert (refresher.answers.computations - computed, refresher.restamped - stamped) == (0, 1)
            ahead(monkeypatch, 40)  # t passes the dossier's time
            await post(svc, ingest, one_received("26506"))
            computed, stamped = refresher.answers.computations, refresher.restamped
            assert await refresher.run_once() == 1
            assert (refresher.answers.computations - computed, refresher.restamped - stamped) == (1, 0)
            got = (await svc.get(path, read, **query)).json()
            assert got["previous"]["kpis"] != first["previous"]["kpis"]
            assert figures(got) == figures(await fresh(svc, kind, params))
        finally:
            await refresher.close()

    @pytest.mark.slow  # 12 ticks of every polled answer, each checked against a fresh computation: 5 s a store
    @pytest.mark.parametrize("seed", [41, pytest.param(42, marks=pytest.mark.extra_seed)])
    async def test_restamped_or_computed_every_tick_each_stored_answer_equals_a_fresh_one(self, fresh_service, monkeypatch, seed):
        """Periods in progress whose same point t crosses, tick after tick, receipts, ends,
        deadlines and deadlines 24/48/72 h ahead of 46's dossiers in the previous periods, with
        batches here and elsewhere between the ticks: every stored answer, restamped or computed,
        is the one a computation at that instant gives (`as_of` and `until` included); the KPIs of
        communes, and of provinces, computed together (kinds.compute_many) as each is alone."""
        svc = fresh_service
        rng = random.Random(seed)
        read, ingest = await svc.key("read"), await svc.key("ingest", "VN")
        base = datetime.now(UTC) + timedelta(seconds=30)  # the scoring clock stays ahead of the real one
        tz = svc.settings.tz
        events = []
        units = [  # with 46's in URLS, KPIs of communes and of provinces computed together
            (f"/api/v1/units/{c}/kpis", {"window": "30d"}, "kpis", {"code": c, "period": None, "at": None, "window": "30d", "sector": None})
            for c in (*COMMUNES_46, "26506", "79")
        ]
        urls = URLS + units
        together: set[tuple[str, int]] = set()  # (level, answers) of each computation together
        one_by_one = kinds.compute_many

        async def counted(ctx, params):
            together.add((ctx.reader.registry.get(params[0]["code"]).level, len(params)))
            return await one_by_one(ctx, params)

        monkeypatch.setattr(kinds, "compute_many", counted)
        for i, (_, query, kind, _) in enumerate(urls):
            if kind not in ("kpis", "rankings"):
                continue
            p = scoring.pick_period(query.get("period"), None, query.get("window"), base, tz)
            for j in range(6):  # times that t passes within the minute to come
                x = periods.same_point(p, base + timedelta(seconds=rng.uniform(0, 50)), tz)
                unit, d = rng.choice(COMMUNES_46), f"t{i}-{j}"
                shape = rng.choice(["receipt", "end", "deadline", "ahead"])
                if shape == "receipt":
                    events.append(received(unit, d, x, x + timedelta(days=3)))
                elif shape == "end":
                    events += [received(unit, d, x - timedelta(days=1), x + timedelta(days=2)), resolved(unit, d, x)]
                elif shape == "deadline":
                    events.append(received(unit, d, x - timedelta(days=2), x))
                else:
                    events.append(received(unit, d, x - timedelta(days=1), x + timedelta(hours=rng.choice([24, 48, 72]))))
        await post(svc, ingest, events)
        for path, query, _, _ in urls:
            await svc.get(path, read, **query)
        refresher = AnswerRefresher(svc.db, svc.settings, batch_from=2)
        refresher.answers.idle_for = 2.0  # every polled answer is refreshed (restamped or computed) at every tick
        clock = base
        try:
            for _ in range(12):
                clock += timedelta(seconds=rng.uniform(1, 5))
                monkeypatch.setattr(scoring, "_now", lambda at=clock: at)
                if rng.random() < 0.7:
                    await post(svc, ingest, one_received(rng.choice(["26506", "26506", *COMMUNES_46])))
                await refresher.run_once()
                stored = {r.key: orjson.loads(r.body) for r in (await rows(svc)).values()}
                for _, _, kind, params in urls:
                    (body,) = [b for k, b in stored.items() if k.startswith(kind + ":") and orjson.loads(k[len(kind) + 1 :]) == params]
                    expected = await fresh(svc, kind, params)
                    if kind == "at_risk":
                        assert figures(body) == figures(expected)
                    else:
                        assert body == expected, (kind, params)
            assert refresher.restamped > 0 and {("commune", 4), ("province", 2)} <= together
        finally:
            await refresher.close()

    async def test_after_a_restart_the_polled_answers_are_warm_at_the_first_tick(self, fresh_service):
        svc = fresh_service
        read, ingest = await svc.key("read"), await svc.key("ingest", "46")
        for path, query, _, _ in URLS:
            await svc.get(path, read, **query)
        await post(svc, ingest, one_received())  # meanwhile, the data changed
        refresher = AnswerRefresher(svc.db, svc.settings)  # a new process
        try:
            assert await refresher.run_once() == len(URLS)
        finally:
            await refresher.close()
        async for other in start_service(svc.url):
            for path, query, _, _ in URLS:
                assert (await other.get(path, read, **query)).status_code == 200
            assert other.app.state.answers.computations == 0

    async def test_answers_nobody_polls_are_left_alone_and_then_forgotten(self, fresh_service):
        svc = fresh_service
        read, ingest = await svc.key("read"), await svc.key("ingest", "46")
        await svc.get(KPIS, read, window="7d")
        async with svc.db.transaction() as session:
            await session.execute(update(SharedAnswer).values(polled_at=datetime.now(UTC) - timedelta(hours=2)))
        await post(svc, ingest, one_received())
        refresher = AnswerRefresher(svc.db, svc.settings)
        try:
            assert await refresher.run_once() == 0
            assert await rows(svc) == {}  # the sweep forgot it
        finally:
            await refresher.close()

    async def test_one_refresher_per_database(self, fresh_service):
        svc = fresh_service
        one, two = AnswerRefresher(svc.db, svc.settings), AnswerRefresher(svc.db, svc.settings)
        try:
            read = await svc.key("read")
            await svc.get(KPIS, read, window="7d")
            await one.run_once()
            await age(svc, 3600)
            assert await two.run_once() == 0 and not two._leader
            assert await one.run_once() == 1
        finally:
            await one.close()
            await two.close()

    async def test_a_failing_request_leaves_no_answer(self, fresh_service):
        svc = fresh_service
        read = await svc.key("read")
        assert (await svc.get("/api/v1/units/99999/kpis", read)).status_code == 404
        assert (await svc.get(KPIS, read, window="7d", sector="x" * 70)).status_code == 422
        assert await rows(svc) == {}
        assert orjson.loads((await svc.get(KPIS, read, window="7d")).content)["unit"]["code"] == "46"


def _over(svc) -> list:
    """URLS with the KPIs and rankings of last week (a period that is over) instead of windows."""
    at = (datetime.now(svc.settings.tz).date() - timedelta(days=7)).isoformat()
    out = []
    for path, query, kind, params in URLS:
        if kind in ("kpis", "rankings"):
            query = {k: v for k, v in query.items() if k not in ("window", "period")} | {"period": "week", "at": at}
            params = params | {"window": None, "period": "week", "at": at}
        out.append((path, query, kind, params))
    return out
