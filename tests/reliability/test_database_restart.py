"""PostgreSQL stopped mid-load (`pg_ctl stop -m fast` of a private cluster) and started again, then
made read-only: while the database is away the service answers 503 with Retry-After and never 500,
no request takes longer than BOUND seconds, /readyz says not ready and then ready, the service
recovers by itself (no restart), and the event log holds exactly the acknowledged events, once."""

from __future__ import annotations

import asyncio
import threading
import time

import httpx
import pytest

from tests.helpers.server import Server, cli
from tests.reliability.harness import Tally, make_key, post_until_acked, query, received_events, report, scale, stored_events
from tests.reliability.pgcluster import PrivateCluster, pg_bin

BOUND = 10.0  # seconds: no request may take longer while the database is down (DB_CONNECT_TIMEOUT 3 s, DB_POOL_TIMEOUT 5 s)
UNITS = ["19777", "19900", "26506", "00070"]


@pytest.fixture(scope="module")
def private_cluster():
    if pg_bin() is None:
        pytest.skip("no PostgreSQL server binaries to run a private cluster")
    c = PrivateCluster().init()
    try:
        c.start()
        yield c
    finally:
        c.destroy()


@pytest.fixture
def cluster(private_cluster, request):
    """The private cluster, running, with a fresh database `chiso_<test>` (cluster.db)."""
    c = private_cluster
    if not (c.data / "postmaster.pid").exists():
        c.start()
    c.db = f"chiso_{request.node.name.removeprefix('test_')}"
    c.psql(f"CREATE DATABASE {c.db}")
    return c


def wait_ready(url: str, want: int, timeout: float) -> float:
    """Seconds until /readyz answers `want`."""
    t0 = time.monotonic()
    while True:
        try:
            if httpx.get(f"{url}/readyz", timeout=BOUND).status_code == want:
                return time.monotonic() - t0
        except httpx.HTTPError:
            pass
        assert time.monotonic() - t0 < timeout, f"/readyz never answered {want}"
        time.sleep(0.2)


def test_database_stopped_and_started(cluster, tmp_path, watch):
    url = cluster.url(cluster.db)
    env = {
        "DATABASE_URL": url,
        "INGEST_RATE_PER_MINUTE": "0",
        "DB_CONNECT_TIMEOUT": "3",
        "DB_POOL_TIMEOUT": "5",
        "RETRY_AFTER_SECONDS": "1",
        "EXPORT_INTERVAL": "1",
    }
    outages = scale(1, 3)
    down_for = scale(3.0, 20.0)
    server = Server(env, workers=2, log=watch.log("serve.log")).start()  # migrates and seeds the private database
    _, ingest = asyncio.run(make_key(url, "ingest", "VN"))
    _, read = asyncio.run(make_key(url, "read"))
    watch.add(ingest, read)
    tally, reads, stop = Tally(), Tally(), threading.Event()
    events = received_events(UNITS, 6000, "dbr")

    def client(i: int) -> None:
        mine = events[i::3]
        with httpx.Client(timeout=60) as c:
            for j in range(0, len(mine), 20):
                post_until_acked(c, server.url, ingest, mine[j : j + 20], tally, pause=0.1)
                if stop.is_set():
                    return

    def reader() -> None:
        with httpx.Client(timeout=60, headers={"Authorization": f"Bearer {read}"}) as c:
            while not stop.is_set():
                for path, params in (("/api/v1/units/VN/kpis", {"window": "1d"}), ("/api/v1/units/19777", {}), ("/readyz", {})):
                    t0 = time.monotonic()
                    try:
                        r = c.get(server.url + path, params=params)
                        reads.note(r.status_code, time.monotonic() - t0, r)
                    except httpx.HTTPError as exc:
                        reads.note(type(exc).__name__, time.monotonic() - t0)
                time.sleep(0.05)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(3)] + [threading.Thread(target=reader)]
    not_ready, recovered = [], []
    try:
        for t in threads:
            t.start()
        for _ in range(outages):
            time.sleep(2.0)
            cluster.stop("fast")  # mid-load: batches in flight lose their connections
            not_ready.append(wait_ready(server.url, 503, 30))
            time.sleep(down_for)
            cluster.start()
            recovered.append(wait_ready(server.url, 200, 60))  # by itself: the server is never restarted
        time.sleep(1.0)
        stop.set()
        for t in threads:
            t.join(timeout=120)
            assert not t.is_alive()
        assert server.proc.poll() is None, "the server died with its database"
        stored = stored_events(url)
        lost, phantom = tally.acked - set(stored), set(stored) - tally.acked
        doubled = [k for k, n in stored.items() if n != 1]
    finally:
        stop.set()
        server.kill()
    verify = cli(env, "kpis", "verify")
    server_errors = tally.server_errors + reads.server_errors
    report(
        f"PostgreSQL stopped (-m fast) {outages} x {down_for:g} s and started, 3 posting clients + a reader",
        "postgres",
        len(tally.acked),
        sum(stored.values()),
        len(lost) + len(phantom) + len(doubled),
        server_errors,
        max(tally.longest, reads.longest),
        note=f"posts {dict(tally.statuses)}; reads {dict(reads.statuses)}; ready again after {[round(x, 1) for x in recovered]} s",
    )
    assert not lost and not phantom and not doubled, (len(lost), len(phantom), len(doubled))
    assert server_errors == 0, (tally.bad + reads.bad)[:3]
    assert tally.statuses[503] + reads.statuses[503] > 0, "the outage was never seen"
    assert tally.no_retry_after == 0 and reads.no_retry_after == 0, "a 503 without Retry-After"
    assert max(tally.longest, reads.longest) < BOUND
    assert "live state matches the events" in verify, verify


