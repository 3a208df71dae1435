"""The period report of a unit (SPEC section 5): the answers an official sends up the chain, in one.

Each part is the answer it summarises, made by the same service function: the KPI answer; the units
below ranked by `on_time_rate` with `min_count=10` and their rank in the previous period; the drivers
of `on_time_rate`, `online_rate` and `overdue`; due within 24/48/72 h now and the units with most of
them; the silent units now; the sectors.
"""

from __future__ import annotations

from datetime import date

from app.aggregates import periods
from app.aggregates.periods import Period
from app.errors import Unprocessable
from app.scoring import drivers as drivers_service
from app.scoring import service as scoring
from app.scoring.context import Reader

REPORT_PERIODS = ("week", "month", "quarter", "year")
REPORT_DRIVERS = ("on_time_rate", "online_rate", "overdue")
RANK_BY, MIN_COUNT = "-on_time_rate", 10
DUE_UNITS = 10  # the units with most dossiers due within 48 h
MAX_ITEMS = 5000
BELOW = {"nation": ("province", None), "province": ("commune", "self")}


def report_period(reader: Reader, kind: str, at: date | None) -> Period:
    """The calendar period `kind` containing `at`; without `at`, the last whole one before today."""
    today = periods.today(reader.now(), reader.tz)
    if kind not in REPORT_PERIODS:
        raise Unprocessable("period is week, month, quarter or year", [{"loc": ["period"], "msg": "week, month, quarter or year"}])
    try:
        p = periods.containing(kind, at) if at is not None else periods.previous(periods.containing(kind, today))
        periods.previous(p)
    except (OverflowError, ValueError):
        raise Unprocessable(f"no {kind} around {at} with a previous one", [{"loc": ["at"], "msg": "out of range"}]) from None
    return p


async def report(reader: Reader, code: str, p: Period, memo: scoring.RankingMemo | None = None) -> dict:
    """Every part of the period report of a unit (see the module's docstring). Each part reads the
    clock as its own answer does; the report's `as_of` is its summary's."""
    u = scoring.unit_of(reader.registry, code)
    prev, _, t = scoring.compared(p, reader.now(), reader.tz)  # while p is in progress, prev as it stood at t
    summary = await scoring.unit_kpis(reader, code, p, None)
    level, parent = BELOW.get(u.level, (None, None))
    parent = code if parent == "self" else parent
    ranking = due_units = None
    if level is not None:
        ranking = await scoring.ranking(reader, level, parent, p, RANK_BY, MAX_ITEMS, 0, memo=memo, min_count=MIN_COUNT)
        before = await scoring.ranking(reader, level, parent, prev, RANK_BY, MAX_ITEMS, 0, memo=memo, min_count=MIN_COUNT, judged_at=t)
        previous_rank = {it["unit"]["code"]: it["rank"] for it in before["items"]}
        ranking["items"] = [
            {"rank": it["rank"], "previous_rank": previous_rank.get(it["unit"]["code"]), **{k: it[k] for k in ("unit", "kpis", "change")}}
            for it in ranking["items"]
        ]
        today = periods.window("1d", periods.today(reader.now(), reader.tz))
        due_units = await scoring.ranking(reader, level, parent, today, "-due_48h", DUE_UNITS, 0, memo=memo)
        due_units["items"] = [it for it in due_units["items"] if it["kpis"]["due_48h"]]
    now_kpis = await scoring.unit_kpis(reader, code, periods.window("1d", periods.today(reader.now(), reader.tz)), None)
    drivers = {kpi: await drivers_service.drivers(reader, code, kpi, p, "contribution", MAX_ITEMS, 0) for kpi in REPORT_DRIVERS}
    silent = await scoring.silent_units(reader, code, MAX_ITEMS, 0)
    sectors = await scoring.sectors(reader, code, p)
    return {
        "unit": scoring.unit_shape(u),
        "period": p.as_dict(),
        "previous": {"period": summary["previous"]["period"]},
        "as_of": summary["as_of"],
        "summary": summary,
        "ranking": ranking,
        "drivers": drivers,
        "due_soon": {
            "as_of": now_kpis["as_of"],
            "due_24h": now_kpis["kpis"]["due_24h"],
            "due_48h": now_kpis["kpis"]["due_48h"],
            "due_72h": now_kpis["kpis"]["due_72h"],
            "units": due_units,
        },
        "silent": silent,
        "sectors": sectors,
    }
