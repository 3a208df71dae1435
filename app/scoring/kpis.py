"""The KPIs: their registry (names, kinds, titles, descriptions) and their math from summed counters
(pure). Rates are never averaged: numerators and denominators add."""

from __future__ import annotations

from dataclasses import dataclass

from app.aggregates.histogram import percentiles_ms
from app.aggregates.sums import Sums, cohort_766, due_of, folded, overdue_of, pending_of

COUNT, RATE, HOURS, SCORE = "count", "rate", "hours", "score"


@dataclass(frozen=True)
class Kpi:
    """One KPI of SPEC section 4: what the answers' models, their descriptions and the downloads'
    titles read. The Vietnamese titles are those of the dashboard and the national index."""

    name: str
    kind: str  # COUNT (exact, `change` an integer), RATE (a fraction in [0, 1]), HOURS, SCORE (out of 20)
    vi: str  # Vietnamese title: the start of its description, the column title of downloads
    en: str  # English title (downloads with `lang=en`)
    about: str  # the rest of its description in the OpenAPI document
    example: int | float
    nullable: bool = False  # a count that may be null (the central node's 766 figures; silent units of a past period)

    @property
    def description(self) -> str:
        return f"{self.vi}: {self.about}"


# The one registry of the KPIs, in the order of the answers.
KPIS: tuple[Kpi, ...] = (
    Kpi("received", COUNT, "Hồ sơ tiếp nhận", "Received", "dossiers received in the period.", 1200),
    Kpi("received_online", COUNT, "Hồ sơ nộp trực tuyến", "Received online", "of those, submitted online.", 1150),
    Kpi(
        "online_rate", RATE, "Tỷ lệ nộp trực tuyến", "Online rate", "received_online / received; `null` when nothing was received.", 0.9583
    ),
    Kpi(
        "resolved",
        COUNT,
        "Hồ sơ đã giải quyết",
        "Resolved",
        "dossiers resolved in the period (early + on time + late + unclassified).",
        1100,
    ),
    Kpi("resolved_early", COUNT, "Giải quyết trước hạn", "Resolved early", "resolved on a day before the deadline's day.", 600),
    Kpi("resolved_on_time", COUNT, "Giải quyết đúng hạn", "Resolved on time", "resolved on the deadline's day, not after it.", 400),
    Kpi("resolved_late", COUNT, "Giải quyết quá hạn", "Resolved late", "resolved after the deadline.", 100),
    Kpi(
        "resolved_unclassified",
        COUNT,
        "Chưa xác định hạn",
        "Resolved, no deadline",
        "resolved with no deadline known (a data-quality problem).",
        0,
    ),
    Kpi(
        "on_time_rate",
        RATE,
        "Tỷ lệ giải quyết đúng hạn",
        "On-time rate",
        "(early + on time) / (early + on time + late); `null` when none.",
        0.9091,
    ),
    Kpi("withdrawn", COUNT, "Hồ sơ rút", "Withdrawn", "dossiers withdrawn in the period.", 3),
    Kpi("pending", COUNT, "Hồ sơ đang giải quyết", "Pending", "received and not ended at the earlier of the period's end and now.", 120),
    Kpi("overdue", COUNT, "Hồ sơ đang quá hạn", "Overdue", "pending dossiers whose deadline has passed.", 4),
    Kpi(
        "processing_hours_p50",
        HOURS,
        "Thời gian giải quyết (trung vị)",
        "Processing hours (median)",
        "median hours from receipt to resolution.",
        30.5,
    ),
    Kpi("processing_hours_p90", HOURS, "Thời gian giải quyết (phân vị 90)", "Processing hours (p90)", "90th percentile, hours.", 70.0),
    Kpi(
        "processing_hours_mean",
        HOURS,
        "Thời gian giải quyết trung bình",
        "Processing hours (mean)",
        "mean hours from receipt to resolution.",
        35.2,
    ),
    Kpi(
        "settlement_rate_766",
        RATE,
        "Tỷ lệ đúng hạn theo Chỉ số 766",
        "Settlement rate (766)",
        "settlement progress of the cohort received in the period (Quyết định 766/QĐ-TTg); "
        "`null` on a central node for other periods than calendar months, quarters, years.",
        0.91,
    ),
    Kpi(
        "settlement_score",
        SCORE,
        "Điểm tiến độ giải quyết (Chỉ số 766)",
        "Settlement score (766)",
        "20 × settlement_rate_766, out of 20.",
        18.2,
    ),
    Kpi(
        "overdue_766",
        COUNT,
        "Hồ sơ quá hạn theo Chỉ số 766",
        "Overdue (766)",
        "dossiers of the cohort not settled on time.",
        108,
        nullable=True,
    ),
    Kpi(
        "orphans",
        COUNT,
        "Sự kiện thiếu hồ sơ tiếp nhận",
        "Orphan events",
        "stored events of dossiers with no `received` event (data quality).",
        0,
    ),
    Kpi(
        "silent_units",
        COUNT,
        "Đơn vị ngừng gửi dữ liệu",
        "Silent units",
        "silent units at or below the unit; `null` for a past period.",
        0,
        nullable=True,
    ),
    Kpi("due_24h", COUNT, "Hồ sơ sắp đến hạn trong 24 giờ", "Due within 24 h", "pending dossiers due within the next 24 hours.", 7),
    Kpi("due_48h", COUNT, "Hồ sơ sắp đến hạn trong 48 giờ", "Due within 48 h", "pending dossiers due within the next 48 hours.", 15),
    Kpi("due_72h", COUNT, "Hồ sơ sắp đến hạn trong 72 giờ", "Due within 72 h", "pending dossiers due within the next 72 hours.", 22),
)
KPI = {k.name: k for k in KPIS}
KPI_NAMES = tuple(KPI)
COUNT_KPIS = frozenset(k.name for k in KPIS if k.kind == COUNT)


def is_rate(name: str) -> bool:
    """A rate KPI (a fraction, shown as a percentage in downloads); False for any other name."""
    kpi = KPI.get(name)
    return kpi is not None and kpi.kind == RATE


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


# The KPIs that rest on the figures at now of a period judged at now (aggregates.at_now, kept per
# unit by aggregates.live_memo: what is due later today, events dated ahead, due within 24/48/72 h,
# silent units, the INDEX-766 cohort gone late today). The others are flows and samples of the day
# rows alone: a series of one of them reads no figure at now (held by a test against the full read).
AT_NOW_KPIS = frozenset(
    {"pending", "overdue", "due_24h", "due_48h", "due_72h", "silent_units", "settlement_rate_766", "settlement_score", "overdue_766"}
)


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
