"""Downloads and reports against a real `chiso serve`, on PostgreSQL: `python -m bench.downloads [--pending 100000]
[--ended 200000] [--runs 3]`.

Loads a database as bench.at_risk does (`--pending` open dossiers over every commune, deadlines from 10
days ago to 20 days ahead, so that the nation's at-risk list with `within=720h&include_overdue=true`
holds all of them; `--ended` settled ones), starts one `chiso serve` process per case, and times, over
HTTP, the first download after the start (cold) and `--runs` more (warm, each computed anew), streamed to nowhere; the
server's peak RSS (VmHWM) is read before the first request and after each. Cases: the ranking of all
3,321 communes as XLSX and as CSV, the week report of a province and of the nation as XLSX, the
at-risk list of the nation (every pending dossier) as XLSX and as CSV; and the drivers of the nation and
of a province against the rankings they read (JSON).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import time
import uuid

import asyncpg
import httpx

from app.aggregates import rebuild
from app.db.engine import Database
from app.main import prepare_database
from app.settings import Settings
from bench.at_risk import ADMIN, load

CASES = {
    "ranking of 3,321 communes, XLSX": "/api/v1/rankings?level=commune&window=30d&format=xlsx",
    "ranking of 3,321 communes, CSV": "/api/v1/rankings?level=commune&window=30d&format=csv",
    "week report of province 01, XLSX": "/api/v1/units/01/report?period=week&format=xlsx",
    "week report of the nation, XLSX": "/api/v1/units/VN/report?period=week&format=xlsx",
    "week report of the nation, JSON": "/api/v1/units/VN/report?period=week",
    "drivers of the nation, on_time_rate 30d, JSON": "/api/v1/units/VN/drivers?kpi=on_time_rate&window=30d",
    "ranking of the provinces 30d, JSON": "/api/v1/rankings?level=province&window=30d",
    "drivers of province 01, on_time_rate 30d, JSON": "/api/v1/units/01/drivers?kpi=on_time_rate&window=30d",
    "ranking of the communes of 01 30d, JSON": "/api/v1/rankings?level=commune&parent=01&window=30d",
    "at-risk of the nation (all pending), XLSX": "/api/v1/units/VN/at-risk?within=720h&include_overdue=true&format=xlsx",
    "at-risk of the nation (all pending), CSV": "/api/v1/units/VN/at-risk?within=720h&include_overdue=true&format=csv",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def peak_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        line = next(x for x in f if x.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024


def fetch(base: str, path: str) -> tuple[float, int, int]:
    t0 = time.perf_counter()
    size = 0
    with httpx.stream("GET", base + path, timeout=600) as r:
        for chunk in r.iter_bytes():
            size += len(chunk)
    return time.perf_counter() - t0, r.status_code, size


def case(url: str, label: str, path: str, runs: int) -> None:
    port = free_port()
    env = {**os.environ, "DATABASE_URL": url, "PUBLIC_READ": "true", "EXPORT_ENABLED": "false", "DB_POOL_SIZE": "4"}
    server = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "serve", "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                if httpx.get(base + "/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        before = peak_mib(server.pid)
        cold, status, size = fetch(base, path)
        assert status == 200, (label, status)
        cold_peak = peak_mib(server.pid)
        # a JSON answer is cached per query: a parameter the API ignores makes each warm request a computation
        warm = [fetch(base, path + (f"&run={i}" if "format=" not in path else ""))[0] for i in range(runs)]
        warm_peak = peak_mib(server.pid)
        print(
            f"{label:44} {size / 1e6:6.1f} MB  cold {cold:6.2f} s  warm {min(warm):6.2f}/{statistics.median(warm):6.2f}/{max(warm):6.2f} s"
            f"  peak RSS MiB: start {before:5.0f}, after cold {cold_peak:5.0f}, after warm {warm_peak:5.0f}",
            flush=True,
        )
    finally:
        server.terminate()
        server.wait(30)


async def prepare(pending: int, ended: int) -> tuple[str, str]:
    name = f"chiso_bench_dl_{uuid.uuid4().hex[:6]}"
    admin = await asyncpg.connect(f"{ADMIN}/postgres")
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    url = f"{ADMIN.replace('postgresql://', 'postgresql+asyncpg://', 1)}/{name}"
    db = Database(url, pool_size=2)
    try:
        await prepare_database(db, Settings(_env_file=None, database_url=url, seed_registry=True))
        await load(f"{ADMIN}/{name}", pending, ended)
        await rebuild.rebuild_rollups(db)
    finally:
        await db.dispose()
    return name, url


async def drop(name: str) -> None:
    admin = await asyncpg.connect(f"{ADMIN}/postgres")
    await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await admin.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pending", type=int, default=100_000)
    ap.add_argument("--ended", type=int, default=200_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--only", default="", help="Run only the cases whose label contains this.")
    args = ap.parse_args()
    name, url = asyncio.run(prepare(args.pending, args.ended))
    try:
        print(f"{args.pending:,} pending and {args.ended:,} ended dossiers; warm = min/median/max of {args.runs}")
        for label, path in CASES.items():
            if args.only in label:
                case(url, label, path, args.runs)
    finally:
        asyncio.run(drop(name))


if __name__ == "__main__":
    main()
