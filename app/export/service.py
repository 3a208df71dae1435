"""Export reads for the API and the CLI: the pull feed, status, retry of parked records."""

from __future__ import annotations

import orjson

from app.db.engine import Database
from app.export import exporter, records
from app.export import repository as repo
from app.settings import Settings

status = exporter.status
retry_parked = exporter.retry_parked


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
