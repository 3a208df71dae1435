"""The PostgreSQL write pass is package code (app.aggregates.pgpass): installed after the Alembic head
as functions named by the hash of their rendered SQL, under an advisory lock, called by that name,
and checked by /readyz."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from importlib.resources import files

import pytest
from sqlalchemy import text

from app.aggregates import pgpass
from app.db.engine import Database
from app.main import upgrade_database

COMMUNE = "19777"


async def installed(db: Database) -> list[bool]:
    async with db.engine.connect() as conn:
        return [
            (await conn.execute(text("SELECT to_regprocedure(:s) IS NOT NULL"), {"s": sig})).scalar() for sig in pgpass.current().signatures
        ]


async def drop_pass(db: Database) -> None:
    async with db.engine.begin() as conn:
        for sig in reversed(pgpass.current().signatures):
            await conn.execute(text(f"DROP FUNCTION IF EXISTS {sig}"))


def event(n: int) -> dict:
    at = (datetime.now(UTC) - timedelta(hours=3, milliseconds=n)).isoformat()
    return {
        "event_id": f"wp-{n}",
        "type": "received",
        "dossier_id": f"WP{n}",
        "unit_code": COMMUNE,
        "occurred_at": at,
        "channel": "online",
        "due_at": at,
    }


class TestVersionedNames:
    def test_the_name_carries_the_hash_of_the_rendered_sql(self):
        template = (files("app.aggregates") / "pg" / "ingest.sql").read_text()
        now, again = pgpass.current(), pgpass.build(template)
        assert again == now and now.ingest == f"chiso_ingest_{now.version}" and len(now.version) == 10
        changed = pgpass.build(template.replace("-- 7. last,", "-- 7. at the end,"))
        assert changed.version != now.version and changed.ingest != now.ingest
        assert all(now.version in st for st in now.statements) and not any("@" in st for st in now.statements)


class TestInstall:
    async def test_readyz_needs_this_versions_pass(self, fresh_service, store):
        r = await fresh_service.get("/readyz")
        assert r.status_code == 200 and r.json()["checks"]["write_pass"] == "installed"
        if store == "sqlite":
            return  # no pass on SQLite: the Python fold
        await drop_pass(fresh_service.db)
        r = await fresh_service.get("/readyz")
        assert r.status_code == 503 and r.json()["checks"]["write_pass"] == "missing"
        await upgrade_database(fresh_service.db)  # what `chiso db upgrade` and migrate-on-start run
        r = await fresh_service.get("/readyz")
        assert r.status_code == 200 and r.json()["checks"]["write_pass"] == "installed"

    async def test_concurrent_installs_create_it_once(self, fresh_service, store):
        if store == "sqlite":
            pytest.skip("PostgreSQL only")
        await drop_pass(fresh_service.db)
        dbs = [Database(fresh_service.url, pool_size=1) for _ in range(3)]

        async def install(db: Database) -> bool:
            async with db.engine.begin() as conn:
                return await pgpass.install(conn)

        try:
            created = await asyncio.gather(*(install(db) for db in dbs))
        finally:
            for db in dbs:
                await db.dispose()
        assert sorted(created) == [False, False, True]
        assert await installed(fresh_service.db) == [True] * len(pgpass.current().signatures)

    async def test_ingest_calls_its_own_version(self, fresh_service, store):
        """The unversioned functions of revision d7e9f1a3b5c7 stay for an older service still
        running; this version never calls them."""
        if store == "sqlite":
            pytest.skip("PostgreSQL only")
        async with fresh_service.db.engine.begin() as conn:
            assert (
                await conn.execute(text("SELECT to_regprocedure('chiso_ingest(json, json, text, timestamptz, int)') IS NOT NULL"))
            ).scalar()
            await conn.execute(text("DROP FUNCTION chiso_ingest(json, json, text, timestamptz, int)"))
            await conn.execute(text("DROP FUNCTION chiso_ingest_staged(json, text, timestamptz, int)"))
        r = await fresh_service.post([event(1), event(2)], await fresh_service.key("ingest", COMMUNE))
        assert r.status_code == 202 and r.json()["accepted"] == 2

    @pytest.mark.slow
    async def test_chiso_db_upgrade_installs_it(self, store, pg_server, tmp_path):
        if pg_server is None or store == "sqlite":
            pytest.skip("PostgreSQL only")
        url = await pg_server.create(f"chiso_test_wp_{os.getpid()}_{tmp_path.name[-12:]}".lower().replace("-", "_"))
        env = {**os.environ, "DATABASE_URL": url}
        done = subprocess.run([sys.executable, "-m", "app.cli", "db", "upgrade"], env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        db = Database(url, pool_size=1)
        try:
            assert await installed(db) == [True] * len(pgpass.current().signatures)
        finally:
            await db.dispose()
