"""Reads while posting, with one or two service processes on one PostgreSQL database:
`python -m bench.shared_answers [--events 100000] [--days 60] [--replicas 1 2] [--seconds 20]`.

Creates a database on CHISO_BENCH_PG (default postgresql://postgres@127.0.0.1:5432), starts
`chiso serve --workers 2` (PUBLIC_READ, so pollers need no key), loads `--events` events of many
communes over `--days` days through the API (bench.gen batches), then for each replica count: starts
that many `chiso serve --workers 2` on the database, and for `--seconds` runs pollers (each URL kind
about once a second per poller, alternating between the replicas) while one client posts `--rate`
events/s to random communes. Prints p50/p99 per read kind, the CPU seconds of every service process
(workers, and the exporter process that hosts the answer refresher), and drops the database unless
`--keep-db`.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx
import orjson
import psutil

from app.units.seed import package_units
from bench.gen import make_batch

ADMIN = os.environ.get("CHISO_BENCH_PG", "postgresql://postgres@127.0.0.1:5432")
ROOT = Path(__file__).resolve().parent.parent
JSON = {"content-type": "application/json"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))]


class Server:
    """One `chiso serve --workers N` on the bench database."""

    def __init__(self, env: dict, workers: int, tmp: Path):
        self.port = free_port()
        env = dict(env, PROMETHEUS_MULTIPROC_DIR=str(tmp / f"metrics-{self.port}"))
        self.log = open(tmp / f"server-{self.port}.log", "wb")  # noqa: SIM115
        argv = [sys.executable, "-m", "app.cli", "serve", "--port", str(self.port), "--workers", str(workers)]
        self.proc = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        self.base = f"http://127.0.0.1:{self.port}"
        deadline = time.time() + 120
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {(tmp / f'server-{self.port}.log').read_text()[-3000:]}")
            try:
                if httpx.get(self.base + "/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise RuntimeError("server did not become ready")

    def processes(self) -> dict[int, str]:
        """pid -> role of every process of this server (the exporter process hosts the refresher)."""
        out = {}
        for p in [psutil.Process(self.proc.pid), *psutil.Process(self.proc.pid).children(recursive=True)]:
            try:
                cmd = " ".join(p.cmdline())
            except psutil.Error:
                continue
            out[p.pid] = "exporter" if "export run" in cmd else "web"
        return out

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, 9)
            self.proc.wait()
        self.log.close()


def cpu_of(pids: dict[int, str]) -> dict[str, float]:
    got: dict[str, float] = {}
    for pid, role in pids.items():
        try:
            t = psutil.Process(pid).cpu_times()
        except psutil.Error:
            continue
        got[role] = got.get(role, 0.0) + t.user + t.system
    return got


async def backends(dsn: str) -> dict[int, str]:
    """pid -> "PostgreSQL" of the backends connected to the bench database (the service's pools)."""
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()")
        return {r["pid"]: "PostgreSQL (this database)" for r in rows}
    finally:
        await conn.close()


def computations(servers: list[Server], kinds: bool = False) -> dict[str, float]:
    """chiso_answer_computations_total by `by` (request, behind, refresher), or with `kinds` by "kind by",
    summed over the servers."""
    got: dict[str, float] = {}
    for s in servers:
        for line in httpx.get(s.base + "/metrics", timeout=30).text.splitlines():
            if line.startswith("chiso_answer_computations_total{"):
                by = line.split('by="', 1)[1].split('"', 1)[0]
                if kinds:
                    by = line.split('kind="', 1)[1].split('"', 1)[0] + " " + by
                got[by] = got.get(by, 0.0) + float(line.rsplit(" ", 1)[1])
    return got


async def load(base: str, token: str, communes: list[str], events: int, days: int, seed: int = 5) -> float:
    """`events` events of random communes over the last `days` days, in batches of 1,000, 4 at a time."""
    rng = random.Random(seed)
    now = datetime.now(UTC)
    n = max(1, events // 1000)
    todo = iter(range(n))
    t0 = time.perf_counter()

    async def client(cl: httpx.AsyncClient) -> None:
        for b in todo:
            start = now - timedelta(days=days) + timedelta(days=days * rng.random())
            # 20 communes per batch: many communes get a little
            batch = []
            for k in range(20):
                commune = communes[rng.randrange(len(communes))]
                batch += make_batch(rng, commune, f"L{b}-{k}", (start, start + timedelta(days=2)), size=50, now=now)
            r = await cl.post(
                "/api/v1/events", content=orjson.dumps({"events": batch}), headers={**JSON, "authorization": f"Bearer {token}"}
            )
            r.raise_for_status()

    async with httpx.AsyncClient(base_url=base, timeout=120) as cl:
        await asyncio.gather(*(client(cl) for _ in range(4)))
    return time.perf_counter() - t0


async def post_live(bases: list[str], token: str, communes: list[str], rate: float, seconds: float, seed: int = 9) -> int:
    """About `rate` events/s, in batches of 50 events of one commune, ten batches a second."""
    rng = random.Random(seed)
    end = time.perf_counter() + seconds
    sent, k = 0, 0
    async with httpx.AsyncClient(timeout=60) as cl:
        while time.perf_counter() < end:
            t0 = time.perf_counter()
            size = max(1, int(rate / 10))
            commune = communes[rng.randrange(len(communes))]
            now = datetime.now(UTC)
            batch = make_batch(rng, commune, f"live{seed}-{k}", (now - timedelta(days=3), now), size=size, now=now)
            base = bases[k % len(bases)]
            k += 1
            r = await cl.post(
                base + "/api/v1/events", content=orjson.dumps({"events": batch}), headers={**JSON, "authorization": f"Bearer {token}"}
            )
            if r.status_code == 202:
                sent += len(batch)
            await asyncio.sleep(max(0.0, 0.1 - (time.perf_counter() - t0)))
    return sent


async def poll(bases: list[str], urls: dict[str, list[str]], pollers: int, seconds: float, seed: int = 3) -> dict[str, list[float]]:
    """`pollers` dashboards, each asking one URL of every kind about once a second, alternating replicas."""
    rng = random.Random(seed)
    lat: dict[str, list[float]] = {kind: [] for kind in urls}
    errors = 0
    end = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=pollers * 2, max_keepalive_connections=pollers * 2)
    async with httpx.AsyncClient(timeout=120, limits=limits) as cl:

        async def poller(i: int) -> None:
            nonlocal errors
            await asyncio.sleep(rng.random())
            n = i
            while time.perf_counter() < end:
                t_round = time.perf_counter()
                for kind, choices in urls.items():
                    n += 1
                    url = bases[n % len(bases)] + choices[rng.randrange(len(choices))]
                    t0 = time.perf_counter()
                    r = await cl.get(url)
                    if r.status_code == 200:
                        lat[kind].append(time.perf_counter() - t0)
                    else:
                        errors += 1
                await asyncio.sleep(max(0.0, 1.0 - (time.perf_counter() - t_round)))

        await asyncio.gather(*(poller(i) for i in range(pollers)))
    lat["errors"] = [errors]
    return lat


def poster(out, bases: list[str], token: str, communes: list[str], rate: float, seconds: float) -> None:
    """The live feed in a process of its own (generating batches costs CPU the pollers need)."""
    out.put(asyncio.run(post_live(bases, token, communes, rate, seconds)))


def server_seconds(servers: list[Server]) -> dict[str, dict[float, float]]:
    """chiso_kpi_answer_seconds buckets (cumulative counts by upper bound) per endpoint, summed over servers."""
    got: dict[str, dict[float, float]] = {}
    for s in servers:
        for line in httpx.get(s.base + "/metrics", timeout=30).text.splitlines():
            if line.startswith("chiso_kpi_answer_seconds_bucket{"):
                endpoint = line.split('endpoint="', 1)[1].split('"', 1)[0]
                le = line.split('le="', 1)[1].split('"', 1)[0]
                bound = float("inf") if le == "+Inf" else float(le)
                got.setdefault(endpoint, {})
                got[endpoint][bound] = got[endpoint].get(bound, 0.0) + float(line.rsplit(" ", 1)[1])
    return got


def bucket_pct(before: dict[float, float], after: dict[float, float], q: float) -> float | None:
    """The upper bound of the bucket holding the q-th percentile of the requests in between."""
    counts = sorted((b, after[b] - before.get(b, 0.0)) for b in after)
    total = counts[-1][1] if counts else 0
    if not total:
        return None
    return next(b for b, n in counts if n >= q / 100 * total)


async def run_refresher(url: str, seconds: float) -> tuple[int, float, float, int]:
    """The answer refresher in this process for `seconds`: (answers refreshed, CPU seconds, wall
    seconds, answers of those computed)."""
    from app.answers.refresher import AnswerRefresher
    from app.db.engine import Database
    from app.settings import Settings

    settings = Settings(_env_file=None, database_url=url)
    db = Database(url, pool_size=4)
    refresher = AnswerRefresher(db, settings)
    done, cpu0, t0 = 0, time.process_time(), time.perf_counter()
    try:
        while time.perf_counter() - t0 < seconds:
            tick = time.perf_counter()
            done += await refresher.run_once()
            await asyncio.sleep(max(0.02, settings.answer_refresh_seconds - (time.perf_counter() - tick)))
    finally:
        await refresher.close()
        await db.dispose()
    return done, time.process_time() - cpu0, time.perf_counter() - t0, refresher.answers.computations


async def admin_sql(sql: str) -> None:
    conn = await asyncpg.connect(ADMIN + "/postgres")
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--days", type=int, default=60)
    ap.add_argument("--replicas", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--pollers", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--rate", type=float, default=500, help="events/s posted during the read phase")
    ap.add_argument("--db", help="reuse this (already loaded) database")
    ap.add_argument("--keep-db", action="store_true")
    ap.add_argument("--refresher", action="store_true", help="last, the refresher alone (in this process) under the feed")
    ap.add_argument("--provinces", type=int, default=8, help="provinces whose KPIs are polled")
    ap.add_argument("--communes", type=int, default=0, help="communes whose KPIs are polled (each poller one a second)")
    a = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # the finally below stops the servers

    tmp = Path(tempfile.mkdtemp(prefix="chiso-shared-"))
    name = a.db or f"chiso_bench_sa_{uuid.uuid4().hex[:8]}"
    url = ADMIN.replace("postgresql://", "postgresql+asyncpg://", 1) + f"/{name}"
    env = {**os.environ, "DATABASE_URL": url, "PUBLIC_READ": "true", "INGEST_RATE_PER_MINUTE": "0", "EXPORT_INTERVAL": "5"}
    units = package_units()
    communes = [u.code for u in units if u.level == "commune"]
    provinces = [u.code for u in units if u.level == "province"]
    if not a.db:
        asyncio.run(admin_sql(f'CREATE DATABASE "{name}"'))
    servers: list[Server] = []
    try:
        servers.append(Server(env, a.workers, tmp))
        keys_env = {k: v for k, v in env.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
        out = subprocess.run(
            [sys.executable, "-m", "app.cli", "keys", "create", "--scope", "ingest", "--unit", "VN", "--name", "bench"],
            env=keys_env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
        token = out.stdout.strip().splitlines()[-1]
        if not a.db:
            took = asyncio.run(load(servers[0].base, token, communes, a.events, a.days))
            print(f"loaded {a.events:,} events in {took:.0f} s into {name}", flush=True)
        urls = {
            "province": [f"/api/v1/units/{p}/kpis?window=30d" for p in provinces[: a.provinces]],
            "nation": ["/api/v1/units/VN/kpis?window=30d"],
            "ranking of provinces": ["/api/v1/rankings?level=province&window=30d"],
            "ranking of communes": ["/api/v1/rankings?level=commune&window=30d&limit=50"],
            "52-week series": [f"/api/v1/units/{p}/series?kpi=on_time_rate&interval=week" for p in provinces[:4]],
        }
        if a.communes:
            urls["commune"] = [f"/api/v1/units/{c}/kpis?window=30d" for c in random.Random(1).sample(communes, a.communes)]
        for replicas in a.replicas:
            while len(servers) < replicas:
                servers.append(Server(env, a.workers, tmp))
            active = servers[:replicas]
            bases = [s.base for s in active]
            pids: dict[int, str] = {}
            for s in servers:
                pids |= s.processes()
            # warm up: every URL asked once
            for kind_urls in urls.values():
                for u in kind_urls:
                    httpx.get(bases[0] + u, timeout=120)
            pids |= asyncio.run(backends(f"{ADMIN}/{name}"))
            before, made = cpu_of(pids), computations(servers)

            seconds_before = server_seconds(servers)
            t0 = time.perf_counter()
            q = mp.Queue()
            feed = mp.Process(target=poster, args=(q, bases, token, communes, a.rate, a.seconds))
            feed.start()
            lat = asyncio.run(poll(bases, urls, a.pollers, a.seconds))
            sent = q.get(timeout=120)
            feed.join()
            wall = time.perf_counter() - t0
            after, made_after = cpu_of(pids), computations(servers)
            seconds_after = server_seconds(servers)
            print(f"\n{replicas} service process(es) x {a.workers} workers, {a.pollers} pollers, {sent / wall:.0f} events/s posted")
            print(f"{'read':24} {'n':>6} {'p50 ms':>8} {'p99 ms':>8}")
            for kind in urls:
                v = lat[kind]
                print(f"{kind:24} {len(v):6} {1000 * (pct(v, 50) or 0):8.1f} {1000 * (pct(v, 99) or 0):8.1f}")
            print(f"errors: {lat['errors'][0]}")
            for endpoint in sorted(seconds_after):
                b, e = seconds_before.get(endpoint, {}), seconds_after[endpoint]
                n = e.get(float("inf"), 0.0) - b.get(float("inf"), 0.0)
                p50, p99 = bucket_pct(b, e, 50), bucket_pct(b, e, 99)
                if n:
                    print(f"in the service, {endpoint}: {n:.0f} answers, p50 <= {1000 * p50:g} ms, p99 <= {1000 * p99:g} ms")
            for by in sorted(made_after):
                print(f"answers computed by {by}: {(made_after[by] - made.get(by, 0.0)) / wall:.1f}/s")
            for role in sorted(after):
                print(f"CPU {role}: {(after[role] - before.get(role, 0.0)) / wall:.2f} core")
        if a.refresher:
            for s in servers:
                s.stop()
            servers = [Server(env | {"ANSWER_REFRESH_SECONDS": "0"}, a.workers, tmp)]
            for kind_urls in urls.values():  # polled now: the refresher keeps them fresh
                for u in kind_urls:
                    httpx.get(servers[0].base + u, timeout=120)
            q = mp.Queue()
            feed = mp.Process(target=poster, args=(q, [servers[0].base], token, communes, a.rate, a.seconds))
            feed.start()
            done, cpu, wall, computed = asyncio.run(run_refresher(url, a.seconds))
            sent = q.get(timeout=120)
            feed.join()
            n = sum(len(v) for v in urls.values())
            print(f"\nthe refresher alone, {n} polled answers, {sent / wall:.0f} events/s posted:")
            held = (done - computed) / wall
            rate = f"{done / wall:.1f} answers refreshed/s ({computed / wall:.1f}/s computed, {held:.1f}/s found holding)"
            print(f"{rate}, CPU {cpu / wall:.2f} core")
    finally:
        for s in servers:
            s.stop()
        if not a.keep_db and not a.db:
            asyncio.run(admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        print(f"logs in {tmp}")


if __name__ == "__main__":
    main()
