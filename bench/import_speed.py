"""`chiso import` events/s on a fresh PostgreSQL database: a national history (bench.history,
every commune of the registry, a year) written once, then loaded by `chiso import` in a subprocess.

    python -m bench.import_speed [--events 300000] [--bulk/--no-bulk] [--writers 2] [--validators 1] [--verify]

Besides wall time it reports the CPU seconds per event of the server's backends of the import (read
from /proc when the server runs on this machine) and of the import process with its children: on a
shared machine those compare two runs where wall time does not.

The file is kept (under --dir) and reused by later runs with the same size, so that two runs compare
the same data."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import asyncpg

from app.db.engine import Database
from app.main import prepare_database
from app.settings import Settings
from app.units.service import RegistryCache
from bench.history import write_history

ROOT = Path(__file__).resolve().parent.parent


async def fresh_database(admin, pg: str, name: str) -> str:
    """A new database `name` on the server, migrated and seeded; its SQLAlchemy URL."""
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = f"{pg.replace('postgresql://', 'postgresql+asyncpg://', 1)}/{name}"
    db = Database(url, 2)
    try:
        await prepare_database(db, Settings(_env_file=None, database_url=url))
    finally:
        await db.dispose()
    return url


async def history_file(url: str, directory: str, events: int) -> Path:
    """The national history of `events` events (every commune of the registry, 360 days), written
    once under `directory` and reused by later runs of the same size."""
    path = Path(directory) / f"nation-{events}.ndjson"
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    db = Database(url, 2)
    try:
        registry = await RegistryCache(db).refresh()
    finally:
        await db.dispose()
    communes = [u.code for u in registry.at_level("commune")]
    t0 = time.time()
    n = write_history(path, communes, events, 360, 11, "n", now=time.time() - 86400)
    print(f"{n:,} events of {len(communes):,} communes written in {time.time() - t0:.0f} s: {path}")
    return path


async def main(args) -> None:
    admin = await asyncpg.connect(args.pg + "/postgres")
    name = f"chiso_import_{os.getpid()}"
    try:
        url = await fresh_database(admin, args.pg, name)
        path = await history_file(url, args.dir, args.events)
        env = os.environ | {"DATABASE_URL": url}
        cmd = [sys.executable, "-m", "app.cli", "import", str(path), "--json", "--writers", str(args.writers)]
        cmd += ["--bulk", "--group", str(args.group)] if args.bulk else ["--no-bulk"]
        cmd += ["--validators", str(args.validators)] if args.bulk and args.validators != 1 else []
        t0 = time.time()
        proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        server = _ServerCpu(admin, name)
        while proc.poll() is None:
            await server.sample()
            await asyncio.sleep(0.5)
        stdout, stderr = proc.communicate()
        out = subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)
        wall = time.time() - t0
        client = os.times()
        client_cpu = client.children_user + client.children_system
        if out.returncode:
            raise SystemExit(f"chiso import failed: {out.stderr[-3000:]}")
        report = json.loads(out.stdout.splitlines()[-1])
        print(
            f"{'bulk' if args.bulk else 'pass'}: {report['lines']:,} lines, {report['accepted']:,} accepted in {wall:.1f} s wall "
            f"({report['lines'] / wall:,.0f} events/s wall, {report['events_per_s']:,.0f} events/s reported); "
            f"{report.get('fresh', 0):,} by the fresh path; load {report['load_seconds']:.1f} s; CPU per event: "
            f"server {1e6 * server.total() / report['lines']:.1f} µs, client {1e6 * client_cpu / report['lines']:.1f} µs"
        )
        if args.verify:
            out = subprocess.run([sys.executable, "-m", "app.cli", "kpis", "verify"], env=env, cwd=ROOT, capture_output=True, text=True)
            print("verify:", out.returncode, out.stdout.strip()[-300:], out.stderr.strip()[-300:])
    finally:
        if not args.keep:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        else:
            print("kept database", name)
        await admin.close()


class _ServerCpu:
    """CPU seconds of the backends of one database, from /proc (0 when the server runs elsewhere):
    sampled while they live, each backend's last reading kept."""

    def __init__(self, admin, name: str):
        self.admin, self.name, self.last = admin, name, {}
        self.tick = os.sysconf("SC_CLK_TCK")

    async def sample(self) -> None:
        for (pid,) in await self.admin.fetch("SELECT pid FROM pg_stat_activity WHERE datname = $1", self.name):
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except (FileNotFoundError, ProcessLookupError):
                continue
            self.last[pid] = (int(fields[11]) + int(fields[12])) / self.tick

    def total(self) -> float:
        return sum(self.last.values())


if __name__ == "__main__":
    ap = argparse.ArgumentParser(prog="python -m bench.import_speed", description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=300_000)
    ap.add_argument("--writers", type=int, default=2)
    ap.add_argument("--bulk", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--group", type=int, default=250_000, help="--bulk: events per build transaction")
    ap.add_argument("--validators", type=int, default=1, help="--bulk: processes parsing and validating lines")
    ap.add_argument("--verify", action="store_true")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--dir", default="/tmp/chiso-bulk-bench")
    ap.add_argument("--pg", default=os.environ.get("CHISO_BENCH_PG", "postgresql://postgres@127.0.0.1:5432"))
    asyncio.run(main(ap.parse_args()))
