"""The pusher: sends the outbox's pending records to the central node (SPEC section 6) in signed
batches, parks what it refuses, backs off when it fails, and counts what it sent and what waits."""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx

from app import metrics
from app.db.engine import Database
from app.export import records, service
from app.export import repository as repo
from app.export.outbox import PARK, PARKED, PENDING, SEND, SENT, Backoff, classify
from app.export.signing import sign
from app.settings import Settings

log = logging.getLogger("chiso.export")

BATCHES_PER_RUN = 20


@dataclass
class PushResult:
    sent: int = 0
    parked: int = 0
    failed: bool = False


class Pusher:
    """Delivers the outbox to the central node, if this node has one."""

    def __init__(self, db: Database, settings: Settings, client: httpx.AsyncClient | None = None):
        self.db = db
        self.settings = settings
        self._client = client
        self._own_client = client is None
        self._retry_at = 0.0
        self.backoff = Backoff(base=max(0.5, settings.export_interval), cap=settings.export_backoff_max)

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            # EXPORT_PUSH_TIMEOUT bounds a push to a slow central node; it then counts as failed (backoff).
            timeout = self.settings.export_push_timeout
            self._client = httpx.AsyncClient(timeout=httpx.Timeout(timeout, connect=min(5.0, timeout)))
        return self._client

    async def push(self) -> PushResult:
        """Send pending records in bounded, signed batches until none is left, a try fails, or the
        run's share is done. A refused batch is parked; a failed one waits for the backoff."""
        result = PushResult()
        s = self.settings
        if not s.central_url or s.export_secret is None or time.monotonic() < self._retry_at:
            return result
        url = s.central_url.rstrip("/") + records.SNAPSHOTS_PATH
        secret = s.export_secret.get_secret_value()
        for _ in range(BATCHES_PER_RUN):
            async with self.db.session() as session:
                rows = await repo.read_outbox(session, 0, s.export_batch_records, PENDING)
            if not rows:
                break
            body = records.snapshot_body(s.node_id, [r.body for r in rows])
            headers = {
                "Content-Type": "application/json",
                "X-Chiso-Node": s.node_id,
                "X-Chiso-Signature": sign(body, secret),
                "Idempotency-Key": hashlib.sha256(body).hexdigest()[:32],
            }
            status, error, retry_after = None, None, None
            try:
                resp = await self._http().post(url, content=body, headers=headers)
                status = resp.status_code
                if status >= 300:
                    error = f"HTTP {status}: {resp.text[:300]}"
                ra = resp.headers.get("retry-after")
                retry_after = float(ra) if ra and ra.isdigit() else None
            except httpx.HTTPError as exc:
                error = f"{type(exc).__name__}: {exc}"[:300]
            outcome = classify(status)
            seqs = [r.sequence for r in rows]
            now = datetime.now(UTC)
            async with self.db.transaction() as session:
                if outcome == SEND:
                    await repo.set_outbox_state(session, seqs, SENT, now)
                elif outcome == PARK:
                    await repo.set_outbox_state(session, seqs, PARKED, now, error)
                else:
                    await repo.count_attempt(session, seqs, error or "")
            if outcome == SEND:
                self.backoff.succeeded()
                result.sent += len(seqs)
                metrics.EXPORT_SENT.inc(len(seqs))
            elif outcome == PARK:
                log.error("central node refused %d records (parked): %s", len(seqs), error)
                result.parked += len(seqs)
            else:
                delay = self.backoff.failed(retry_after)
                self._retry_at = time.monotonic() + delay
                log.warning("push failed (%s); next try in %.1f s", error, delay)
                result.failed = True
                break
        return result

    async def update_metrics(self) -> None:
        """Lag and backlog from the database, so every worker reports the same values."""
        try:
            st = await service.status(self.db, self.settings)
        except Exception:  # noqa: BLE001 - the database may be away; the gauges keep their last values
            return
        metrics.EXPORT_BACKLOG.set(st["backlog"])
        metrics.EXPORT_LAG.set(st["lag_seconds"])

    async def close(self) -> None:
        """Close the HTTP client, if it is this pusher's own."""
        if self._own_client and self._client is not None:
            await self._client.aclose()
