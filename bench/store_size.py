"""Bytes per stored event, by table and by index, on PostgreSQL (issue 24's compact store).

    python -m bench.store_size --dsn postgresql://postgres@127.0.0.1:5432/DB      # measure a store
    python -m bench.store_size --load 400000 --communes 160 --days 300 --reads     # load one, read it, measure

With --load: a fresh database, migrated, an NDJSON history (bench/history.py) of the first
`--communes` communes loaded by `chiso import`; with --reads, the dashboard reads (KPIs of a
commune, a province and the nation, rankings, series, sectors, at-risk, silent, drivers, report)
through `chiso serve`. Statistics are reset before the import, so `idx_scan` counts what the writes
and reads of this run used: an index at 0 served neither.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import asyncpg
import httpx

ROOT = Path(__file__).resolve().parent.parent

TABLES_SQL = """
WITH rel AS (  -- a partitioned table counts its partitions (the event log's months)
  SELECT coalesce(i.inhparent, c.oid) AS top, c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN pg_inherits i ON i.inhrelid = c.oid WHERE n.nspname = 'public' AND c.relkind = 'r'
)
SELECT t.relname AS name, sum(t2.reltuples)::bigint AS est_rows,
       sum(pg_total_relation_size(r.oid))::bigint AS total, sum(pg_relation_size(r.oid))::bigint AS heap,
       sum(pg_table_size(r.oid) - pg_relation_size(r.oid))::bigint AS toast, sum(pg_indexes_size(r.oid))::bigint AS indexes
FROM rel r JOIN pg_class t ON t.oid = r.top JOIN pg_class t2 ON t2.oid = r.oid
GROUP BY t.relname ORDER BY 3 DESC
"""
INDEXES_SQL = """
SELECT s.relname AS tab, s.indexrelname AS name, pg_relation_size(s.indexrelid) AS bytes, s.idx_scan AS scans
FROM pg_stat_user_indexes s WHERE s.schemaname = 'public'
ORDER BY pg_relation_size(s.indexrelid) DESC
"""


async def measure(dsn: str) -> dict:
    """Sizes and rows of every table and index, per stored event."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("ANALYZE")
        events = await conn.fetchval("SELECT count(*) FROM dossier_event")
        tables = [dict(r) for r in await conn.fetch(TABLES_SQL)]
        for t in tables:  # exact counts for the tables that matter, estimates for the rest
            if t["total"] > 1 << 20:
                t["rows"] = await conn.fetchval(f'SELECT count(*) FROM "{t["name"]}"')
            else:
                t["rows"] = max(t["est_rows"], 0)
        indexes = [dict(r) for r in await conn.fetch(INDEXES_SQL)]
        db = await conn.fetchval("SELECT pg_database_size(current_database())")
    finally:
        await conn.close()
    return {"events": events, "tables": tables, "indexes": indexes, "database": db}


def render(m: dict) -> str:
    ev = max(m["events"], 1)
    out = [f"stored events: {m['events']:,}   database: {m['database'] / 2**20:,.1f} MiB ({m['database'] / ev:,.0f} B/event)", ""]
    out.append(f"{'table':<24}{'rows':>11}{'rows/ev':>9}{'heap':>8}{'toast':>7}{'index':>8}{'total':>8}   (bytes per event)")
    tot = {"heap": 0, "toast": 0, "indexes": 0, "total": 0}
    for t in m["tables"]:
        for k in tot:
            tot[k] += t[k]
        if t["total"] < 64 * 1024:
            continue
        out.append(
            f"{t['name']:<24}{t['rows']:>11,}{t['rows'] / ev:>9.3f}{t['heap'] / ev:>8.1f}{t['toast'] / ev:>7.1f}"
            f"{t['indexes'] / ev:>8.1f}{t['total'] / ev:>8.1f}"
        )
    sums = f"{tot['heap'] / ev:>8.1f}{tot['toast'] / ev:>7.1f}{tot['indexes'] / ev:>8.1f}{tot['total'] / ev:>8.1f}"
    out.append(f"{'all tables':<24}{'':>11}{'':>9}{sums}")
    out += ["", f"{'index':<44}{'table':<20}{'B/event':>9}{'idx_scan':>11}"]
    for i in m["indexes"]:
        if i["bytes"] < 64 * 1024:
            continue
        out.append(f"{i['name']:<44}{i['tab']:<20}{i['bytes'] / ev:>9.1f}{i['scans']:>11,}")
    return "\n".join(out)


# --- a store to measure --------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _chiso(env: dict, *argv: str) -> str:
    out = subprocess.run([sys.executable, "-m", "app.cli", *argv], env=env, cwd=ROOT, capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"chiso {argv[0]} failed: {out.stderr[-3000:]}")
    return out.stdout


def load(pg: str, n_events: int, n_communes: int, days: float, env: dict) -> str:
    """A fresh database holding a history loaded by `chiso import`; its DSN."""
    from app.units.seed import package_units
    from bench.history import write_history

    db = f"chiso_size_{os.getpid()}_{int(time.time())}"
    asyncio.run(_admin(pg, f'CREATE DATABASE "{db}"'))
    dsn = f"{pg.rstrip('/')}/{db}"
    env["DATABASE_URL"] = dsn.replace("postgresql://", "postgresql+asyncpg://", 1)
    _chiso(env, "db", "upgrade")
    asyncio.run(_admin(dsn, "SELECT pg_stat_reset()"))
    communes = [u.code for u in package_units() if u.level == "commune"][:n_communes]
    path = Path(tempfile.mkdtemp(prefix="chiso-size-")) / "history.ndjson"
    written = write_history(path, communes, n_events, days, 17, "s-")
    t0 = time.time()
    _chiso(env, "import", str(path), "--json")
    print(f"loaded {written:,} events of {len(communes)} communes over {days:g} days in {time.time() - t0:.0f} s: {db}", file=sys.stderr)
    path.unlink()
    return dsn


async def _admin(dsn: str, sql: str) -> None:
    if "/" not in dsn.split("//", 1)[1]:
        dsn = dsn.rstrip("/") + "/postgres"
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def reads(env: dict, communes: list[str], provinces: list[str]) -> None:
    """The dashboard's reads, once each, through `chiso serve`."""
    port = _free_port()
    env = {**env, "PUBLIC_READ": "true", "MIGRATE_ON_START": "false"}
    argv = [sys.executable, "-m", "app.cli", "serve", "--port", str(port)]
    srv = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}/api/v1"
    try:
        with httpx.Client(base_url=base, timeout=60) as c:
            for _ in range(100):
                try:
                    if c.get("/units/VN").status_code < 500:
                        break
                except httpx.TransportError:
                    time.sleep(0.2)
            urls = []
            for code in (communes[0], communes[-1], *provinces[:2], "VN"):
                urls += [
                    f"/units/{code}/kpis?window=30d",
                    f"/units/{code}/kpis?window=7d",
                    f"/units/{code}/series?kpi=on_time_rate&interval=week",
                    f"/units/{code}/series?kpi=on_time_rate&interval=day",
                    f"/units/{code}/sectors?window=30d",
                    f"/units/{code}/at-risk",
                    f"/units/{code}/silent",
                    f"/units/{code}/drivers?window=30d",
                    f"/units/{code}/report?period=month",
                ]
            urls += ["/rankings?level=commune&window=30d&limit=5000", "/rankings?level=province&window=30d"]
            for u in urls:
                r = c.get(u)
                print(f"{r.status_code} {u}", file=sys.stderr)
    finally:
        srv.terminate()
        srv.wait(30)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dsn", help="measure this database (postgresql://...)")
    p.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432", help="server for --load")
    p.add_argument("--load", type=int, default=0, help="events of a history to load into a fresh database")
    p.add_argument("--communes", type=int, default=160, help="communes of the history (density: events per commune-day)")
    p.add_argument("--days", type=float, default=300)
    p.add_argument("--reads", action="store_true", help="run the dashboard reads before measuring")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    a = p.parse_args()
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    env |= {"SEED_REGISTRY": "true", "INGEST_RATE_PER_MINUTE": "0"}
    dsn = a.dsn
    if a.load:
        dsn = load(a.pg, a.load, a.communes, a.days, env)
    if not dsn:
        p.error("--dsn or --load")
    env["DATABASE_URL"] = dsn.replace("postgresql://", "postgresql+asyncpg://", 1)
    if a.reads:
        from app.units.seed import package_units

        units = package_units()
        communes = [u.code for u in units if u.level == "commune"][: a.communes]
        provinces = sorted({u.parent_code for u in units if u.code in set(communes)})
        reads(env, communes, provinces)
    m = asyncio.run(measure(dsn))
    print(json.dumps(m, default=str) if a.json else render(m))


if __name__ == "__main__":
    main()
