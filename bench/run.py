"""Orchestrates one benchmark run: a fresh PostgreSQL database, the reference points (bare SQL,
naive ORM), chiso under load, reads at N and after growth; prints a table, writes bench-results/."""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import httpx

from bench import bare, naive, replicas, store_size
from bench.gen import MAX_SPAN_DAYS, span_days
from bench.history import write_history_proc
from bench.load import Children, ingest_proc, pct, probe_proc

ROOT = Path(__file__).resolve().parent.parent
TARGETS = {
    "events_per_s": 25000,
    "vs_bare": 0.5,
    "vs_naive": 20,
    "ack_p99": 0.250,  # at an open-loop offered load of half the measured maximum
    "import_per_s": 100_000,
    "bytes_per_event": 500,  # the whole database at the year of the nation (issue 24)
    "fresh_p99": 1.0,
    "unit_p99": 0.020,
    "national_p99": 0.050,
    "ranking_p99": 0.100,
    "series_p99": 0.050,
    "growth_ratio": 1.5,
    "rss_mb": 300,
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Run(Children):
    def __init__(self, args):
        self.args = args
        self.procs: list[subprocess.Popen] = []
        self.children: list[mp.Process] = []
        self.tmp = Path(tempfile.mkdtemp(prefix="chiso-bench-"))
        self.db = f"chiso_bench_{os.getpid()}_{int(time.time())}"
        self.admin_dsn = args.pg.rstrip("/") + "/postgres"
        self.dsn = args.pg.rstrip("/") + "/" + self.db
        self.url = self.dsn.replace("postgresql://", "postgresql+asyncpg://", 1)
        self.env = {
            **os.environ,
            "DATABASE_URL": self.url,
            "INGEST_RATE_PER_MINUTE": "0",
            "PUBLIC_READ": "true",
            "PROMETHEUS_MULTIPROC_DIR": str(self.tmp / "metrics"),
            "SEED_REGISTRY": "true",
        }
        self.results: dict = {
            "started": datetime.now().isoformat(timespec="seconds"),
            "args": vars(args),
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        }

    # ---- lifecycle -------------------------------------------------------------------------
    def log(self, msg):
        print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)

    def sql(self, dsn, *stmts):
        async def go():
            conn = await asyncpg.connect(dsn)
            try:
                out = None
                for s in stmts:
                    out = await conn.fetch(s) if s.lstrip().upper().startswith("SELECT") else await conn.execute(s)
                return out
            finally:
                await conn.close()

        return asyncio.run(go())

    def cleanup(self):
        for p in self.children:
            if p.is_alive():
                p.terminate()
        for p in self.procs:
            self.stop_server(p)
        if not self.args.keep_db:
            try:
                self.sql(self.admin_dsn, f'DROP DATABASE IF EXISTS "{self.db}" WITH (FORCE)')
                self.log(f"dropped database {self.db}")
            except Exception as exc:  # noqa: BLE001
                self.log(f"could not drop {self.db}: {exc}")
        else:
            self.log(f"kept database {self.db}")
        subprocess.run(["rm", "-rf", str(self.tmp)], check=False)

    def stop_server(self, p: subprocess.Popen):
        if p.poll() is not None:
            return
        try:
            os.killpg(p.pid, signal.SIGTERM)
            p.wait(15)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if p in self.procs:
            self.procs.remove(p)

    def start_server(self, argv, env, port, ready="/readyz") -> subprocess.Popen:
        logf = open(self.tmp / f"server-{port}.log", "wb")
        p = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=logf, stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append(p)
        deadline = time.time() + 120
        while time.time() < deadline:
            if p.poll() is not None:
                raise RuntimeError(f"server exited: {(self.tmp / f'server-{port}.log').read_text()[-3000:]}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}{ready}", timeout=2).status_code == 200:
                    return p
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise RuntimeError("server did not become ready")

    # ---- phases ----------------------------------------------------------------------------
    def setup(self):
        self.sql(self.admin_dsn, f'CREATE DATABASE "{self.db}"')
        self.log(f"created database {self.db}")
        cli = [sys.executable, "-m", "app.cli", "keys", "create"]
        env = {k: v for k, v in self.env.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
        out = subprocess.run(
            cli + ["--scope", "ingest", "--unit", "VN", "--name", "bench"], env=env, cwd=ROOT, capture_output=True, text=True
        )
        if out.returncode:
            raise RuntimeError(f"chiso keys create failed: {out.stderr[-2000:]}")
        (self.tmp / "metrics").mkdir()
        self.token = out.stdout.strip().splitlines()[-1]
        self.sql(self.dsn, bare.DDL, naive.DDL)
        from app.units.seed import package_units

        units = package_units()
        self.communes = [u.code for u in units if u.level == "commune"]
        self.parents = {u.code: u.parent_code for u in units}
        self.provinces = [u.code for u in units if u.level == "province"]
        self.log(f"{len(self.communes)} communes, {len(self.provinces)} provinces")

    def generators(self, q, base, tag, b0, n_batches, clients, deadline, span, now, size=1000, pace=0.0):
        """The load generator processes of one ingest phase (bench.load.ingest_proc)."""
        a = self.args
        return [
            self.spawn(
                ingest_proc,
                q,
                base,
                self.token,
                self.communes,
                g,
                a.generators,
                b0,
                b0 + n_batches,
                clients,
                tag,
                deadline,
                hash((tag, g)) & 0xFFFF,
                span,
                now,
                size,
                pace,
            )
            for g in range(a.generators)
        ]

    def ingest(self, base, n_events, tag, span, b0=0, deadline=None, probe=False):
        a = self.args
        n_batches = max(1, n_events // 1000)
        deadline = deadline or time.time() + 10**6
        q = mp.Queue()
        now = datetime.now(UTC)
        gens = self.generators(q, base, tag, b0, n_batches, max(1, a.clients // a.generators), deadline, span, now)
        stop, pq, pp = mp.Event(), mp.Queue(), None
        if probe:
            pp = self.spawn(probe_proc, pq, stop, base, self.token, self.communes, tag, a.probe_interval)
        t0 = time.time()
        got = self.collect(q, gens)
        elapsed = time.time() - t0
        fresh = None
        if pp is not None:
            stop.set()
            fresh = self.collect(pq, [pp], timeout=120)[0][2]
        res = summary([r for _, _, rs in got for r in rs]) | {"wall_seconds": elapsed}
        if fresh is not None:
            res["fresh_p50"], res["fresh_p99"] = pct(fresh["fresh"], 50), pct(fresh["fresh"], 99)
            res["fresh_samples"], res["fresh_failures"] = len(fresh["fresh"]), fresh["failures"]
            res["probe_ack_p50"] = pct(fresh["acks"], 50)
        return res, n_batches

    def reads(self, base, label):
        """The paced and back-to-back reads of every read set, each answer asked once first (as
        the dashboards polling all along would have: the rows measure serving); the first asks'
        own latencies are logged and kept apart."""
        first = {}
        for name, paths in replicas.read_sets(self.communes, self.provinces).items():
            took = replicas.paced_reads_warm(self, [base], paths)
            first[name] = {"n": len(took), "p50": pct(took, 50), "p99": pct(took, 99)}
            self.log(f"reads {label} first asks {name}: p50 {ms(first[name]['p50'])} p99 {ms(first[name]['p99'])} ({len(took)} answers)")
        out = self._read_sets(base, label, (("paced", self.args.poll_interval), ("back-to-back", 0.0)))
        out["first"] = first
        return out

    def _read_sets(self, base, label, modes):
        return replicas.paced_reads(self, [base], replicas.read_sets(self.communes, self.provinces), label, modes)

    def reads_while_posting(self, base, label, b0):
        """The paced reads again while communes post a steady --post-rate events/s (batches of 100
        from all communes, open loop): the data version changes many times a second."""
        a = self.args
        size, n_sets = 100, 5
        duration = a.read_seconds * n_sets + 15
        pace = a.post_rate / size / a.generators
        n_batches = int(a.post_rate / size * duration * 1.2) + 10
        q = mp.Queue()
        now = datetime.now(UTC)
        deadline = time.time() + duration
        gens = self.generators(q, base, "w", b0, n_batches, 16, deadline, 1.0, now, size, pace)
        time.sleep(3)  # the load settles
        saved = a.poll_interval
        out = self._read_sets(base, f"{label} while posting", (("paced", saved),))
        got = self.collect(q, gens)
        out["posting"] = summary([r for _, _, rs in got for r in rs])
        self.log(f"posting during reads: {out['posting']['events_per_s']:.0f} events/s, ack p99 {ms(out['posting']['ack_p99'])}")
        return out, n_batches

    def two_replicas(self, first: subprocess.Popen, port: int) -> dict:
        """A second `chiso serve` on the database beside the first: bench.replicas.phase (reads at
        rest and while posting with the pollers alternating between them, freshness, CPU by role,
        PostgreSQL's CPU at --pollers and --many pollers); then the second stops."""
        a = self.args
        port2 = free_port()
        env = {**self.env, "PROMETHEUS_MULTIPROC_DIR": str(self.tmp / "metrics-2")}
        (self.tmp / "metrics-2").mkdir(exist_ok=True)
        argv = [sys.executable, "-m", "app.cli", "serve", "--port", str(port2), "--workers", str(a.workers)]
        second = self.start_server(argv, env, port2)
        self.log(f"two replicas: a second chiso serve on {port2}")
        try:
            return replicas.phase(self, [f"http://127.0.0.1:{port}", f"http://127.0.0.1:{port2}"], [first.pid, second.pid])
        finally:
            self.stop_server(second)

    def open_loop(self, base, rate, seconds, tag, b0, size=1000):
        """Batches of `size` sent on a schedule at `rate` events/s for `seconds`, whatever the answers
        (open loop: a slow answer does not slow the offered load), from all communes."""
        a = self.args
        pace = rate / size / a.generators
        n_batches = int(rate / size * seconds * 1.5) + 10
        q = mp.Queue()
        gens = self.generators(q, base, tag, b0, n_batches, 64, time.time() + seconds, 1.0, datetime.now(UTC), size, pace)
        got = self.collect(q, gens)
        return summary([r for _, _, rs in got for r in rs]) | {"offered_per_s": rate}, n_batches

    def import_history(self, label, communes, n_events, days, seed):
        """Write an NDJSON history of `communes` (two generator processes, one file each), then load it
        with `chiso import` into the bench database while the service runs; the import's figures."""
        a = self.args
        q = mp.Queue()
        now = time.time() - 120
        parts = [part for part in (communes[0::2], communes[1::2]) if part]
        t0 = time.time()
        procs = [
            self.spawn(
                write_history_proc,
                q,
                str(self.tmp / f"{label}-{i}.ndjson"),
                part,
                n_events // len(parts),
                days,
                seed + i,
                f"{label}{i}-",
                now,
            )
            for i, part in enumerate(parts)
        ]
        got = self.collect(q, procs)
        paths, written = [p for _, p, _ in got], sum(n for _, _, n in got)
        self.log(f"{label}: {written:,} events written to {len(paths)} files in {time.time() - t0:.0f} s; chiso import")
        env = {k: v for k, v in self.env.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
        cmd = [sys.executable, "-m", "app.cli", "import", *paths, "--json", "--writers", str(a.import_writers)]
        t0 = time.time()
        out = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True)
        wall = time.time() - t0
        if out.returncode:
            raise RuntimeError(f"chiso import failed: {out.stderr[-3000:]}")
        reports = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
        for path in paths:
            Path(path).unlink(missing_ok=True)
        lines = sum(r["lines"] for r in reports)
        res = {
            "events": written,
            "lines": lines,
            "accepted": sum(r["accepted"] for r in reports),
            "duplicates": sum(r["duplicates"] for r in reports),
            "rejected": sum(r["rejected"] for r in reports),
            "wall_seconds": wall,
            "events_per_s": lines / wall,
            "communes": len(communes),
            "days": days,
        }
        self.log(f"{label}: imported {res['accepted']:,} events in {wall:.1f} s ({res['events_per_s']:,.0f} events/s)")
        return res

    def shape(self) -> dict:
        """What reads pay for: aggregate rows, commune-days covered, the database's size."""
        r = self.sql(
            self.dsn,
            "SELECT (SELECT count(*) FROM unit_day) AS unit_day, (SELECT count(*) FROM unit_day WHERE hist IS NOT NULL) AS hist, "
            "(SELECT count(*) FROM rollup_day) AS rollup_day, (SELECT count(*) FROM dossier) AS dossiers, "
            "(SELECT count(*) FROM unit_day WHERE sector = '*' AND source = '' AND unit_code IN "
            "(SELECT code FROM unit WHERE level = 'commune') AND received > 0) AS commune_days, "
            "pg_database_size(current_database()) AS bytes",
        )[0]
        return dict(r)

    def stored_events(self):
        return self.sql(self.dsn, "SELECT count(*) AS n FROM dossier_event")[0]["n"]

    def main(self):
        a = self.args
        self.setup()
        # 1. reference: bare SQL pipeline
        span = self.span = a.span_days or span_days(a.events)
        self.results["span_days"] = span
        self.log(f"batches spread over {span:.1f} days of traffic; bare SQL reference: {a.ref_events} events, 4 connections")
        r = asyncio.run(bare.run_bare(self.dsn, self.communes, a.ref_events, span))
        self.results["bare"] = {k: v for k, v in r.items() if k != "batch_lat"}
        self.results["bare"]["batch_p50"] = pct(r["batch_lat"], 50)
        self.log(f"bare SQL: {r['events_per_s']:.0f} events/s")
        # 2. reference: naive ORM endpoint, same load generator, same workers
        port = free_port()
        env = {**self.env, "NAIVE_DATABASE_URL": self.url}
        p = self.start_server(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "bench.naive:app",
                "--port",
                str(port),
                "--workers",
                str(a.workers),
                "--log-level",
                "warning",
            ],
            env,
            port,
        )
        self.log(f"naive reference: {a.naive_events} events")
        r, _ = self.ingest(f"http://127.0.0.1:{port}", a.naive_events, "naive", span)
        self.stop_server(p)
        self.results["naive"] = r
        self.log(f"naive: {r['events_per_s']:.0f} events/s")
        # 3. chiso
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        p = self.start_server([sys.executable, "-m", "app.cli", "serve", "--port", str(port), "--workers", str(a.workers)], self.env, port)
        rss = RssMonitor(p.pid)
        rss.start()
        self.log(f"chiso serving on {port}, workers {a.workers}, pids {rss.pids()}; ingest {a.events} events")
        rss.cpu_window()
        r, nb = self.ingest(base, a.events, "c", span, probe=True)
        r["cpu"] = rss.cpu_window(r["events"], r["wall_seconds"])
        self.results["ingest"] = r
        self.log(f"chiso ingest: {r['events_per_s']:.0f} events/s, ack p99 {ms(r['ack_p99'])}, freshness p99 {ms(r.get('fresh_p99'))}")
        if a.half_seconds:
            half = r["events_per_s"] / 2
            self.log(f"open loop at half the maximum: {half:,.0f} events/s offered for {a.half_seconds:.0f} s")
            h, nh = self.open_loop(base, half, a.half_seconds, "h", nb + 5 * 10**6)
            self.results["half_load"] = h
            self.log(f"half load: {h['events_per_s']:.0f} events/s, ack p50 {ms(h['ack_p50'])} p99 {ms(h['ack_p99'])}")
        n1 = self.stored_events()
        self.results["stored_1"] = n1
        self.results["reads_1"] = self.reads(base, "1x")
        self.results["reads_1w"], nw = self.reads_while_posting(base, "1x", nb)
        nb += nw
        if a.replicas:
            self.results["replicas"] = self.two_replicas(p, port)
        # 4. growth
        target = a.events * a.growth
        self.log(f"growing to {target} events (at most {a.grow_seconds:.0f} s)")
        grow = target - a.events
        g, _ = self.ingest(base, grow, "g", a.span_days or span_days(grow), b0=nb, deadline=time.time() + a.grow_seconds)
        self.results["growth_ingest"] = g
        n2 = self.stored_events()
        self.results["stored_2"] = n2
        self.results["reads_2"] = self.reads(base, f"{n2 / max(1, n1):.1f}x")
        self.results["reads_2w"], nw = self.reads_while_posting(base, f"{n2 / max(1, n1):.1f}x", nb + 10**6)
        # 5. a year of the nation: every commune with events on every day of the last 360 days
        if a.year_events:
            self.log(f"a year of the nation: {a.year_events} events over {gen_max_span()} days, by chiso import")
            y = self.import_history("year", self.communes, a.year_events, gen_max_span(), 17)
            self.results["year_ingest"] = y
            n3 = self.stored_events()
            self.results["stored_3"] = n3
            self.results["year_shape"] = self.shape()
            self.results["year_size"] = asyncio.run(store_size.measure(self.dsn))
            self.log(f"year: {n3} events stored; {self.results['year_shape']}")
            self.results["reads_3"] = self.reads(base, "year")
            self.results["reads_3w"], _ = self.reads_while_posting(base, "year", nb + 3 * 10**6)
        # 6. a province joining with a year of history (Hà Nội's communes), by chiso import
        if a.province_events:
            hn = [c for c, p in self.parents.items() if p == "01"]
            self.results["province_import"] = self.import_history("hanoi", hn, a.province_events, gen_max_span(), 23)
        rss.stop()
        self.results["rss"] = rss.summary()
        self.stop_server(p)
        self.results["finished"] = datetime.now().isoformat(timespec="seconds")


class RssMonitor(threading.Thread):
    """Peak RSS of the service's processes; and CPU seconds by process class (service, PostgreSQL,
    load generators) over a window, so the table says where the time goes."""

    def __init__(self, pid):
        super().__init__(daemon=True)
        import psutil

        self.psutil = psutil
        self.root = psutil.Process(pid)
        self.peak: dict[int, int] = {}
        self.peak_total = 0
        self.cpu: dict[int, tuple[str, float, float]] = {}  # pid -> (class, first seen, last seen)
        self._lock = threading.Lock()
        self._halt = threading.Event()

    def _classify(self, pr, service: set[int], mine: set[int]) -> str | None:
        if pr.pid in service:
            return "chiso service"
        if pr.pid in mine:
            return "load generators"
        return "PostgreSQL" if pr.name() in ("postgres", "postmaster") else None

    def sample_cpu(self) -> None:
        ps = self.psutil
        service = {self.root.pid, *(c.pid for c in self.root.children(recursive=True))}
        mine = {c.pid for c in ps.Process().children(recursive=True)} - service
        for pr in ps.process_iter():
            try:
                kind = self._classify(pr, service, mine)
                if kind is None:
                    continue
                t = pr.cpu_times()
                used = t.user + t.system
            except (ps.NoSuchProcess, ps.AccessDenied, ps.ZombieProcess):
                continue
            with self._lock:
                first = self.cpu.get(pr.pid, (kind, used, used))[1]
                self.cpu[pr.pid] = (kind, first, used)

    def cpu_window(self, events: int = 0, seconds: float = 0.0) -> dict:
        """CPU used by each class since the last call (cores and microseconds per event); restarts the window."""
        self.sample_cpu()
        with self._lock:
            used: dict[str, float] = {}
            for kind, first, last in self.cpu.values():
                used[kind] = used.get(kind, 0.0) + last - first
            self.cpu = {pid: (k, last, last) for pid, (k, _, last) in self.cpu.items()}
        return {
            k: {"cpu_seconds": v, "cores": v / seconds if seconds else None, "us_per_event": 1e6 * v / events if events else None}
            for k, v in sorted(used.items())
        }

    def pids(self):
        try:
            return [c.pid for c in self.root.children(recursive=True)] or [self.root.pid]
        except Exception:  # noqa: BLE001
            return []

    def run(self):
        while not self._halt.wait(0.5):
            try:
                procs = [self.root, *self.root.children(recursive=True)]
                total = 0
                for pr in procs:
                    try:
                        rss = pr.memory_info().rss
                    except Exception:  # noqa: BLE001
                        continue
                    total += rss
                    self.peak[pr.pid] = max(self.peak.get(pr.pid, 0), rss)
                self.peak_total = max(self.peak_total, total)
                self.sample_cpu()
            except Exception:  # noqa: BLE001
                pass

    def stop(self):
        self._halt.set()

    def summary(self):
        workers = {p: v for p, v in self.peak.items() if p != self.root.pid} or self.peak
        return {
            "peak_worker_mb": max(workers.values(), default=0) / 2**20,
            "peak_master_mb": self.peak.get(self.root.pid, 0) / 2**20,
            "peak_total_mb": self.peak_total / 2**20,
            "workers": len(workers),
        }


def summary(recs: list) -> dict:
    """Figures of one ingest phase from its batch records (bench.load: start, end, latency, events,
    accepted, duplicates, rejected, retries, status)."""
    ok = [r for r in recs if r[8] == 202]
    sent = sum(r[3] for r in ok)
    first, last = min(r[0] for r in recs), max(r[1] for r in recs)
    return {
        "batches": len(recs),
        "failed_batches": len(recs) - len(ok),
        "events": sent,
        "accepted": sum(r[4] for r in ok),
        "duplicates": sum(r[5] for r in ok),
        "rejected": sum(r[6] for r in ok),
        "retries": sum(r[7] for r in recs),
        "seconds": last - first,
        "events_per_s": sent / max(1e-9, last - first),
        "ack_p50": pct([r[2] for r in ok], 50),
        "ack_p99": pct([r[2] for r in ok], 99),
        "ack_max": max((r[2] for r in ok), default=None),
    }


def gen_max_span() -> float:
    return float(MAX_SPAN_DAYS)


def ms(v):
    return "—" if v is None else f"{v * 1000:.1f} ms"


def table(res: dict) -> str:
    rows = []

    def row(name, value, target="", ok=None):
        mark = "" if ok is None else ("PASS" if ok else "FAIL")
        rows.append((name, value, target, mark))

    T = TARGETS
    ing = res["ingest"]
    eps = ing["events_per_s"]
    bare_eps, naive_eps = res["bare"]["events_per_s"], res["naive"]["events_per_s"]
    row("ingest events/s (sustained)", f"{eps:,.0f}", f">= {T['events_per_s']:,}", eps >= T["events_per_s"])
    row("  events posted / accepted / dup", f"{ing['events']:,} / {ing['accepted']:,} / {ing['duplicates']:,}")
    row("  traffic the events stand for", f"{res.get('span_days', 0):.1f} days", "a quarter: 21M events, 91 days")
    row("  seconds / batches / retries / failed", f"{ing['seconds']:.1f} / {ing['batches']} / {ing['retries']} / {ing['failed_batches']}")
    row("bare SQL limit events/s (4 conns)", f"{bare_eps:,.0f}")
    row("naive ORM endpoint events/s", f"{naive_eps:,.0f}")
    row("chiso / limit", f"{eps / bare_eps:.2f}", f">= {T['vs_bare']}", eps / bare_eps >= T["vs_bare"])
    row("chiso / naive", f"{eps / naive_eps:.1f}x", f">= {T['vs_naive']}x", eps / naive_eps >= T["vs_naive"])
    row("ack latency at saturation p50 / p99", f"{ms(ing['ack_p50'])} / {ms(ing['ack_p99'])}")
    if "half_load" in res:
        h = res["half_load"]
        row(
            f"ack at half the maximum ({h['offered_per_s']:,.0f} ev/s offered, open loop) p50 / p99",
            f"{ms(h['ack_p50'])} / {ms(h['ack_p99'])}",
            f"p99 <= {T['ack_p99'] * 1000:.0f} ms",
            (h["ack_p99"] or 9) <= T["ack_p99"],
        )
        row("  achieved events/s / failed batches", f"{h['events_per_s']:,.0f} / {h['failed_batches']}")
    row("KPI freshness p50", ms(ing.get("fresh_p50")), f"({ing.get('fresh_samples', 0)} samples)")
    fp = ing.get("fresh_p99")
    row("KPI freshness p99", ms(fp), f"<= {T['fresh_p99'] * 1000:.0f} ms", fp is not None and fp <= T["fresh_p99"])
    for kind, c in ing.get("cpu", {}).items():
        row(f"  CPU during ingest: {kind}", f"{c['cores']:.2f} cores", f"{c['us_per_event']:.0f} us/event")
    rs = res["rss"]
    row("peak RSS per worker", f"{rs['peak_worker_mb']:.0f} MB", f"<= {T['rss_mb']} MB", rs["peak_worker_mb"] <= T["rss_mb"])
    row("  peak RSS master / all", f"{rs['peak_master_mb']:.0f} MB / {rs['peak_total_mb']:.0f} MB")
    n1, n2 = res["stored_1"], res["stored_2"]
    g = res["growth_ingest"]
    row("growth ingest events/s", f"{g['events_per_s']:,.0f}", f"stored {n1:,} -> {n2:,} ({n2 / max(1, n1):.1f}x)")
    limits = {
        "commune KPI (30d)": T["unit_p99"],
        "province KPI (30d)": T["unit_p99"],
        "national KPI (30d)": T["national_p99"],
        "ranking 3,321 communes": T["ranking_p99"],
        "52-week series (province)": T["series_p99"],
    }
    pollers, every = res["args"]["pollers"], res["args"]["poll_interval"]
    for name, r1 in res["reads_1"]["paced"].items():
        r2 = res["reads_2"]["paced"][name]
        lim = limits.get(name)
        ok1 = None if lim is None else (r1["p99"] or 9) <= lim
        row(
            f"{name} p50 / p99 @{pollers} pollers (1 per {every:g} s), 1x",
            f"{ms(r1['p50'])} / {ms(r1['p99'])}",
            f"p99 <= {lim * 1000:.0f} ms" if lim else "",
            ok1,
        )
        ratio = (r2["p99"] or 0) / r1["p99"] if r1["p99"] else float("nan")
        ok2 = None if lim is None else ((r2["p99"] or 9) <= lim and ratio <= T["growth_ratio"])
        row(
            f"  same, {n2 / max(1, n1):.1f}x data (p99 ratio {ratio:.2f})",
            f"{ms(r2['p50'])} / {ms(r2['p99'])}",
            f"<= {lim * 1000:.0f} ms, ratio <= 1.5" if lim else ("" if name == replicas.FLOOR else "ratio <= 1.5"),
            ok2 if lim else (None if name == replicas.FLOOR else ratio <= 1.5),
        )
        w1, w2 = res.get("reads_1w", {}).get("paced", {}).get(name), res.get("reads_2w", {}).get("paced", {}).get(name)
        if w1 and w2:
            okw = None if lim is None else max(w1["p99"] or 9, w2["p99"] or 9) <= lim
            row(
                f"  same while posting {res['args']['post_rate']:,.0f} ev/s: 1x / {n2 / max(1, n1):.1f}x",
                f"{ms(w1['p50'])} / {ms(w1['p99'])} ; {ms(w2['p50'])} / {ms(w2['p99'])}",
                f"p99 <= {lim * 1000:.0f} ms" if lim else "",
                okw,
            )
        s1, s2 = res["reads_1"]["back-to-back"][name], res["reads_2"]["back-to-back"][name]
        row(
            f"  {pollers} back to back: p99, answers/s 1x / {n2 / max(1, n1):.1f}x",
            f"{ms(s1['p99'])}, {s1['rps']:.0f}/s / {ms(s2['p99'])}, {s2['rps']:.0f}/s",
        )
        firsts = [res[k]["first"][name] for k in ("reads_1", "reads_2", "reads_3") if name in res.get(k, {}).get("first", {})]
        if firsts:
            row(
                "  first asks (each answer once, 8 at a time, before the rows): p50 / p99 per size",
                " ; ".join(f"{ms(f['p50'])} / {ms(f['p99'])}" for f in firsts),
            )
    if "reads_3" in res:
        y, n3, sh = res["year_ingest"], res["stored_3"], res["year_shape"]
        row(
            "chiso import, year of the nation: events/s",
            f"{y['events_per_s']:,.0f}",
            f">= {T['import_per_s']:,}",
            y["events_per_s"] >= T["import_per_s"],
        )
        row(
            "  lines / accepted / wall",
            f"{y['lines']:,} / {y['accepted']:,} / {y['wall_seconds']:.0f} s",
            f"{n3:,} stored; {sh['commune_days']:,} commune-days with receipts",
        )
        row(
            "  database size, per million events",
            f"{sh['bytes'] / 2**30:.2f} GiB, {sh['bytes'] / 2**20 / max(1, n3 / 1e6):.0f} MiB",
            f"unit_day {sh['unit_day']:,}, hist {sh['hist']:,}, rollup_day {sh['rollup_day']:,} rows",
        )
        if "year_size" in res:
            size = res["year_size"]
            per_event = size["database"] / max(1, size["events"])
            row("stored bytes per event at the year", f"{per_event:,.0f}", f"<= {T['bytes_per_event']}", per_event <= T["bytes_per_event"])
            top = sorted(size["tables"], key=lambda t: -t["total"])[:5]
            row("  by table, with its indexes", ", ".join(f"{t['name']} {t['total'] / max(1, size['events']):.0f}" for t in top))
        for name, r1 in res["reads_1"]["paced"].items():
            r3, w3 = res["reads_3"]["paced"][name], res["reads_3w"]["paced"][name]
            lim = limits.get(name)
            ratio = (r3["p99"] or 0) / r1["p99"] if r1["p99"] else float("nan")
            ok3 = None if lim is None else ((r3["p99"] or 9) <= lim and ratio <= T["growth_ratio"])
            row(
                f"{name} at the year: p50 / p99 (ratio to 1x); while posting",
                f"{ms(r3['p50'])} / {ms(r3['p99'])} ({ratio:.2f}); {ms(w3['p50'])} / {ms(w3['p99'])}",
                f"<= {lim * 1000:.0f} ms, ratio <= 1.5" if lim else "",
                ok3,
            )
            b3 = res["reads_3"]["back-to-back"][name]
            row("  back to back at the year: p99, answers/s", f"{ms(b3['p99'])}, {b3['rps']:.0f}/s")
    if "province_import" in res:
        pi = res["province_import"]
        row(
            f"chiso import, a year of one province ({pi['communes']} communes): wall",
            f"{pi['wall_seconds']:.0f} s",
            f"{pi['lines']:,} events, {pi['events_per_s']:,.0f} events/s",
        )
    if "replicas" in res:
        replicas.rows(res["replicas"], row)
    for tag in ("reads_1w", "reads_2w", "reads_3w"):
        if tag in res:
            pw = res[tag]["posting"]
            label = {"reads_1w": "1x", "reads_2w": "grown", "reads_3w": "year"}[tag]
            row(
                f"posting during reads ({label} data): events/s, ack p50 / p99",
                f"{pw['events_per_s']:,.0f}, {ms(pw['ack_p50'])} / {ms(pw['ack_p99'])}",
                f"failed {pw['failed_batches']}",
            )
    w = [max(len(r[i]) for r in rows + [("metric", "value", "target", "")]) for i in range(4)]
    line = "+" + "+".join("-" * (x + 2) for x in w) + "+"
    out = [line, "| " + " | ".join(h.ljust(w[i]) for i, h in enumerate(("metric", "value", "target", ""))) + " |", line]
    out += ["| " + " | ".join(c.ljust(w[i]) for i, c in enumerate(r)) + " |" for r in rows]
    out.append(line)
    return "\n".join(out)


def parse(argv=None):
    ap = argparse.ArgumentParser(prog="python -m bench", description="chiso benchmark on PostgreSQL")
    ap.add_argument("--events", type=int, default=2_000_000, help="events to ingest (default 2,000,000)")
    ap.add_argument("--workers", type=int, default=2, help="service worker processes (default 2 = cores)")
    ap.add_argument("--clients", type=int, default=8, help="ingest requests in flight (default 8)")
    ap.add_argument("--generators", type=int, default=2, help="load generator processes (default 2)")
    ap.add_argument("--pollers", type=int, default=50, help="concurrent KPI pollers (default 50)")
    ap.add_argument(
        "--span-days",
        type=float,
        default=None,
        help="days of traffic the events stand for (default: their share of a quarter, 21M events in 91 days)",
    )
    ap.add_argument(
        "--poll-interval", type=float, default=1.0, help="seconds between one poller's requests (default 1; back-to-back is measured too)"
    )
    ap.add_argument("--read-seconds", type=float, default=10.0, help="seconds per read endpoint (default 10)")
    ap.add_argument("--growth", type=int, default=5, help="grow stored events to this multiple (default 5)")
    ap.add_argument("--grow-seconds", type=float, default=1200.0, help="time cap of the growth phase (default 1200)")
    ap.add_argument("--ref-events", type=int, default=200_000, help="events of the bare SQL reference")
    ap.add_argument("--naive-events", type=int, default=30_000, help="events of the naive reference")
    ap.add_argument(
        "--year-events",
        type=int,
        default=10_000_000,
        help="events of the 'year of the nation' phase, loaded by chiso import: every commune, 360 days (default 10M; 0 skips)",
    )
    ap.add_argument("--year-seconds", type=float, default=900.0, help="(unused: the year phase is loaded by chiso import)")
    ap.add_argument(
        "--province-events",
        type=int,
        default=2_500_000,
        help="a year of one province (Hà Nội) loaded by chiso import (default 2.5M; 0 skips)",
    )
    ap.add_argument("--import-writers", type=int, default=2, help="chiso import --writers (default 2)")
    ap.add_argument(
        "--half-seconds", type=float, default=30.0, help="open loop at half the measured maximum, seconds (default 30; 0 skips)"
    )
    ap.add_argument("--post-rate", type=float, default=2000.0, help="events/s posted during the reads-while-posting phases (default 2,000)")
    ap.add_argument("--probe-interval", type=float, default=0.5, help="seconds between freshness samples")
    ap.add_argument(
        "--replicas", action=argparse.BooleanOptionalAction, default=True, help="the two-replica phase (bench.replicas; default on)"
    )
    ap.add_argument("--many", type=int, default=500, help="pollers of the two-replica phase's second PostgreSQL CPU measure")
    ap.add_argument(
        "--pg",
        default=os.environ.get("CHISO_BENCH_PG", "postgresql://postgres@127.0.0.1:5432"),
        help="PostgreSQL server (a database is created and dropped on it)",
    )
    ap.add_argument("--keep-db", action="store_true", help="keep the database (for EXPLAIN ANALYZE)")
    ap.add_argument("--out", default=str(ROOT / "bench-results"), help="directory of the JSON results")
    ap.add_argument("--quick", action="store_true", help="~1-2 minute smoke run (100k events)")
    args = ap.parse_args(argv)
    if args.quick:
        args.events, args.read_seconds, args.growth, args.grow_seconds = 100_000, 3.0, 2, 60.0
        args.ref_events, args.naive_events = 30_000, 5_000
        args.year_events, args.year_seconds, args.province_events, args.half_seconds = 100_000, 30.0, 50_000, 10.0
        args.many = 100
    if args.growth < 2:
        ap.error("--growth must be 2 or more (the grown store is a row of the table)")
    return args


def main(argv=None):
    args = parse(argv)
    run = Run(args)

    def on_term(*_):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    try:
        run.main()
    except KeyboardInterrupt:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        run.log("interrupted; cleaning up")
        run.cleanup()
        sys.exit(130)
    except BaseException:
        run.cleanup()
        raise
    run.cleanup()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"bench-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(run.results, indent=2, default=str))
    text = table(run.results)
    print(text)
    run.results["table"] = text
    path.write_text(json.dumps(run.results, indent=2, default=str))
    print(f"results: {path}")
