"""Two replicas on one database (SPEC section 4, "many processes, one truth"): the `make bench` phase
and a quick standalone run of it,

    python -m bench.replicas [--pg URL] [--events 200000] [--seconds 20] [--pollers 50] [--many 500]

Two `chiso serve --workers N` on one PostgreSQL database, the pollers alternating between them
(each request goes to either at random, as behind a load balancer). Measured:

- the paced read rows of `make bench` (commune, province, nation, the ranking of every commune, a
  52-week series; p50/p99 as the pollers see them) at rest and while `--post-rate` events/s are
  posted (batches of 100 from all communes, half to each replica, open loop);
- freshness under that feed: a probe posts one event to a random commune on one replica and reads
  its province's answer (`window=30d`, the probe's own sector, so only probes move it) on the other
  until it shows; p50/p99 from the 202 (8 probers at once, never two on one province);
- CPU seconds per second (cores) while posting: the answer refresher's process (the exporter
  process of the replica holding the refresher's advisory lock), the other exporter, the web
  workers, and PostgreSQL's backends of the bench database (nobody else's);
- PostgreSQL's CPU serving `--pollers` and then `--many` pollers of distinct communes' answers at
  rest, each measured after a window of the same pollers unmeasured (every worker has met every
  answer once: the steady state): serving is a lookup, so the second must not cost PostgreSQL more.

The standalone run creates a database on `--pg`, loads `--events` events through the API
(bench.shared_answers.load), runs the phase, prints the table and drops the database.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import psutil

from bench.load import Children, ingest_proc, pct, poll_proc, probe_proc
from bench.shared_answers import backends

ROOT = Path(__file__).resolve().parent.parent
REFRESHER_LOCK = 0x6368_6973_6F61_6E73  # app.answers.refresher.LOCK_KEY (bench code imports no app)
LIMITS = {  # SPEC targets: p99 seconds
    "commune KPI (30d)": 0.020,
    "province KPI (30d)": 0.020,
    "national KPI (30d)": 0.050,
    "ranking 3,321 communes": 0.100,
    "52-week series (province)": 0.050,
}


def ms(v):
    return "—" if v is None else f"{v * 1000:.1f} ms"


# A request that touches no database and computes nothing: what any answer costs at least on this
# machine at that moment (the HTTP client, the server's loop, waiting for a core under load).
FLOOR = "the floor: /healthz (no database)"


def read_sets(communes: list[str], provinces: list[str]) -> dict[str, list[str]]:
    """The read rows of `make bench`: name -> the paths its pollers ask for; the last, FLOOR."""
    rng = random.Random(3)
    return {
        "commune KPI (30d)": [f"/api/v1/units/{c}/kpis?window=30d" for c in rng.sample(communes, 500)],
        "province KPI (30d)": [f"/api/v1/units/{p}/kpis?window=30d" for p in provinces],
        "national KPI (30d)": ["/api/v1/units/VN/kpis?window=30d"],
        "ranking 3,321 communes": ["/api/v1/rankings?level=commune&window=30d&limit=5000"],
        "52-week series (province)": [f"/api/v1/units/{p}/series?kpi=on_time_rate&interval=week" for p in provinces],
        FLOOR: ["/healthz"],
    }


def paced_reads(ctx, bases: list[str], sets: dict, label: str, modes, pollers: int | None = None) -> dict:
    """Each read set in turn for --read-seconds: --pollers pollers in --generators processes
    (bench.load.poll_proc), every request to one of `bases` at random. `ctx` has args, spawn,
    collect and log (bench.run.Run, or Standalone below)."""
    a = ctx.args
    per = max(1, (pollers or a.pollers) // a.generators)
    out: dict[str, dict] = {}
    for mode, interval in modes:
        out[mode] = {}
        for name, paths in sets.items():
            urls = [b + p for p in paths for b in bases]
            q = mp.Queue()
            t0 = time.time()
            ps = [ctx.spawn(poll_proc, q, "", urls, per, a.read_seconds, interval, i) for i in range(a.generators)]
            got = ctx.collect(q, ps)
            wall = time.time() - t0  # the window plus the drain of requests in flight at its end
            lat = [x for _, _, r in got for x in r["lat"]]
            srv = [x for _, _, r in got for x in r.get("srv", ())]  # the service's own time (Server-Timing)
            errors = sum(r["errors"] for _, _, r in got)
            r = out[mode][name] = {"n": len(lat), "errors": errors, "rps": len(lat) / wall, "p50": pct(lat, 50), "p99": pct(lat, 99)}
            r["service_p50"], r["service_p99"] = pct(srv, 50), pct(srv, 99)
            ctx.log(
                f"reads {label} {mode} {name}: p50 {ms(r['p50'])} p99 {ms(r['p99'])} ({r['rps']:.0f}/s, {errors} errors); "
                f"in the service p50 {ms(r['service_p50'])} p99 {ms(r['service_p99'])}"
            )
    return out


class CpuMeter(threading.Thread):
    """CPU seconds, sampled every 0.5 s, of named process groups: the service's processes by role and
    the PostgreSQL backends of one database (found in pg_stat_activity)."""

    def __init__(self, dsn: str, roles):
        super().__init__(daemon=True)
        self.dsn, self.roles = dsn, roles  # roles(): pid -> role, read at every sample
        self.used: dict[int, tuple[str, float, float]] = {}  # pid -> (role, at the window's start, last seen)
        self.lock, self.halt = threading.Lock(), threading.Event()
        self.backends: dict[int, str] = {}

    def sample(self, fresh: bool = False) -> None:
        try:
            self.backends = asyncio.run(backends(self.dsn))
        except Exception:  # noqa: BLE001 - keep the last list
            pass
        for pid, role in {**self.roles(), **self.backends}.items():
            try:
                t = psutil.Process(pid).cpu_times()
            except psutil.Error:
                continue
            with self.lock:
                known = self.used.get(pid)
                # a process first seen inside the window used all its CPU in it
                start = (t.user + t.system) if (known is None and fresh) else (known[1] if known else 0.0)
                self.used[pid] = (role, start, t.user + t.system)

    def window(self) -> dict[str, float]:
        """CPU seconds by role since the last call; starts a new window."""
        self.sample()
        with self.lock:
            got: dict[str, float] = {}
            for role, first, last in self.used.values():
                got[role] = got.get(role, 0.0) + last - first
            self.used = {pid: (r, last, last) for pid, (r, _, last) in self.used.items()}
        return got

    def run(self):
        while not self.halt.wait(0.5):
            self.sample()

    def start_window(self) -> None:
        self.sample(fresh=True)
        self.window()


async def leader_port(dsn: str) -> int | None:
    """The client port of the connection holding the answer refresher's advisory lock."""
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval(
            "SELECT a.client_port FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory' "
            "AND l.granted AND l.classid = $1 AND l.objid = $2 AND l.objsubid = 1",
            (REFRESHER_LOCK >> 32) & 0xFFFFFFFF,
            REFRESHER_LOCK & 0xFFFFFFFF,
        )
    finally:
        await conn.close()


