"""Query parameters shared by several routes: every list answer's paging, bounded in the OpenAPI document and
in the code; the drivers' KPI and order (their JSON route and their download)."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal

from fastapi import Path, Query

# Past any list chiso answers (3,321 units; the open dossiers of a nation) and far inside the 64-bit
# integers both stores take: a larger offset is a 422 naming it, never a database error.
MAX_OFFSET = 10_000_000

Limit = Annotated[int, Query(ge=1, le=5000, description="Items in this page, at most 5,000.", examples=[100])]
Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET, description="Items skipped before this page, at most 10,000,000.", examples=[0])]

DriverKpi = Annotated[
    str,
    Query(
        description="A count KPI (`received`, `resolved_*`, `pending`, `overdue`, `due_48h`...) or a rate (`on_time_rate`, "
        "`online_rate`, `settlement_rate_766`, `settlement_score`); processing hours and `silent_units` have no drivers (`422`).",
        examples=["on_time_rate"],
    ),
]
DriverSort = Annotated[
    Literal["contribution", "-contribution"],
    Query(
        description="`contribution`: what pulled the figure down first; `-contribution`: what pushed it up first.",
        examples=["contribution"],
    ),
]

PeriodKind = Annotated[
    Literal["day", "week", "month", "quarter", "year"] | None,
    Query(
        description="A calendar period in local time (ISO weeks, Monday first), the one containing `at`. "
        "Not with `window`; with neither, `window=30d`.",
        examples=["week"],
    ),
]
At = Annotated[
    date | None,
    Query(description="A local date inside the calendar period `period` names; default today.", examples=["2025-09-30"]),
]
Window = Annotated[
    Literal["1d", "7d", "30d", "90d", "365d"] | None,
    Query(description="A rolling window of that many local days ending today, today included so far. Default `30d`.", examples=["30d"]),
]
Sort = Annotated[
    str,
    Query(
        pattern=r"^-?[a-z0-9_]+$",
        description="A KPI name, `-` first for descending, e.g. `-on_time_rate` (tỷ lệ giải quyết đúng hạn, best first) "
        "or `-settlement_score` (điểm Chỉ số 766).",
        examples=["-on_time_rate"],
    ),
]
Code = Annotated[str, Path(description="Unit code: `VN`, a province (`46`) or a commune (`19753`).", examples=["46"])]
PERIOD_DOC = (
    "\n\nThe period is `period` (+ `at`) for a calendar period, or `window` for a rolling window ending today "
    "(default `30d`). The previous period is the one of the same length just before (for a month, quarter or "
    "year: the previous calendar one)."
)

# --- each route's own parameters, declared once for its JSON answer and its download -------------------

UnitLevel = Annotated[
    Literal["nation", "province", "commune"] | None, Query(description="Only the units of this level.", examples=["commune"])
]
UnitParent = Annotated[
    str | None, Query(description="Only the units directly under this one, e.g. the communes of province `46`.", examples=["46"])
]
Sector = Annotated[
    str | None,
    Query(
        max_length=64,
        description="Only the dossiers of this sector (lĩnh vực), e.g. `land`; `null` for those without one.",
        examples=["land"],
    ),
]
RankLevel = Annotated[Literal["province", "commune"], Query(description="The level of the units ranked.", examples=["commune"])]
RankParent = Annotated[
    str | None, Query(description="Rank only the units under this one (e.g. the communes of province `46`).", examples=["46"])
]
MinCount = Annotated[
    int,
    Query(
        ge=0,
        le=1_000_000_000,
        description="Rank only units whose sort KPI rests on at least this many dossiers: `received` for `online_rate`, "
        "early + on time + late for `on_time_rate`, the INDEX-766 cohort for `settlement_*`, the resolved dossiers with "
        "a receipt for `processing_hours_*`; the others come after the ranked units, by code, with `rank: null`. "
        "Count KPIs are their own evidence: no effect on them.",
        examples=[10],
    ),
]
SeriesKpi = Annotated[
    str,
    Query(
        description="A KPI name, e.g. `on_time_rate` (tỷ lệ giải quyết đúng hạn) or `received` (hồ sơ tiếp nhận).",
        examples=["on_time_rate"],
    ),
]
Interval = Annotated[Literal["day", "week", "month", "quarter"], Query(description="The length of each point.", examples=["week"])]
From = Annotated[
    date | None, Query(alias="from", description="First local day, inclusive; default 364 days before `to`.", examples=["2025-01-01"])
]
To = Annotated[date | None, Query(description="Local day after the last, exclusive; default tomorrow.", examples=["2025-10-01"])]
Within = Annotated[str, Query(description="The window ahead of now: `1h` to `720h`.", examples=["48h"])]
IncludeOverdue = Annotated[bool, Query(description="Also the pending dossiers already past their deadline.", examples=[False])]
