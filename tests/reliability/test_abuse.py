"""Abuse, against real `chiso serve` processes: bodies that never end (chunked, no Content-Length)
or trickle in a byte a second (slowloris) are cut off with a 408 and the connection closed after
BODY_READ_TIMEOUT (3 s here; bound asserted: 10 s) while one worker keeps serving real clients;
2,000 idle connections do not keep a real client from being served; the per-key rate limit
answers 429 with Retry-After and counts per worker (README); query parameters asking for
unbounded work are refused or capped."""

from __future__ import annotations

import asyncio
import re
import socket
import threading
import time

import httpx

from tests.helpers.server import Server
from tests.reliability.harness import Tally, make_key, received_events, report, scale, stored_events

BODY_TIMEOUT = 3.0
BOUND = 10.0  # seconds: a hung body is cut off, and a real client is served, within this


def open_post(port: int, token: str, headers: str) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=BOUND * 3)
    s.sendall(
        (
            f"POST /api/v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: application/json\r\n{headers}\r\n"
        ).encode()
    )
    return s


def trickle(s: socket.socket, chunked: bool, result: dict, every: float) -> None:
    """Send a body a byte at a time until the server answers or closes; record when and what."""
    t0 = time.monotonic()
    got = b""
    s.setblocking(False)
    try:
        while time.monotonic() - t0 < BOUND * 3:
            try:
                s.sendall(b"1\r\n{\r\n" if chunked else b"{")
            except (BlockingIOError, BrokenPipeError, ConnectionResetError):
                pass
            time.sleep(every)
            try:
                data = s.recv(65536)
            except BlockingIOError:
                continue
            except ConnectionResetError:
                break
            if not data:
                break  # closed
            got += data
    finally:
        result["seconds"] = time.monotonic() - t0
        result["answer"] = got
        # Closed by the server: a read now gives EOF (or a reset).
        try:
            s.setblocking(True)
            s.settimeout(2)
            result["closed"] = s.recv(1) == b""
        except (ConnectionResetError, TimeoutError, OSError):
            result["closed"] = True
        s.close()


def test_endless_and_trickling_bodies_are_cut_off(store, db_url, watch):
    env = {"DATABASE_URL": db_url, "INGEST_RATE_PER_MINUTE": "0", "BODY_READ_TIMEOUT": str(BODY_TIMEOUT), "EXPORT_ENABLED": "false"}
    n_slow = scale(20, 200)
    with Server(env, workers=1, log=watch.log("serve.log")) as server:
        token = asyncio.run(make_key(db_url, "ingest", "VN"))[1]
        watch.add(token)
        results = [{} for _ in range(n_slow)]
        threads = []
        for i in range(n_slow):
            chunked = i % 2 == 0
            s = open_post(server.port, token, "Transfer-Encoding: chunked\r\n" if chunked else "Content-Length: 1000000\r\n")
            threads.append(threading.Thread(target=trickle, args=(s, chunked, results[i], 1.0 if i % 4 < 2 else 0.1)))
        for t in threads:
            t.start()
        # Meanwhile the one worker serves a real client.
        tally = Tally()
        batch = received_events(["19777"], 20, "real")
        with httpx.Client(timeout=BOUND * 3) as c:
            for j in range(5):
                t0 = time.monotonic()
                r = c.post(
                    f"{server.url}/api/v1/events", json={"events": batch[j * 4 : j * 4 + 4]}, headers={"Authorization": f"Bearer {token}"}
                )
                tally.note(r.status_code, time.monotonic() - t0, r)
                assert r.status_code == 202
                tally.acked |= {(e["unit_code"], e["event_id"]) for e in batch[j * 4 : j * 4 + 4]}
                time.sleep(0.5)
        for t in threads:
            t.join()
        stored = stored_events(db_url)
    cut = [r for r in results if b" 408 " in r["answer"][:20] and r["closed"]]
    longest = max(r["seconds"] for r in results)
    report(
        f"{n_slow} endless (chunked) and trickling (1 byte/s, 10 bytes/s) bodies, one worker; BODY_READ_TIMEOUT {BODY_TIMEOUT:g} s",
        store,
        len(tally.acked),
        sum(stored.values()),
        len(tally.acked ^ set(stored)),
        tally.server_errors,
        longest,
        note=f"{len(cut)} of {n_slow} cut off with 408 and closed; real client's longest request {tally.longest:.2f} s",
    )
    assert len(cut) == n_slow, [r for r in results if r not in cut][:3]
    assert longest < BOUND, longest
    assert tally.longest < BOUND
    assert set(stored) == tally.acked  # nothing of a cut-off request is stored


