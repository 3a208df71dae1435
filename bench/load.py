"""Load generator processes: ingest clients, KPI pollers and the freshness probe.

Each runs its own asyncio loop with httpx in a separate process so the client is not the bottleneck;
results go back to the orchestrator through a multiprocessing queue."""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import os
import random
import time
from datetime import datetime

import httpx
import orjson

from bench.gen import make_batch, probe_event, window

JSON = {"content-type": "application/json"}


class Children:
    """A bench's child processes (load generators, pollers, probes): started, collected, and the
    ones still running stopped by the owner at its end (`self.children`)."""

    children: list

    def spawn(self, target, *a) -> mp.Process:
        p = mp.Process(target=target, args=a, daemon=True)
        p.start()
        self.children.append(p)
        return p

    def collect(self, q, procs, timeout=None):
        """One result per process from the queue, then the processes joined."""
        got = [q.get(timeout=timeout) for _ in procs]
        for p in procs:
            p.join(10)
            self.children.remove(p)
        return got


def pct(values, q):
    """The q-th percentile of the bench's tables (nearest rank); None of nothing."""
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, max(0, int(round(q / 100 * len(s) + 0.5)) - 1))]


def ingest_proc(
    out,
    base: str,
    token: str,
    communes: list[str],
    g: int,
    n_gen: int,
    b_start: int,
    b_end: int,
    clients: int,
    tag: str,
    deadline: float,
    seed: int,
    span: float,
    now: datetime,
    size: int = 1000,
    pace: float = 0.0,
    nice: int = 0,
) -> None:
    """Post batches b_start..b_end-1 whose commune (b mod len(communes)) belongs to generator g; the
    run's batches tile the `span` days before `now` (bench.gen.window). `size` events a batch; with
    `pace` > 0, open loop: batch k of this generator is sent at start + k / pace, whatever the answers.
    `nice` > 0: the generator yields the cores to the service (as if it posted from another machine)."""
    if nice:
        os.nice(nice)
    try:
        out.put(
            (
                "ingest",
                g,
                asyncio.run(_ingest(base, token, communes, g, n_gen, b_start, b_end, clients, tag, deadline, seed, span, now, size, pace)),
            )
        )
    except KeyboardInterrupt:
        pass


async def _ingest(base, token, communes, g, n_gen, b_start, b_end, clients, tag, deadline, seed, span, now, size=1000, pace=0.0):
    rng = random.Random(seed)
    started, sent_k = time.monotonic(), [0]
    nc = len(communes)
    plan = iter([b for b in range(b_start, b_end) if (b % nc) % n_gen == g])
    previous: dict[str, list[dict]] = {}
    records = []
    headers = {**JSON, "authorization": f"Bearer {token}"}
    # No keep-alive: each batch comes from its own source connection, as from thousands of communes, so
    # the kernel spreads batches over the workers (a few long-lived connections pin them to one).
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=300, headers=headers) as cl:

        async def client():
            for b in plan:
                if time.time() >= deadline:
                    return
                if pace > 0:  # open loop: this batch's slot on the schedule
                    k, sent_k[0] = sent_k[0], sent_k[0] + 1
                    await asyncio.sleep(max(0.0, started + k / pace - time.monotonic()))
                    if time.time() >= deadline:
                        return
                commune = communes[b % nc]
                within = window(b - b_start, b_end - b_start, nc, span, now)
                events = make_batch(rng, commune, f"{tag}{b}", within, size=size, previous=previous.get(commune))
                previous[commune] = events[:40]
                body = orjson.dumps({"events": events})
                t_wall, t0, retries, status, res = time.time(), time.perf_counter(), 0, 0, {}
                while True:
                    try:
                        r = await cl.post("/api/v1/events", content=body)
                        status = r.status_code
                    except httpx.TransportError:
                        status = -1
                    if status == 202:
                        res = r.json()
                        break
                    retries += 1
                    if retries > 30:
                        break
                    if status in (429, 503):
                        await asyncio.sleep(min(float(r.headers.get("retry-after", "1")), 5.0))
                    else:
                        await asyncio.sleep(0.5)
                lat = time.perf_counter() - t0
                records.append(
                    (
                        t_wall,
                        t_wall + lat,
                        lat,
                        len(events),
                        res.get("accepted", 0),
                        res.get("duplicates", 0),
                        res.get("rejected", 0),
                        retries,
                        status,
                    )
                )

        await asyncio.gather(*(client() for _ in range(clients)))
    return records


