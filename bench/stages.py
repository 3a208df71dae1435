"""Where the time of the set-based write goes: microseconds per event for each statement of
the write pass (app.aggregates.pgpass), measured with auto_explain's per-statement durations on a fresh database.

    python -m bench.stages [--events 200000] [--chunk 20000] [--communes 40] [--province 01]
        [--live N [--live-days 4.3] [--analyze]] [--detail] [--plan "UPDATE dossier"] [--sql "DROP INDEX …"]

A history of `--events` events of `--communes` communes of one province (bench.history) is loaded
in chunks as `chiso import` does (COPY into the staging table, then one call); the first chunk warms
the plans and is not counted. With `--live N`, the history is loaded uncounted (20,000-event chunks)
and what is counted is N batches of `--chunk` events of one commune each, their receipts within the
last `--live-days` (bench.gen, as make bench's posting phases send them; 100 is their size), with the
statistics as the history left them (none; `--analyze`: analysed, as the service's upkeep keeps
them). `--plan` prints the last batch's EXPLAIN ANALYZE of the statements opening so. Durations are
wall-clock per statement inside the call: run it on a quiet machine."""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import tempfile
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import orjson

from app.aggregates import pgpass
from app.aggregates.writes import STAGE_COLUMNS
from app.db.engine import Database
from app.ingest.schemas import validate_events
from app.main import prepare_database
from app.settings import Settings
from app.units.service import RegistryCache
from bench.gen import make_batch, span_days, window
from bench.history import write_history

LABELS = [  # the first words of each statement of the pass, and what it does
    ("SELECT pg_advisory_xact_lock", "events: the units' locks"),
    ("INSERT INTO chiso_new", "events: duplicates looked up (log, archived keys)"),
    ("INSERT INTO dossier_event", "events: the log"),
    ("WITH rw AS", "batch states: winners per kind, per dossier"),
    ("WITH ins AS ( INSERT INTO dossier", "dossiers seen first: insert"),
    ("INSERT INTO chiso_st SELECT d.unit_code, d.dossier_id, -1", "stored dossiers: lock, old states"),
    ("WITH m AS", "stored dossiers: merge"),
    ("UPDATE dossier", "stored dossiers: update"),
    ("WITH c AS", "contributions: day counters"),
    ("INSERT INTO chiso_dtot", "contributions: totals"),
    ("INSERT INTO chiso_dhist", "contributions: histogram"),
    ("INSERT INTO chiso_ddue", "contributions: cohort by deadline"),
    ("INSERT INTO unit_", "own rows: upserts (4 tables)"),
    ("INSERT INTO rollup_", "rollup rows: upserts (4 tables)"),
    ("INSERT INTO unit_change", "change counts"),
    ("INSERT INTO export_dirty", "export marks"),
    ("INSERT INTO unit_source", "silent sources"),
    ("INSERT INTO unit_event_day", "silent sources"),
]


def label(query: str, detail: bool = False) -> str:
    q = " ".join(query.split())
    if detail:  # each statement by its opening words
        return q[:57]
    for prefix, name in LABELS:
        if q.startswith(prefix):
            return name
    return "other statements (temp tables, marks, version, set_config)"


def _live_batches(args, communes: list[str], now: datetime) -> list[list[dict]]:
    """`--live` batches of `--chunk` events of one commune each, receipts within the history's year
    (bench.gen.make_batch and window, as make bench's posting phases send them), validated."""
    rng = random.Random(11)
    out = []
    for b in range(args.live):
        within = window(b, args.live, len(communes), args.live_days, now)
        raw = make_batch(rng, communes[rng.randrange(len(communes))], f"L{b}", within, size=args.chunk)
        batch = [e for e in validate_events(raw, now, timedelta(seconds=300), None) if isinstance(e, dict)]
        for e in batch:
            e["ingested_at"] = now
        out.append(batch)
    return out


