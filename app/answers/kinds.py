"""The kinds of shared answer and how each is computed from its request's parameters.

A request's parameters (already validated by the router) are kept with its stored answer as JSON,
so the refresher can compute the answer again without the request: `compute(ctx, kind, params)`.
The period is picked anew at each computation (a 30-day window ends today, whatever day that is).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date, datetime, tzinfo

from app.aggregates import periods
from app.aggregates.at_tau import TAU
from app.aggregates.live_memo import LIVE
from app.aggregates.periods import Period
from app.db.engine import Database
from app.scoring import drivers as drivers_service
from app.scoring import report as report_service
from app.scoring import service as scoring
from app.scoring.context import Reader
from app.scoring.ranking import RankingMemo, level_kpis, ranking
from app.settings import Settings
from app.units.model import NATION
from app.units.service import Registry


@dataclass(frozen=True)
class ReadContext:
    """What every computation needs: the scoring service's read context (database, registry, time
    zone, silent hours, clock) and this process's ranking memo."""

    reader: Reader
    rankings: RankingMemo

    @classmethod
    def of(cls, db: Database, registry: Registry, settings: Settings, rankings: RankingMemo) -> ReadContext:
        return cls(Reader.of(db, registry, settings), rankings)


def _date(value: str | None) -> date | None:
    return None if value is None else date.fromisoformat(value)


def _period(ctx: ReadContext, q: dict):
    r = ctx.reader
    return scoring.pick_period(q.get("period"), _date(q.get("at")), q.get("window"), r.now(), r.tz)


def _kpis(ctx: ReadContext, q: dict) -> Awaitable[dict]:
    return scoring.unit_kpis(ctx.reader, q["code"], _period(ctx, q), q.get("sector"))


def _rankings(ctx: ReadContext, q: dict) -> Awaitable[dict]:
    return ranking(
        ctx.reader,
        q["level"],
        q.get("parent"),
        _period(ctx, q),
        q["sort"],
        q["limit"],
        q["offset"],
        memo=ctx.rankings,
        min_count=q["min_count"],
    )


def _series(ctx: ReadContext, q: dict) -> Awaitable[dict]:
    return scoring.series(ctx.reader, q["code"], q["kpi"], q["interval"], _date(q.get("from")), _date(q.get("to")))


def _sectors(ctx: ReadContext, q: dict) -> Awaitable[dict]:
    return scoring.sectors(ctx.reader, q["code"], _period(ctx, q))


def _at_risk(ctx: ReadContext, q: dict) -> Awaitable[dict]:
    return scoring.at_risk(ctx.reader, q["code"], q["within"], q["include_overdue"], q["limit"], q["offset"])


def _silent(ctx: ReadContext, q: dict) -> Awaitable[dict]:
    return scoring.silent_units(ctx.reader, q["code"], q["limit"], q["offset"])


def _drivers(ctx: ReadContext, q: dict) -> Awaitable[dict]:
    return drivers_service.drivers(ctx.reader, q["code"], q["kpi"], _period(ctx, q), q["sort"], q["limit"], q["offset"])


def _report(ctx: ReadContext, q: dict) -> Awaitable[dict]:
    p = report_service.report_period(ctx.reader, q["period"], _date(q.get("at")))
    return report_service.report(ctx.reader, q["code"], p, memo=ctx.rankings)


KINDS: dict[str, Callable[[ReadContext, dict], Awaitable[dict]]] = {
    "kpis": _kpis,
    "rankings": _rankings,
    "series": _series,
    "sectors": _sectors,
    "at_risk": _at_risk,
    "silent": _silent,
    "drivers": _drivers,
    "report": _report,
}


# Kinds whose figures move with time at deadlines alone, besides the data of their unit
# (`unit_of`): an answer of these kinds can be found to hold without being computed again
# (app.answers.dependencies, repository.holds).
HELD_KINDS = ("kpis", "rankings", "series", "sectors")


def unit_of(kind: str, params: dict) -> str:
    """The unit whose change (or a change below it) moves the answer's figures."""
    if kind == "rankings":
        return params.get("parent") or NATION
    return params["code"]


def scope_of(kind: str, params: dict) -> str | None:
    """The unit below the nation whose figures alone (with those under it) an answer of a
    HELD_KINDS kind shows: whether they changed is read in a few rows (repository.holds). None
    for any other answer (the nation's move with every batch)."""
    if kind not in HELD_KINDS:
        return None
    unit = unit_of(kind, params)
    return None if unit == NATION else unit


# Kinds whose answer compares a period with its previous one (SPEC section 4): while the period is
# not over, the previous figures stand at the same point t, which moves with now (compared_point).
COMPARED_KINDS = ("kpis", "rankings")


def compared_point(kind: str, params: dict, now: datetime, tz: tzinfo) -> tuple[Period, datetime] | None:
    """A KPI answer or a ranking of a period not over: (the period, the same point t of its previous
    period), for its previous figures stand at t, which moves with now (its figures can change with
    time alone, and `until` does); None for any other answer."""
    if kind not in COMPARED_KINDS:
        return None
    p = scoring.pick_period(params.get("period"), _date(params.get("at")), params.get("window"), now, tz)
    t = periods.same_point(p, now, tz)
    return None if t is None else (p, t)


async def compute(ctx: ReadContext, kind: str, params: dict) -> dict:
    """The answer of one kind for these parameters, computed now (the figures at now, and the
    previous period's corrections at the same point, of the units that did not change since this
    process last read them from its memos: app.aggregates.live_memo, app.aggregates.tau_memo)."""
    token, tau = LIVE.set(ctx.rankings.live), TAU.set(getattr(ctx.rankings, "tau", None))
    try:
        return await KINDS[kind](ctx, params)
    finally:
        TAU.reset(tau)
        LIVE.reset(token)


def batched(kind: str, params: dict, registry: Registry) -> tuple | None:
    """The answers computed together with this one (compute_many), named by what they share: KPIs of
    a commune or a province over all sectors, by level and period; None for any other answer."""
    if kind != "kpis" or params.get("sector") is not None:
        return None
    u = registry.get(params["code"])
    if u is None or u.level not in ("commune", "province"):
        return None
    return (kind, u.level, params.get("period"), params.get("at"), params.get("window"))


async def compute_many(ctx: ReadContext, params: list[dict]) -> list[dict]:
    """The answers of several requests of one `batched` group, computed now at once: the KPIs of
    communes or provinces from the rows of the ranking of their level in that period
    (ranking.level_kpis)."""
    codes = [q["code"] for q in params]
    level = ctx.reader.registry.get(codes[0]).level
    got = await level_kpis(ctx.reader, level, codes, _period(ctx, params[0]), ctx.rankings)
    return [got[code] for code in codes]
