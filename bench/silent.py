"""What the silent-source bookkeeping costs ingest, on PostgreSQL:
`python -m bench.silent [--batches 300] [--keep-db]`.

Creates a database on CHISO_BENCH_PG (default postgresql://postgres@127.0.0.1:5432), migrates it
and loads the registry, then posts the benchmark's 1,000-event batches (bench.gen: one commune
each, received/resolved/due_changed/withdrawn, 2 % duplicates, over the days a run of that size
stands for) through the real ingest service (`accept_batch`, one process, one batch at a time).
Batches alternate between ingest as shipped and ingest with `silent.record_accepted` replaced by a
no-op, so both halves share the machine's noise and the store's growth; the time spent inside the
bookkeeping is measured directly as well. Prints events/s of each half and the bookkeeping's
milliseconds per batch. (`make bench` measures the whole service; on a shared machine its runs
differ by more than this cost, hence this paired measurement.)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import time
import uuid
from datetime import UTC, datetime

import asyncpg

from app.aggregates import silent
from app.db.engine import Database
from app.ingest.service import accept_batch
from app.keys.service import Principal
from app.main import prepare_database
from app.settings import Settings
from app.units.service import RegistryCache
from bench.gen import make_batch, span_days, window

ADMIN = os.environ.get("CHISO_BENCH_PG", "postgresql://postgres@127.0.0.1:5432")


async def run(batches: int, keep: bool) -> None:
    name = f"chiso_bench_silent_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(f"{ADMIN}/postgres")
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = f"{ADMIN.replace('postgresql://', 'postgresql+asyncpg://', 1)}/{name}"
    settings = Settings(_env_file=None, database_url=url, ingest_rate_per_minute=0)
    db = Database(url, pool_size=2)
    try:
        await prepare_database(db, settings)
        registry = await RegistryCache(db).refresh()
        communes = [u.code for u in registry.at_level("commune")]
        rng = random.Random(766)
        now = datetime.now(UTC)
        span = span_days(batches * 1000)
        principal = Principal(None, "ingest", "VN")
        shipped = silent.record_accepted
        inside: list[float] = []

        async def timed(*args, **kwargs):
            t0 = time.perf_counter()
            await shipped(*args, **kwargs)
            inside.append(time.perf_counter() - t0)

        async def nothing(*args, **kwargs):
            return None

        took: dict[str, list[tuple[int, float]]] = {"with": [], "without": []}
        for b in range(batches):
            commune = communes[rng.randrange(len(communes))]
            events = make_batch(rng, commune, f"s{b}", window(b, batches, len(communes), span, now), now=now)
            half = "with" if b % 2 == 0 else "without"
            silent.record_accepted = timed if half == "with" else nothing
            t0 = time.perf_counter()
            result = await accept_batch(db, registry, settings, principal, events)
            took[half].append((result["accepted"], time.perf_counter() - t0))
        silent.record_accepted = shipped
        for half, rows in took.items():
            events, seconds = sum(n for n, _ in rows), sum(s for _, s in rows)
            per = statistics.median(s for _, s in rows) * 1000
            rate = events / seconds
            print(f"ingest {half:>7} the bookkeeping: {rate:8,.0f} events/s, median {per:6.1f} ms per batch ({len(rows)} batches)")
        print(
            f"inside silent.record_accepted: median {statistics.median(inside) * 1000:.2f} ms, "
            f"mean {statistics.mean(inside) * 1000:.2f} ms per 1,000-event batch "
            f"({sum(inside) / sum(s for _, s in took['with']) * 100:.1f} % of those batches' time)"
        )
    finally:
        await db.dispose()
        if not keep:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batches", type=int, default=300, help="1,000-event batches, alternating with and without (default 300)")
    ap.add_argument("--keep-db", action="store_true", help="keep the database")
    args = ap.parse_args(argv)
    asyncio.run(run(args.batches, args.keep_db))


if __name__ == "__main__":
    main()
