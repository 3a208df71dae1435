"""What a KPI period asks of storage (Span), what storage answers (Sums), which units (Scope), and
the figures that are functions of sums alone (pending, overdue, the INDEX-766 cohort)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta, tzinfo

from app.aggregates import periods
from app.aggregates.periods import Period

COHORT_KINDS = ("month", "quarter", "year")  # the periods of INDEX-766 cohort records (SPEC section 6)


@dataclass(frozen=True, slots=True)
class Span:
    """What one KPI period needs from storage."""

    start: date  # first local day
    end: date  # first local day after
    after: date  # first local day not yet counted at the judgement time t
    due_from: date  # cohort members with a deadline on or after this day count as on time
    start_at: datetime  # local midnight of start
    now: datetime | None  # set when t is now: the exact corrections within today apply
    today_at: datetime | None  # local midnight of today (with `until`: of the day of until)
    tomorrow_at: datetime | None  # local midnight of tomorrow (with `until`: of the day after)
    cohort: tuple[str, date] | None = None  # (kind, start) of a calendar month|quarter|year: received cohort records apply
    # A past instant t within day `after` (not a midnight): the figures at the midnight starting
    # `after` are corrected to t from the dossiers of [that midnight, t) (aggregates.at_tau).
    until: datetime | None = None


@dataclass
class Sums:
    flows: dict[str, int] = field(default_factory=dict)
    pending_after: int = 0
    overdue_after: int = 0
    pending_total: int = 0
    overdue_total: int = 0
    cohort_due: int = 0
    hist: dict[int, int] = field(default_factory=dict)
    overdue_not_yet: int = 0  # open dossiers due later today (t = now)
    pending_ahead: int = 0  # t = now: received before now but ending later today, minus received later today
    overdue_ahead: int = 0  # the same among those whose deadline is before now
    late_today: int = 0  # cohort dossiers whose deadline passed earlier today (t = now)
    net_cohort_size: int = 0  # INDEX-766 cohort records received from subordinate nodes
    net_cohort_ok: int = 0
    net_cohort_unknown: bool = False  # units fed by a subordinate, in a period no cohort record covers
    silent: int | None = None  # silent units at now (aggregates.silent); None for a period judged before now
    # Due within 24/48/72 h (SPEC section 4): at a past midnight from the day rows (counters.DUE:
    # due_c0 of its day, due_c1 of the next, due_c2 of the one after); at now (due_live) from the
    # open dossiers and the latest day records of subordinates.
    due_stored: tuple[int, int, int] = (0, 0, 0)
    due_live: tuple[int, int, int] | None = None
    # Judged at a past instant t (Span.until): what [midnight, t) adds to the figures at the midnight
    # (flows, histogram, due soon; pending and overdue in *_ahead, the cohort gone late in late_today)
    # and the instant the figures stand at (t, or the midnight on a central node).
    tau_flows: dict[str, int] = field(default_factory=dict)
    tau_hist: dict[int, int] = field(default_factory=dict)
    tau_due: tuple[int, int, int] = (0, 0, 0)
    until: datetime | None = None


# What reads.read_sums(live=True) sets: the corrections within today and the subordinates' cohort records.
LIVE_FIELDS = (
    "overdue_not_yet",
    "pending_ahead",
    "overdue_ahead",
    "late_today",
    "net_cohort_size",
    "net_cohort_ok",
    "net_cohort_unknown",
    "silent",
    "due_live",
    "tau_flows",
    "tau_hist",
    "tau_due",
    "until",
)


def live_part(s: Sums) -> tuple:
    return tuple(getattr(s, f) for f in LIVE_FIELDS)


def with_live(stored: Sums, live: Sums) -> Sums:
    """The stored part of one Sums with the live part of another (a shallow copy: a ranking makes
    two per changed unit each tick, where dataclasses.replace, through __init__, took 4 µs each)."""
    out = object.__new__(Sums)
    fields = out.__dict__
    fields.update(stored.__dict__)
    theirs = live.__dict__
    for f in LIVE_FIELDS:
        fields[f] = theirs[f]
    return out


@dataclass(frozen=True, slots=True)
class Scope:
    """Which units: `codes` (None = every unit) summed as one group, or grouped by unit at `level`
    ("unit": each of `codes` on its own, its own rows only)."""

    codes: tuple[str, ...] | None = None
    level: str | None = None
    parent: str | None = None
    # A province or the nation whose rollup rows stand for the own rows of `codes` (one group):
    # aggregate reads take its few rows; only the dossier reads within today still use `codes`.
    rollup: str | None = None


def span_for(p: Period, now: datetime, tz: tzinfo) -> Span:
    """What storage must sum for period p, judged at t = min(end, now)."""
    end_at = periods.local_midnight(p.end, tz)
    today = periods.today(now, tz)
    cohort = (p.kind, p.start) if p.kind in COHORT_KINDS else None
    if end_at <= now:
        return Span(p.start, p.end, p.end, p.end, periods.local_midnight(p.start, tz), None, None, None, cohort)
    tomorrow = today + timedelta(days=1)
    return Span(
        p.start,
        p.end,
        tomorrow,
        today,
        periods.local_midnight(p.start, tz),
        now,
        periods.local_midnight(today, tz),
        periods.local_midnight(tomorrow, tz),
        cohort,
    )


def span_at(p: Period, t: datetime, tz: tzinfo) -> Span:
    """What storage must sum for the past period p judged at t (start <= t <= end): flows over
    [start, t), pending, overdue and due soon at t, the INDEX-766 cohort received before t judged
    at t. The day rows give the figures at the midnight at or before t; Span.until the rest."""
    end_at = periods.local_midnight(p.end, tz)
    start_at = periods.local_midnight(p.start, tz)
    cohort = (p.kind, p.start) if p.kind in COHORT_KINDS else None
    if t >= end_at:
        return Span(p.start, p.end, p.end, p.end, start_at, None, None, None, cohort)
    day = max(p.start, t.astimezone(tz).date())
    midnight = periods.local_midnight(day, tz)
    if t <= midnight:
        return Span(p.start, day, day, day, start_at, None, None, None, None)
    return Span(p.start, day, day, day, start_at, None, midnight, periods.local_midnight(day + timedelta(days=1), tz), None, t)


def folded(s: Sums) -> Sums:
    """The sums with a past instant's corrections (Sums.tau_*) folded into the flows and histogram."""
    if not s.tau_flows and not s.tau_hist:
        return s
    flows = dict(s.flows or {})
    for k, n in s.tau_flows.items():
        flows[k] = flows.get(k, 0) + n
    hist = dict(s.hist)
    for b, n in s.tau_hist.items():
        hist[b] = hist.get(b, 0) + n
    return replace(s, flows=flows, hist={b: n for b, n in hist.items() if n}, tau_flows={}, tau_hist={})


def pending_of(s: Sums) -> int:
    """Pending at the span's judgement time."""
    return s.pending_total - s.pending_after + s.pending_ahead


def overdue_of(s: Sums) -> int:
    """Overdue at the span's judgement time."""
    return s.overdue_total - s.overdue_after - s.overdue_not_yet + s.overdue_ahead


def due_of(s: Sums) -> tuple[int, int, int]:
    """(due_24h, due_48h, due_72h) at the span's judgement time."""
    if s.due_live is not None:
        return s.due_live
    c0, c1, c2 = s.due_stored
    t24, t48, t72 = s.tau_due
    return c0 + t24, c0 + c1 + t48, c0 + c1 + c2 + t72


def cohort_766(s: Sums) -> tuple[int, int]:
    """This node's own INDEX-766 cohort: (size, on time)."""
    f = s.flows or {}
    return f.get("c_size", 0), f.get("c_final_ok", 0) + s.cohort_due - s.late_today
