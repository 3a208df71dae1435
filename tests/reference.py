"""A short, obviously right computation of SPEC section 4 straight from a set of events.

It shares no code with the service: dossiers are rebuilt from all their events at once and every
KPI is its definition, dossier by dossier.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

TZ = ZoneInfo("Asia/Ho_Chi_Minh")


def local_day(dt: datetime) -> date:
    return dt.astimezone(TZ).date()


def midnight(d: date) -> datetime:
    return datetime.combine(d, time(0), tzinfo=TZ)


def _latest(events):
    return max(events, key=lambda e: (e["occurred_at"], e["event_id"])) if events else None


@dataclass
class RefDossier:
    unit: str
    events: list

    def of(self, kind):
        return [e for e in self.events if e["type"] == kind]

    @property
    def received(self):
        return _latest(self.of("received"))

    def terminal(self):
        res, wd = _latest(self.of("resolved")), _latest(self.of("withdrawn"))
        both = [e for e in (res, wd) if e]
        return min(both, key=lambda e: (e["occurred_at"], e["event_id"])) if both else None

    def ignored(self):
        res, wd = _latest(self.of("resolved")), _latest(self.of("withdrawn"))
        if res and wd:
            return res if self.terminal() is wd else wd
        return None

    def due(self):
        moving = [e for e in self.of("due_changed") if e["reason"] != "apology"]
        if moving:
            return _latest(moving)["due_at"]
        if self.received:
            return self.received["due_at"]
        term = self.terminal()
        if term and term["type"] == "resolved":
            return term.get("due_at")
        return None

    def end(self):
        term = self.terminal()
        return term["occurred_at"] if term else None

    def sector(self):
        winner = self.received
        if winner and winner.get("sector"):
            return winner["sector"]
        named = [e for e in self.events if e is not winner and e.get("sector")]
        return _latest(named)["sector"] if named else None


def dossiers(events: list[dict]) -> list[RefDossier]:
    seen, grouped = set(), {}
    for e in events:
        if (e["unit_code"], e["event_id"]) in seen:
            continue
        seen.add((e["unit_code"], e["event_id"]))
        grouped.setdefault((e["unit_code"], e["dossier_id"]), []).append(e)
    return [RefDossier(u, evs) for (u, _), evs in grouped.items()]


def nearest_rank(values: list[float], p: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return values[max(1, math.ceil(p * len(values))) - 1]


def kpis(ds: list[RefDossier], units: set[str], start: date, end: date, now: datetime, until: datetime | None = None) -> dict:
    """KPIs of the dossiers of `units` for the local-date period [start, end); with `until`, the
    period as it stood at that instant (flows up to it, the rest at it)."""
    t = min(midnight(end), now) if until is None else until
    cut = midnight(end) if until is None else until
    inside = lambda dt: dt is not None and midnight(start) <= dt < cut  # noqa: E731
    out = dict.fromkeys(
        [
            "received",
            "received_online",
            "resolved",
            "resolved_early",
            "resolved_on_time",
            "resolved_late",
            "resolved_unclassified",
            "withdrawn",
            "pending",
            "overdue",
            "orphans",
            "cohort",
            "on_time_766",
            "due_24h",
            "due_48h",
            "due_72h",
        ],
        0,
    )
    hours = []
    for d in ds:
        if d.unit not in units:
            continue
        recv, term, due, end_at = d.received, d.terminal(), d.due(), d.end()
        if recv and inside(recv["occurred_at"]):
            out["received"] += 1
            out["received_online"] += recv["channel"] == "online"
        if term and inside(term["occurred_at"]):
            if term["type"] == "withdrawn":
                out["withdrawn"] += 1
            else:
                out["resolved"] += 1
                at = term["occurred_at"]
                if due is None:
                    out["resolved_unclassified"] += 1
                elif at > due:
                    out["resolved_late"] += 1
                elif local_day(at) < local_day(due):
                    out["resolved_early"] += 1
                else:
                    out["resolved_on_time"] += 1
                if recv:
                    hours.append((at - recv["occurred_at"]).total_seconds() / 3600)
        if recv and recv["occurred_at"] < t and not (end_at is not None and end_at < t):
            out["pending"] += 1
            if due is not None and due < t:
                out["overdue"] += 1
            for h in (24, 48, 72):
                if due is not None and t <= due < t + timedelta(hours=h):
                    out[f"due_{h}h"] += 1
        if recv and inside(recv["occurred_at"]):
            out["cohort"] += 1
            judged = end_at if end_at is not None and end_at <= t else t
            supplements = sum(1 for e in d.of("due_changed") if e["reason"] == "supplement_requested")
            if due is not None and supplements < 2 and judged <= due:
                out["on_time_766"] += 1
        if not recv:
            ignored = d.ignored()
            out["orphans"] += sum(1 for e in d.events if inside(e["occurred_at"]) and e is not ignored)
    good = out["resolved_early"] + out["resolved_on_time"]
    rate = lambda a, b: None if b == 0 else a / b  # noqa: E731
    out["online_rate"] = rate(out["received_online"], out["received"])
    out["on_time_rate"] = rate(good, good + out["resolved_late"])
    out["settlement_rate_766"] = rate(out["on_time_766"], out["cohort"])
    out["overdue_766"] = out["cohort"] - out["on_time_766"]
    # the percentiles come from the histogram, whose first bucket holds every duration under a
    # minute, those below zero included (a terminal event dated before its receipt: bucket_of); the
    # mean keeps the sign
    under = [max(h, 0.0) for h in hours]
    out["processing_hours_p50"] = nearest_rank(under, 0.5)
    out["processing_hours_p90"] = nearest_rank(under, 0.9)
    out["processing_hours_mean"] = sum(hours) / len(hours) if hours else None
    out["timed"] = len(hours)  # resolved dossiers with a receipt: the sample of the processing times
    return out


def pending_at(d: RefDossier, t: datetime) -> bool:
    recv, end_at = d.received, d.end()
    return bool(recv) and recv["occurred_at"] < t and not (end_at is not None and end_at < t)


def at_risk(ds: list[RefDossier], units: set[str], now: datetime, within: timedelta, include_overdue: bool) -> list[tuple]:
    """The at-risk list: (due, unit, dossier_id) of pending dossiers due in [now, now + within)
    (or before now + within with include_overdue), soonest first, ties by unit then dossier id."""
    out = []
    for d in ds:
        due = d.due()
        if d.unit not in units or due is None or not pending_at(d, now):
            continue
        if due < now + within and (include_overdue or due >= now):
            out.append((due, d.unit, d.events[0]["dossier_id"]))
    return sorted(out)


def window(days: int, now: datetime) -> tuple[date, date]:
    today = local_day(now)
    return today - timedelta(days=days - 1), today + timedelta(days=1)
