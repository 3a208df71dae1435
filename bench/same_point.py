"""What "compared at the same point" costs a read, on PostgreSQL:
`python -m bench.same_point [--per-day 50000] [--days 20] [--history 1000000] [--keep-db | --url URL]`.

Creates a database on CHISO_BENCH_PG (default postgresql://postgres@127.0.0.1:5432), migrates it,
loads the registry and writes dossier rows straight into the dossier table: `--per-day` dossiers a
day received over the last `--days` days at any time of day (settled 0 to 6 days later or still
open, deadlines 3 days after receipt, 2 % without a receipt), and `--history` settled ones spread over
five years (to show that the cost follows one part of one day, not the history). Then times, in
process through the scoring service: the correction of the previous figures from the midnight
before t to t alone (aggregates.at_tau), read whole or kept per unit and stepped as t moves
(aggregates.tau_memo), and the KPI answers, the rankings of all communes and of the provinces and
the drivers of a window in progress (previous at t) against the same answers of a finished week
(whole with whole, no correction). "memos" marks a computation with this process's memos (figures
at now and corrections at t per unit, as app.answers.kinds sets them); "after a change" one commune
changed before each call (its `unit_change` count moves, no figure does), as a batch would: it is
read again from the midnight. Prints median and max wall time of repeated runs, and the mean CPU
per call of this process and of the PostgreSQL backends of the database (on a busy machine the
CPU figures are the ones to compare).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from datetime import timedelta

import asyncpg
import psutil
from sqlalchemy import text

from app.aggregates import periods
from app.aggregates.at_tau import read_at_instant
from app.aggregates.live_memo import LIVE
from app.aggregates.sums import Sums
from app.db.engine import Database
from app.main import prepare_database
from app.scoring import drivers as drivers_service
from app.scoring import service
from app.scoring.context import Reader
from app.settings import Settings
from app.units.service import RegistryCache
from bench.at_risk import ADMIN

try:  # the corrections at t kept per unit, where this tree has them (a tree before them times the same cases)
    from app.aggregates.at_tau import TAU
except ImportError:  # pragma: no cover
    TAU = None


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


def server_cpu(db_name: str) -> float:
    """CPU seconds so far of the PostgreSQL backends serving `db_name` (a server on this machine:
    /proc), so that a busy machine's wall time does not hide what a read costs the database."""
    total = 0.0
    for pid in psutil.pids():
        try:
            proc = psutil.Process(pid)
            if proc.name() == "postgres" and f" {db_name} " in " ".join(proc.cmdline()) + " ":
                t = proc.cpu_times()
                total += t.user + t.system
        except (psutil.Error, OSError):
            continue
    return total


async def timed(call, before=None, runs: int = 11, db_name: str = "") -> tuple[float, float, float, float]:
    """(median wall ms, max wall ms, mean CPU ms of this process, mean CPU ms of the database) per call."""
    times, cpu, server = [], 0.0, 0.0
    for _ in range(runs):
        if before is not None:
            await before()
        s0, c0, t0 = server_cpu(db_name), time.process_time(), time.perf_counter()
        await call()
        times.append((time.perf_counter() - t0) * 1000)
        cpu += time.process_time() - c0
        server += server_cpu(db_name) - s0
    return statistics.median(times), max(times), 1000 * cpu / runs, 1000 * server / runs