def test_database_read_only(cluster, tmp_path, watch):
    """The database turned read-only under the running service (default_transaction_read_only, reloaded):
    posts are answered 503 with Retry-After, never 500, nothing is stored; reads go on; back to
    read-write, the same batch is accepted, once."""
    url = cluster.url(cluster.db)
    env = {"DATABASE_URL": url, "INGEST_RATE_PER_MINUTE": "0", "RETRY_AFTER_SECONDS": "1", "EXPORT_INTERVAL": "1"}
    server = Server(env, workers=2, log=watch.log("serve.log")).start()
    _, ingest = asyncio.run(make_key(url, "ingest", "VN"))
    _, read = asyncio.run(make_key(url, "read"))
    watch.add(ingest, read)
    tally = Tally()
    batch = received_events(UNITS, 50, "ro")
    try:
        cluster.psql("ALTER SYSTEM SET default_transaction_read_only = on")
        cluster.psql("SELECT pg_reload_conf()")
        time.sleep(1.0)
        with httpx.Client(timeout=60) as c:
            for _ in range(10):
                t0 = time.monotonic()
                r = c.post(f"{server.url}/api/v1/events", json={"events": batch}, headers={"Authorization": f"Bearer {ingest}"})
                tally.note(r.status_code, time.monotonic() - t0, r)
                assert r.status_code == 503 and r.headers.get("retry-after"), (r.status_code, r.text[:300])
                assert r.headers["content-type"].startswith("application/problem+json")
            k = c.get(f"{server.url}/api/v1/units/VN/kpis", params={"window": "1d"}, headers={"Authorization": f"Bearer {read}"})
            assert k.status_code == 200, k.text  # reads go on
            assert stored_events(url) == {}, "a refused post stored something"
            cluster.psql("ALTER SYSTEM RESET default_transaction_read_only")
            cluster.psql("SELECT pg_reload_conf()")
            time.sleep(1.0)
            body = post_until_acked(c, server.url, ingest, batch, tally)
        stored = stored_events(url)
    finally:
        server.kill()
    report(
        "PostgreSQL read-only (default_transaction_read_only on, reloaded) under a running service",
        "postgres",
        len(tally.acked),
        sum(stored.values()),
        len(tally.acked ^ set(stored)),
        tally.server_errors,
        tally.longest,
        note=f"answers {dict(tally.statuses)}",
    )
    assert body["accepted"] == len(batch) and set(stored) == tally.acked and set(stored.values()) == {1}


def test_backends_killed_under_load(store, db_url, watch):
    """Every backend of the test's own database (on the shared server, filtered by datname: nobody
    else's) terminated again and again under load: in-flight batches lose their connection, maybe
    mid-COMMIT. Answers are 202 or 503 with Retry-After, and the log holds the acknowledged events once."""
    if store != "postgres":
        pytest.skip("PostgreSQL backends")
    dbname = db_url.rsplit("/", 1)[1]
    env = {"DATABASE_URL": db_url, "INGEST_RATE_PER_MINUTE": "0", "RETRY_AFTER_SECONDS": "1", "EXPORT_INTERVAL": "1"}
    kills = scale(6, 30)
    server = Server(env, workers=2, log=watch.log("serve.log")).start()
    _, ingest = asyncio.run(make_key(db_url, "ingest", "VN"))
    watch.add(ingest)
    tally, stop = Tally(), threading.Event()
    events = received_events(UNITS, 6000, "kb")

    def client(i: int) -> None:
        mine = events[i::3]
        with httpx.Client(timeout=60) as c:
            for j in range(0, len(mine), 20):
                post_until_acked(c, server.url, ingest, mine[j : j + 20], tally, pause=0.05)
                if stop.is_set():
                    return

    threads = [threading.Thread(target=client, args=(i,)) for i in range(3)]
    terminated = 0
    try:
        for t in threads:
            t.start()
        for _ in range(kills):
            time.sleep(0.7)
            rows = query(
                db_url.replace(f"/{dbname}", "/postgres"),
                f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{dbname}' AND pid <> pg_backend_pid()",
            )
            terminated += len(rows)
        stop.set()
        for t in threads:
            t.join(timeout=120)
            assert not t.is_alive()
        stored = stored_events(db_url)
    finally:
        stop.set()
        server.kill()
    lost, phantom = tally.acked - set(stored), set(stored) - tally.acked
    verify = cli(env, "kpis", "verify")
    report(
        f"every backend of the test database terminated {kills} x under load (pg_terminate_backend by datname)",
        "postgres",
        len(tally.acked),
        sum(stored.values()),
        len(lost) + len(phantom),
        tally.server_errors,
        tally.longest,
        note=f"{terminated} backends terminated; answers {dict(tally.statuses)}",
    )
    assert not lost and not phantom and tally.server_errors == 0 and tally.no_retry_after == 0, (len(lost), len(phantom), tally.bad[:3])
    assert tally.longest < BOUND and terminated > 0
    assert "live state matches the events" in verify, verify
