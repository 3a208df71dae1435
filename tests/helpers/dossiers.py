"""Events of dossiers in one commune with unique ids, and reading its KPIs."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta

from tests import reference as ref

COMMUNE = "19777"  # in province 46


def uid() -> str:
    return uuid.uuid4().hex[:10]


def event(kind: str, dossier: str, at: datetime, event_id: str | None = None, **kw) -> dict:
    return {
        "event_id": event_id or f"{kind[:3]}-{uid()}",
        "type": kind,
        "dossier_id": dossier,
        "unit_code": kw.pop("unit", COMMUNE),
        "occurred_at": at,
        **kw,
    }


def due_changed(dossier: str, at: datetime, due: datetime, reason: str, **kw) -> dict:
    return event("due_changed", dossier, at, due_at=due, reason=reason, **kw)


async def kpis(svc, token, code: str = COMMUNE, **params) -> dict:
    r = await svc.get(f"/api/v1/units/{code}/kpis", token, **params)
    assert r.status_code == 200, r.text
    return r.json()


def past_day(days: int) -> date:
    return ref.local_day(datetime.now(UTC)) - timedelta(days=days)
