"""The at-risk list and the due-soon counts with a million pending dossiers, on PostgreSQL:
`python -m bench.at_risk [--pending 1000000] [--ended 2000000] [--keep-db]`.

Creates a database on CHISO_BENCH_PG (default postgresql://postgres@127.0.0.1:5432), migrates it,
loads the registry and writes dossier rows straight into the dossier table (set-based SQL: the
at-risk list and the due counts at now read only that table): `--pending` open dossiers spread over
every commune with deadlines from 10 days ago to 20 days ahead, and `--ended` settled ones (history,
a tenth of them late), rebuilds the rollup rows from them, then times, in process through the scoring service (the SQL and the answer
as the API builds it, without HTTP): the nation's, a province's and a commune's first page
(`within=48h`, and `720h` with overdue), a deep page, and the nation's KPI answer (due counts at now
from the same open-dossier index). Prints median and max of repeated runs, and the plans' top lines.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
import uuid

import asyncpg
from sqlalchemy import event

from app.aggregates import periods, rebuild
from app.db.engine import Database
from app.main import prepare_database
from app.scoring import service
from app.scoring.context import Reader
from app.settings import Settings
from app.units.service import RegistryCache

ADMIN = os.environ.get("CHISO_BENCH_PG", "postgresql://postgres@127.0.0.1:5432")


async def load(url: str, pending: int, ended: int) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(
            """
            WITH communes AS (SELECT code, row_number() OVER (ORDER BY code) - 1 AS i FROM unit WHERE level = 'commune'),
                 n AS (SELECT count(*) AS c FROM communes)
            INSERT INTO dossier (unit_code, dossier_id, recv_at, recv_event_id, channel, recv_due_at, supplements, event_days,
                                 sector, eff_due_at, end_at, ok_766)
            SELECT c.code, 'P' || g, now() - interval '12 days' + (g % 1000) * interval '10 minutes', 'r' || g,
                   (ARRAY['online', 'in_person', 'postal'])[1 + g % 3], d.due, 0, '{}',
                   (ARRAY['land', 'civil_status', 'business', ''])[1 + g % 4], d.due, NULL, true
            FROM generate_series(1, $1::int) g
            CROSS JOIN n
            JOIN communes c ON c.i = g % n.c
            CROSS JOIN LATERAL (SELECT now() - interval '10 days' + (g::bigint * 7919 % 2592000) * interval '1 second' AS due) d
            """,
            pending,
        )
        await conn.execute(
            """
            WITH communes AS (SELECT code, row_number() OVER (ORDER BY code) - 1 AS i FROM unit WHERE level = 'commune'),
                 n AS (SELECT count(*) AS c FROM communes)
            INSERT INTO dossier (unit_code, dossier_id, recv_at, recv_event_id, channel, recv_due_at, supplements, event_days,
                                 sector, eff_due_at, end_at, ok_766)
            SELECT c.code, 'E' || g, d.recv, 'r' || g, 'online', d.recv + interval '5 days', 0, '{}', 'land',
                   d.recv + interval '5 days', d.recv + CASE WHEN g % 10 = 0 THEN interval '6 days' ELSE interval '2 days' END, true
            FROM generate_series(1, $1::int) g
            CROSS JOIN n
            JOIN communes c ON c.i = g % n.c
            CROSS JOIN LATERAL (SELECT now() - interval '5 years' + (g::bigint * 104729 % 157680000) * interval '1 second' AS recv) d
            """,
            ended,
        )
        await conn.execute("VACUUM ANALYZE dossier")
    finally:
        await conn.close()


SQL: list[tuple[str, float]] = []  # (statement head, ms) of the call being timed


def watch(db: Database) -> None:
    @event.listens_for(db.engine.sync_engine, "before_cursor_execute")
    def before(conn, cursor, statement, parameters, context, executemany):
        conn.info["t0"] = time.perf_counter()

    @event.listens_for(db.engine.sync_engine, "after_cursor_execute")
    def after(conn, cursor, statement, parameters, context, executemany):
        SQL.append((statement.lstrip()[:40], (time.perf_counter() - conn.info["t0"]) * 1000))


async def timed(call, runs: int = 15) -> tuple[float, float, dict, float, float]:
    """Median and max of the whole call, its answer, and the median time of the at-risk count and
    page statements alone."""
    out, times, counts, pages = None, [], [], []
    for _ in range(runs):
        SQL.clear()
        t0 = time.perf_counter()
        out = await call()
        times.append((time.perf_counter() - t0) * 1000)
        counts.append(sum(ms for head, ms in SQL if head.startswith("SELECT count(*)")))
        pages.append(sum(ms for head, ms in SQL if head.startswith(("SELECT dossier.unit_code", "SELECT anon_1"))))
    return statistics.median(times), max(times), out, statistics.median(counts), statistics.median(pages)


async def run(pending: int, ended: int, keep: bool) -> None:
    name = f"chiso_bench_atrisk_{uuid.uuid4().hex[:6]}"
    admin = await asyncpg.connect(f"{ADMIN}/postgres")
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    url = f"{ADMIN.replace('postgresql://', 'postgresql+asyncpg://', 1)}/{name}"
    settings = Settings(_env_file=None, database_url=url, seed_registry=True)
    db = Database(url, pool_size=2)
    try:
        await prepare_database(db, settings)
        t0 = time.perf_counter()
        await load(f"{ADMIN}/{name}", pending, ended)
        await rebuild.rebuild_rollups(db)  # the open-deadline rollup rows of provinces and the nation, from the dossiers
        print(f"loaded {pending:,} pending and {ended:,} ended dossiers in {time.perf_counter() - t0:.0f} s")
        registry = await RegistryCache(db).refresh()
        tz = settings.tz
        reader = Reader(db, registry, tz)
        commune = registry.at_level("commune")[100].code
        memo = service.RankingMemo()
        cases = {
            "nation, within=48h, first page (100)": lambda: service.at_risk(reader, "VN", "48h", False, 100, 0),
            "nation, within=720h + overdue, first page": lambda: service.at_risk(reader, "VN", "720h", True, 100, 0),
            "nation, within=48h, page at offset 5,000": lambda: service.at_risk(reader, "VN", "48h", False, 100, 5000),
            "province 01, within=48h, first page": lambda: service.at_risk(reader, "01", "48h", False, 100, 0),
            "province 01, 720h + overdue, first page": lambda: service.at_risk(reader, "01", "720h", True, 100, 0),
            f"commune {commune}, 720h + overdue": lambda: service.at_risk(reader, commune, "720h", True, 100, 0),
            "nation KPI answer, window=7d (due counts at now)": lambda: service.unit_kpis(
                reader, "VN", periods.window("7d", periods.today(reader.now(), tz)), None
            ),
            "province 01 KPI answer, window=7d": lambda: service.unit_kpis(
                reader, "01", periods.window("7d", periods.today(reader.now(), tz)), None
            ),
            "ranking of 3,321 communes by -due_48h (memo warm)": lambda: service.ranking(
                reader, "commune", None, periods.window("7d", periods.today(reader.now(), tz)), "-due_48h", 5000, 0, memo=memo
            ),
        }
        watch(db)
        print(f"{'case':52} {'p50 ms':>8} {'max ms':>8} {'count':>7} {'page':>7}  figures")
        for label, call in cases.items():
            p50, worst, out, count_ms, page_ms = await timed(call)
            if "within" in out:
                figures = f"total {out['total']:,}"
            elif out.get("items"):
                figures = f"first {out['items'][0]['unit']['code']} due_48h {out['items'][0]['kpis']['due_48h']}"
            else:
                figures = f"due_24h/48h/72h {[out['kpis'][k] for k in ('due_24h', 'due_48h', 'due_72h')]}"
            print(f"{label:52} {p50:8.1f} {worst:8.1f} {count_ms:7.1f} {page_ms:7.1f}  {figures}")
        print("count, page: median ms of the at-risk count (a full count; 0 when the rollup rows answer) and page statements")
    finally:
        await db.dispose()
        if not keep:
            admin = await asyncpg.connect(f"{ADMIN}/postgres")
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await admin.close()
        else:
            print(f"kept {url}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pending", type=int, default=1_000_000)
    ap.add_argument("--ended", type=int, default=2_000_000)
    ap.add_argument("--keep-db", action="store_true")
    a = ap.parse_args()
    asyncio.run(run(a.pending, a.ended, a.keep_db))


if __name__ == "__main__":
    main()
