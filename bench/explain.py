"""EXPLAIN ANALYZE of the SQL behind the benchmarked reads: `python -m bench.explain DATABASE_URL`
(a database a `--keep-db` run left behind)."""

from __future__ import annotations

import asyncio
import sys
import time

from sqlalchemy import event

from app.aggregates import periods
from app.db.engine import Database
from app.scoring import service
from app.scoring.context import Reader
from app.settings import Settings
from app.units.service import RegistryCache


async def main(url: str) -> None:
    db = Database(url, pool_size=2)
    tz = Settings().tz
    registry = await RegistryCache(db).refresh()
    reader = Reader(db, registry, tz)
    captured: list = []

    @event.listens_for(db.engine.sync_engine, "before_cursor_execute")
    def grab(conn, cursor, statement, parameters, context, executemany):
        if not statement.startswith("EXPLAIN"):
            captured.append((statement, parameters))

    now = reader.now()
    w30 = periods.window("30d", periods.today(now, tz))
    commune = registry.at_level("commune")[100].code
    cases = {
        "commune KPI": lambda: service.unit_kpis(reader, commune, w30, None),
        "province KPI": lambda: service.unit_kpis(reader, "01", w30, None),
        "national KPI": lambda: service.unit_kpis(reader, "VN", w30, None),
        "ranking communes": lambda: service.ranking(reader, "commune", None, w30, "-on_time_rate", 5000, 0),
        "52-week series (province)": lambda: service.series(reader, "01", "on_time_rate", "week", None, None),
    }
    for name, call in cases.items():
        captured.clear()
        await call()
        t0 = time.perf_counter()
        await call()
        wall = time.perf_counter() - t0
        print(f"\n=== {name}: {len(captured) // 2} statements, service call {wall * 1000:.1f} ms (warm)")
        stmts = captured[len(captured) // 2 :]
        async with db.engine.connect() as conn:  # one transaction: a captured SET LOCAL holds for what follows it
            for i, (sql, params) in enumerate(stmts):
                if not sql.lstrip().upper().startswith(("SELECT", "WITH", "INSERT", "UPDATE", "DELETE")):
                    await conn.exec_driver_sql(sql, params)  # SET LOCAL plan_cache_mode and the like: run, not explained
                    print(f"-- stmt {i + 1}: {sql.strip()[:80]} (run as is)")
                    continue
                rows = (await conn.exec_driver_sql("EXPLAIN (ANALYZE, BUFFERS) " + sql, params)).all()
                plan = [r[0] for r in rows]
                exec_line = next((p for p in plan if p.startswith("Execution Time")), "")
                first = sql.split("FROM")[1].split()[0] if "FROM" in sql else "?"
                print(f"-- stmt {i + 1} on {first}: {exec_line}; {len(sql)} chars of SQL")
                for p in plan[:14]:
                    print("   " + p)
    await db.dispose()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
