"""The bulk path of `chiso import` on PostgreSQL: load first, then build each unit's rows once.

1. Load. Each validated chunk is COPYed into the import's work table (`chiso_bulk_<id>`, named
   by the file and its fingerprint, a plain logged table: it survives a kill and a server restart),
   one short transaction per chunk; the progress file beside the input then records the chunk,
   as on the chunked path. Nothing of the service's tables is touched yet.
2. Build. The staged events are taken a group of whole units at a time (units of one province
   together, about GROUP_EVENTS events a group) into the session's staging table, and the write
   pass of posting (app.aggregates.pgpass: app/aggregates/pg/ingest.sql) runs once on the group:
   the log (duplicates looked up), the dossiers built set-based from all their events at once, and
   every aggregate row of the group's units written once (own rows once per import, rollup rows once
   per group), with grouped INSERT ... SELECT from the rendered rule fragments. The group's staged
   rows are deleted in the same transaction, so a killed build re-run does only what is left.

The same pass means the same rules and the same exactness as posting, and the same locks: the
dossiers of a group are inserted or locked FOR UPDATE in key order and stay locked until the
group commits, so a live post to one of them waits and then merges into the imported state (and
an import meeting a posted dossier merges into it); aggregate rows are only ever added to.
Duplicates are decided as when posting (app.db.models.event_log); two copies of an event in the
work table (a chunk loaded again after a kill) are staged once, the first line's.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import orjson
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, IntegrityError

from app.aggregates import pgpass
from app.aggregates.writes import ROLLUP_SLOTS, STAGE_COLUMNS, rollup_chain
from app.db import partitions
from app.db.engine import Database
from app.ingest import fresh
from app.settings import Settings
from app.units.service import Registry

log = logging.getLogger("chiso.import")

GROUP_EVENTS = 250_000  # events per build transaction (whole units): rollup rows written once per group
# The tables whose indexes an import rebuilds when it brought at least COMPACT_SHARE of the stored
# events (compact): their keys arrive out of order, a group of units at a time, so their b-trees
# come out 60-70 % full; rebuilt, ~90 %. At a year of the nation (10M events), 648 -> 589 bytes a
# stored event, the import 547 -> 594 s (the event log's monthly partitions each in turn).
COMPACTED = ("dossier", "unit_day", "dossier_event")
COMPACT_SHARE = 1 / 3
# A rebuild waits for the transactions older than it (and for a lock no ANALYZE or VACUUM of the
# table holds); one that meets a deadlock (a service's upkeep ANALYZE of the table, say) or waits
# longer than COMPACT_LOCK_TIMEOUT is tried again after a pause, COMPACT_TRIES times in all, and then
# left: the events are stored whatever happens to it
COMPACT_TRIES, COMPACT_PAUSE, COMPACT_LOCK_TIMEOUT = 3, 2.0, "30s"
_LEFT_BY_REINDEX = text(  # of a table or of its partitions: an interrupted REINDEX CONCURRENTLY's invalid copies
    "SELECT i.indexrelid::regclass::text FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
    " WHERE NOT i.indisvalid AND c.relname ~ '_cc(new|old)[0-9]*$' AND i.indrelid IN"
    " (SELECT CAST(:t AS regclass) UNION ALL SELECT inhrelid FROM pg_inherits WHERE inhparent = CAST(:t AS regclass))"
)
WORK_MEM = "256MB"  # the build's hash aggregates and sorts stay in memory
STATISTICS_TARGET = 10  # the build's ANALYZEs sample 300 rows per unit of it: 3,000


def table_of(path: Path, fingerprint: dict) -> str:
    """The work table of one input file as it is (a changed file gets a new one)."""
    key = orjson.dumps({"path": str(path.resolve()), "file": fingerprint})
    return "chiso_bulk_" + hashlib.sha256(key).hexdigest()[:16]


@dataclass
class BuildReport:
    staged: int = 0  # distinct events taken from the work table
    accepted: int = 0  # of them, stored (the others were stored before: duplicates)
    fresh: int = 0  # of them, stored by the fresh path (app.ingest.fresh)


class BulkLoad:
    def __init__(self, db: Database, registry: Registry, settings: Settings, table: str):
        self.db, self.registry, self.settings, self.table = db, registry, settings, table

    async def open(self) -> None:
        """Create the work table if a former run did not leave it."""
        cols = ", ".join(STAGE_COLUMNS)
        async with self.db.transaction() as session:
            await session.execute(text(f"CREATE TABLE IF NOT EXISTS {self.table} AS SELECT {cols} FROM dossier_event WITH NO DATA"))
            await session.execute(text(f"ALTER TABLE {self.table} ADD COLUMN IF NOT EXISTS seq bigint"))

    async def load(self, records: list[tuple]) -> None:
        """COPY one chunk's valid events into the work table (its own transaction): rows of
        STAGE_COLUMNS and the line number (`seq`: of two copies of an event, the first line's is
        staged, app.ingest.validators)."""
        if not records:
            return
        async with self.db.transaction() as session:
            raw = await (await session.connection()).get_raw_connection()
            await raw.driver_connection.copy_records_to_table(self.table, records=records, columns=(*STAGE_COLUMNS, "seq"))

    async def groups(self, group_events: int = GROUP_EVENTS, writers: int = 1) -> list[list[str]]:
        """The staged units in groups of about `group_events` events, the units of a province
        together; smaller when that gives each of the `writers` a group."""
        async with self.db.session() as session:
            counts = (await session.execute(text(f"SELECT unit_code, count(*) FROM {self.table} GROUP BY 1"))).all()
        group_events = max(1, min(group_events, -(-sum(n for _, n in counts) // max(1, writers))))
        ordered = sorted(counts, key=lambda r: (rollup_chain(self.registry, r[0])[-1:], r[0]))
        out: list[list[str]] = []
        size = 0
        for unit, n in ordered:
            if not out or size + n > group_events:
                out.append([])
                size = 0
            out[-1].append(unit)
            size += n
        out = [g for g in out if g]
        if len(out) > writers:  # each group reads its units by an index, not the whole table
            async with self.db.transaction() as session:
                await session.execute(text(f"CREATE INDEX IF NOT EXISTS {self.table}_unit ON {self.table} (unit_code)"))
        return out

    async def ensure_partitions(self) -> None:
        """The log's monthly partitions of every staged event (app.db.partitions)."""
        async with self.db.session() as session:
            stmt = text(f"SELECT DISTINCT date_trunc('month', occurred_at AT TIME ZONE :tz)::date FROM {self.table}")
            months = {d for (d,) in await session.execute(stmt, {"tz": self.settings.timezone})}
        await partitions.of(self.db).ensure(self.db, months, self.settings.tz)

    async def build(self, units: list[str], slot: int) -> BuildReport:
        """One group: its staged events stored, then out of the work table. Units with nothing
        stored yet take the fresh path (app.ingest.fresh); the others, and a fresh group that meets
        a row written meanwhile, the write pass."""
        async with self.db.session() as session:
            old = await fresh.stale(session, units)
        new = [u for u in units if u not in old]
        report = BuildReport()
        if new:
            try:
                report = await self._build_fresh(new, slot)
            except (fresh.NotFresh, asyncpg.UniqueViolationError, asyncpg.DeadlockDetectedError, IntegrityError):
                old.update(new)  # rolled back: the pass builds them below
        if old:
            got = await self._build_pass(sorted(old), slot)
            report = BuildReport(report.staged + got.staged, report.accepted + got.accepted, report.fresh)
        return report

    async def _begin(self, session) -> None:
        await session.execute(text(f"SET LOCAL work_mem = '{WORK_MEM}'"))
        await session.execute(text("SET LOCAL jit = off"))
        # The build's ANALYZEs of its temporary tables (a few hundred thousand rows) only steer
        # hash against nested-loop joins: a sample of 3,000 rows does that at a tenth of the cost.
        await session.execute(text(f"SET LOCAL default_statistics_target = {STATISTICS_TARGET}"))
        # A build commits without waiting for its WAL to reach the disk: if the server crashes
        # before it does, the group is lost with the removal of its events from the work table (the
        # same transaction), and the re-run builds it again. close() commits synchronously, which
        # flushes every build's commit before the import reports done.
        await session.execute(text("SET LOCAL synchronous_commit = off"))
        await session.execute(text(f"SELECT {pgpass.current().temp_tables}()"))

    async def _done(self, session, units: list[str]) -> None:
        await session.execute(text(f"DELETE FROM {self.table} WHERE unit_code = ANY(CAST(:units AS text[]))"), {"units": units})

    async def _build_fresh(self, units: list[str], slot: int) -> BuildReport:
        chains = {u: rollup_chain(self.registry, u) for u in units}
        async with self.db.transaction() as session:
            await self._begin(session)
            stored = await fresh.build(session, self.table, units, chains, self.settings.timezone, datetime.now(UTC), slot % ROLLUP_SLOTS)
            await self._done(session, units)
        return BuildReport(stored, stored, stored)

    async def _build_pass(self, units: list[str], slot: int) -> BuildReport:
        fn = pgpass.current()
        rollup = orjson.dumps([{"u": u, "a": a} for u in sorted(units) for a in rollup_chain(self.registry, u)]).decode()
        cols = ", ".join(STAGE_COLUMNS)
        report = BuildReport()
        async with self.db.transaction() as session:
            await self._begin(session)
            report.staged = (
                await session.execute(
                    text(
                        f"INSERT INTO chiso_stage ({cols}) SELECT DISTINCT ON (unit_code, event_id) {cols} FROM {self.table} "
                        "WHERE unit_code = ANY(CAST(:units AS text[])) ORDER BY unit_code, event_id, seq"
                    ),
                    {"units": units},
                )
            ).rowcount
            await session.execute(text("ANALYZE chiso_stage"))
            stmt = text(f"SELECT count(*) FROM {fn.ingest_staged}(CAST(:rollup AS json), :tz, :now, :slot)")
            params = {"rollup": rollup, "tz": self.settings.timezone, "now": datetime.now(UTC), "slot": slot % ROLLUP_SLOTS}
            report.accepted = (await session.execute(stmt, params)).scalar() or 0
            await self._done(session, units)
        return report

    async def close(self) -> None:
        """The import is complete: drop the work table."""
        async with self.db.transaction() as session:
            await session.execute(text(f"DROP TABLE IF EXISTS {self.table}"))

    async def compact(self, accepted: int) -> bool:
        """When this import stored at least COMPACT_SHARE of the events now stored, or an earlier
        compaction was interrupted (its leftovers: the invalid `_ccnew`/`_ccold` indexes that REINDEX
        CONCURRENTLY leaves when stopped, dropped here first), rebuild the indexes of COMPACTED,
        each table with REINDEX ... CONCURRENTLY (reads and posts go on meanwhile; `_reindex`).
        Whether every table's were rebuilt."""
        leftovers = 0
        for table in COMPACTED:
            leftovers += await self._drop_leftovers(table)
        if not leftovers:
            if accepted <= 0:
                return False
            async with self.db.autocommit() as session:
                stored = (await session.execute(text("SELECT count(*) FROM dossier_event"))).scalar() or 0
            if accepted < COMPACT_SHARE * stored:
                return False
        done = [await self._reindex(table) for table in COMPACTED]
        return all(done)

    async def _drop_leftovers(self, table: str) -> int:
        async with self.db.autocommit(write=True) as session:  # outside a transaction, as CONCURRENTLY must be
            left = list((await session.execute(_LEFT_BY_REINDEX, {"t": table})).scalars())
            for index in left:
                await session.execute(text(f"DROP INDEX CONCURRENTLY IF EXISTS {index}"))
        return len(left)

    async def _reindex(self, table: str) -> bool:
        """REINDEX TABLE CONCURRENTLY, tried COMPACT_TRIES times; what a failed try leaves is dropped."""
        for attempt in range(1, COMPACT_TRIES + 1):
            try:
                async with self.db.autocommit(write=True) as session:
                    await session.execute(text(f"SET lock_timeout = '{COMPACT_LOCK_TIMEOUT}'"))
                    try:
                        await session.execute(text(f"REINDEX TABLE CONCURRENTLY {table}"))
                    finally:
                        await session.execute(text("RESET lock_timeout"))
                return True
            except DBAPIError as exc:
                log.warning("rebuilding the indexes of %s failed (try %d of %d): %s", table, attempt, COMPACT_TRIES, exc.orig)
                await self._drop_leftovers(table)
                if attempt < COMPACT_TRIES:
                    await asyncio.sleep(COMPACT_PAUSE)
        return False