def service_roles(root_pids: list[int], dsn: str):
    """pid -> role of every process of the servers: 'refresher (leader)' for the exporter process
    holding the refresher's lock, 'exporter (not leading)', 'web workers'."""
    cache: dict = {"port": None, "at": 0.0}

    def roles() -> dict[int, str]:
        if time.time() - cache["at"] > 5:
            try:
                cache["port"] = asyncio.run(leader_port(dsn))
            except Exception:  # noqa: BLE001
                pass
            cache["at"] = time.time()
        out = {}
        for root in root_pids:
            try:
                family = [psutil.Process(root), *psutil.Process(root).children(recursive=True)]
            except psutil.Error:
                continue
            for p in family:
                try:
                    if "export run" not in " ".join(p.cmdline()):
                        out[p.pid] = "web workers (and masters)"
                        continue
                    ports = {c.laddr.port for c in p.net_connections("tcp")}
                except psutil.Error:
                    continue
                out[p.pid] = "refresher (leader's exporter process)" if cache["port"] in ports else "exporter (not leading)"
        return out

    return roles


def computed(bases: list[str], kinds: bool = False) -> dict[str, float]:
    """Answers computed so far, by whom (request, behind, refresher; with `kinds`, by kind and whom), over
    the servers (their /metrics)."""
    from types import SimpleNamespace

    from bench.shared_answers import computations

    try:
        return computations([SimpleNamespace(base=b) for b in bases], kinds)
    except Exception:  # noqa: BLE001 - a figure less, not a failed phase
        return {}


