"""Large histories as NDJSON files for `chiso import` (the bench's year of the nation, a province's
year): each commune's dossiers received over `days` days up to now, with their deadlines, some
deadline changes (supplements, extensions, apologies), resolutions (some late), withdrawals, and
dossiers still pending. Written directly as text, several times faster than bench.gen's batches
(whose out-of-order arrival and duplicates matter for posting, not for a back-fill)."""

from __future__ import annotations

import random
import time
from pathlib import Path

SECTORS = ("land", "civil_status", "business", "construction", "justice", "labour", "health", "education")
CHANNELS = ("online",) * 7 + ("in_person",) * 2 + ("postal",)
DUE_DAYS = (1, 2, 3, 5, 7, 10, 15)
LOCAL = 7 * 3600


def _ts(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S+07:00", time.gmtime(epoch + LOCAL))


def write_history(path: Path, communes: list[str], n_events: int, days: float, seed: int, tag: str, now: float | None = None) -> int:
    """Write about `n_events` events (about 2 per dossier) spread over `communes`; returns the count."""
    rng = random.Random(seed)
    now = now if now is not None else time.time() - 120
    start = now - days * 86400
    per_commune = max(1, round(n_events / 2.05 / len(communes)))
    written = 0
    with open(path, "w", encoding="utf-8") as f:
        for unit in communes:
            out = []
            for i in range(per_commune):
                d = f"{tag}{unit}-{i}"
                recv = start + rng.random() * days * 86400
                due = recv + rng.choice(DUE_DAYS) * 86400
                sector = rng.choice(SECTORS)
                proc = f"1.00{rng.randrange(1000, 9999)}"
                head = f'"dossier_id":"{d}","unit_code":"{unit}","procedure_code":"{proc}","sector":"{sector}"'
                out.append(
                    f'{{"event_id":"{d}-r","type":"received",{head},"occurred_at":"{_ts(recv)}",'
                    f'"channel":"{rng.choice(CHANNELS)}","due_at":"{_ts(due)}"}}\n'
                )
                r = rng.random()
                if r < 0.08:
                    reason = ("supplement_requested", "legal_extension", "apology")[int(r * 37) % 3]
                    at = recv + rng.random() * (due - recv)
                    if at < now:
                        new_due = due + rng.choice((1, 2, 3)) * 86400
                        out.append(
                            f'{{"event_id":"{d}-c","type":"due_changed",{head},"occurred_at":"{_ts(at)}",'
                            f'"due_at":"{_ts(new_due)}","reason":"{reason}"}}\n'
                        )
                        if reason != "apology":
                            due = new_due
                end = recv + rng.lognormvariate(10.8, 0.9)  # processing time: median ~1.5 days, a tail of late ones
                if end < now:
                    if rng.random() < 0.03:
                        out.append(f'{{"event_id":"{d}-w","type":"withdrawn",{head},"occurred_at":"{_ts(end)}"}}\n')
                    else:
                        outcome = "approved" if rng.random() < 0.93 else "refused"
                        out.append(f'{{"event_id":"{d}-s","type":"resolved",{head},"occurred_at":"{_ts(end)}","outcome":"{outcome}"}}\n')
            f.writelines(out)
            written += len(out)
    return written


def write_history_proc(out, path: str, communes: list[str], n_events: int, days: float, seed: int, tag: str, now: float) -> None:
    """A process of the bench: one file."""
    n = write_history(Path(path), communes, n_events, days, seed, tag, now)
    out.put(("history", path, n))
