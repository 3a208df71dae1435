"""KPI math from summed counters (pure). Rates are never averaged: numerators and denominators add."""

from __future__ import annotations

from app.aggregates.histogram import percentiles_ms
from app.aggregates.sums import Sums, cohort_766, due_of, folded, overdue_of, pending_of

KPI_NAMES = (
    "received",
    "received_online",
    "online_rate",
    "resolved",
    "resolved_early",
    "resolved_on_time",
    "resolved_late",
    "resolved_unclassified",
    "on_time_rate",
    "withdrawn",
    "pending",
    "overdue",
    "processing_hours_p50",
    "processing_hours_p90",
    "processing_hours_mean",
    "settlement_rate_766",
    "settlement_score",
    "overdue_766",
    "orphans",
    "silent_units",
    "due_24h",
    "due_48h",
    "due_72h",
)
COUNT_KPIS = frozenset(k for k in KPI_NAMES if not k.endswith(("_rate", "_rate_766", "_score")) and not k.startswith("processing"))


def ratio(num: int, den: int) -> float | None:
    return None if den == 0 else num / den


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def _hours(ms: float | None) -> float | None:
    return None if ms is None else round(ms / 3_600_000, 2)


def compute(s: Sums) -> dict:
    """Every KPI of SPEC section 4 from one span's sums."""
    s = folded(s)
    f = s.flows or {}
    received, online = f.get("received", 0), f.get("received_online", 0)
    early, on_time, late = f.get("resolved_early", 0), f.get("resolved_on_time", 0), f.get("resolved_late", 0)
    unclassified, proc_n = f.get("resolved_unclassified", 0), f.get("proc_n", 0)
    good = early + on_time
    size, on_time_766 = cohort_766(s)
    size, on_time_766 = size + s.net_cohort_size, on_time_766 + s.net_cohort_ok
    rate_766 = None if s.net_cohort_unknown else ratio(on_time_766, size)
    p50, p90 = percentiles_ms(s.hist, (0.5, 0.9)) if s.hist else (None, None)
    due_24h, due_48h, due_72h = due_of(s)
    return {
        "received": received,
        "received_online": online,
        "online_rate": _round(ratio(online, received), 4),
        "resolved": good + late + unclassified,
        "resolved_early": early,
        "resolved_on_time": on_time,
        "resolved_late": late,
        "resolved_unclassified": unclassified,
        "on_time_rate": _round(ratio(good, good + late), 4),
        "withdrawn": f.get("withdrawn", 0),
        "pending": pending_of(s),
        "overdue": overdue_of(s),
        "processing_hours_p50": _hours(p50),
        "processing_hours_p90": _hours(p90),
        "processing_hours_mean": _hours(None if proc_n == 0 else f.get("proc_ms", 0) / proc_n),
        "settlement_rate_766": _round(rate_766, 4),
        "settlement_score": _round(None if rate_766 is None else 20 * rate_766, 2),
        "overdue_766": None if s.net_cohort_unknown else size - on_time_766,
        "orphans": f.get("orphans", 0),
        "due_24h": due_24h,
        "due_48h": due_48h,
        "due_72h": due_72h,
        "silent_units": s.silent,
    }


# The KPIs that rest on a sample (rates, the 766 score, processing times), and what the sample is:
# a ranking's `min_count` ranks a unit whose sample is smaller after the others. Count KPIs are
# their own evidence: `min_count` does not apply to them.
SAMPLE_OF = {
    "online_rate": "received",
    "on_time_rate": "classified",  # early + on time + late
    "settlement_rate_766": "cohort",  # the INDEX-766 cohort
    "settlement_score": "cohort",
    "processing_hours_p50": "timed",  # resolved with a receipt
    "processing_hours_p90": "timed",
    "processing_hours_mean": "timed",
}


def samples(s: Sums) -> dict[str, int]:
    """The sizes of the samples behind the rates and averages of one span (SAMPLE_OF)."""
    s = folded(s)
    f = s.flows or {}
    return {
        "received": f.get("received", 0),
        "classified": f.get("resolved_early", 0) + f.get("resolved_on_time", 0) + f.get("resolved_late", 0),
        "cohort": cohort_766(s)[0] + s.net_cohort_size,
        "timed": f.get("proc_n", 0),
    }


def change(current: dict, previous: dict) -> dict:
    """current - previous per KPI; None where either side is None."""
    out = {}
    for k in KPI_NAMES:
        a, b = current.get(k), previous.get(k)
        if a is None or b is None:
            out[k] = None
        elif k in COUNT_KPIS:
            out[k] = a - b
        else:
            out[k] = round(a - b, 4)
    return out
