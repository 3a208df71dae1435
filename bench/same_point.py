"""What "compared at the same point" costs a read, on PostgreSQL:
`python -m bench.same_point [--per-day 50000] [--days 20] [--history 1000000] [--keep-db]`.

Creates a database on CHISO_BENCH_PG (default postgresql://postgres@127.0.0.1:5432), migrates it,
loads the registry and writes dossier rows straight into the dossier table: `--per-day` dossiers a
day received over the last `--days` days at any time of day (settled 0 to 6 days later or still
open, deadlines 3 days after receipt, 2 % without a receipt), and `--history` settled ones spread over
five years (to show that the cost follows one part of one day, not the history). Then times, in
process through the scoring service: the correction of the previous figures from the midnight
before t to t alone (aggregates.at_tau, the part this change adds), and the KPI answers, a
ranking of all communes and the drivers of a window in progress (previous at t) against the same
answers of a finished week (whole with whole, no correction). Prints median and max of repeated runs.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from datetime import timedelta

import asyncpg

from app.aggregates import periods
from app.aggregates.at_tau import read_at_instant
from app.aggregates.sums import Sums
from app.db.engine import Database
from app.main import prepare_database
from app.scoring import drivers as drivers_service
from app.scoring import service
from app.settings import Settings
from app.units.service import RegistryCache
from bench.at_risk import ADMIN


async def load(url: str, per_day: int, days: int, history: int) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(
            """
            WITH communes AS (SELECT code, row_number() OVER (ORDER BY code) - 1 AS i FROM unit WHERE level = 'commune'),
                 n AS (SELECT count(*) AS c FROM communes)
            INSERT INTO dossier (unit_code, dossier_id, recv_at, recv_event_id, channel, recv_due_at, supplements, event_days,
                                 sector, eff_due_at, end_at, ok_766, res_at, res_event_id)
            SELECT c.code, 'R' || g, CASE WHEN g % 50 = 0 THEN NULL ELSE d.recv END, 'r' || g,
                   (ARRAY['online', 'in_person', 'postal'])[1 + g % 3], d.recv + interval '3 days', 0,
                   '{"' || to_char(d.recv AT TIME ZONE 'Asia/Ho_Chi_Minh', 'YYYY-MM-DD') || '":1}',
                   (ARRAY['land', 'civil_status', 'business', ''])[1 + g % 4], d.recv + interval '3 days', d.fin, true,
                   d.fin, CASE WHEN d.fin IS NULL THEN NULL ELSE 'x' || g END
            FROM generate_series(1, $1::int) g
            CROSS JOIN n
            JOIN communes c ON c.i = g % n.c
            CROSS JOIN LATERAL (SELECT now() - ($2::int * interval '1 day') * ((g::bigint * 7919 % 1000003) / 1000003.0) AS recv) r
            CROSS JOIN LATERAL (SELECT r.recv,
                CASE WHEN g % 7 = 0 THEN NULL ELSE least(r.recv + (g % 6) * interval '1 day' + (g % 17) * interval '1 hour', now()) END
                AS fin) d
            """,
            per_day * days,
            days,
        )
        await conn.execute(
            """
            WITH communes AS (SELECT code, row_number() OVER (ORDER BY code) - 1 AS i FROM unit WHERE level = 'commune'),
                 n AS (SELECT count(*) AS c FROM communes)
            INSERT INTO dossier (unit_code, dossier_id, recv_at, recv_event_id, channel, recv_due_at, supplements, event_days,
                                 sector, eff_due_at, end_at, ok_766, res_at, res_event_id)
            SELECT c.code, 'H' || g, d.recv, 'r' || g, 'online', d.recv + interval '5 days', 0, '{}', 'land',
                   d.recv + interval '5 days', d.recv + interval '2 days', true, d.recv + interval '2 days', 'x' || g
            FROM generate_series(1, $1::int) g
            CROSS JOIN n
            JOIN communes c ON c.i = g % n.c
            CROSS JOIN LATERAL (SELECT now() - interval '5 years' + (g::bigint * 104729 % 150000000) * interval '1 second' AS recv) d
            """,
            history,
        )
        await conn.execute("VACUUM ANALYZE dossier")
    finally:
        await conn.close()


async def timed(call, runs: int = 11) -> tuple[float, float]:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        await call()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times), max(times)


async def run(per_day: int, days: int, history: int, keep: bool) -> None:
    name = f"chiso_bench_tau_{uuid.uuid4().hex[:6]}"
    admin = await asyncpg.connect(f"{ADMIN}/postgres")
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    url = f"{ADMIN.replace('postgresql://', 'postgresql+asyncpg://', 1)}/{name}"
    settings = Settings(_env_file=None, database_url=url, seed_registry=True)
    db = Database(url, pool_size=2)
    try:
        await prepare_database(db, settings)
        t0 = time.perf_counter()
        await load(f"{ADMIN}/{name}", per_day, days, history)
        print(f"loaded {per_day * days:,} recent and {history:,} historic dossiers in {time.perf_counter() - t0:.0f} s")
        registry = await RegistryCache(db).refresh()
        tz = settings.tz
        now = service._now()
        today = periods.today(now, tz)
        live, done = periods.window("7d", today), periods.containing("week", today - timedelta(days=8))
        province = "01"
        commune = registry.at_level("commune", province)[0].code

        async def correction(code: str) -> None:  # the previous span's [midnight, t) alone
            _, spans, _ = service.compared(live, service._now(), tz)
            async with db.session() as session:
                await read_at_instant(session, service.scope_of(registry, code), [(1, spans[1])], "*", {"": [Sums(), Sums()]})

        memo = service.RankingMemo()
        cases = {}
        for code in ("VN", province, commune):
            cases[f"{code}: correction [midnight, t) alone"] = lambda code=code: correction(code)
            for label, p in (("7d in progress", live), ("finished week", done)):
                cases[f"{code}: KPI answer, {label}"] = lambda code=code, p=p: service.unit_kpis(db, registry, tz, code, p, None)
        for label, p in (("7d in progress", live), ("finished week", done)):
            cases[f"ranking of all communes, {label} (memo)"] = lambda p=p: service.ranking(
                db, registry, tz, "commune", None, p, "-received", 5000, 0, memo=memo
            )
            cases[f"drivers of {province} on_time_rate, {label}"] = lambda p=p: drivers_service.drivers(
                db, registry, tz, province, "on_time_rate", p
            )
        print(f"{'case':56} {'p50 ms':>8} {'max ms':>8}")
        for label, call in cases.items():
            p50, worst = await timed(call)
            print(f"{label:56} {p50:8.1f} {worst:8.1f}")
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
    ap.add_argument("--per-day", type=int, default=50_000)
    ap.add_argument("--days", type=int, default=20)
    ap.add_argument("--history", type=int, default=1_000_000)
    ap.add_argument("--keep-db", action="store_true")
    a = ap.parse_args()
    asyncio.run(run(a.per_day, a.days, a.history, a.keep_db))


if __name__ == "__main__":
    main()
