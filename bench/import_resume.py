"""`chiso import` killed and resumed (issue 24): a national history imported once without a break
into one database, and into another by runs killed with SIGKILL (one while loading, one while
building, by default), each followed by a plain re-run until one completes; then the two stores
are compared.

    python -m bench.import_resume [--events 1000000] [--kills 0.4,2.5]

A kill point is a multiple of the uninterrupted run's load time, counted from the start of the run
it kills (its load resumes where the last one stopped): 0.4 falls in the load, 2.5 in the build,
after its first groups are stored (each run says how many events the log then holds). What it shows:
- the event log holds the same events (count and an order-free hash of every field but
  `ingested_at`), the dossiers are the same rows, every unit's day rows are the same, and the
  rollups' day rows summed over their slots are the same;
- `chiso kpis verify` is clean on the resumed store (every aggregate equal to one rebuilt from
  its dossiers);
- the wall time each run took and where each kill fell (the progress file says whether the load
  was over).

The history file is shared with bench.import_speed (`--dir`); both databases are dropped after.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import asyncpg
import orjson

from app.ingest.importer import progress_path
from bench.import_speed import ROOT, fresh_database, history_file

# An order-free fingerprint of a table's rows: the count and the sum of a 64-bit hash of each row.
# The rollups' rows are summed over their slots first (a slot only spreads hot rows).
FINGERPRINTS = {
    "the event log": "SELECT {cols} FROM dossier_event",
    "the dossiers": "SELECT * FROM dossier",
    "the units' day rows": "SELECT * FROM unit_day",
    "the rollups' day rows": "SELECT unit_code, sector, day, {sums} FROM rollup_day GROUP BY 1, 2, 3",
    "the cohorts": "SELECT * FROM unit_cohort_due",
}


async def fingerprints(dsn: str) -> dict[str, tuple[int, int]]:
    conn = await asyncpg.connect(dsn)
    try:
        log_cols = [
            r["attname"]
            for r in await conn.fetch(
                "SELECT attname FROM pg_attribute WHERE attrelid = 'dossier_event'::regclass AND attnum > 0"
                " AND NOT attisdropped AND attname <> 'ingested_at' ORDER BY attnum"
            )
        ]
        counters = [
            r["attname"]
            for r in await conn.fetch(
                "SELECT attname FROM pg_attribute WHERE attrelid = 'rollup_day'::regclass AND attnum > 0"
                " AND NOT attisdropped AND atttypid IN ('int4'::regtype, 'int8'::regtype) ORDER BY attnum"
            )
            if r["attname"] != "slot"
        ]
        sums = ", ".join(f"sum({c}) AS {c}" for c in counters)
        out = {}
        for what, sql in FINGERPRINTS.items():
            rows = sql.format(cols=", ".join(log_cols), sums=sums)
            out[what] = tuple(
                await conn.fetchrow(f"SELECT count(*), coalesce(sum(hashtextextended(t::text, 0)::numeric), 0) FROM ({rows}) t")
            )
        return out
    finally:
        await conn.close()


def run_import(url: str, path: Path, kill_after: float | None) -> tuple[float, dict | None, str]:
    """One `chiso import` run, killed (its whole process group) after `kill_after` seconds unless
    it ends first: (wall seconds, its report or None if killed, where it stood)."""
    env = os.environ | {"DATABASE_URL": url}
    cmd = [sys.executable, "-m", "app.cli", "import", str(path), "--json"]
    t0 = time.time()
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=kill_after)
    except subprocess.TimeoutExpired:
        prog = progress_path(path)
        loaded = prog.exists() and orjson.loads(prog.read_bytes())["offset"] >= path.stat().st_size
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return time.time() - t0, None, "killed while building" if loaded else "killed while loading"
    if proc.returncode:
        raise SystemExit(f"chiso import failed: {err[-3000:]}")
    return time.time() - t0, orjson.loads(out.splitlines()[-1]), "completed"


async def main(args) -> None:
    admin = await asyncpg.connect(args.pg + "/postgres")
    names = [f"chiso_resume_{os.getpid()}_{tag}" for tag in ("whole", "killed")]
    try:
        whole, killed = [await fresh_database(admin, args.pg, n) for n in names]
        path = await history_file(whole, args.dir, args.events)
        progress_path(path).unlink(missing_ok=True)
        wall, report, _ = run_import(whole, path, None)
        load = report["load_seconds"]
        print(f"uninterrupted: {report['lines']:,} lines, {report['accepted']:,} stored in {wall:.1f} s (load {load:.1f} s)")
        kills = [float(k) * load for k in args.kills.split(",") if k]
        runs = 0
        while True:
            runs += 1
            after = kills.pop(0) if kills else None
            wall, got, stood = run_import(killed, path, after)
            conn = await asyncpg.connect(f"{args.pg}/{names[1]}")
            stored = await conn.fetchval("SELECT count(*) FROM dossier_event")
            await conn.close()
            tail = f"; {got['accepted']:,} stored by it" if got else ""
            tail += f"; {stored:,} events in the log"
            print(f"run {runs}: {stood} after {wall:.1f} s{tail}")
            if got is not None:
                break
        env = os.environ | {"DATABASE_URL": killed}
        verify = subprocess.run([sys.executable, "-m", "app.cli", "kpis", "verify"], env=env, cwd=ROOT, capture_output=True, text=True)
        print(f"kpis verify on the resumed store: exit {verify.returncode}: {verify.stdout.strip()[-300:]}")
        a, b = [await fingerprints(f"{args.pg}/{n}") for n in names]
        same = True
        for what in FINGERPRINTS:
            ok = a[what] == b[what]
            same &= ok
            print(f"{what}: {a[what][0]:,} rows uninterrupted, {b[what][0]:,} resumed: {'the same' if ok else 'DIFFERENT'}")
        print("resumed store equals the uninterrupted one" if same and verify.returncode == 0 else "MISMATCH")
        if not same or verify.returncode:
            raise SystemExit(1)
    finally:
        for n in names:
            await admin.execute(f'DROP DATABASE IF EXISTS "{n}" WITH (FORCE)')
        await admin.close()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(prog="python -m bench.import_resume", description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--kills", default="0.4,2.5", help="kill points, as multiples of the uninterrupted load time")
    ap.add_argument("--dir", default="/tmp/chiso-bulk-bench")
    ap.add_argument("--pg", default=os.environ.get("CHISO_BENCH_PG", "postgresql://postgres@127.0.0.1:5432"))
    asyncio.run(main(ap.parse_args()))
