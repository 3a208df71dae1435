"""Crash loop: clients post overlapping batches and resend each until 202 (same event_ids) while the
whole `chiso serve` process tree (2 workers and the exporter) is killed with SIGKILL again and
again and started again. Afterwards the event log holds exactly the acknowledged events, once each;
the national figures count each acknowledged dossier once; `chiso kpis verify` finds no difference;
the export outbox has no sequence gap, never the same record twice in a row for one key, and its
newest record per (unit, day) is what the read API answers for that day."""

from __future__ import annotations

import asyncio
import random
import threading
import time
from datetime import UTC, datetime

import httpx
import pytest

from tests.helpers.server import Server, cli
from tests.reference import TZ
from tests.reliability.harness import LONG, Tally, make_key, post_until_acked, report, scale, stored_events
from tests.streams import stream, wire

UNITS = ["19777", "19900", "19930", "26506", "00070", "46"]  # communes of three provinces, and a province's own centre
FLOW_KPIS = ("received", "received_online", "resolved_early", "resolved_on_time", "resolved_late", "resolved_unclassified", "withdrawn")


def export_feed(url: str, read: str) -> list[dict]:
    records, after = [], 0
    with httpx.Client(timeout=30, headers={"Authorization": f"Bearer {read}"}) as c:
        while True:
            page = c.get(f"{url}/api/v1/export/snapshots", params={"after": after, "limit": 5000}).json()
            records += page["records"]
            after = page["next_after"]
            if not page["has_more"]:
                return records


def outbox_problems(url: str, read: str, today) -> list[str]:
    """What is wrong with the export feed against the read API; [] when it is right."""
    records = export_feed(url, read)
    seqs = [r["sequence"] for r in records]
    problems = []
    if seqs != list(range(1, len(seqs) + 1)):
        problems.append(f"sequences are not 1..{len(seqs)} without gap: {seqs[:5]}…{seqs[-5:]}")
    last: dict[tuple, dict] = {}
    for r in records:
        key = (r["unit"], r["kind"], r.get("day") or str(r.get("period")))
        figures = {k: v for k, v in r.items() if k not in ("sequence", "node_id")}
        if key in last and last[key] == figures:
            problems.append(f"record {key} sent twice unchanged (sequence {r['sequence']})")
        last[key] = figures
    with httpx.Client(timeout=30, headers={"Authorization": f"Bearer {read}"}) as c:
        for (unit, kind, day), rec in sorted(last.items()):
            if kind != "day" or day == today.isoformat():  # today's pending moves with the clock
                continue
            k = c.get(f"{url}/api/v1/units/{unit}/kpis", params={"period": "day", "at": day}).json()["kpis"]
            want = {name: k[name] for name in (*FLOW_KPIS, "pending", "overdue")}
            got = {name: rec[name] for name in want}
            if unit != "46" and got != want:  # a province's answer includes its communes; its record is its own
                problems.append(f"{unit} {day}: newest record {got} but the API answers {want}")
    return problems


def test_crash_loop(store, db_url, tmp_path, watch):
    if store == "sqlite" and not LONG:
        pytest.skip("the crash loop on SQLite: long form only (CHISO_RELIABILITY=long); the short form runs it on PostgreSQL")
    kills = scale(2, 8)
    n_dossiers = scale(200, 1500)
    n_clients = scale(3, 5)
    rng = random.Random(15)
    events = [wire(e) for e in stream(rng, UNITS, n_dossiers, datetime.now(UTC), days=20)]
    _, ingest = asyncio.run(make_key(db_url, "ingest", "VN"))
    _, read = asyncio.run(make_key(db_url, "read"))
    watch.add(ingest, read)
    env = {"DATABASE_URL": db_url, "INGEST_RATE_PER_MINUTE": "0", "EXPORT_INTERVAL": "0.5"}
    server = Server(env, workers=2, log=watch.log("serve.log")).start()
    tally, stop = Tally(), threading.Event()

    def client(seed: int) -> None:
        order = list(events)
        random.Random(seed).shuffle(order)
        size = 40
        batches = [order[i : i + size] for i in range(0, len(order), size)]
        # Overlap: each client also resends a stretch of another client's order.
        with httpx.Client(timeout=30) as c:
            while not stop.is_set():
                for batch in batches:
                    post_until_acked(c, server.url, ingest, batch, tally)
                    if stop.is_set():
                        return

    threads = [threading.Thread(target=client, args=(s,)) for s in range(n_clients)]
    try:
        for t in threads:
            t.start()
        for _ in range(kills):
            time.sleep(rng.uniform(1.0, 3.0))
            server.kill()  # SIGKILL to the whole process group: server, workers, exporter
            time.sleep(rng.uniform(0.0, 1.0))
            server.start()
        time.sleep(1.0)
        stop.set()
        for t in threads:
            t.join(timeout=360)
            assert not t.is_alive(), "a client never got its batch acknowledged"

        stored = stored_events(db_url)
        lost = tally.acked - set(stored)
        phantom = set(stored) - tally.acked
        doubled = [k for k, n in stored.items() if n != 1]
        assert tally.acked, "nothing was acknowledged"
        assert not lost, f"{len(lost)} acknowledged events lost: {sorted(lost)[:5]}"
        assert not phantom, f"{len(phantom)} events stored that no client had acknowledged: {sorted(phantom)[:5]}"
        assert not doubled
        assert tally.accepted <= len(stored)  # an event is counted accepted by at most one answer

        # The national figures count each acknowledged dossier once.
        received = {
            (e["unit_code"], e["dossier_id"]) for e in events if e["type"] == "received" and (e["unit_code"], e["event_id"]) in tally.acked
        }
        with httpx.Client(timeout=30, headers={"Authorization": f"Bearer {read}"}) as c:
            vn = c.get(f"{server.url}/api/v1/units/VN/kpis", params={"window": "30d"}).json()["kpis"]
        assert vn["received"] == len(received)

        # The exporter (killed with the rest) catches up: its feed is right, without gap or repeat.
        today = datetime.now(TZ).date()
        deadline = time.monotonic() + 90
        while problems := outbox_problems(server.url, read, today):
            assert time.monotonic() < deadline, f"export feed wrong: {problems[:5]}"
            time.sleep(1)
    finally:
        stop.set()
        server.kill()
    verify = cli(env, "kpis", "verify")
    assert "live state matches the events" in verify, verify
    report(
        f"crash loop: {kills} x SIGKILL of serve (2 workers + exporter), {n_clients} clients",
        store,
        len(tally.acked),
        sum(stored.values()),
        len(lost) + len(phantom) + len(doubled),
        tally.server_errors,
        tally.longest,
        note=f"answers {dict(tally.statuses)}",
    )
    assert tally.server_errors == 0, tally.bad[:3]
    assert tally.statuses[202] > kills
