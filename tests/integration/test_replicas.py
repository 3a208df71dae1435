"""Many processes, one truth (SPEC section 4): workers follow the stored answers' changes and serve
their copies without asking the database per poll; two real `chiso serve` on one database answer
the same figures, and with ANSWER_CACHE_SECONDS=0 a client reads its own writes on either."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import event, select

from app.answers import repository as repo
from app.answers.encoding import canonical_params
from app.answers.kinds import ReadContext
from app.db.models import SharedAnswer
from app.scoring.ranking import RankingMemo
from tests.conftest import start_service
from tests.helpers.events import post, received
from tests.helpers.kpis import COMMUNES_46
from tests.helpers.processes import clean_env
from tests.helpers.server import Server
from tests.streams import wire

PROVINCE = {"code": "46", "period": None, "at": None, "window": "30d", "sector": None}
KEY = f"kpis:{canonical_params(PROVINCE)}"
COMMUNES = COMMUNES_46[:2]  # two communes of province 46


def one_received(unit: str) -> list[dict]:
    now = datetime.now(UTC)
    return [received(unit, uuid.uuid4().hex, now - timedelta(minutes=1), now + timedelta(days=1))]


async def ctx_of(svc) -> ReadContext:
    return ReadContext.of(svc.db, await svc.app.state.registry.refresh(), svc.settings, RankingMemo())


class Statements:
    """Counts the SQL statements a database runs (an event hook on its engine, not a mock)."""

    def __init__(self, db):
        self.engine, self.n = db.engine.sync_engine, 0

    def _count(self, *_):
        self.n += 1

    def __enter__(self):
        event.listen(self.engine, "before_cursor_execute", self._count)
        return self

    def __exit__(self, *exc):
        event.remove(self.engine, "before_cursor_execute", self._count)


class TestFollowing:
    async def test_a_worker_serves_its_copy_without_a_statement_and_follows_another_process_s_answer(self, make_service):
        async with make_service(answer_cache_seconds=60) as a:
            answers = a.app.state.answers
            answers.follow_every = 3600  # the test reads the changes itself (follow_once)
            ctx = await ctx_of(a)
            first = await answers.get(ctx, "kpis", KEY, PROVINCE)
            await answers.follow_once()
            with Statements(a.db) as counted:
                for _ in range(20):
                    assert (await answers.get(ctx, "kpis", KEY, PROVINCE)).body == first.body
            assert counted.n == 0 and answers.computations == 1
            async for b in start_service(a.url):  # another process writes, then computes the answer
                await post(b, await b.key("ingest", "46"), one_received(COMMUNES[0]))
                newer = await b.app.state.answers.get(await ctx_of(b), "kpis", KEY, PROVINCE)
                assert newer.etag != first.etag
                await answers.follow_once()
                served = await answers.get(ctx, "kpis", KEY, PROVINCE)
                assert (served.etag, served.body) == (newer.etag, newer.body)
                assert answers.computations == 1  # taken from the store, not computed here
            await answers.settle()

    async def test_every_store_and_restamp_gives_the_answer_a_new_change_number(self, fresh_service):
        svc = fresh_service
        answers = svc.app.state.answers
        await answers.get(await ctx_of(svc), "kpis", KEY, PROVINCE)
        async with svc.db.session() as session:
            _, (stored,) = await repo.read_changes(session, 0)
            assert (await repo.read_changes(session, stored.seq))[1] == []
        at = datetime.now(UTC) + timedelta(seconds=1)
        async with svc.db.transaction() as session:
            assert await repo.restamp(session, [(KEY, stored.etag, None)], stored.version, at, "2030-01-01T00:00:00+07:00") == {KEY}
        async with svc.db.session() as session:
            _, (restamped,) = await repo.read_changes(session, stored.seq)
            body = (await session.execute(select(SharedAnswer.body))).scalar()
        assert restamped.seq > stored.seq and restamped.computed_at == at and restamped.etag == stored.etag
        assert b'"as_of":"2030-01-01T00:00:00+07:00"' in body

    async def test_polls_served_from_memory_are_recorded(self, make_service):
        async with make_service(answer_cache_seconds=60) as svc:
            answers = svc.app.state.answers
            answers.follow_every, answers.touch_every = 3600, 0.0
            ctx = await ctx_of(svc)
            await answers.get(ctx, "kpis", KEY, PROVINCE)
            old = datetime.now(UTC) - timedelta(hours=1)
            async with svc.db.transaction() as session:
                await session.execute(SharedAnswer.__table__.update().values(polled_at=old))
            await answers.follow_once()
            await answers.get(ctx, "kpis", KEY, PROVINCE)  # from memory
            await answers.follow_once()
            async with svc.db.session() as session:
                assert (await session.execute(select(SharedAnswer.polled_at))).scalar() > old
            await answers.settle()


# --- two real `chiso serve --workers 2` on one database ---------------------------------------------


def _received(base: str, token: str, code: str) -> dict:
    r = httpx.get(f"{base}/api/v1/units/{code}/kpis", params={"window": "30d"}, headers={"authorization": f"Bearer {token}"}, timeout=60)
    assert r.status_code == 200, r.text
    return r.json()["kpis"]


def _post(base: str, token: str, events: list[dict]) -> None:
    r = httpx.post(f"{base}/api/v1/events", json={"events": events}, headers={"authorization": f"Bearer {token}"}, timeout=60)
    assert r.status_code == 202 and r.json()["accepted"] == len(events), r.text


def _servers(url: str, tmp_path, **env: str) -> list[Server]:
    values = {"DATABASE_URL": url, "MIGRATE_ON_START": "false", "SEED_REGISTRY": "false", **env}
    return [Server(clean_env(**values), workers=2, log=tmp_path / f"serve-{i}.log") for i in range(2)]


@pytest.mark.slow
class TestTwoServices:
    async def test_two_services_answer_the_same_figures(self, make_service, tmp_path):
        """Following and refreshing as in production (ANSWER_CACHE_SECONDS 0.3, a refresher)."""
        async with make_service() as svc:
            ingest, read = await svc.key("ingest", "46"), await svc.key("read")
            servers = _servers(svc.url, tmp_path, ANSWER_REFRESH_SECONDS="0.2")
            try:
                bases = [s.start().url for s in servers]
                for i in range(6):
                    _post(bases[i % 2], ingest, [wire(e) for e in one_received(COMMUNES[i % 2])])
                deadline = time.monotonic() + 60  # a bound for a loaded machine, not a measurement
                while True:
                    got = [await asyncio.to_thread(_received, base, read, "46") for base in bases]
                    if all(k["received"] == 6 for k in got) or time.monotonic() > deadline:
                        break
                    await asyncio.sleep(0.1)
                assert got[0] == got[1] and got[0]["received"] == 6 and got[0]["pending"] == 6
            finally:
                for s in servers:
                    s.kill()

    async def test_a_client_reads_its_own_writes_on_either_with_fresh_for_0(self, make_service, tmp_path):
        async with make_service() as svc:
            ingest, read = await svc.key("ingest", "46"), await svc.key("read")
            servers = _servers(svc.url, tmp_path, ANSWER_CACHE_SECONDS="0", ANSWER_REFRESH_SECONDS="0.2")
            try:
                bases = [s.start().url for s in servers]
                for i in range(6):
                    writer = bases[i % 2]
                    await asyncio.to_thread(_post, writer, ingest, [wire(e) for e in one_received(COMMUNES[i % 2])])
                    for base in (writer, bases[(i + 1) % 2]):  # the writer's, then the other replica
                        province = await asyncio.to_thread(_received, base, read, "46")
                        commune = await asyncio.to_thread(_received, base, read, COMMUNES[i % 2])
                        assert province["received"] == i + 1, (i, base)
                        assert commune["received"] == i // 2 + 1, (i, base)
            finally:
                for s in servers:
                    s.kill()
