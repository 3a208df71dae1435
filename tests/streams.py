"""Random but realistic event streams for tests: corrections, orphans, late events, both terminals."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from tests.reference import TZ

SECTORS = ("land", "civil_status", "business", None)


def _iso(dt: datetime) -> str:
    return dt.astimezone(TZ if random.random() < 0.5 else UTC).isoformat()


def stream(rng: random.Random, units: list[str], n_dossiers: int, now: datetime, days: int = 100) -> list[dict]:
    """Events (with aware datetimes in occurred_at/due_at) for n dossiers over the last `days` days."""
    events: list[dict] = []
    seq = 0

    def ev(kind, unit, dossier, at, **fields):
        nonlocal seq
        seq += 1
        e = {"event_id": f"ev-{seq:06d}-{rng.randrange(10**6)}", "type": kind, "dossier_id": dossier, "unit_code": unit, "occurred_at": at}
        e.update({k: v for k, v in fields.items() if v is not None})
        events.append(e)

    def when(lo: datetime, hi: datetime) -> datetime:
        hi = min(hi, now - timedelta(minutes=10))
        if hi <= lo:
            return hi
        if rng.random() < 0.15:  # near a local midnight
            d = (lo + (hi - lo) * rng.random()).astimezone(TZ)
            m = d.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=rng.choice((0, 1)))
            cand = m + timedelta(seconds=rng.choice((-1, 0, 1, 59)))
            if lo <= cand <= hi:
                return cand
        return lo + (hi - lo) * rng.random()

    def deadline(start: datetime) -> datetime:
        due = start + timedelta(days=rng.randint(0, 8), hours=rng.randint(0, 23))
        if rng.random() < 0.2:
            due = due.astimezone(TZ).replace(hour=23, minute=59, second=59, microsecond=0)
        # away from the boundaries a read at now judges (now, and now + 24/48/72 h for due soon)
        if any(abs((due - now - timedelta(hours=h)).total_seconds()) < 900 for h in (0, 24, 48, 72)):
            due += timedelta(hours=2)
        return due

    for i in range(n_dossiers):
        unit = rng.choice(units)
        dossier = f"D{i}"
        recv_at = when(now - timedelta(days=days), now)
        due = deadline(recv_at)
        sector = rng.choice(SECTORS)
        orphan = rng.random() < 0.08
        if not orphan:
            ev(
                "received",
                unit,
                dossier,
                recv_at,
                channel=rng.choice(("online", "online", "in_person", "postal")),
                due_at=due,
                sector=sector,
            )
            if rng.random() < 0.07:  # a correction of the receipt
                ev(
                    "received",
                    unit,
                    dossier,
                    min(recv_at + timedelta(minutes=rng.randint(-30, 30)), now - timedelta(minutes=10)),  # never ahead of now
                    channel="online",
                    due_at=deadline(recv_at),
                    sector=rng.choice(SECTORS),
                )
        for _ in range(rng.choice((0, 0, 0, 1, 2))):
            reason = rng.choice(("supplement_requested", "legal_extension", "apology"))
            ev(
                "due_changed",
                unit,
                dossier,
                when(recv_at, recv_at + timedelta(days=3)),
                due_at=due + timedelta(days=rng.randint(-1, 5)),
                reason=reason,
                sector=rng.choice(SECTORS),
            )
        r = rng.random()
        end_at = when(recv_at, recv_at + timedelta(days=rng.choice((0, 1, 3, 6, 12))))
        if r < 0.7:
            ev(
                "resolved",
                unit,
                dossier,
                end_at,
                outcome=rng.choice(("approved", "refused")),
                due_at=deadline(recv_at) if rng.random() < 0.3 else None,
            )
            if rng.random() < 0.05:
                # a correction an hour later, never in the future (a source cannot send one from there)
                ev("resolved", unit, dossier, min(end_at + timedelta(hours=1), now - timedelta(minutes=10)), outcome="approved")
        elif r < 0.78:
            ev("withdrawn", unit, dossier, end_at)
        if rng.random() < 0.04:  # both terminal kinds
            ev("withdrawn" if r < 0.7 else "resolved", unit, dossier, when(recv_at, now))
    return events


def wire(e: dict) -> dict:
    """The JSON form of an event."""
    return {k: _iso(v) if isinstance(v, datetime) else v for k, v in e.items()}
