"""Realistic event batches of one commune: received, resolved, some due_changed and withdrawn,
~2% duplicates, out of order within a few minutes.

Time: the run stands for a stretch of the nation's traffic as long as its volume implies (a quarter
is ~21 million events over 91 days, so 2 million events are ~9 days); each commune's batches tile
that stretch in order, as a procedure system posts what happened since its last batch. A batch
holds the dossiers received in its window with the rest of their life (resolutions up to weeks
later)."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta, timezone

LOCAL = timezone(timedelta(hours=7))
SECTORS = ("land", "civil_status", "business", "construction", "justice", "labour", "health", "education")
CHANNELS = ("online", "in_person", "postal")
REASONS = ("supplement_requested", "legal_extension", "apology")
QUARTER_EVENTS, QUARTER_DAYS = 21_000_000, 91
MAX_SPAN_DAYS = 360  # inside the 400-day horizon


def span_days(events: int) -> float:
    """Days of national traffic that `events` events stand for."""
    return min(MAX_SPAN_DAYS, max(1.0, QUARTER_DAYS * events / QUARTER_EVENTS))


def window(b: int, n_batches: int, n_communes: int, span: float, now: datetime) -> tuple[datetime, datetime]:
    """The receipt window of batch b of a run of n_batches: its commune's k-th slice of the span."""
    per_commune = max(1, math.ceil(n_batches / n_communes))
    width = span / per_commune
    start = now - timedelta(days=span) + timedelta(days=(b // n_communes) % per_commune * width)
    return start, start + timedelta(days=width)


def _ts(dt: datetime) -> str:
    return dt.astimezone(LOCAL).isoformat(timespec="seconds")


def make_batch(
    rng: random.Random,
    commune: str,
    tag: str,
    within: tuple[datetime, datetime],
    size: int = 1000,
    dup_frac: float = 0.02,
    previous: list[dict] | None = None,
    now: datetime | None = None,
) -> list[dict]:
    """`size` events of one commune, receipts `within` a window; `tag` makes ids unique; `previous`
    (the commune's last batch) supplies some of the duplicates, the rest repeat events of this batch."""
    now = now or datetime.now(UTC)
    latest = now - timedelta(seconds=60)
    start, end = within
    end = min(end, latest)
    width = max(60.0, (end - start).total_seconds() - 60)
    n_dups = round(size * dup_frac)
    n_unique = size - n_dups
    out: list[tuple[datetime, dict]] = []
    k = 0
    while len(out) < n_unique:
        k += 1
        did = f"D{tag}-{k}"
        recv = start + timedelta(seconds=rng.random() * width)
        days = rng.choice((1, 2, 3, 5, 7, 10, 15))
        due = recv + timedelta(days=days)
        sector = rng.choice(SECTORS)
        proc = f"1.{rng.randrange(1000, 9999):06d}"
        base = {"dossier_id": did, "unit_code": commune, "procedure_code": proc, "sector": sector}
        out.append(
            (
                recv,
                {
                    **base,
                    "event_id": f"{tag}-{k}-r",
                    "type": "received",
                    "occurred_at": _ts(recv),
                    "channel": rng.choices(CHANNELS, (70, 25, 5))[0],
                    "due_at": _ts(due),
                },
            )
        )
        if rng.random() < 0.06:
            at = recv + timedelta(hours=rng.random() * days * 20)
            reason = rng.choices(REASONS, (60, 20, 20))[0]
            new_due = due + timedelta(days=rng.choice((2, 3, 5)))
            if at < latest:
                out.append(
                    (
                        at,
                        {
                            **base,
                            "event_id": f"{tag}-{k}-c",
                            "type": "due_changed",
                            "occurred_at": _ts(at),
                            "reason": reason,
                            "due_at": _ts(new_due),
                        },
                    )
                )
                if reason != "apology":
                    due = new_due
        r = rng.random()
        if r < 0.01:
            at = recv + timedelta(hours=rng.random() * days * 24)
            if at < latest:
                out.append((at, {**base, "event_id": f"{tag}-{k}-w", "type": "withdrawn", "occurred_at": _ts(at)}))
        elif r < 0.90:
            # processing time: log-normal around 60% of the legal time; ~10% late
            hours = rng.lognormvariate(math.log(days * 24 * 0.6), 0.45)
            at = recv + timedelta(hours=hours)
            if at < latest:
                out.append(
                    (
                        at,
                        {
                            **base,
                            "event_id": f"{tag}-{k}-s",
                            "type": "resolved",
                            "occurred_at": _ts(at),
                            "outcome": "approved" if rng.random() < 0.95 else "refused",
                        },
                    )
                )
    out = out[:n_unique]
    # out of order within a few minutes: sort by time plus up to 5 minutes of noise
    out.sort(key=lambda p: p[0] + timedelta(seconds=rng.random() * 300))
    events = [e for _, e in out]
    pool = previous if previous else events
    for i in range(n_dups):
        src = (pool if i % 2 == 0 else events)[rng.randrange(len(pool if i % 2 == 0 else events))]
        events.insert(rng.randrange(len(events) + 1), dict(src))
    return events


def probe_event(commune: str, n: int, run: str) -> dict:
    now = datetime.now(UTC)
    return {
        "event_id": f"probe-{run}-{n}",
        "type": "received",
        "dossier_id": f"P{run}-{n}",
        "unit_code": commune,
        "occurred_at": _ts(now),
        "channel": "online",
        "due_at": _ts(now + timedelta(days=3)),
        "sector": "bench-probe",
    }
