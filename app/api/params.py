"""Query parameters shared by several routes: every list answer's paging, bounded in the OpenAPI document and
in the code; the drivers' KPI and order (their JSON route and their download)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import Query

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
