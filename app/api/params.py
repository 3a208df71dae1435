"""Query parameters shared by the JSON routes and their downloads (app.api.reports, app.api.downloads)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import Query

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
