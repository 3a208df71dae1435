"""Shared machinery of the reliability suite: the short/long switch, keys made straight in the
database, clients that resend a batch until it is acknowledged, the stored events read back from
the database itself, and the table of faults the suite reports.

Short form (CI, `make test`): every test at a small scale. Long form (`make reliability`, or
CHISO_RELIABILITY=long): more events, more kills, more fuzz examples, more idle connections.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx

from app.db.engine import Database
from app.keys import service as keys
from app.units.service import RegistryCache

LONG = os.environ.get("CHISO_RELIABILITY", "").lower() == "long"
ROOT = Path(__file__).resolve().parents[2]
OUTPUT = ROOT / "test-output" / "reliability"


def scale(short, long):
    """The short form's figure, or the long form's under CHISO_RELIABILITY=long."""
    return long if LONG else short


# --- keys -------------------------------------------------------------------------------------------


async def make_key(url: str, scope: str, unit: str | None = None, name: str = "reliability") -> tuple[int, str]:
    """(id, token) of a new key, made as `chiso keys create` makes it."""
    db = Database(url, 1)
    try:
        registry = await RegistryCache(db).refresh()
        return await keys.create_key(db, registry, scope, f"{name} {scope} {unit or ''}", unit)
    finally:
        await db.dispose()


async def revoke_key(url: str, key_id: int) -> None:
    db = Database(url, 1)
    try:
        assert await keys.revoke(db, key_id)
    finally:
        await db.dispose()


# --- the database, read directly ---------------------------------------------------------------------


def _pg_dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


def query(url: str, sql: str) -> list[tuple]:
    """Rows of one query, straight from the store (no app code in between)."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[1]
        with sqlite3.connect(path, timeout=60) as conn:
            return [tuple(r) for r in conn.execute(sql).fetchall()]

    async def go():
        conn = await asyncpg.connect(_pg_dsn(url), timeout=10)
        try:
            return [tuple(r) for r in await conn.fetch(sql)]
        finally:
            await conn.close()

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(go())
    with ThreadPoolExecutor(1) as pool:  # called from an async test: its own loop in a thread
        return pool.submit(asyncio.run, go()).result()


def stored_events(url: str) -> Counter:
    """(unit_code, event_id) -> how many rows the event log holds of it."""
    return Counter(
        {(u, e): n for u, e, n in query(url, "SELECT unit_code, event_id, count(*) FROM dossier_event GROUP BY unit_code, event_id")}
    )


# --- clients -----------------------------------------------------------------------------------------


@dataclass
class Tally:
    """What clients saw, shared by their threads."""

    acked: set = field(default_factory=set)  # (unit_code, event_id) of every event in an acknowledged batch
    accepted: int = 0  # sum of `accepted` over 202s
    rejected: int = 0  # per-item rejections in 202s (the stream's own invalid events, e.g. dated in the future)
    statuses: Counter = field(default_factory=Counter)  # HTTP status (or the exception's name) -> count
    longest: float = 0.0  # seconds of the slowest request (answered or not)
    no_retry_after: int = 0  # 429/503 answers without Retry-After
    bad: list = field(default_factory=list)  # answers that break the contract, for the failure message
    lock: threading.Lock = field(default_factory=threading.Lock)

    def note(self, status, seconds: float, response: httpx.Response | None = None) -> None:
        with self.lock:
            self.statuses[status] += 1
            self.longest = max(self.longest, seconds)
            if response is not None and status in (429, 503) and not response.headers.get("retry-after"):
                self.no_retry_after += 1
            if isinstance(status, int) and status >= 500 and status != 503:
                self.bad.append((status, response.text[:300] if response is not None else ""))

    @property
    def server_errors(self) -> int:
        """5xx answers other than the 503 the SPEC prescribes while the database is unreachable."""
        return sum(n for s, n in self.statuses.items() if isinstance(s, int) and s >= 500 and s != 503)


def post_until_acked(
    client: httpx.Client, url: str, key: str, batch: list[dict], tally: Tally, give_up: float = 300.0, pause: float = 0.2
) -> dict:
    """POST the same batch (same event_ids) until it is answered 202; that answer. The batch's events,
    less those rejected per item, count as acknowledged."""
    deadline = time.monotonic() + give_up
    while True:
        t0 = time.monotonic()
        try:
            r = client.post(f"{url}/api/v1/events", json={"events": batch}, headers={"Authorization": f"Bearer {key}"})
        except httpx.HTTPError as exc:  # the server is down or was killed mid-request: no answer, send again
            tally.note(type(exc).__name__, time.monotonic() - t0)
        else:
            tally.note(r.status_code, time.monotonic() - t0, r)
            if r.status_code == 202:
                body = r.json()
                refused = {it["index"] for it in body["items"] if it["status"] == "rejected"}  # invalid: never stored
                with tally.lock:
                    tally.acked |= {(e["unit_code"], e["event_id"]) for i, e in enumerate(batch) if i not in refused}
                    tally.accepted += body["accepted"]
                    tally.rejected += len(refused)
                return body
            assert r.status_code in (429, 503), f"{r.status_code}: {r.text[:500]}"
        assert time.monotonic() < deadline, f"batch not acknowledged within {give_up} s: {tally.statuses}"
        time.sleep(pause)


def received_events(units: list[str], n: int, tag: str, hours_back: int = 72) -> list[dict]:
    """n simple `received` events (one dossier each), spread over the last hours."""
    now = datetime.now(UTC)
    out = []
    for i in range(n):
        at = now - timedelta(minutes=10 + (i * 37) % (hours_back * 60))
        out.append(
            {
                "event_id": f"{tag}-{i}",
                "type": "received",
                "dossier_id": f"{tag}-{i}",
                "unit_code": units[i % len(units)],
                "occurred_at": at.isoformat(),
                "channel": "online" if i % 3 else "postal",
                "due_at": (at + timedelta(days=3)).isoformat(),
            }
        )
    return out


# --- the table ----------------------------------------------------------------------------------------


def report(
    fault: str, store: str, acknowledged: int, stored: int, differences: int, server_errors: int, longest: float, note: str = ""
) -> None:
    """One row of the fault table (test-output/reliability/table.jsonl, printed too)."""
    OUTPUT.mkdir(parents=True, exist_ok=True)
    row = {
        "fault": fault,
        "store": store,
        "form": "long" if LONG else "short",
        "acknowledged": acknowledged,
        "stored": stored,
        "differences": differences,
        "5xx": server_errors,
        "longest_request_s": round(longest, 2),
        "note": note,
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    with (OUTPUT / "table.jsonl").open("a") as f:
        f.write(json.dumps(row, ensure_ascii=False) + "\n")
    print("RELIABILITY", json.dumps(row, ensure_ascii=False))


# --- tokens never logged -------------------------------------------------------------------------------


class TokenWatch:
    """Every token a test makes and every log its servers write; no log may hold a token."""

    def __init__(self, log_dir: Path):
        self.log_dir = log_dir
        self.tokens: list[str] = []

    def add(self, *tokens: str) -> None:
        self.tokens.extend(tokens)

    def log(self, name: str) -> Path:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        return self.log_dir / name

    def leaks(self) -> list[str]:
        found = []
        for path in sorted(self.log_dir.glob("**/*")):
            if path.is_file():
                text = path.read_bytes()
                found += [f"{path.name}: token {t[:10]}…" for t in self.tokens if t.encode() in text]
        return found
