"""The database upkeep (app.db.upkeep): where the server's autovacuum is off, the service analyses a
table whose rows changed past autovacuum's threshold and vacuums one whose dead rows did; where it
is on, or with DB_UPKEEP=off, or while another process holds the upkeep's lock, it does nothing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text

from app.db.engine import Database
from app.db.upkeep import LOCK_KEY, TableStats, Upkeep, due
from tests.conftest import new_database_url

ROWS = 5000


def test_thresholds_are_autovacuums():
    assert due(TableStats("t", live=100_000, dead=0, changed=10_000)) is None  # 1,000 + 10 % of the live rows
    assert due(TableStats("t", live=100_000, dead=0, changed=11_001)) == "analyze"
    assert due(TableStats("t", live=100_000, dead=0, changed=3_001, analyze_share=0.02)) == "analyze"  # the table's own share
    assert due(TableStats("t", live=100_000, dead=22_001, changed=0)) == "vacuum"
    assert due(TableStats("t", live=100_000, dead=3_001, changed=0, vacuum_share=0.01)) == "vacuum"
    assert due(TableStats("t", live=100_000, dead=2_999, changed=0, vacuum_share=0.01)) is None


@pytest.fixture
async def db(templates, pg_server, tmp_path) -> AsyncIterator[Database]:
    database = Database(await new_database_url("postgres", templates, pg_server, tmp_path), pool_size=4)
    yield database
    await database.dispose()


async def _stats(db: Database) -> dict:
    async with db.engine.connect() as conn:
        row = await conn.execute(
            text(
                "SELECT n_mod_since_analyze, n_dead_tup, last_analyze, last_vacuum FROM pg_stat_user_tables WHERE relname = 'upkeep_probe'"
            )
        )
        return dict(row.mappings().one())


async def _until(db: Database, ok) -> dict:
    """The probe table's statistics once `ok` holds (the server publishes a backend's counts within
    a second or so of its transaction)."""
    for _ in range(100):
        got = await _stats(db)
        if ok(got):
            return got
        await asyncio.sleep(0.1)
    return got


async def _write(db: Database, *sql: str) -> None:
    async with db.engine.begin() as conn:
        for statement in sql:
            await conn.execute(text(statement))
    await db.engine.dispose()  # a backend's counts reach the statistics at the latest when it ends


async def test_analyses_and_vacuums_where_autovacuum_is_off(db):
    async with db.engine.connect() as conn:
        autovacuum = (await conn.execute(text("SELECT current_setting('autovacuum')"))).scalar()
    await _write(
        db,
        "CREATE TABLE upkeep_probe (id int primary key, v int)",
        f"INSERT INTO upkeep_probe SELECT g, 0 FROM generate_series(1, {ROWS}) g",
    )
    assert (await _until(db, lambda s: s["n_mod_since_analyze"] >= ROWS))["n_mod_since_analyze"] >= ROWS

    assert await Upkeep(db, "off", every=0).run_once() == []
    async with db.engine.connect() as holder:  # another process at it: this one skips
        await holder.execute(text("SELECT pg_advisory_lock(:k)"), {"k": LOCK_KEY})
        assert await Upkeep(db, "auto", every=0).run_once() == []
        await holder.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": LOCK_KEY})

    upkeep = Upkeep(db, "auto", every=0)
    done = await upkeep.run_once()
    if autovacuum == "on":  # the server keeps them
        assert done == []
        return
    assert ("analyze", "upkeep_probe") in [(what, table) for what, table, _ in done]
    got = await _until(db, lambda s: s["last_analyze"] is not None)
    assert got["last_analyze"] is not None and got["n_mod_since_analyze"] < ROWS
    assert await Upkeep(db, "auto", every=0).run_once() == []  # nothing left to do

    await _write(db, "UPDATE upkeep_probe SET v = v + 1")  # every row dead once
    await _until(db, lambda s: s["n_dead_tup"] >= ROWS)
    done = await Upkeep(db, "auto", every=0).run_once()
    assert ("vacuum", "upkeep_probe") in [(what, table) for what, table, _ in done]
    got = await _until(db, lambda s: s["last_vacuum"] is not None)
    assert got["last_vacuum"] is not None and got["n_dead_tup"] < ROWS


async def test_paced(db):
    upkeep = Upkeep(db, "auto", every=3600)
    await upkeep.run_once()
    await _write(db, "CREATE TABLE upkeep_probe (id int primary key)", f"INSERT INTO upkeep_probe SELECT generate_series(1, {ROWS})")
    await _until(db, lambda s: s["n_mod_since_analyze"] >= ROWS)
    assert await upkeep.run_once() == []  # looked less than an hour ago


async def test_cancelled_midway_it_stops_at_once_and_leaves_no_lock(db):
    # a shutdown cancels the loop while a table's ANALYZE waits (here on a lock another session holds)
    async with db.engine.connect() as conn:
        autovacuum = (await conn.execute(text("SELECT current_setting('autovacuum')"))).scalar()
    if autovacuum == "on":
        pytest.skip("the server's autovacuum keeps the tables: the upkeep runs nothing to cancel")
    await _write(db, "CREATE TABLE upkeep_probe (id int primary key)", f"INSERT INTO upkeep_probe SELECT generate_series(1, {ROWS})")
    await _until(db, lambda s: s["n_mod_since_analyze"] >= ROWS)
    async with db.engine.connect() as holder:
        await holder.execute(text("LOCK TABLE upkeep_probe IN SHARE UPDATE EXCLUSIVE MODE"))  # ANALYZE waits for it
        task = asyncio.create_task(Upkeep(db, "auto", every=0).run_forever())
        for _ in range(100):  # until its ANALYZE waits
            async with db.engine.connect() as conn:
                waiting = await conn.execute(
                    text("SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'ANALYZE%' AND wait_event_type = 'Lock'")
                )
                if waiting.scalar():
                    break
            await asyncio.sleep(0.05)
        else:
            pytest.fail("the upkeep's ANALYZE never waited")
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=10)
        assert task in done and task.cancelled(), "the cancellation was swallowed: the loop goes on"
        await holder.rollback()
    async with db.engine.connect() as conn:  # the lock went with its connection
        assert (await conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": LOCK_KEY})).scalar()
        await conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": LOCK_KEY})
