"""Event builders and posting them through the HTTP ingest."""

from __future__ import annotations

import random
from datetime import date, datetime

from tests import reference as ref
from tests.streams import wire

TZ = ref.TZ


def at_local(d: date, hour: int, minute: int = 0, second: int = 0) -> datetime:
    return datetime(d.year, d.month, d.day, hour, minute, second, tzinfo=TZ)


def received(unit, dossier, at, due, **kw):
    return {
        "event_id": f"r-{dossier}",
        "type": "received",
        "dossier_id": dossier,
        "unit_code": unit,
        "occurred_at": at,
        "channel": kw.pop("channel", "online"),
        "due_at": due,
        **kw,
    }


def resolved(unit, dossier, at, **kw):
    return {
        "event_id": kw.pop("event_id", f"s-{dossier}"),
        "type": "resolved",
        "dossier_id": dossier,
        "unit_code": unit,
        "occurred_at": at,
        **kw,
    }


async def post(svc, token, events):
    r = await svc.post([wire(e) for e in events], token)
    assert r.status_code == 202 and r.json()["rejected"] == 0, r.text
    return r


async def post_shuffled(svc, events: list[dict], seed: int = 0) -> None:
    """Shuffled (out of order) and with duplicates."""
    rng = random.Random(seed)
    batch = [wire(e) for e in events]
    batch += rng.sample(batch, k=len(batch) // 5)
    rng.shuffle(batch)
    token = await svc.key("ingest", "VN")
    for i in range(0, len(batch), 500):
        r = await svc.post(batch[i : i + 500], token)
        assert r.status_code == 202, r.text
        assert r.json()["rejected"] == 0, [i for i in r.json()["items"] if i["status"] not in ("accepted", "duplicate")][:3]