def test_idle_connections_do_not_starve_a_real_client(store, db_url, watch):
    n_idle = scale(2000, 5000)
    env = {"DATABASE_URL": db_url, "INGEST_RATE_PER_MINUTE": "0", "EXPORT_ENABLED": "false"}
    idle: list[socket.socket] = []
    with Server(env, workers=2, log=watch.log("serve.log")) as server:
        token = asyncio.run(make_key(db_url, "ingest", "VN"))[1]
        read = asyncio.run(make_key(db_url, "read"))[1]
        watch.add(token, read)
        tally = Tally()
        try:
            for _ in range(n_idle):
                idle.append(socket.create_connection(("127.0.0.1", server.port), timeout=BOUND))
            batch = received_events(["19777", "26506"], 40, "busy")
            with httpx.Client(timeout=BOUND * 3) as c:
                for j in range(0, 40, 10):
                    t0 = time.monotonic()
                    r = c.post(
                        f"{server.url}/api/v1/events", json={"events": batch[j : j + 10]}, headers={"Authorization": f"Bearer {token}"}
                    )
                    tally.note(r.status_code, time.monotonic() - t0, r)
                    assert r.status_code == 202, r.text
                    tally.acked |= {(e["unit_code"], e["event_id"]) for e in batch[j : j + 10]}
                    t0 = time.monotonic()
                    r = c.get(f"{server.url}/api/v1/units/VN/kpis", params={"window": "1d"}, headers={"Authorization": f"Bearer {read}"})
                    tally.note(r.status_code, time.monotonic() - t0, r)
                    assert r.status_code == 200
            still_open = sum(1 for s in idle if _open(s))
        finally:
            for s in idle:
                s.close()
        stored = stored_events(db_url)
    report(
        f"{n_idle} idle connections held open, 2 workers",
        store,
        len(tally.acked),
        sum(stored.values()),
        len(tally.acked ^ set(stored)),
        tally.server_errors,
        tally.longest,
        note=f"{still_open} idle connections still open when the real client was done",
    )
    assert tally.longest < BOUND and set(stored) == tally.acked


def _open(s: socket.socket) -> bool:
    s.setblocking(False)
    try:
        return s.recv(1) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False


def test_rate_limit_answers_429_per_key_and_worker(store, db_url, watch):
    """INGEST_RATE_PER_MINUTE=60: a bucket of 10 per key in each worker, refilled at 1 a second."""
    env = {"DATABASE_URL": db_url, "INGEST_RATE_PER_MINUTE": "60", "RETRY_AFTER_SECONDS": "7", "EXPORT_ENABLED": "false"}
    workers = 2
    with Server(env, workers=workers, log=watch.log("serve.log")) as server:
        a = asyncio.run(make_key(db_url, "ingest", "19777"))[1]
        b = asyncio.run(make_key(db_url, "ingest", "26506"))[1]
        watch.add(a, b)
        events = received_events(["19777"], 80, "rl")
        statuses, acked = [], set()
        t0 = time.monotonic()
        for i in range(80):  # a new connection each: the kernel spreads them over the workers
            r = httpx.post(
                f"{server.url}/api/v1/events", json={"events": [events[i]]}, headers={"Authorization": f"Bearer {a}"}, timeout=30
            )
            statuses.append(r.status_code)
            if r.status_code == 202:
                acked.add(("19777", events[i]["event_id"]))
            else:
                assert r.status_code == 429 and r.headers["retry-after"] == "7", (r.status_code, r.headers)
                assert r.headers["content-type"].startswith("application/problem+json")
        elapsed = time.monotonic() - t0
        other = httpx.post(
            f"{server.url}/api/v1/events", json={"events": received_events(["26506"], 1, "rl-b")}, headers={"Authorization": f"Bearer {b}"}
        )
        stored = stored_events(db_url)
    ok = statuses.count(202)
    most = workers * (10 + elapsed * 1.0) + 1  # each worker's bucket, refilled while the test ran
    report(
        "rate limit: 80 posts of one key as fast as possible (INGEST_RATE_PER_MINUTE 60, 2 workers)",
        store,
        ok,
        sum(stored.values()),
        len(acked ^ {k for k in stored if k[0] == "19777"}),
        sum(1 for s in statuses if s >= 500),
        elapsed,
        note=f"{ok} x 202, {statuses.count(429)} x 429 in {elapsed:.1f} s; at most {most:.0f} allowed",
    )
    assert statuses.count(429) > 0 and 10 <= ok <= most, (ok, most, elapsed)
    assert other.status_code == 202  # per key: another key is not limited
    assert {k for k in stored if k[0] == "19777"} == acked  # a 429 stores nothing


