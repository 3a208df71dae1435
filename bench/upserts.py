"""What the writers that upsert many rows under a conflict rule of their own cost a call:
`python -m bench.upserts [--store postgresql|sqlite] [--reps 30]`.

Creates a database (PostgreSQL on CHISO_BENCH_PG, default postgresql://postgres@127.0.0.1:5432;
SQLite in a temporary directory), migrates it, then times each writer inside its own committed
transaction (the call alone, not the commit), a warm-up call first:
- `writes.mark_dirty`: the marks of 1, 50 and 500 units, each mark earlier than the stored one;
- `silent.record_accepted`: 1,000 accepted events naming 1, 50 and 500 units, each call later;
- the exporter's `upsert_digests`: 500 digests, changed at every call;
- the central node's `upsert_newer`: a 500-row push of network_day records (50 units, 10 days),
  newer at every call (all stored), then the same push again (all stale: none stored).
Every call after the warm-up meets a stored row for each of its keys. Prints the median and the
90th percentile of each writer's milliseconds. PostgreSQL ingest writes the marks and the
silent-source rows in its server-side pass (app.aggregates.pgpass); SQLite ingest calls the two
writers on every batch, PostgreSQL on a repair (`kpis verify --repair`) and the first export run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
import uuid
from datetime import UTC, date, datetime, timedelta

import asyncpg

from app.aggregates import silent, writes
from app.db.engine import Database
from app.db.models import NetworkDay
from app.export import records
from app.export import repository as repo
from app.main import prepare_database
from app.settings import Settings

ADMIN = os.environ.get("CHISO_BENCH_PG", "postgresql://postgres@127.0.0.1:5432")
NODE = "bench"
TZ = Settings(_env_file=None).tz


def units(n: int) -> list[str]:
    return [f"B{i:05d}" for i in range(n)]


def push(sequence: int) -> list[dict]:
    """500 network_day rows as the receiver parses them, all with sequences from `sequence` on."""
    rows = []
    for i, unit in enumerate(units(50)):
        for d in range(10):
            rec = {"node_id": NODE, "sequence": sequence + i * 10 + d, "unit": unit, "kind": "day"}
            rec |= {"day": (date(2026, 11, 1) + timedelta(days=d)).isoformat(), "histogram": [[3, 2], [7, 1]]}
            rec |= {c: 1 + d for c in records.DAY_FIGURES}
            rows.append(records.parse_record(rec, NODE)["row"])
    return rows


async def timed(db: Database, reps: int, call) -> list[float]:
    """Milliseconds of `call(session, i)` for i in 1..reps, after one warm-up call (i = 0)."""
    took = []
    for i in range(reps + 1):
        async with db.transaction() as session:
            t0 = time.perf_counter()
            await call(session, i)
            if i:
                took.append((time.perf_counter() - t0) * 1000)
    return took


async def measure(db: Database, reps: int) -> list[tuple[str, list[float]]]:
    out = []
    first = date(2026, 12, 1)
    base = datetime(2026, 12, 1, tzinfo=UTC)
    for n in (1, 50, 500):
        codes = units(n)

        async def marks(session, i: int, codes=codes) -> None:
            await writes.mark_dirty(session, {u: first - timedelta(days=i) for u in codes})

        out.append((f"mark_dirty, {n} units", await timed(db, reps, marks)))
    for n in (1, 50, 500):
        codes = units(n)

        async def accepted(session, i: int, codes=codes) -> None:
            n = len(codes)
            at = base + timedelta(minutes=i)
            events = [{"unit_code": codes[k % n], "occurred_at": at - timedelta(hours=k % 30), "ingested_at": at} for k in range(1000)]
            await silent.record_accepted(session, events, TZ)

        out.append((f"record_accepted, 1,000 events of {n} units", await timed(db, reps, accepted)))
    keys = [(u, "day", first - timedelta(days=d)) for u in units(50) for d in range(10)]

    async def digests(session, i: int) -> None:
        await repo.upsert_digests(session, [{"unit_code": u, "kind": k, "key": d, "digest": f"{i:064d}"} for u, k, d in keys])

    out.append(("upsert_digests, 500 rows", await timed(db, reps, digests)))
    pushes = {i: push(1 + i * 1000) for i in range(reps + 1)}

    async def newer(session, i: int) -> None:
        stored = await repo.upsert_newer(session, NetworkDay, ("unit_code", "source", "day"), pushes[i])
        assert len(stored) == 500, len(stored)

    async def stale(session, i: int) -> None:
        assert await repo.upsert_newer(session, NetworkDay, ("unit_code", "source", "day"), pushes[0]) == []

    out.append(("upsert_newer, 500 rows, all newer", await timed(db, reps, newer)))
    out.append(("upsert_newer, 500 rows, all stale", await timed(db, reps, stale)))
    return out


async def run(store: str, reps: int) -> None:
    admin = None
    with tempfile.TemporaryDirectory() as tmp:
        if store == "sqlite":
            url = f"sqlite+aiosqlite:///{tmp}/bench.db"
        else:
            name = f"chiso_bench_upserts_{uuid.uuid4().hex[:8]}"
            admin = await asyncpg.connect(f"{ADMIN}/postgres")
            await admin.execute(f'CREATE DATABASE "{name}"')
            url = f"{ADMIN.replace('postgresql://', 'postgresql+asyncpg://', 1)}/{name}"
        db = Database(url, pool_size=2)
        try:
            await prepare_database(db, Settings(_env_file=None, database_url=url, seed_registry=False))
            for label, took in await measure(db, reps):
                p90 = statistics.quantiles(took, n=10)[-1]
                print(f"{label:<45} median {statistics.median(took):7.2f} ms   p90 {p90:7.2f} ms   ({len(took)} calls, {store})")
        finally:
            await db.dispose()
            if admin is not None:
                await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                await admin.close()


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--store", choices=("postgresql", "sqlite"), default="postgresql")
    ap.add_argument("--reps", type=int, default=30, help="timed calls per writer and size (default 30)")
    args = ap.parse_args(argv)
    asyncio.run(run(args.store, args.reps))


if __name__ == "__main__":
    main()