def _rate(before: dict, after: dict, wall: float) -> dict[str, float]:
    return {by: (after[by] - before.get(by, 0.0)) / wall for by in sorted(after)}


def phase(ctx, bases: list[str], root_pids: list[int], tag: str = "r2") -> dict:
    """The two-replica phase on running servers: reads at rest, reads and freshness while posting,
    CPU by role, PostgreSQL's CPU at --pollers and --many pollers. `ctx` has args (pollers,
    generators, read_seconds, poll_interval, post_rate, many), spawn, collect, log, token, communes,
    parents, provinces, dsn."""
    a = ctx.args
    sets = read_sets(ctx.communes, ctx.provinces)
    meter = CpuMeter(ctx.dsn, service_roles(root_pids, ctx.dsn))
    meter.start()
    res: dict = {"replicas": len(bases), "pollers": a.pollers}
    try:
        for paths in sets.values():  # every answer asked once: the first computations are not the rows' p99
            paced_reads_warm(ctx, bases, paths)
        res["rest"] = paced_reads(ctx, bases, sets, f"{len(bases)} replicas", (("paced", a.poll_interval),))["paced"]
        # while posting: open-loop batches of 100 from all communes, half to each replica; probes beside
        size = 100
        duration = a.read_seconds * len(sets) + 15
        pace = a.post_rate / size / 2
        n_batches = int(a.post_rate / size * duration * 1.2) + 10
        q, pq, stop = mp.Queue(), mp.Queue(), mp.Event()
        now, deadline = datetime.now(UTC), time.time() + duration
        feed = (0, n_batches, 16, tag, deadline)  # batches b0..b1, requests in flight, event ids' tag, end
        nice = getattr(a, "feed_nice", 0)  # standalone --feed-nice: the feed as if from other machines
        gens = [
            ctx.spawn(ingest_proc, q, bases[g % len(bases)], ctx.token, ctx.communes, g, 2, *feed, 11 + g, 1.0, now, size, pace, nice)
            for g in range(2)
        ]
        time.sleep(3)  # the load settles
        probe = ctx.spawn(probe_proc, pq, stop, bases, ctx.token, ctx.communes, tag, 0.05, ctx.parents, 8)
        meter.start_window()
        t0, made, kinds = time.time(), computed(bases), computed(bases, kinds=True)
        res["posting"] = paced_reads(ctx, bases, sets, f"{len(bases)} replicas while posting", (("paced", a.poll_interval),))["paced"]
        cpu, wall = meter.window(), time.time() - t0
        res["computed_posting"] = _rate(made, computed(bases), wall)
        res["computed_posting_kinds"] = _rate(kinds, computed(bases, kinds=True), wall)
        stop.set()
        fresh = ctx.collect(pq, [probe], timeout=120)[0][2]
        got = ctx.collect(q, gens)
        recs = [r for _, _, rs in got for r in rs]
        ok = [r for r in recs if r[8] == 202]
        span = max(r[1] for r in recs) - min(r[0] for r in recs) if recs else 1.0
        res["posted_per_s"] = sum(r[3] for r in ok) / max(1e-9, span)
        res["failed_batches"] = len(recs) - len(ok)
        f = fresh["fresh"]
        res["fresh"] = {"n": len(f), "failures": fresh["failures"], "p50": pct(f, 50), "p99": pct(f, 99), "max": max(f, default=None)}
        res["cpu_posting"] = {k: v / wall for k, v in sorted(cpu.items())}
        ctx.log(f"posting {res['posted_per_s']:.0f} events/s; freshness {res['fresh']}; CPU cores {res['cpu_posting']}")
        # PostgreSQL's CPU at rest, serving few and many pollers of distinct communes' answers
        communes = {"commune KPI (30d)": sets["commune KPI (30d)"]}
        res["pg_by_pollers"] = {}
        for n in (0, a.pollers, a.many):  # 0: what runs anyway (the refresher's ticks, the followers, the exporter)
            # a window unmeasured first: each worker's first poll of an answer is a lookup and a body
            # read (its copy), and the work the feed left behind settles; then the steady state
            if n:
                paced_reads(ctx, bases, communes, f"{n} pollers at rest, warming", (("paced", a.poll_interval),), pollers=n)
            else:
                time.sleep(a.read_seconds)
            meter.start_window()
            t0, made = time.time(), computed(bases)
            if n:
                r = paced_reads(ctx, bases, communes, f"{n} pollers at rest", (("paced", a.poll_interval),), pollers=n)["paced"]
            else:
                time.sleep(a.read_seconds)
                r = {"commune KPI (30d)": {"n": 0, "errors": 0, "rps": 0.0, "p50": None, "p99": None}}
            cpu, wall = meter.window(), time.time() - t0
            res["pg_by_pollers"][n] = r["commune KPI (30d)"] | {"cores": {k: v / wall for k, v in sorted(cpu.items())}}
            res["pg_by_pollers"][n]["computed"] = _rate(made, computed(bases), wall)
            ctx.log(f"{n} pollers: {res['pg_by_pollers'][n]}")
    finally:
        meter.halt.set()
    return res


