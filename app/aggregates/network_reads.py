"""Reads of the records received from subordinate nodes (central mode): their INDEX-766 cohorts."""

from __future__ import annotations

from functools import lru_cache

from sqlalchemy import and_, bindparam, case, exists, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.aggregates.scopes import _scope_params, _scope_shape, _select
from app.aggregates.sums import Scope, Span
from app.db.models import (
    NetworkCohort,
    NetworkDay,
)

_HELD = "chiso.network_held"


async def network_held(session: AsyncSession) -> tuple[bool, bool]:
    """Whether this node holds day records and cohort records of subordinates at all (a central
    node): one statement, once per session. A node that holds none skips the network's reads, two
    round trips of every answer (each ~10 ms on a saturated server, bench/README)."""
    held = session.info.get(_HELD)
    if held is None:
        stmt = select(exists(select(NetworkDay.unit_code)), exists(select(NetworkCohort.unit_code)))
        day, cohort = (await (await session.connection()).execute(stmt)).one()
        held = session.info[_HELD] = (bool(day), bool(cohort))
    return held


COHORTS_PER_QUERY = 400  # cohort spans per network_cohort query (2 columns each)


async def _read_network_cohort(session: AsyncSession, scope: Scope, spans: list[Span], out) -> None:
    """Cohort records received from subordinates; other periods of units they feed are unknown."""
    if not (await network_held(session))[1]:
        return
    every = tuple(i for i, sp in enumerate(spans) if sp.cohort is not None)
    # Two columns per cohort: a series of 1,000 months in one select list passed PostgreSQL's 1,664 (a 503).
    for cohorts in [every[k : k + COHORTS_PER_QUERY] for k in range(0, len(every), COHORTS_PER_QUERY)] or [()]:
        stmt = _network_cohort_statement(scope.level, scope.parent, scope.codes is not None, cohorts)
        params = _scope_params(scope)
        for i in cohorts:
            params[f"kind_{i}"], params[f"start_{i}"] = spans[i].cohort
        mine = set(cohorts)
        for row in (await (await session.connection()).execute(stmt, params)).mappings():
            if not row["n"]:
                continue
            for i, sp in enumerate(spans):
                sums = out[row["g"]][i]
                if sp.cohort is None:
                    sums.net_cohort_unknown = True
                elif i in mine:
                    sums.net_cohort_size = int(row[f"s_{i}"] or 0)
                    sums.net_cohort_ok = int(row[f"k_{i}"] or 0)


@lru_cache(maxsize=64)
def _network_cohort_statement(level: str | None, parent: str | None, has_codes: bool, cohorts: tuple[int, ...]):
    t = NetworkCohort
    cols = [func.count().label("n")]
    for i in cohorts:
        hit = and_(t.kind == bindparam(f"kind_{i}"), t.start == bindparam(f"start_{i}"))
        cols.append(func.sum(case((hit, t.c_size), else_=0)).label(f"s_{i}"))
        cols.append(func.sum(case((hit, t.c_ok), else_=0)).label(f"k_{i}"))
    return _select(_scope_shape(level, parent, has_codes), t, cols, [])
