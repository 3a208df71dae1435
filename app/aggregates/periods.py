"""Calendar periods and rolling windows in local time (pure)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo

KINDS = ("day", "week", "month", "quarter", "year")
WINDOWS = {"1d": 1, "7d": 7, "30d": 30, "90d": 90, "365d": 365}
INTERVALS = ("day", "week", "month", "quarter")


@dataclass(frozen=True, slots=True)
class Period:
    kind: str  # one of KINDS, or "window"
    start: date
    end: date  # exclusive
    name: str  # the label of a calendar period, or the window ("30d")

    def as_dict(self) -> dict:
        if self.kind == "window":
            return {"kind": "window", "window": self.name, "start": self.start.isoformat(), "end": self.end.isoformat()}
        return {"kind": self.kind, "label": self.name, "start": self.start.isoformat(), "end": self.end.isoformat()}


def _month_start(d: date) -> date:
    return d.replace(day=1)


def _add_months(d: date, months: int) -> date:
    m = d.year * 12 + d.month - 1 + months
    return date(m // 12, m % 12 + 1, 1)


def containing(kind: str, at: date) -> Period:
    """The calendar period of `kind` that contains the local date `at`."""
    if kind == "day":
        return Period("day", at, at + timedelta(days=1), at.isoformat())
    if kind == "week":
        start = at - timedelta(days=at.weekday())
        iso = start.isocalendar()
        return Period("week", start, start + timedelta(days=7), f"{iso.year}-W{iso.week:02d}")
    if kind == "month":
        start = _month_start(at)
        return Period("month", start, _add_months(start, 1), f"{start:%Y-%m}")
    if kind == "quarter":
        q = (at.month - 1) // 3
        start = date(at.year, q * 3 + 1, 1)
        return Period("quarter", start, _add_months(start, 3), f"{at.year}-Q{q + 1}")
    if kind == "year":
        start = date(at.year, 1, 1)
        return Period("year", start, date(at.year + 1, 1, 1), str(at.year))
    raise ValueError(f"unknown period {kind}")


def window(name: str, today: date) -> Period:
    """A rolling window of local calendar days ending today, today included."""
    days = WINDOWS[name]
    return Period("window", today - timedelta(days=days - 1), today + timedelta(days=1), name)


def previous(p: Period) -> Period:
    """The period just before: same length for days, weeks and windows; the previous calendar one else."""
    if p.kind == "window":
        length = p.end - p.start
        return Period("window", p.start - length, p.start, p.name)
    return containing(p.kind, p.start - timedelta(days=1))


def intervals(kind: str, start: date, end: date) -> list[Period]:
    """Whole intervals of `kind` covering [start, end)."""
    out: list[Period] = []
    p = containing(kind, start)
    while p.start < end:
        out.append(p)
        p = containing(kind, p.end)
    return out


def same_point(p: Period, now: datetime, tz: tzinfo) -> datetime | None:
    """While p is not over, the instant of its previous period as far into it as now is into p
    (SPEC section 4, "compared at the same point"): previous start + (now - start) in local wall
    time to the second, kept within the previous period. None once p is over (whole is compared
    with whole)."""
    if local_midnight(p.end, tz) <= now:
        return None
    before = previous(p)
    elapsed = now.astimezone(tz).replace(tzinfo=None, microsecond=0) - datetime.combine(p.start, time(0))
    at = datetime.combine(before.start, time(0)) + max(elapsed, timedelta(0))
    return min(at, datetime.combine(before.end, time(0))).replace(tzinfo=tz)


def local_midnight(d: date, tz: tzinfo) -> datetime:
    return datetime.combine(d, time(0), tzinfo=tz)


def today(now: datetime, tz: tzinfo) -> date:
    return now.astimezone(tz).date()
