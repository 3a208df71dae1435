"""Central outage: a province node (`chiso serve`, PostgreSQL) pushes to a national node (another
`chiso serve`, its own database) through a small real HTTP peer on loopback that plays the faults:
the central node down (nothing listens), slow (answers after 30 s, past the province's
EXPORT_PUSH_TIMEOUT of 3 s), answering 500, and answering 400 for one batch. The province keeps
ingesting meanwhile. After each fault the national node's answers equal the province's (every
record in effect exactly once: newer sequences win, repeats change nothing); the batch refused
with 400 is parked, reported by /readyz and `chiso export status`, and `chiso export retry-parked`
sends it."""

from __future__ import annotations

import asyncio
import random
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from tests.conftest import new_database_url
from tests.helpers.export import PROVINCE
from tests.helpers.network import SECRET, Node, converge, getter
from tests.helpers.server import cli, free_port
from tests.reliability.harness import LONG, Tally, report, scale, stored_events
from tests.streams import stream, wire

SLOW_SECONDS = 30.0
PUSH_TIMEOUT = 3.0


class FaultyCentral:
    """A real HTTP server in front of the national node: passes pushes on, or plays a fault."""

    def __init__(self, target: str):
        self.target = target
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.mode = "pass"
        self.seen: Counter = Counter()
        self.lock = threading.Lock()
        self.httpd: ThreadingHTTPServer | None = None

    def start(self) -> None:
        peer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                with peer.lock:
                    mode = peer.mode
                    if mode == "400-once":
                        peer.mode = "pass"
                    peer.seen[mode] += 1
                if mode == "500":
                    return self._answer(500, b'{"detail": "injected"}')
                if mode == "400-once":
                    return self._answer(400, b'{"detail": "injected: this batch is refused"}')
                if mode == "slow":
                    time.sleep(SLOW_SECONDS)  # then deliver it after all: the sender gave up long ago
                headers = {
                    k: v
                    for k, v in self.headers.items()
                    if k.lower().startswith("x-chiso") or k.lower() in ("content-type", "idempotency-key")
                }
                try:
                    r = httpx.post(peer.target + self.path, content=body, headers=headers, timeout=60)
                    self._answer(r.status_code, r.content)
                except (httpx.HTTPError, OSError):
                    self._answer(502, b"{}")

            def _answer(self, status: int, body: bytes) -> None:
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:  # the sender hung up (timed out)
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()
            self.httpd = None


@pytest.fixture
async def topology(templates, pg_server, tmp_path, watch):
    prov_url = await new_database_url("postgres", templates, pg_server, tmp_path)
    nat_url = await new_database_url("postgres", templates, pg_server, tmp_path)
    national = Node(nat_url, watch.log_dir, "vn", SUBORDINATES=f'{{"hue": "{SECRET}"}}')
    peer = FaultyCentral(national.base)
    province = Node(
        prov_url,
        watch.log_dir,
        "hue",
        CENTRAL_URL=peer.url,
        EXPORT_SECRET=SECRET,
        EXPORT_PUSH_TIMEOUT=str(PUSH_TIMEOUT),
        EXPORT_BATCH_RECORDS="40",
    )
    watch.log_dir.mkdir(parents=True, exist_ok=True)
    try:
        national.start()
        peer.start()
        province.start()
        yield province, national, peer
    finally:
        peer.stop()
        province.stop()
        national.stop()


async def wait_for(check, timeout: float, what: str):
    t0 = time.monotonic()
    while not (got := await check()):
        assert time.monotonic() - t0 < timeout, f"timed out waiting for {what}"
        await asyncio.sleep(0.2)
    return got


