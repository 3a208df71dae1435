"""The PostgreSQL write pass is package code (app.aggregates.pgpass): installed after the Alembic head
as functions named by the hash of their rendered SQL, under an advisory lock, called by that name,
and checked by /readyz."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from importlib.resources import files

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.aggregates import pgpass, writes
from app.aggregates.writes import store_batch_pg
from app.db.engine import Database
from app.ingest.schemas import validate_events
from app.main import upgrade_database
from app.units.service import RegistryCache
from tests.helpers.kpis import COMMUNES_46

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


def dossier_events(n: int, now: datetime) -> list[dict]:
    """n dossiers of COMMUNE received over 60 days (three months of the log), half of them resolved."""
    out = []
    for i in range(n):
        at = now - timedelta(days=60 * i / n, hours=2)
        common = {"dossier_id": f"PL{i}", "unit_code": COMMUNE}
        out.append({"event_id": f"pl-{i}-r", "type": "received", "occurred_at": at.isoformat(), "channel": "online", **common})
        out[-1]["due_at"] = (at + timedelta(days=5)).isoformat()
        if i % 2:
            out.append({"event_id": f"pl-{i}-s", "type": "resolved", "occurred_at": (at + timedelta(hours=1)).isoformat(), **common})
    return out


class TestPlansWhateverTheStatistics:
    async def test_stored_events_and_dossiers_are_found_through_their_indexes(self, fresh_service, store):
        """With statistics that say the log and the dossiers are empty (a new store, a new month, a
        store just imported into), a batch still finds its stored events through each month's hash
        index, all of them with one probe of each month, and its stored dossiers through dossier's
        key: a plan that reads a whole month, or hashes the whole dossier table, for every batch cost
        15 ms a 100-event batch at 50,000 dossiers (`bench.stages --live`). Read from auto_explain."""
        if store == "sqlite":
            pytest.skip("PostgreSQL only")
        db, now = fresh_service.db, datetime.now(UTC)
        async with db.engine.begin() as conn:  # statistics of the empty tables
            for table in ("dossier_event", "dossier"):
                await conn.execute(text(f"ANALYZE {table}"))
        stored = dossier_events(3000, now)
        r = await fresh_service.post(stored, await fresh_service.key("ingest", COMMUNE))
        assert r.status_code == 202 and r.json()["accepted"] == len(stored)
        registry = await RegistryCache(db).refresh()
        resolving = {"event_id": "pl-0-s", "type": "resolved", "occurred_at": now.isoformat(), "dossier_id": "PL0", "unit_code": COMMUNE}
        batch = [stored[0], resolving, *dossier_events(1, now + timedelta(minutes=1))]
        batch[-1] = {**batch[-1], "dossier_id": "PL-new", "event_id": "pl-new-r"}
        events = [e for e in validate_events(batch, now, timedelta(seconds=300), None) if isinstance(e, dict)]
        for e in events:
            e["ingested_at"] = now
        plans: list[str] = []
        async with db.transaction() as session:
            raw = (await (await session.connection()).get_raw_connection()).driver_connection
            raw.add_log_listener(lambda _c, msg: plans.append(msg.message))
            explain = ("log_min_duration = 0", "log_nested_statements = on", "log_level = notice")
            for stmt in (
                "LOAD 'auto_explain'",
                *(f"SET LOCAL auto_explain.{x}" for x in explain),
                "SET LOCAL client_min_messages = notice",
            ):
                await session.execute(text(stmt))
            inserted = await store_batch_pg(session, events, registry, fresh_service.settings.timezone, now)
        assert inserted == {(COMMUNE, "pl-0-s"), (COMMUNE, "pl-new-r")}  # the first is a duplicate

        def plan(opening: str) -> str:
            found = [p for p in plans if re.search(r"Query Text: " + opening, p)]
            assert len(found) == 1, (opening, len(plans))
            return found[0]

        lookup = plan(r"INSERT INTO chiso_new")
        months = {m for m in re.findall(r"on (dossier_event_\d{6}) ", lookup)}
        assert len(months) >= 3 and "hashed SubPlan" in lookup
        probed = set(re.findall(r"(?:Index Scan using|Bitmap Index Scan on) (dossier_event_\d{6})_hashtextextended_idx", lookup))
        assert probed == months and lookup.count("= ANY ($0)") >= len(months), lookup  # each month probed once, with every hash
        assert "Seq Scan on dossier_event" not in lookup, lookup
        # dossier's key probed with each stored dossier's (unit_code, dossier_id), nothing read whole
        probe = (
            r"Index Scan using pk_dossier on dossier {} .*\n.*"
            + r"Index Cond: \(\(\(unit_code\)::text = \(\w+\.unit_code\)::text\) AND \(\(dossier_id\)"
        )
        for opening, alias in ((r"INSERT INTO chiso_st\s+SELECT d.unit_code, d.dossier_id, -1", "x"), (r"UPDATE dossier d SET", "d")):
            found = plan(opening)
            assert re.search(probe.format(alias), found) and "Hash" not in found and "Seq Scan on dossier " not in found, found


class TestRollupSlots:
    async def test_passes_at_once_add_to_different_rollup_slots(self, fresh_service, store, monkeypatch):
        """Two passes at once for two communes of one province, both given slot 0: the second takes
        the next slot no pass holds and does not wait for the first to commit (the same slot would
        make it wait on the province's and the nation's rows of the day: lock_timeout)."""
        if store == "sqlite":
            pytest.skip("PostgreSQL only")
        db, now = fresh_service.db, datetime.now(UTC)
        registry = await RegistryCache(db).refresh()
        monkeypatch.setattr(writes, "pick_slot", lambda: 0)

        def batch(unit: str) -> list[dict]:
            raw = [{**e, "unit_code": unit, "event_id": f"{unit}-{e['event_id']}"} for e in dossier_events(3, now)]
            events = [e for e in validate_events(raw, now, timedelta(seconds=300), None) if isinstance(e, dict)]
            return [{**e, "ingested_at": now} for e in events]

        async with db.engine.connect() as a, db.engine.connect() as b:
            first, second = AsyncSession(bind=a), AsyncSession(bind=b)
            # the data version's slot is random(): seeded apart (slots 11 and 7), its row never shared
            await first.execute(text("SELECT setseed(0.1)"))
            await second.execute(text("SELECT setseed(0.9), set_config('lock_timeout', '5s', true)"))
            await store_batch_pg(first, batch(COMMUNES_46[0]), registry, fresh_service.settings.timezone, now)
            await store_batch_pg(second, batch(COMMUNES_46[1]), registry, fresh_service.settings.timezone, now)
            await second.commit()
            await first.commit()
        async with db.engine.connect() as conn:
            slots = (await conn.execute(text("SELECT DISTINCT slot FROM rollup_day WHERE unit_code IN ('46', 'VN') ORDER BY 1"))).scalars()
            assert list(slots) == [0, 1]
