"""Planner statistics and dead rows of the service's tables, kept where the server does not keep them.

Every hot read of the service is planned by PostgreSQL from its statistics: which index leads, how
many rows a range holds. The data grows at the edge of now (receipts, deadlines a few days ahead),
exactly where stale statistics see nothing, and a plan made for an empty range reads the whole table
(measured 2026-12-06 on a store of 650k dossiers never analysed: the due-soon figures of 300 units
119 ms through the nation's deadline index, 19 ms through the units' own after ANALYZE; a
province's answer 135 ms warm, its correction at t a sequential scan). Autovacuum keeps statistics
and dead rows in check; a server where it is off (`autovacuum = off`, as on some CI and benchmark
machines) keeps neither, and upserted aggregate rows bloat.

`Upkeep` does autovacuum's part for the service's own tables when, and only when, the server's
autovacuum is off (DB_UPKEEP=auto; `off` leaves it to the operator): every `every` seconds one
process of the deployment (a try of an advisory lock: the others skip) analyses each table whose
rows changed by more than its threshold since it was last analysed, and vacuums (with analyse) one
whose dead rows passed theirs, one table at a time, on a connection of its own without a statement
timeout. The thresholds are autovacuum's formulas (base + share of the live rows, the tables' own
`autovacuum_*_scale_factor` where migrations set one). Nothing to do on SQLite.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from sqlalchemy import text

from app.db.engine import Database

log = logging.getLogger("chiso.upkeep")

LOCK_KEY = 0x6368_6973_6F75_706B  # "chisoupk": one process of the deployment at a time
ANALYZE_BASE, ANALYZE_SHARE = 1000, 0.1
VACUUM_BASE, VACUUM_SHARE = 2000, 0.2

# The tables of this database's schema with what autovacuum would look at: live, dead and changed
# rows since the last analyse, and the table's own scale factors (reloptions) where set.
_STATS = text("""
SELECT s.relname AS name, s.n_live_tup AS live, s.n_dead_tup AS dead, s.n_mod_since_analyze AS changed,
       (SELECT split_part(o, '=', 2)::float FROM unnest(c.reloptions) o
         WHERE o LIKE 'autovacuum_analyze_scale_factor=%') AS analyze_share,
       (SELECT split_part(o, '=', 2)::float FROM unnest(c.reloptions) o
         WHERE o LIKE 'autovacuum_vacuum_scale_factor=%') AS vacuum_share
FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid
WHERE s.schemaname = current_schema() AND c.relkind = 'r'
""")


@dataclass(frozen=True)
class TableStats:
    name: str
    live: int
    dead: int
    changed: int
    analyze_share: float | None = None
    vacuum_share: float | None = None


def due(t: TableStats) -> str | None:
    """What autovacuum would do to this table now: 'vacuum' (with analyse), 'analyze', or None."""
    if t.dead > VACUUM_BASE + (t.vacuum_share if t.vacuum_share is not None else VACUUM_SHARE) * t.live:
        return "vacuum"
    if t.changed > ANALYZE_BASE + (t.analyze_share if t.analyze_share is not None else ANALYZE_SHARE) * t.live:
        return "analyze"
    return None


class Upkeep:
    """Autovacuum's part for the service's tables where the server's is off (see the module's docstring)."""

    def __init__(self, db: Database, mode: str = "auto", every: float = 60.0):
        self.db, self.mode, self.every = db, mode, every
        self.done: list[tuple[str, str, float]] = []  # (what, table, seconds) of the last run
        self._ran_at = float("-inf")

    async def run_once(self) -> list[tuple[str, str, float]]:
        """One look at the tables (at most every `every` seconds); what it did."""
        self.done = []
        if self.mode == "off" or self.db.is_sqlite or time.monotonic() - self._ran_at < self.every:
            return self.done
        self._ran_at = time.monotonic()
        async with self.db.engine.connect() as conn:
            try:
                await self._run(conn)
            except BaseException:  # cancelled (a shutdown) or failed: the session's advisory lock and
                await conn.invalidate()  # setting go with the connection instead of back to the pool
                raise
        return self.done

    async def _run(self, conn) -> None:
        # autocommit: VACUUM runs outside a transaction; the advisory lock is the session's (released
        # below, or by the server with the connection)
        conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
        if (await conn.execute(text("SELECT current_setting('autovacuum')"))).scalar() == "on":
            return  # the server keeps them
        if not (await conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": LOCK_KEY})).scalar():
            return  # another process is at it
        await conn.execute(text("SET statement_timeout = 0"))
        tables = [TableStats(**row) for row in (await conn.execute(_STATS)).mappings()]
        for t in tables:
            what = due(t)
            if what is None:
                continue
            started = time.monotonic()
            sql = f'VACUUM (ANALYZE) "{t.name}"' if what == "vacuum" else f'ANALYZE "{t.name}"'
            await conn.execute(text(sql))
            self.done.append((what, t.name, time.monotonic() - started))
            log.info("%s %s (%d live, %d dead, %d changed rows): %.1f s", what, t.name, t.live, t.dead, t.changed, self.done[-1][2])
        await conn.execute(text("RESET statement_timeout"))
        await conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": LOCK_KEY})

    async def run_forever(self) -> None:
        """Look every few seconds (run_once keeps its own pace) until cancelled; a failed run is
        logged and the loop goes on."""
        while True:
            try:
                await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the next look tries again
                log.warning("database upkeep failed", exc_info=True)
            await asyncio.sleep(min(self.every, 10.0))
