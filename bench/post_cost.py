"""What posting costs, by process: one `chiso serve --workers 2` on a database loaded with
`--events` events, then `--size` (100) event batches of one commune each (bench.gen, random communes of the
whole country, as in make bench's posting phases) sent open loop at `--rate` events/s by two load
generators of `--clients` requests in flight each, for `--seconds`; no pollers. Prints the events/s
accepted, the ack latency, the CPU of PostgreSQL's backends, the web workers and the exporter (cores,
and microseconds per accepted event) and how many batches shared a write pass (app.ingest.groups),
for each `--group-events` given (INGEST_GROUP_EVENTS; 0: each batch alone).

    python -m bench.post_cost [--rate 2000] [--seconds 30] [--group-events 0 5000]

A rate above what the machine takes measures the maximum (the generators' requests in flight then
wait in the workers, and the group commit has batches to group)."""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx

from app.units.seed import package_units
from bench.load import ingest_proc, pct
from bench.shared_answers import ADMIN, ROOT, Server, admin_sql, backends, cpu_of, load


def group_counts(server: Server) -> dict[str, float]:
    """chiso_ingest_group_batches' sum (batches) and count (write passes) so far."""
    got = {"sum": 0.0, "count": 0.0}
    for line in httpx.get(server.base + "/metrics", timeout=30).text.splitlines():
        for s in got:
            if line.startswith(f"chiso_ingest_group_batches_{s} "):
                got[s] = float(line.split()[1])
    return got


def run(group_events: int, a) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="chiso-post-cost-"))
    name = f"chiso_bench_pc_{uuid.uuid4().hex[:8]}"
    url = ADMIN.replace("postgresql://", "postgresql+asyncpg://", 1) + f"/{name}"
    env = {**os.environ, "DATABASE_URL": url, "INGEST_RATE_PER_MINUTE": "0", "INGEST_GROUP_EVENTS": str(group_events)}
    communes = [u.code for u in package_units() if u.level == "commune"]
    asyncio.run(admin_sql(f'CREATE DATABASE "{name}"'))
    server = None
    try:
        server = Server(env, 2, tmp)
        keys_env = {k: v for k, v in env.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
        argv = [sys.executable, "-m", "app.cli", "keys", "create", "--scope", "ingest", "--unit", "VN", "--name", "bench"]
        token = subprocess.run(argv, env=keys_env, cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
        asyncio.run(load(server.base, token, communes, a.events, 30))
        time.sleep(3)  # the exporter's first records of the load
        pids = server.processes() | asyncio.run(backends(f"{ADMIN}/{name}"))
        q: mp.Queue = mp.Queue()
        now, deadline = datetime.now(UTC), time.time() + a.seconds
        pace = a.rate / a.size / 2
        n_batches = int(a.rate / a.size * a.seconds * 1.2) + 10
        grouped_before = group_counts(server)
        before, t0 = cpu_of(pids), time.time()
        gens = [
            mp.Process(
                target=ingest_proc,
                args=(q, server.base, token, communes, g, 2, 0, n_batches, a.clients, "pc", deadline, 11 + g, 1.0, now, a.size, pace),
            )
            for g in range(2)
        ]
        for g in gens:
            g.start()
        records = []
        for _ in gens:
            records += q.get(timeout=a.seconds + 600)[2]
        for g in gens:
            g.join()
        wall = time.time() - t0
        after = cpu_of(pids | asyncio.run(backends(f"{ADMIN}/{name}")))
        lat = [r[2] for r in records]
        accepted = sum(r[4] for r in records)
        grouped = {s: v - grouped_before[s] for s, v in group_counts(server).items()}
        print(
            f"INGEST_GROUP_EVENTS={group_events}: {accepted / wall:,.0f} events/s accepted, ack p50 {1000 * pct(lat, 50):,.0f} ms"
            f" p99 {1000 * pct(lat, 99):,.0f} ms; batches a write pass {grouped.get('sum', 0) / max(grouped.get('count', 0), 1):.2f}",
            flush=True,
        )
        for role in sorted(after):
            used = after[role] - before.get(role, 0.0)
            print(f"  CPU {role}: {used / wall:.2f} cores, {1e6 * used / max(accepted, 1):,.0f} us per event", flush=True)
    finally:
        if server:
            server.stop()
        asyncio.run(admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.post_cost", description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=50_000, help="events loaded first (1,000-event batches, 30 days)")
    ap.add_argument("--rate", type=float, default=2000, help="events/s sent")
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--clients", type=int, default=16, help="requests in flight per load generator (two)")
    ap.add_argument("--size", type=int, default=100, help="events a batch (make bench's ingest phase: 1,000, 4 clients)")
    ap.add_argument("--group-events", type=int, nargs="+", default=[0, 5000], help="INGEST_GROUP_EVENTS of each run")
    a = ap.parse_args()
    for g in a.group_events:
        run(g, a)


if __name__ == "__main__":
    main()