def paced_reads_warm(ctx, bases: list[str], paths: list[str]) -> list[float]:
    """Ask every answer once, on one replica or the other (8 requests at a time): the seconds each
    first ask took."""

    async def go() -> list[float]:
        import httpx

        sem = asyncio.Semaphore(8)
        took: list[float] = []
        async with httpx.AsyncClient(timeout=120) as cl:

            async def one(i: int, path: str) -> None:
                async with sem:
                    t0 = time.perf_counter()
                    await cl.get(bases[i % len(bases)] + path)
                    took.append(time.perf_counter() - t0)

            await asyncio.gather(*(one(i, p) for i, p in enumerate(paths)))
        return took

    return asyncio.run(go())


def rows(res: dict, row) -> None:
    """The phase's rows of the bench table: row(name, value, target, ok)."""
    n = res["replicas"]
    for name, r in res["rest"].items():
        w, lim = res["posting"][name], LIMITS.get(name)
        row(
            f"{n} replicas: {name} p50 / p99 at rest; while posting",
            f"{ms(r['p50'])} / {ms(r['p99'])}; {ms(w['p50'])} / {ms(w['p99'])}"
            f" (in the service {ms(w.get('service_p50'))} / {ms(w.get('service_p99'))})",
            f"p99 <= {lim * 1000:.0f} ms" if lim else "",
            None if lim is None else max(r["p99"] or 9, w["p99"] or 9) <= lim,
        )
    f = res["fresh"]
    row(
        f"{n} replicas: province answer fresh after a post, p50 / p99 / max",
        f"{ms(f['p50'])} / {ms(f['p99'])} / {ms(f['max'])}",
        f"p99 <= 1000 ms ({f['n']} probes, >= 100; {f['failures']} failed)",
        f["p99"] is not None and f["p99"] <= 1.0 and f["n"] >= 100,
    )
    row(f"{n} replicas: posted while reading", f"{res['posted_per_s']:,.0f} events/s", f"failed batches {res['failed_batches']}")
    for role, cores in res["cpu_posting"].items():
        row(f"  CPU while posting: {role}", f"{cores:.2f} cores")
    made = ", ".join(f"{v:.1f}/s by {by}" for by, v in res.get("computed_posting", {}).items())
    row("  answers computed while posting", made or "—")
    kinds = ", ".join(f"{k} {v:.1f}/s" for k, v in res.get("computed_posting_kinds", {}).items() if v >= 0.05)
    row("  same, by kind", kinds or "—")
    by = res["pg_by_pollers"]
    counts = sorted(by, key=int)
    few, many = by[counts[-2]], by[counts[-1]]
    pg = "PostgreSQL (this database)"
    a, b = few["cores"].get(pg, 0.0), many["cores"].get(pg, 0.0)
    row(
        f"{n} replicas: PostgreSQL CPU at rest, {' / '.join(str(k) for k in counts)} pollers of communes",
        " / ".join(f"{by[k]['cores'].get(pg, 0.0):.3f}" for k in counts) + " cores",
        "no higher with more pollers",
        b <= a + 0.02,
    )
    row("  same: answers/s", " / ".join(f"{by[k]['rps']:.0f}" for k in counts))
    row("  same: commune p50 / p99", f"{ms(few['p50'])} / {ms(few['p99'])}; {ms(many['p50'])} / {ms(many['p99'])}")
    made = " / ".join(", ".join(f"{v:.1f}/s by {b}" for b, v in by[k].get("computed", {}).items()) or "—" for k in counts)
    row("  same: answers computed", made)
    row("  same: the service's CPU", " / ".join(f"{sum(v for r, v in by[k]['cores'].items() if r != pg):.2f}" for k in counts) + " cores")


