"""Production settings: the service's statement timeout (DB_STATEMENT_TIMEOUT: API sessions carry it,
long jobs do not) and autovacuum on the hot rows (migration c3e5a7b9d1f4)."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from app.db.engine import Database, no_statement_timeout


async def _show(db: Database) -> str:
    async with db.session() as session:
        return (await session.execute(text("SHOW statement_timeout"))).scalar_one()


async def test_the_service_sessions_carry_the_timeout_and_a_job_lifts_it(store, make_service):
    if store != "postgres":
        pytest.skip("a PostgreSQL setting")
    async with make_service(db_statement_timeout=1.5) as svc:
        assert await _show(svc.db) == "1500ms"
        async with svc.db.engine.begin() as conn:
            await no_statement_timeout(conn)
            assert (await conn.execute(text("SHOW statement_timeout"))).scalar_one() == "0"
        assert await _show(svc.db) == "1500ms"  # SET LOCAL: the lift ended with its transaction


async def test_a_statement_past_the_timeout_is_cancelled_and_a_job_without_one_runs_on(store, fresh_service):
    if store != "postgres":
        pytest.skip("a PostgreSQL setting")
    short = Database(fresh_service.url, pool_size=1, statement_timeout=0.2)
    job = Database(fresh_service.url, pool_size=1)  # as the CLI's jobs build theirs
    try:
        with pytest.raises(DBAPIError, match="statement timeout"):
            async with short.session() as session:
                await session.execute(text("SELECT pg_sleep(1)"))
        assert await _show(job) == "0"
        async with job.session() as session:
            await session.execute(text("SELECT pg_sleep(0.4)"))
    finally:
        await short.dispose()
        await job.dispose()


async def test_the_hot_tables_are_vacuumed_by_their_own_settings(store, fresh_service):
    if store != "postgres":
        pytest.skip("PostgreSQL table settings")
    async with fresh_service.db.session() as session:
        rows = await session.execute(
            text("SELECT relname, reloptions FROM pg_class WHERE relname IN ('unit_total', 'shared_answer', 'unit_day', 'dossier')")
        )
        options = {name: set(opts or ()) for name, opts in rows.all()}
    for small in ("unit_total", "shared_answer"):
        assert {"autovacuum_vacuum_scale_factor=0", "autovacuum_vacuum_threshold=1000"} <= options[small], options
    for large in ("unit_day", "dossier"):
        assert "autovacuum_vacuum_scale_factor=0.01" in options[large], options
