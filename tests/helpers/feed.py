"""Feeding one unit's events through the real ingest service at a chosen acceptance time."""

from __future__ import annotations

from datetime import datetime, time, timedelta

from app.ingest.service import accept_batch
from app.keys.service import Principal
from app.scoring import service as scoring
from app.scoring.context import Reader
from app.units.model import NATION
from tests.reference import TZ

VN_KEY = Principal(None, "ingest", NATION)


class Feed:
    """Posts events of one unit through the real ingest service at a chosen acceptance time."""

    def __init__(self, svc):
        self.svc = svc
        self.n = 0

    async def registry(self):
        return await self.svc.app.state.registry.get()

    async def send(self, unit: str, dated: list[datetime], accepted_at: datetime) -> None:
        events = []
        for at in dated:
            self.n += 1
            events.append(
                {
                    "event_id": f"s{self.n}",
                    "type": "received",
                    "dossier_id": f"S{self.n}",
                    "unit_code": unit,
                    "occurred_at": at.isoformat(),
                    "channel": "online",
                    "due_at": (at + timedelta(days=5)).isoformat(),
                }
            )
        result = await accept_batch(self.svc.db, await self.registry(), self.svc.settings, VN_KEY, events, now=accepted_at)
        assert result["accepted"] == len(events) and not result["items"], result

    async def silent(self, code: str, now: datetime, hours: float = 48.0, limit: int = 100, offset: int = 0) -> dict:
        return await scoring.silent_units(Reader(self.svc.db, await self.registry(), TZ, hours).at(now), code, limit, offset)


def on_days(last: datetime, *days_before: int) -> list[datetime]:
    """Moments dated `days_before` local days before the local day of `last` (0: that day, before `last`)."""
    day = last.astimezone(TZ).date()
    out = []
    for k in days_before:
        at = datetime.combine(day - timedelta(days=k), time(9, 0), TZ)
        out.append(max(min(at, last - timedelta(minutes=1)), datetime.combine(day - timedelta(days=k), time(0), TZ)))
    return out
