"""`chiso import` events/s on a fresh PostgreSQL database: a national history (bench.history,
every commune of the registry, a year) written once, then loaded by `chiso import` in a subprocess.

    python -m bench.import_speed [--events 300000] [--bulk/--no-bulk] [--writers 2] [--validators 1] [--verify]
    python -m bench.import_speed --events 1000000 --floor

Besides wall time it reports the CPU seconds per event of the server's backends of the import (read
from /proc when the server runs on this machine) and of the import process with its children: on a
shared machine those compare two runs where wall time does not.

`--floor` measures, beside the import, the steps no import can skip, on the same file and database:
first screening the lines as the API screens a batch (this process's CPU) and storing the valid events
in the log alone (COPY straight into `dossier_event`, its monthly partitions and their indexes; the
server's backend CPU and this process's; the log is emptied again), then the import, then storing its
dossiers again alone (the server's CPU). On 2 cores 100,000 events/s leaves 20 µs of CPU an event for
everything; the floor's sum says how much of it is gone before any aggregate.

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
from datetime import timedelta
from pathlib import Path

import asyncpg

from app.aggregates.writes import STAGE_COLUMNS
from app.db import partitions
from app.db.engine import Database
from app.ingest.validators import Rules, screen_chunk
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
        spent = await floor(admin, name, url, path) if args.floor else 0.0
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
        if args.floor:
            await floor_dossiers(admin, name, url, report["lines"], spent)
        if args.verify:
            out = subprocess.run([sys.executable, "-m", "app.cli", "kpis", "verify"], env=env, cwd=ROOT, capture_output=True, text=True)
            print("verify:", out.returncode, out.stdout.strip()[-300:], out.stderr.strip()[-300:])
    finally:
        if not args.keep:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        else:
            print("kept database", name)
        await admin.close()


FLOOR_CHUNK = 50_000  # lines screened, and events copied in one transaction


async def floor(admin, name: str, url: str, path: Path) -> float:
    """What no import can skip: screening the lines, and storing the events in the log (see --floor);
    the log is emptied again for the import. Returns those µs of CPU an event."""
    settings = Settings(_env_file=None, database_url=url)
    db = Database(url, 2)
    try:
        registry = await RegistryCache(db).refresh()
        rules = Rules(registry, timedelta(seconds=settings.skew_seconds), None, None)
        lines = path.read_bytes().splitlines()
        t0, rows = time.process_time(), []
        for start in range(0, len(lines), FLOOR_CHUNK):
            part = list(enumerate(lines[start : start + FLOOR_CHUNK], start + 1))
            rows += screen_chunk(rules, start, part, (0, 0), set(), as_rows=True).events
        screened = time.process_time() - t0
        months = {partitions.month_of(r[STAGE_COLUMNS.index("occurred_at")], settings.tz) for r in rows}
        async with db.engine.begin() as conn:
            await partitions.create(conn, months, settings.tz)
        server = _ServerCpu(admin, name)
        t0, w0 = time.process_time(), time.time()
        conn = await asyncpg.connect(_dsn(url))
        for start in range(0, len(rows), FLOOR_CHUNK):
            async with conn.transaction():
                part = [r[:-1] for r in rows[start : start + FLOOR_CHUNK]]  # without the line number
                await conn.copy_records_to_table("dossier_event", records=part, columns=STAGE_COLUMNS)
            await server.sample()
        copied, wall = time.process_time() - t0, time.time() - w0
        await conn.execute("TRUNCATE dossier_event")
        await conn.close()
        n = len(lines)
        print(
            f"floor: {n:,} lines, {len(rows):,} valid; µs of CPU an event: screening {screened * 1e6 / n:.1f}, "
            f"the log's COPY client {copied * 1e6 / n:.1f} + server {server.total() * 1e6 / n:.1f} ({wall:.1f} s wall)"
        )
        return (screened + copied + server.total()) * 1e6 / n
    finally:
        await db.dispose()


async def floor_dossiers(admin, name: str, url: str, lines: int, spent: float) -> None:
    """After the import: the server's CPU to store its dossiers again, alone, into a copy of the table
    with the same indexes (INSERT ... SELECT in key order); then the floor's sum."""
    conn = await asyncpg.connect(_dsn(url))
    try:
        await conn.execute("CREATE TABLE floor_dossier (LIKE dossier INCLUDING ALL)")
        server = _ServerCpu(admin, name)
        await server.sample()
        before, w0 = server.total(), time.time()
        copy = "INSERT INTO floor_dossier SELECT * FROM dossier ORDER BY 1, 2 RETURNING 1"
        count = await conn.fetchval(f"WITH i AS ({copy}) SELECT count(*) FROM i")
        await server.sample()
        stored = (server.total() - before) * 1e6 / lines
        await conn.execute("DROP TABLE floor_dossier")
    finally:
        await conn.close()
    total = spent + stored
    print(
        f"floor: {count:,} dossiers stored again {stored:.1f} µs of server CPU an event ({time.time() - w0:.1f} s wall); "
        f"with the screening and the log {total:.1f} µs an event (2 cores at 100,000 events/s: 20.0), so at most "
        f"{2e6 / total:,.0f} events/s before any aggregate"
    )


def _dsn(url: str) -> str:
    return url.replace("+asyncpg", "", 1)


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
    ap.add_argument("--floor", action="store_true", help="also what no import can skip: screening, the log, the dossiers")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--dir", default="/tmp/chiso-bulk-bench")
    ap.add_argument("--pg", default=os.environ.get("CHISO_BENCH_PG", "postgresql://postgres@127.0.0.1:5432"))
    asyncio.run(main(ap.parse_args()))
