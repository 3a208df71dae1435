"""What one poll of a warm answer costs PostgreSQL: `python -m bench.poll_cost [--pg URL] [--polls 1000] [--key]`.

One `chiso serve --workers 2` on a fresh database; 50 communes' answers warmed; then `--polls` polls
of them by 8 clients. Prints the database's transactions and `shared_answer` scans during the polls
minus those of an idle stretch as long (the refresher's ticks, the followers' reads), per poll.
With `--key`, reads need a key (no PUBLIC_READ) and every poll carries one read key, as a dashboard's
do; `--key-cache-seconds` sets KEY_CACHE_SECONDS (0: each poll looks its key up).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import asyncpg
import httpx

from bench.shared_answers import Server


async def _stats(dsn: str) -> dict[str, int]:
    c = await asyncpg.connect(dsn)
    try:
        d = await c.fetchval("SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = current_database()")
        scans = "SELECT coalesce(idx_scan, 0) + coalesce(seq_scan, 0) FROM pg_stat_user_tables WHERE relname = 'shared_answer'"
        s = await c.fetchval(scans)
        return {"transactions": d, "shared_answer scans": s}
    finally:
        await c.close()


async def _admin(pg: str, sql: str) -> None:
    c = await asyncpg.connect(pg + "/postgres")
    try:
        await c.execute(sql)
    finally:
        await c.close()


async def _polls(urls: list[str], n: int, headers: dict[str, str]) -> None:
    async with httpx.AsyncClient(timeout=60, headers=headers) as cl:
        todo = iter(range(n))

        async def client() -> None:
            for _ in todo:
                (await cl.get(random.choice(urls))).raise_for_status()

        await asyncio.gather(*(client() for _ in range(8)))


def main() -> None:
    from app.units.seed import package_units

    ap = argparse.ArgumentParser(prog="python -m bench.poll_cost", description=__doc__.split("\n\n")[0])
    ap.add_argument("--pg", default=os.environ.get("CHISO_BENCH_PG", "postgresql://postgres@127.0.0.1:5432"))
    ap.add_argument("--polls", type=int, default=1000)
    ap.add_argument("--key", action="store_true", help="polls carry a read key (no PUBLIC_READ)")
    ap.add_argument("--key-cache-seconds", type=float, default=None, help="KEY_CACHE_SECONDS (default: the service's)")
    a = ap.parse_args()
    pg = a.pg.rstrip("/")
    name = f"chiso_bench_poll_{uuid.uuid4().hex[:6]}"
    dsn = f"{pg}/{name}"
    asyncio.run(_admin(pg, f'CREATE DATABASE "{name}"'))
    url = dsn.replace("postgresql://", "postgresql+asyncpg://", 1)
    env = {**os.environ, "DATABASE_URL": url, "PUBLIC_READ": str(not a.key).lower(), "SEED_REGISTRY": "true", "DB_POOL_SIZE": "4"}
    if a.key_cache_seconds is not None:
        env["KEY_CACHE_SECONDS"] = str(a.key_cache_seconds)
    server = Server(env, 2, Path(tempfile.mkdtemp(prefix="chiso-poll-")))
    try:
        headers = {}
        if a.key:
            keys_env = {k: v for k, v in env.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
            made = [sys.executable, "-m", "app.cli", "keys", "create", "--scope", "read", "--name", "dashboard"]
            out = subprocess.run(made, env=keys_env, capture_output=True, text=True, check=True)
            headers = {"authorization": f"Bearer {out.stdout.strip().splitlines()[-1]}"}
        communes = [u.code for u in package_units() if u.level == "commune"][:50]
        urls = [f"{server.base}/api/v1/units/{c}/kpis?window=30d" for c in communes]
        asyncio.run(_polls(urls, 400, headers))  # every answer warm in every worker
        time.sleep(2)
        before, t0 = asyncio.run(_stats(dsn)), time.time()
        asyncio.run(_polls(urls, a.polls, headers))
        wall = time.time() - t0
        time.sleep(1)
        after = asyncio.run(_stats(dsn))
        idle0 = asyncio.run(_stats(dsn))
        time.sleep(wall + 1)
        idle1 = asyncio.run(_stats(dsn))
        per = {k: ((after[k] - before[k]) - (idle1[k] - idle0[k])) / a.polls for k in after}
        print(f"{a.polls} polls in {wall:.1f} s; per poll: " + ", ".join(f"{k} {v:.2f}" for k, v in per.items()))
    finally:
        server.stop()
        asyncio.run(_admin(pg, f'DROP DATABASE "{name}" WITH (FORCE)'))


if __name__ == "__main__":
    main()
