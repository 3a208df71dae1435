"""The KPI answers of SPEC section 5 as pydantic models: the OpenAPI document is generated from them.

Handlers keep rendering their answers with orjson (the KPI reads serve cached, pre-serialised bytes),
so these models document the answers and the OpenAPI conformance test
(tests/integration/test_openapi.py) holds every answer the API gives to them: the document cannot
drift from the code. The KPI block is built from the registry `app.scoring.kpis.KPIS`, so a KPI added
there appears here, with its type and description.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from pydantic import Field, create_model

from app.answer import Answer
from app.scoring.kpis import COUNT, KPI, KPI_NAMES

Level = Literal["nation", "province", "commune"]
CommuneKind = Literal["xa", "phuong", "dac_khu"]
PeriodKind = Literal["day", "week", "month", "quarter", "year"]
WindowName = Literal["1d", "7d", "30d", "90d", "365d"]


# --- units -----------------------------------------------------------------------------------------


class Unit(Answer):
    """A unit of the registry: the nation `VN`, a province or a commune."""

    code: str = Field(description="Unit code: `VN`, a 2-digit province code or a 5-digit commune code.", examples=["46"])
    name: str = Field(description="Official Vietnamese name.", examples=["Thành phố Huế"])
    level: Level = Field(description="`nation`, `province` or `commune`.", examples=["province"])
    kind: CommuneKind | None = Field(
        description="For communes: `xa` (xã), `phuong` (phường) or `dac_khu` (đặc khu); `null` above.", examples=[None]
    )
    parent: str | None = Field(description="Code of the unit above; `null` for `VN`.", examples=["VN"])


class Ancestor(Answer):
    code: str = Field(examples=["VN"])
    name: str = Field(examples=["Toàn quốc"])
    level: Level = Field(examples=["nation"])


class UnitDetail(Unit):
    """One unit with its ancestors."""

    parents: list[Ancestor] = Field(description="Its ancestors, from `VN` down.")


class UnitList(Answer):
    """A page of the registry, ordered by code."""

    items: list[Unit]
    total: int = Field(description="Units matching the filters, over every page.", examples=[34])
    limit: int = Field(examples=[100])
    offset: int = Field(examples=[0])


# --- KPI blocks ------------------------------------------------------------------------------------


def _kpi_field(name: str, change: bool) -> tuple[Any, Any]:
    kpi = KPI[name]
    if kpi.kind == COUNT and not change and not kpi.nullable:
        typ: Any = int
    elif kpi.kind == COUNT:
        typ = int | None
    else:
        typ = float | None
    doc = kpi.description if not change else f"{kpi.vi}: current minus previous; `null` where either side is `null`."
    return typ, Field(description=doc, examples=[kpi.example if not change else (0 if kpi.kind == COUNT else 0.012)])


Kpis = create_model(
    "Kpis",
    __base__=Answer,
    __doc__="Every KPI of SPEC section 4 for the unit and everything below it. Rates are fractions in [0, 1] "
    "rounded to 4 decimals, `null` when their denominator is 0; hours have 2 decimals; counts are exact.",
    **{name: _kpi_field(name, change=False) for name in KPI_NAMES},
)
Change = create_model(
    "Change",
    __base__=Answer,
    __doc__="Current minus previous for every KPI; `null` where either side is `null`.",
    **{name: _kpi_field(name, change=True) for name in KPI_NAMES},
)


class Period(Answer):
    """A calendar period (`label`) or a rolling window (`window`); `start` inclusive, `end` exclusive, local dates."""

    kind: Literal["day", "week", "month", "quarter", "year", "window"] = Field(examples=["week"])
    label: str | None = Field(
        None,
        description="Calendar periods only: `2025-09-30`, `2025-W40`, `2025-09`, `2025-Q3` or `2025`.",
        examples=["2025-W40"],
    )
    window: WindowName | None = Field(None, description="Rolling windows only.", examples=["30d"])
    start: date = Field(description="First local day, inclusive.", examples=["2025-09-29"])
    end: date = Field(description="Local day after the last, exclusive.", examples=["2025-10-06"])
    until: datetime | None = Field(
        None,
        description="Previous periods only, while the current period is in progress: the instant the previous figures "
        "stand at, the same point of the previous period as now is of the current one (previous start + (now − current "
        "start), at most its end; a central node takes it back to the local midnight at or before it). Flows count up "
        "to it, pending, overdue and due soon are at it, the INDEX-766 cohort is received before it and judged at it. "
        "Absent when the current period is over (whole compared with whole).",
        examples=["2025-09-23T10:54:00+07:00"],
    )


AS_OF = Field(
    description="Service time at which the figures were read, local offset; every event acknowledged before it is included.",
    examples=["2025-09-30T10:00:00+07:00"],
)


class Previous(Answer):
    """The same figures for the previous period of the same kind."""

    period: Period
    kpis: Kpis  # type: ignore[valid-type]


class KpiAnswer(Answer):
    """KPIs of one unit (with everything below it), the previous period and the change."""

    unit: Unit
    period: Period
    as_of: datetime = AS_OF
    kpis: Kpis  # type: ignore[valid-type]
    previous: Previous
    change: Change  # type: ignore[valid-type]
    sector: str | None = Field(
        None,
        description="Present only when the request asked for one sector: the figures count only its dossiers "
        "(`null`: the dossiers without a sector).",
        examples=["land"],
    )


class RankingItem(Answer):
    rank: int | None = Field(
        description="1-based; ties share a rank (1, 2, 2, 4); `null` when the sort KPI is `null` "
        "or rests on fewer than `min_count` dossiers."
    )
    unit: Unit
    kpis: Kpis  # type: ignore[valid-type]
    change: Change  # type: ignore[valid-type]


class RankingAnswer(Answer):
    """Units of one level ranked by one KPI; units whose KPI is `null` last, by code."""

    level: Literal["province", "commune"] = Field(examples=["commune"])
    parent: str | None = Field(description="The unit whose units are ranked; `null` for all of the level.", examples=["46"])
    sort: str = Field(description="The KPI ranked by, `-` first for descending.", examples=["-on_time_rate"])
    min_count: int = Field(
        description="Units whose sort KPI rests on fewer dossiers are not ranked (0: every unit with a value).", examples=[10]
    )
    period: Period
    as_of: datetime = AS_OF
    total: int = Field(description="Every unit of that level under `parent`.", examples=[40])
    limit: int = Field(examples=[50])
    offset: int = Field(examples=[0])
    items: list[RankingItem]


class SeriesPoint(Answer):
    start: date = Field(examples=["2025-09-29"])
    end: date = Field(examples=["2025-10-06"])
    value: float | None = Field(description="The KPI over [start, end); `null` where the KPI is.", examples=[0.9412])


class SeriesAnswer(Answer):
    """One KPI per interval, every interval in between included."""

    unit: Unit
    kpi: str = Field(examples=["on_time_rate"])
    interval: Literal["day", "week", "month", "quarter"] = Field(examples=["week"])
    points: list[SeriesPoint]


class SectorItem(Answer):
    sector: str | None = Field(description="Sector name; `null` for dossiers without one.", examples=["land"])
    kpis: Kpis  # type: ignore[valid-type]


class SectorsAnswer(Answer):
    """KPIs split by sector: one item per sector with any non-zero figure in the period."""

    unit: Unit
    period: Period
    as_of: datetime = AS_OF
    items: list[SectorItem]


class SilentItem(Answer):
    """A silent unit: when its last event was accepted, and how long ago."""

    unit: Unit
    last_event_at: datetime = Field(
        description="When the last event for the unit was accepted (not its `occurred_at`), local offset.",
        examples=["2025-09-27T08:30:00+07:00"],
    )
    silent_hours: float = Field(description="Hours from `last_event_at` to `as_of`, 2 decimals.", examples=[73.5])


class SilentAnswer(Answer):
    """The silent units at or below a unit (itself included), longest silent first, then by code."""

    unit: Unit
    as_of: datetime = AS_OF
    silent_after_hours: float = Field(description="The `SILENT_AFTER_HOURS` setting in force.", examples=[48.0])
    total: int = Field(description="Silent units at or below the unit, over every page.", examples=[3])
    limit: int = Field(examples=[100])
    offset: int = Field(examples=[0])
    items: list[SilentItem]


class AtRiskItem(Answer):
    """One pending dossier and its deadline."""

    unit: Unit = Field(description="The unit that received the dossier.")
    dossier_id: str = Field(examples=["H57-000123"])
    received_at: datetime | None = Field(description="Receipt time, local offset.", examples=["2025-09-29T08:15:00+07:00"])
    due_at: datetime = Field(description="The effective deadline, local offset.", examples=["2025-10-01T17:00:00+07:00"])
    hours_left: float = Field(description="Hours from `as_of` to the deadline, 2 decimals; negative when overdue.", examples=[31.25])
    overdue: bool = Field(description="The deadline is before `as_of` (only with `include_overdue=true`).", examples=[False])
    channel: Literal["online", "in_person", "postal"] | None = Field(examples=["online"])
    sector: str | None = Field(description="The dossier's sector; `null` when it names none.", examples=["land"])
    procedure_code: str | None = Field(description="The procedure code its `received` event names.", examples=["1.001612"])


class AtRiskAnswer(Answer):
    """Hồ sơ sắp đến hạn: pending dossiers of the unit and every unit below it whose deadline lies within
    the next `within` hours (with `include_overdue`, also those already overdue), soonest deadline first,
    ties by unit code then dossier id."""

    unit: Unit
    within: str = Field(description="The window, `1h` to `720h`.", examples=["48h"])
    include_overdue: bool = Field(examples=[False])
    as_of: datetime = AS_OF
    total: int = Field(description="Dossiers in the list over every page.", examples=[15])
    limit: int = Field(examples=[100])
    offset: int = Field(examples=[0])
    items: list[AtRiskItem]


class PreviousPeriod(Answer):
    """The previous period of the same kind."""

    period: Period


class DriverItem(Answer):
    """One part of the unit: its own dossiers (`own`), or a unit directly below it with its subtree."""

    unit: Unit
    own: bool = Field(description="True for the unit's own dossiers (those naming the unit itself).", examples=[False])
    value: float | None = Field(description="The part's own KPI in the period (rates 4 decimals).", examples=[0.8421])
    previous_value: float | None = Field(description="The part's own KPI in the previous period.", examples=[0.9])
    numerator: int | None = Field(description="The part's N of a rate; for a count KPI the count.", examples=[16])
    denominator: int | None = Field(description="The part's D of a rate; `null` for a count KPI.", examples=[19])
    previous_numerator: int | None = Field(description="N (or the count) in the previous period.", examples=[18])
    previous_denominator: int | None = Field(description="D in the previous period; `null` for a count KPI.", examples=[20])
    contribution: float | None = Field(
        description="What the part contributed to the unit's change: k_c(P) − k_c(P′) for a count; N_c(P)/D_U(P) − "
        "N_c(P′)/D_U(P′) for a rate (×20 for `settlement_score`), 6 decimals; `null` where the unit's change is.",
        examples=[-0.0123],
    )


class DriversAnswer(Answer):
    """Vì sao thay đổi: the parts of a unit and what each contributed to the change of one KPI, what pulled
    the figure down first (`sort=-contribution` for the other way), `null`s last; they add up to `change`."""

    unit: Unit
    kpi: str = Field(description="A count or rate KPI.", examples=["on_time_rate"])
    period: Period
    previous: PreviousPeriod
    as_of: datetime = AS_OF
    value: float | None = Field(description="The unit's KPI in the period.", examples=[0.9091])
    previous_value: float | None = Field(description="The unit's KPI in the previous period.", examples=[0.9213])
    change: float | None = Field(description="value − previous_value; `null` where either is.", examples=[-0.0122])
    total: int = Field(description="Parts over every page.", examples=[41])
    limit: int = Field(examples=[100])
    offset: int = Field(examples=[0])
    items: list[DriverItem]


class ReportRankingItem(RankingItem):
    previous_rank: int | None = Field(description="The unit's rank in the same ranking of the previous period.", examples=[3])


class ReportRanking(RankingAnswer):
    """The units directly below ranked by `on_time_rate` with `min_count=10`, with their previous rank."""

    items: list[ReportRankingItem]


class ReportDrivers(Answer):
    """The drivers of the three figures an official is asked about first."""

    on_time_rate: DriversAnswer
    online_rate: DriversAnswer
    overdue: DriversAnswer


class DueSoon(Answer):
    """Pending dossiers due within 24/48/72 h now, and the units below with most due within 48 h."""

    as_of: datetime = AS_OF
    due_24h: int = Field(examples=[7])
    due_48h: int = Field(examples=[15])
    due_72h: int = Field(examples=[22])
    units: RankingAnswer | None = Field(description="Up to 10 units below with dossiers due within 48 h, most first; `null` for a commune.")


class ReportAnswer(Answer):
    """The period report of a unit: each part is the answer it summarises (`summary` the KPI answer, ...)."""

    unit: Unit
    period: Period
    previous: PreviousPeriod
    as_of: datetime = AS_OF
    summary: KpiAnswer
    ranking: ReportRanking | None = Field(description="`null` for a commune (no unit below).")
    drivers: ReportDrivers
    due_soon: DueSoon
    silent: SilentAnswer
    sectors: SectorsAnswer
