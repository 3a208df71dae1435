"""`chiso import` events/s on a fresh PostgreSQL database: a national history (bench.history,
every commune of the registry, a year) written once, then loaded by `chiso import` in a subprocess.

    python -m bench.import_speed [--events 300000] [--bulk/--no-bulk] [--writers 2] [--verify]

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


async def main(args) -> None:
    admin = await asyncpg.connect(args.pg + "/postgres")
    name = f"chiso_import_{os.getpid()}"
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        url = f"{args.pg.replace('postgresql://', 'postgresql+asyncpg://', 1)}/{name}"
        settings = Settings(_env_file=None, database_url=url)
        db = Database(url, 2)
        await prepare_database(db, settings)
        registry = await RegistryCache(db).refresh()
        await db.dispose()
        path = Path(args.dir) / f"nation-{args.events}.ndjson"
        if not path.exists():
            communes = [u.code for u in registry.at_level("commune")]
            t0 = time.time()
            n = write_history(path, communes, args.events, 360, 11, "n", now=time.time() - 86400)
            print(f"{n:,} events of {len(communes):,} communes written in {time.time() - t0:.0f} s: {path}")
        env = os.environ | {"DATABASE_URL": url}
        cmd = [sys.executable, "-m", "app.cli", "import", str(path), "--json", "--writers", str(args.writers)]
        cmd += ["--bulk", "--group", str(args.group)] if args.bulk else ["--no-bulk"]
        t0 = time.time()
        out = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True)
        wall = time.time() - t0
        if out.returncode:
            raise SystemExit(f"chiso import failed: {out.stderr[-3000:]}")
        report = json.loads(out.stdout.splitlines()[-1])
        print(
            f"{'bulk' if args.bulk else 'pass'}: {report['lines']:,} lines, {report['accepted']:,} accepted in {wall:.1f} s wall "
            f"({report['lines'] / wall:,.0f} events/s wall, {report['events_per_s']:,.0f} events/s reported)"
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


if __name__ == "__main__":
    ap = argparse.ArgumentParser(prog="python -m bench.import_speed", description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=300_000)
    ap.add_argument("--writers", type=int, default=2)
    ap.add_argument("--bulk", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--group", type=int, default=250_000, help="--bulk: events per build transaction")
    ap.add_argument("--verify", action="store_true")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--dir", default="/tmp/chiso-bulk-bench")
    ap.add_argument("--pg", default=os.environ.get("CHISO_BENCH_PG", "postgresql://postgres@127.0.0.1:5432"))
    asyncio.run(main(ap.parse_args()))