# --- standalone -----------------------------------------------------------------------------------


class Standalone(Children):
    """What `phase` needs, for a run of its own."""

    def __init__(self, args, dsn: str, token: str):
        from app.units.seed import package_units

        units = package_units()
        self.args, self.dsn, self.token = args, dsn, token
        self.communes = [u.code for u in units if u.level == "commune"]
        self.provinces = [u.code for u in units if u.level == "province"]
        self.parents = {u.code: u.parent_code for u in units}
        self.children: list[mp.Process] = []

    def log(self, msg):
        print(f"[replicas {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


async def _admin(pg: str, sql: str) -> None:
    conn = await asyncpg.connect(pg.rstrip("/") + "/postgres")
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def main(argv=None) -> None:
    from bench.shared_answers import Server, load

    ap = argparse.ArgumentParser(prog="python -m bench.replicas", description=__doc__.split("\n\n")[0])
    ap.add_argument("--pg", default=os.environ.get("CHISO_BENCH_PG", "postgresql://postgres@127.0.0.1:5432"))
    ap.add_argument("--events", type=int, default=200_000, help="events loaded first (through the API)")
    ap.add_argument("--days", type=int, default=60, help="days the loaded events cover")
    ap.add_argument("--seconds", type=float, default=20.0, help="seconds per read row (--read-seconds of make bench)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--pollers", type=int, default=50)
    ap.add_argument("--many", type=int, default=500, help="pollers of the second PostgreSQL CPU measure")
    ap.add_argument("--generators", type=int, default=2)
    ap.add_argument("--poll-interval", type=float, default=1.0)
    ap.add_argument("--post-rate", type=float, default=2000.0)
    ap.add_argument("--pool", type=int, default=5, help="DB_POOL_SIZE of each process (a shared server has 100 connections)")
    ap.add_argument("--feed-nice", type=int, default=0, help="the feed's generators at this nice: as if they posted from other machines")
    ap.add_argument("--keep-db", action="store_true")
    a = ap.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # the finally below stops the servers
    a.read_seconds = a.seconds
    tmp = Path(tempfile.mkdtemp(prefix="chiso-replicas-"))
    name = f"chiso_bench_rep_{uuid.uuid4().hex[:8]}"
    dsn = a.pg.rstrip("/") + "/" + name
    url = dsn.replace("postgresql://", "postgresql+asyncpg://", 1)
    env = {**os.environ, "DATABASE_URL": url, "PUBLIC_READ": "true", "INGEST_RATE_PER_MINUTE": "0", "SEED_REGISTRY": "true"}
    env["DB_POOL_SIZE"] = str(a.pool)
    asyncio.run(_admin(a.pg, f'CREATE DATABASE "{name}"'))
    servers, ctx = [], None
    try:
        servers.append(Server(env, a.workers, tmp))
        keys_env = {k: v for k, v in env.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
        cmd = [sys.executable, "-m", "app.cli", "keys", "create", "--scope", "ingest", "--unit", "VN", "--name", "bench"]
        token = subprocess.run(cmd, env=keys_env, cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
        ctx = Standalone(a, dsn, token)
        took = asyncio.run(load(servers[0].base, token, ctx.communes, a.events, a.days))
        ctx.log(f"loaded {a.events:,} events in {took:.0f} s into {name}")
        servers.append(Server(env, a.workers, tmp))
        res = phase(ctx, [s.base for s in servers], [s.proc.pid for s in servers])
        out: list[tuple] = []

        def row(name, value, target="", ok=None):
            out.append((name, value, target, ok))

        rows(res, row)
        width = max(len(r[0]) for r in out)
        print(f"\n{a.events:,} events, {len(servers)} x chiso serve --workers {a.workers}, {a.pollers} pollers, {a.seconds:g} s a row")
        for name_, value, target, ok in out:
            mark = "" if ok is None else ("PASS" if ok else "FAIL")
            print(f"{name_:<{width}}  {value:<44} {target:<40} {mark}")
    finally:
        if ctx is not None:
            for p in ctx.children:
                if p.is_alive():
                    p.terminate()
        for s in servers:
            s.stop()
        if not a.keep_db:
            asyncio.run(_admin(a.pg, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        else:
            print(f"kept {dsn}", file=sys.stderr)


if __name__ == "__main__":
    main()