@pytest.mark.postgres
async def test_central_outage(topology, watch):
    province, national, peer = topology
    fault_seconds = scale(2.0, 20.0)
    rng = random.Random(766)
    ingest, read_p, read_n = await province.key("ingest", PROVINCE), await province.key("read"), await national.key("read")
    watch.add(ingest, read_p, read_n)
    tally = Tally()
    async with httpx.AsyncClient(timeout=60) as client:
        sub_get = getter(client, province.base, read_p)
        nat_get = getter(client, national.base, read_n)
        communes = [u["code"] for u in (await sub_get("/api/v1/units", {"parent": PROVINCE, "limit": 5000}))["items"]]
        units = [PROVINCE, *communes[:6]]
        compared = units if LONG else units[:3]  # every KPI query of these units, on both nodes, after each fault
        events = [wire(e) for e in stream(rng, units, scale(300, 2000), datetime.now(UTC), days=60)]
        rng.shuffle(events)
        chunks = [events[i::6] for i in range(6)]

        rejected: list = []  # per-item rejections of the stream (shown in the table's note)

        async def post(batch):
            for i in range(0, len(batch), 200):
                part = batch[i : i + 200]
                t0 = time.monotonic()
                r = await client.post(
                    province.base + "/api/v1/events", json={"events": part}, headers={"Authorization": f"Bearer {ingest}"}
                )
                tally.note(r.status_code, time.monotonic() - t0, r)
                assert r.status_code == 202, r.text
                refused = {it["index"]: it for it in r.json()["items"] if it["status"] == "rejected"}
                rejected.extend(it["errors"] for it in refused.values())
                tally.acked |= {(e["unit_code"], e["event_id"]) for i, e in enumerate(part) if i not in refused}

        async def export_state() -> dict:
            return (await client.get(province.base + "/readyz")).json()["checks"]["export"]

        await post(chunks[0])
        await converge(sub_get, nat_get, units[:3], timeout=60)
        rows = []
        for n, fault in enumerate(("down", "slow", "500")):
            before = peer.seen.copy()
            if fault == "down":
                peer.stop()
            else:
                peer.mode = fault
            await post(chunks[n + 1] + chunks[0][:50])  # new, late and repeated events while the fault lasts
            await asyncio.sleep(fault_seconds)
            st = await wait_for(lambda: export_state_if(export_state, lambda s: s["backlog"] > 0), 30, "a backlog")
            assert st["parked"] == 0, st  # failures wait; they are not parked
            if fault != "down":  # the exporter may still be backing off from the fault before: wait for its next try

                async def reached(fault=fault, before=before):
                    return peer.seen[fault] > before[fault]

                await wait_for(reached, 90, f"a push to reach the {fault} peer")
            if fault == "down":
                peer.start()
            peer.mode = "pass"
            t0 = time.monotonic()
            await wait_for(lambda: export_state_if(export_state, lambda s: s["backlog"] == 0), 120, "the backlog to drain")
            await converge(sub_get, nat_get, compared, timeout=60)
            rows.append((fault, round(time.monotonic() - t0, 1), st["backlog"]))

        # 400 for one batch: parked, reported, sent again by `chiso export retry-parked`.
        peer.mode = "400-once"
        await post(chunks[4])
        st = await wait_for(lambda: export_state_if(export_state, lambda s: s["parked"] > 0), 60, "a parked batch")
        assert "injected" in (st["parked_error"] or ""), st
        status = cli_status(province)
        assert status.returncode == 1 and "parked" in status.stdout, status.stdout
        await post(chunks[5])  # delivery goes on past the parked batch
        await wait_for(lambda: export_state_if(export_state, lambda s: s["backlog"] == 0), 60, "the backlog to drain")
        out = cli({k: v for k, v in province.env.items()}, "export", "retry-parked")
        assert f"{st['parked']} parked records queued again" in out, out
        await wait_for(lambda: export_state_if(export_state, lambda s: s["backlog"] == 0 and s["parked"] == 0), 60, "the parked batch")
        await converge(sub_get, nat_get, units, timeout=60)
        final = await export_state()
        seen = (await client.get(national.base + "/readyz")).json()["checks"]["export"]["subordinates"]["hue"]
        assert seen["last_sequence"] == final["last_sequence"], (seen, final)
        kp = (await sub_get("/api/v1/units/VN/kpis", {"window": "90d"}))["kpis"]
        kn = (await nat_get("/api/v1/units/VN/kpis", {"window": "90d"}))["kpis"]
    stored = stored_events(province.url)
    assert set(stored) == tally.acked and set(stored.values()) == {1}
    received = len({(e["unit_code"], e["dossier_id"]) for e in events if e["type"] == "received"})
    report(
        "central node down / slow (30 s, push timeout 3 s) / 500 / 400 for one batch (parked, retry-parked)",
        "postgres",
        len(tally.acked),
        sum(stored.values()),
        sum(1 for k in kp if kp[k] != kn[k] and k not in ("settlement_rate_766", "settlement_score", "overdue_766")),
        tally.server_errors,
        tally.longest,
        note=f"recovery (fault, s to converge, backlog): {rows}; parked {st['parked']} records; peer saw {dict(peer.seen)}; "
        f"{len(rejected)} events of the stream rejected: {rejected[:3]}; "
        f"received dossiers at the province {kp['received']}, at the centre {kn['received']} (of {received} in the stream)",
    )
    assert tally.server_errors == 0


async def export_state_if(get, cond):
    st = await get()
    return st if cond(st) else None


def cli_status(node: Node):
    return subprocess.run([sys.executable, "-m", "app.cli", "export", "status"], env=node.env, capture_output=True, text=True, timeout=120)
