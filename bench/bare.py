"""The bare SQL reference: what the hardware allows for the same pipeline without HTTP and ORM —
events inserted with dedupe, dossiers upserted, per-unit-day aggregates upserted, one transaction
per 1,000-event batch, 4 concurrent asyncpg connections."""

from __future__ import annotations

import asyncio
import random
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta, timezone

import asyncpg

from bench.gen import make_batch, window

LOCAL = timezone(timedelta(hours=7))

DDL = """
CREATE SCHEMA IF NOT EXISTS ref;
CREATE TABLE ref.event (unit_code varchar(8), event_id varchar(128), type varchar(16), dossier_id varchar(64),
  occurred_at timestamptz, channel varchar(16), due_at timestamptz, reason varchar(32), outcome varchar(16),
  procedure_code varchar(32), sector varchar(64), ingested_at timestamptz, PRIMARY KEY (unit_code, event_id));
CREATE INDEX ON ref.event (unit_code, dossier_id);
CREATE TABLE ref.dossier (unit_code varchar(8), dossier_id varchar(64), recv_at timestamptz, channel varchar(16),
  due_at timestamptz, res_at timestamptz, wd_at timestamptz, sector varchar(64), PRIMARY KEY (unit_code, dossier_id));
CREATE TABLE ref.unit_day (unit_code varchar(8), day date, received int, received_online int, resolved int,
  resolved_late int, withdrawn int, PRIMARY KEY (unit_code, day));
"""

INSERT_EVENTS = """
INSERT INTO ref.event SELECT * FROM unnest($1::varchar[], $2::varchar[], $3::varchar[], $4::varchar[],
  $5::timestamptz[], $6::varchar[], $7::timestamptz[], $8::varchar[], $9::varchar[], $10::varchar[], $11::varchar[],
  $12::timestamptz[])
ON CONFLICT DO NOTHING RETURNING unit_code, event_id"""

UPSERT_DOSSIERS = """
INSERT INTO ref.dossier AS d SELECT * FROM unnest($1::varchar[], $2::varchar[], $3::timestamptz[], $4::varchar[],
  $5::timestamptz[], $6::timestamptz[], $7::timestamptz[], $8::varchar[])
ON CONFLICT (unit_code, dossier_id) DO UPDATE SET recv_at = coalesce(excluded.recv_at, d.recv_at),
  channel = coalesce(excluded.channel, d.channel), due_at = coalesce(excluded.due_at, d.due_at),
  res_at = coalesce(excluded.res_at, d.res_at), wd_at = coalesce(excluded.wd_at, d.wd_at),
  sector = coalesce(excluded.sector, d.sector)"""

UPSERT_DAYS = """
INSERT INTO ref.unit_day AS u SELECT * FROM unnest($1::varchar[], $2::date[], $3::int[], $4::int[], $5::int[],
  $6::int[], $7::int[])
ON CONFLICT (unit_code, day) DO UPDATE SET received = u.received + excluded.received,
  received_online = u.received_online + excluded.received_online, resolved = u.resolved + excluded.resolved,
  resolved_late = u.resolved_late + excluded.resolved_late, withdrawn = u.withdrawn + excluded.withdrawn"""

COLS = ("unit_code", "event_id", "type", "dossier_id", "occurred_at", "channel", "due_at", "reason", "outcome", "procedure_code", "sector")


def _typed(events: list[dict]) -> list[dict]:
    out = []
    for e in events:
        e = dict(e)
        e["occurred_at"] = datetime.fromisoformat(e["occurred_at"])
        e["due_at"] = datetime.fromisoformat(e["due_at"]) if e.get("due_at") else None
        out.append(e)
    return out


async def _store(conn, events: list[dict]) -> int:
    now = datetime.now(UTC)
    uniq = {(e["unit_code"], e["event_id"]): e for e in reversed(events)}
    rows = [uniq[k] for k in sorted(uniq)]
    async with conn.transaction():
        cols = [[r.get(c) for r in rows] for c in COLS] + [[now] * len(rows)]
        inserted = {(u, e) for u, e in await conn.fetch(INSERT_EVENTS, *cols)}
        new = [r for r in rows if (r["unit_code"], r["event_id"]) in inserted]
        doss: dict = {}
        days: dict = defaultdict(lambda: [0, 0, 0, 0, 0])
        for r in new:
            d = doss.setdefault((r["unit_code"], r["dossier_id"]), [None] * 6)
            t, occ = r["type"], r["occurred_at"]
            day = days[(r["unit_code"], occ.astimezone(LOCAL).date())]
            if t == "received":
                d[0], d[1], d[5] = occ, r["channel"], r.get("sector")
                d[2] = d[2] or r["due_at"]
                day[0] += 1
                day[1] += r["channel"] == "online"
            elif t == "resolved":
                d[3] = occ
                day[2] += 1
                day[3] += bool(d[2] and occ > d[2])
            elif t == "withdrawn":
                d[4] = occ
                day[4] += 1
            elif r.get("reason") != "apology":
                d[2] = r["due_at"]
        dk = sorted(doss)
        await conn.execute(UPSERT_DOSSIERS, [k[0] for k in dk], [k[1] for k in dk], *[[doss[k][i] for k in dk] for i in range(6)])
        uk = sorted(days)
        await conn.execute(UPSERT_DAYS, [k[0] for k in uk], [k[1] for k in uk], *[[days[k][i] for k in uk] for i in range(5)])
    return len(inserted)


async def run_bare(dsn: str, communes: list[str], n_events: int, span: float, conns: int = 4, seed: int = 11) -> dict:
    """Batches like chiso's main run (`span` days, one window per commune) through the bare pipeline."""
    rng = random.Random(seed)
    now = datetime.now(UTC)
    batches = [
        _typed(make_batch(rng, communes[(b * 7) % len(communes)], f"ref{b}", window(0, 1, 1, span, now)))
        for b in range(max(1, n_events // 1000))
    ]
    pool = await asyncpg.create_pool(dsn, min_size=conns, max_size=conns)
    await pool.execute("SET search_path = ref")
    it = iter(batches)
    lat = []

    async def worker():
        async with pool.acquire() as conn:
            for b in it:
                t0 = time.perf_counter()
                await _store(conn, b)
                lat.append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(conns)))
    elapsed = time.perf_counter() - t0
    await pool.close()
    total = sum(len(b) for b in batches)
    return {"events": total, "seconds": elapsed, "events_per_s": total / elapsed, "batch_lat": lat}