async def main(args) -> None:
    admin = await asyncpg.connect(args.pg + "/postgres")
    name = f"chiso_stages_{os.getpid()}"
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        url = f"{args.pg.replace('postgresql://', 'postgresql+asyncpg://', 1)}/{name}"
        settings = Settings(_env_file=None, database_url=url)
        db = Database(url, 2)
        await prepare_database(db, settings)
        registry = await RegistryCache(db).refresh()
        await db.dispose()
        communes = [u.code for u in registry.at_level("commune", args.province)][: args.communes]
        path = Path(tempfile.mkdtemp()) / "history.ndjson"
        write_history(path, communes, args.events, 360, 5, "s")
        now = datetime.now(UTC)
        lines = path.read_bytes().splitlines()
        events = [e for e in validate_events([orjson.loads(x) for x in lines], now, timedelta(seconds=300), None) if isinstance(e, dict)]
        for e in events:
            e["ingested_at"] = now
        rollup = orjson.dumps([{"u": c, "a": a} for c in communes for a in (args.province, "VN")]).decode()
        conn = await asyncpg.connect(f"{args.pg}/{name}")
        for stmt in args.sql:  # e.g. an index dropped, to see what it costs the pass
            await conn.execute(stmt)
        notices: list[str] = []
        conn.add_log_listener(lambda _c, msg: notices.append(msg.message))
        for stmt in (
            "LOAD 'auto_explain'",
            "SET auto_explain.log_min_duration = 0",
            "SET auto_explain.log_nested_statements = on",
            "SET auto_explain.log_level = notice",
            "SET client_min_messages = notice",
            *(["SET auto_explain.log_analyze = on", "SET auto_explain.log_buffers = on"] if args.plan else []),
        ):
            await conn.execute(stmt)
        fn = pgpass.current()
        per: dict[str, float] = defaultdict(float)
        counted, wall = 0, 0.0
        chunks = [events[i : i + args.chunk] for i in range(0, len(events), args.chunk)]

        async def store(chunk: list[dict]) -> None:  # one call of the pass, as `chiso import` makes it
            async with conn.transaction():
                await conn.execute(f"SELECT {fn.temp_tables}()")
                records = [tuple(e[c] for c in STAGE_COLUMNS) for e in chunk]
                await conn.copy_records_to_table("chiso_stage", records=records, columns=STAGE_COLUMNS)
                await conn.fetch(f"SELECT * FROM {fn.ingest_staged}($1::json, $2, $3, 0)", rollup, settings.timezone, now)

        if args.live:  # the history loaded first, uncounted; then batches as the bench's live feed posts them
            for i in range(0, len(events), 20_000):
                await store(events[i : i + 20_000])
            if args.analyze:
                await conn.execute("ANALYZE")  # as the service's upkeep does
            chunks = _live_batches(args, communes, now)
        for k, chunk in enumerate(chunks):
            notices.clear()
            t0 = time.perf_counter()
            await store(chunk)
            if k == 0 and len(chunks) > 1:
                continue  # plans warm up
            wall += time.perf_counter() - t0
            counted += len(chunk)
            for msg in notices:
                m = re.search(r"duration: ([0-9.]+) ms\s+plan:\s*Query Text: (.*)", msg, re.S)
                if m and fn.ingest_staged not in m.group(2) and fn.temp_tables not in m.group(2):
                    if args.plan and k == len(chunks) - 1 and " ".join(m.group(2).split()).startswith(args.plan):
                        print(msg)
                    per[label(m.group(2), args.detail)] += float(m.group(1))
        await conn.close()
        print(
            f"{counted:,} events in chunks of {args.chunk:,} ({len(communes)} communes of {args.province}, a year): "
            f"{counted / wall:,.0f} events/s, {wall / counted * 1e6:.1f} us per event in all (COPY and commit included)"
        )
        print(f"{'stage':<58} {'us/event':>9}")
        for stage, ms_ in sorted(per.items(), key=lambda kv: -kv[1]):
            print(f"{stage:<58} {ms_ * 1000 / counted:>9.1f}")
        print(f"{'sum of the statements':<58} {sum(per.values()) * 1000 / counted:>9.1f}")
    finally:
        if args.keep:
            print("kept", name)
        else:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(prog="python -m bench.stages", description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--chunk", type=int, default=20_000)
    ap.add_argument("--communes", type=int, default=40)
    ap.add_argument("--province", default="01")
    ap.add_argument("--live", type=int, default=0, help="count N batches of one commune each (the live feed), not the history")
    ap.add_argument("--live-days", type=float, default=span_days(1_000_000), help="--live: the receipts' window, days to now")
    ap.add_argument("--analyze", action="store_true", help="--live: ANALYZE after the history, as the service's upkeep would have")
    ap.add_argument("--plan", help="print the last batch's plan (EXPLAIN ANALYZE, BUFFERS) of the statements opening so")
    ap.add_argument("--sql", action="append", default=[], help="a statement run on the new database before the pass (repeatable)")
    ap.add_argument("--keep", action="store_true", help="keep the database (its name is printed)")
    ap.add_argument("--detail", action="store_true", help="each statement by its opening words, not by stage")
    ap.add_argument("--pg", default=os.environ.get("CHISO_BENCH_PG", "postgresql://postgres@127.0.0.1:5432"))
    asyncio.run(main(ap.parse_args()))