async def run(per_day: int, days: int, history: int, keep: bool, given: str | None = None) -> None:
    name = f"chiso_bench_tau_{uuid.uuid4().hex[:6]}" if given is None else given.rsplit("/", 1)[1]
    if given is None:
        admin = await asyncpg.connect(f"{ADMIN}/postgres")
        await admin.execute(f'CREATE DATABASE "{name}"')
        await admin.close()
    url = f"{ADMIN.replace('postgresql://', 'postgresql+asyncpg://', 1)}/{name}"
    settings = Settings(_env_file=None, database_url=url, seed_registry=True)
    db = Database(url, pool_size=2)
    keep = keep or given is not None
    try:
        if given is None:
            await prepare_database(db, settings)
            t0 = time.perf_counter()
            await load(f"{ADMIN}/{name}", per_day, days, history)
            print(f"loaded {per_day * days:,} recent and {history:,} historic dossiers in {time.perf_counter() - t0:.0f} s")
        registry = await RegistryCache(db).refresh()
        tz = settings.tz
        reader = Reader(db, registry, tz)
        now = reader.now()
        today = periods.today(now, tz)
        live, done = periods.window("7d", today), periods.containing("week", today - timedelta(days=8))
        province = "01"
        commune = registry.at_level("commune", province)[0].code

        memo = service.RankingMemo()  # the memos of one process: rankings, figures at now, corrections at t
        plain = service.RankingMemo()
        plain.tau = None

        async def correction(code: str, kept: bool) -> None:  # the previous span's [midnight, t) alone
            _, spans, _ = service.compared(live, reader.now(), tz)
            scope, tau = service.scope_of(registry, code), getattr(memo, "tau", None) if kept else None
            async with db.session() as session:
                await read_at_instant(
                    session, scope, [(1, spans[1])], "*", {"": [Sums(), Sums()]}, **({} if tau is None else {"memo": tau})
                )

        async def touch() -> None:
            async with db.transaction() as session:
                await session.execute(text("UPDATE unit_change SET changes = changes + 1 WHERE unit_code = :u"), {"u": commune})

        def with_memos(call):
            async def run():
                tokens = LIVE.set(memo.live), None if TAU is None else TAU.set(memo.tau)
                try:
                    return await call()
                finally:
                    if TAU is not None:
                        TAU.reset(tokens[1])
                    LIVE.reset(tokens[0])

            return run

        cases = {}
        for code in ("VN", province, commune):
            cases[f"{code}: correction [midnight, t) read"] = (lambda code=code: correction(code, False), False)
            cases[f"{code}: correction kept per unit"] = (lambda code=code: correction(code, True), False)
            cases[f"{code}: correction kept, after a change"] = (lambda code=code: correction(code, True), True)
            for label, p in (("7d in progress", live), ("finished week", done)):
                answer = lambda code=code, p=p: service.unit_kpis(reader, code, p, None)  # noqa: E731
                cases[f"{code}: KPI answer, {label}"] = (answer, False)
                if p is live:
                    cases[f"{code}: KPI answer, {label}, memos"] = (with_memos(answer), False)
                    cases[f"{code}: KPI answer, {label}, memos, after a change"] = (with_memos(answer), True)
        for label, p in (("7d in progress", live), ("finished week", done)):
            for level in ("commune", "province"):
                for memos, m in (("ranking memo", plain), ("memos", memo)):
                    call = lambda p=p, level=level, m=m: service.ranking(reader, level, None, p, "-received", 5000, 0, memo=m)  # noqa: E731
                    cases[f"ranking of all {level}s, {label} ({memos})"] = (call, False)
                    if m is memo and p is live:
                        cases[f"ranking of all {level}s, {label} ({memos}), after a change"] = (call, True)
            cases[f"drivers of {province} on_time_rate, {label}"] = (
                lambda p=p: drivers_service.drivers(reader, province, "on_time_rate", p),
                False,
            )
        print(f"{'case':64} {'p50 ms':>8} {'max ms':>8} {'CPU ms':>8} {'PG CPU ms':>9}")
        for label, (call, changed) in cases.items():
            await call()
            p50, worst, cpu, server = await timed(call, touch if changed else None, db_name=name)
            print(f"{label:64} {p50:8.1f} {worst:8.1f} {cpu:8.1f} {server:9.1f}")
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
    ap.add_argument("--url", help="a database an earlier --keep-db run loaded: time it again (not loaded, not dropped)")
    a = ap.parse_args()
    asyncio.run(run(a.per_day, a.days, a.history, a.keep_db, a.url))


if __name__ == "__main__":
    main()