def poll_proc(out, base: str, urls: list[str], clients: int, duration: float, interval: float, seed: int) -> None:
    """`clients` pollers, each requesting a random URL of `urls` for `duration` s: one request about
    every `interval` s (a dashboard polling), or back to back when `interval` is 0 (saturation)."""
    try:
        out.put(("poll", seed, asyncio.run(_poll(base, urls, clients, duration, interval, seed))))
    except KeyboardInterrupt:
        pass


async def _poll(base, urls, clients, duration, interval, seed):
    """Paced pollers: the time from each request to the last byte of its answer. A gzipped answer
    is not inflated: a dashboard's browser does that natively, and here httpx doing it in Python
    for the 3.3 MB ranking of every commune cost 5-6 ms of CPU a request (1.2-1.3 read raw), 0.3 of
    the two cores that the service shares with the generators at 50 polls a second."""
    rng = random.Random(seed)
    lat, srv, errors = [], [], 0  # srv: the service's own time (Server-Timing app;dur), seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=120) as cl:
        end = time.perf_counter() + duration

        async def poller():
            nonlocal errors
            await asyncio.sleep(rng.uniform(0, interval))  # pollers out of step, as real dashboards are
            while time.perf_counter() < end:
                url = urls[rng.randrange(len(urls))]
                t0 = time.perf_counter()
                try:  # to the body's last byte as sent (gzipped when large), not inflated here: see _poll
                    async with cl.stream("GET", url) as r:
                        async for _ in r.aiter_raw():
                            pass
                    ok = r.status_code == 200
                except httpx.TransportError:
                    ok = False
                took = time.perf_counter() - t0
                if ok:
                    lat.append(took)
                    timing = r.headers.get("server-timing", "")
                    if timing.startswith("app;dur="):
                        srv.append(float(timing[8:]) / 1000)
                else:
                    errors += 1
                if interval:
                    await asyncio.sleep(max(0.0, rng.uniform(0.5, 1.5) * interval - took))

        await asyncio.gather(*(poller() for _ in range(clients)))
    return {"lat": lat, "srv": srv, "errors": errors}


def probe_proc(
    out, stop, base, token: str, communes: list[str], run: str, interval: float, parents: dict | None = None, probers: int = 1
) -> None:
    """KPI freshness: post one event, then read the unit's KPIs until it shows; time from the 202.
    `base` may be a list of replicas: the event goes to one, the reads to the next. With `parents`,
    the answer read is the commune's province's (`window=30d`, the probe's sector), as polled.
    `probers` probes at once."""
    try:
        bases = [base] if isinstance(base, str) else list(base)
        out.put(("probe", 0, asyncio.run(_probe(stop, bases, token, communes, run, interval, parents, probers))))
    except KeyboardInterrupt:
        pass


async def _probe(stop, bases, token, communes, run, interval, parents=None, probers=1):
    samples, failures, acks = [], 0, []
    rng = random.Random(7)
    counter = iter(range(10**9))
    busy: set[str] = set()  # the answers a prober is timing
    async with httpx.AsyncClient(timeout=60) as cl:

        async def prober():
            nonlocal failures
            while not stop.is_set():
                n = next(counter)
                commune = communes[rng.randrange(len(communes))]
                scope = commune if parents is None else parents[commune]
                if scope in busy:  # another prober's event would show in this answer too
                    await asyncio.sleep(0)
                    continue
                busy.add(scope)
                writer, reader = bases[n % len(bases)], bases[(n + 1) % len(bases)]
                if parents is None:
                    url = f"{reader}/api/v1/units/{commune}/kpis?window=1d&sector=bench-probe"
                else:
                    url = f"{reader}/api/v1/units/{parents[commune]}/kpis?window=30d&sector=bench-probe"
                try:
                    before = (await cl.get(url)).json()["kpis"]["received"]
                    t0 = time.perf_counter()
                    r = await cl.post(
                        writer + "/api/v1/events",
                        content=orjson.dumps({"events": [probe_event(commune, n, run)]}),
                        headers={**JSON, "authorization": f"Bearer {token}"},
                    )
                    t_ack = time.perf_counter()
                    if r.status_code != 202 or r.json()["accepted"] != 1:
                        failures += 1
                        continue
                    acks.append(t_ack - t0)
                    while True:
                        seen = (await cl.get(url)).json()["kpis"]["received"]
                        if seen > before:
                            samples.append(time.perf_counter() - t_ack)
                            break
                        if time.perf_counter() - t_ack > 30:
                            failures += 1
                            break
                        if parents is not None:
                            await asyncio.sleep(0.01)
                except (httpx.HTTPError, KeyError, ValueError):
                    failures += 1
                finally:
                    busy.discard(scope)
                await asyncio.sleep(interval)

        await asyncio.gather(*(prober() for _ in range(probers)))
    return {"fresh": samples, "failures": failures, "acks": acks}