def test_unbounded_queries_are_bounded(store, db_url, watch):
    env = {"DATABASE_URL": db_url, "EXPORT_ENABLED": "false"}
    with Server(env, workers=1, log=watch.log("serve.log")) as server:
        read = asyncio.run(make_key(db_url, "read"))[1]
        watch.add(read)
        h = {"Authorization": f"Bearer {read}"}
        with httpx.Client(base_url=server.url, timeout=60, headers=h) as c:
            refused = [
                ("/api/v1/units", {"limit": 5001}),
                ("/api/v1/units", {"limit": 10**12}),
                ("/api/v1/rankings", {"level": "commune", "limit": 100000}),
                ("/api/v1/export/snapshots", {"limit": 5001}),
                ("/api/v1/units/46/series", {"kpi": "received", "interval": "day", "from": "2020-01-01", "to": "2026-01-01"}),
                ("/api/v1/units/VN/series", {"kpi": "on_time_rate", "interval": "week", "from": "1900-01-01", "to": "2100-01-01"}),
                ("/api/v1/units/46/kpis", {"period": "day", "at": "9999-12-31"}),
                ("/api/v1/units/46/kpis", {"period": "year", "at": "0001-01-01"}),
                ("/api/v1/units/46/series", {"interval": "quarter", "from": "0001-01-01", "to": "9999-12-31"}),
                ("/api/v1/units/46/series", {"interval": "day", "from": "0001-01-01", "to": "9999-12-31"}),
                ("/api/v1/units/46/series", {"interval": "quarter", "from": "9999-12-01", "to": "9999-12-31"}),
            ]
            answers = []
            for path, params in refused:
                r = c.get(path, params=params)
                answers.append((path, params, r.status_code))
                assert r.status_code in (404, 422), (path, params, r.status_code, r.text[:300])
                assert r.status_code != 422 or r.json()["errors"], r.text
            # The largest allowed answers are capped, not refused: every commune ranked, by sector too.
            capped = [
                ("/api/v1/rankings", {"level": "commune", "limit": 5000, "sort": "-received", "window": "365d"}),
                ("/api/v1/rankings", {"level": "commune", "limit": 5000, "sort": "-on_time_rate", "sector": "land"}),
                ("/api/v1/units", {"limit": 5000}),
                ("/api/v1/units/VN/series", {"kpi": "received", "interval": "day", "from": "2024-01-01", "to": "2026-09-01"}),
                ("/api/v1/units/46/series", {"to": "0001-01-02"}),  # the first days of the calendar: answered
                ("/api/v1/units/19942/series", {"interval": "quarter", "from": "1785-05-13"}),  # 965 points (was a 503)
                ("/api/v1/units/VN/series", {"interval": "month", "from": "1944-01-01", "to": "2026-01-01"}),
                ("/api/v1/units/46/series", {"interval": "month", "from": "0001-01-01", "to": "0001-02-01"}),
                ("/api/v1/units/46/kpis", {"period": "day", "at": "0001-01-02"}),
                ("/api/v1/units/46/kpis", {"period": "month", "at": "0001-02-15"}),
                ("/api/v1/units/19777/kpis", {"period": "quarter", "at": "0001-04-01"}),
                ("/api/v1/units/46/sectors", {"period": "week", "at": "0001-01-09"}),
                ("/api/v1/units/VN/kpis", {"period": "year", "at": "9999-01-01"}),
                ("/api/v1/units/VN/series", {"interval": "week", "from": "9990-01-01", "to": "9999-12-01"}),
            ]
            for path, params in capped:
                r = c.get(path, params=params)
                answers.append((path, params, r.status_code))
                assert r.status_code in (200, 422), (path, params, r.status_code, r.text[:300])
                body = r.json()
                items = body.get("items") or body.get("points") or []
                assert len(items) <= 5000
    log = watch.log("serve.log").read_text()
    assert not re.findall(r'HTTP/1\.1" 5\d\d', log), "a 5xx answer"
