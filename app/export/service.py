"""Export reads for the API and the CLI: the pull feed, status, retry of parked records."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson

from app.db.engine import Database
from app.export import records
from app.export import repository as repo
from app.settings import Settings


async def feed(db: Database, settings: Settings, after: int, limit: int) -> dict:
    """Records after `after` in sequence order; `next_after` continues the feed."""
    async with db.session() as session:
        rows = await repo.read_outbox(session, after, limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    return {
        "node_id": settings.node_id,
        "histogram_bounds_seconds": records.histogram_bounds(),
        "records": [orjson.loads(r.body) for r in rows],
        "next_after": rows[-1].sequence if rows else after,
        "has_more": more,
    }


async def status(db: Database, settings: Settings) -> dict:
    """The export detail of /readyz and `chiso export status`."""
    async with db.session() as session:
        st = await repo.read_outbox_status(session)
        sources = await repo.read_sources(session) if settings.subordinates else []
    push = bool(settings.central_url)
    oldest = st.pop("oldest_pending_at")
    lag = (datetime.now(UTC) - oldest).total_seconds() if (push and oldest is not None) else 0.0
    out = {
        "node_id": settings.node_id,
        "push": settings.central_url.rstrip("/") + records.SNAPSHOTS_PATH if push else None,
        "backlog": st["backlog"] if push else 0,
        "lag_seconds": round(max(0.0, lag), 3),
        "parked": st["parked"],
        "parked_error": st["parked_error"],
        "last_sequence": st["last_sequence"],
        "last_sent_at": st["last_sent_at"].isoformat() if st["last_sent_at"] else None,
    }
    if settings.subordinates:
        out["subordinates"] = {
            name: next(
                (
                    {"last_sequence": s["last_sequence"], "received_at": s["received_at"].isoformat()}
                    for s in sources
                    if s["node_id"] == name
                ),
                None,
            )
            for name in sorted(settings.subordinates)
        }
    return out


async def retry_parked(db: Database) -> int:
    """Make parked records pending again (chiso export retry-parked)."""
    async with db.transaction() as session:
        return await repo.unpark(session)
