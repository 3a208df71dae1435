"""Drivers of a change (SPEC section 4): the parts of a unit and what each contributed to the change
of one KPI against the previous period.

The parts of U are its own dossiers (if it has any) and the subtree of each unit directly below it.
They are read from the rows a ranking reads (one grouped read of the units below, one read of U as
its KPI answer reads it); U's own figures are U's less the sum of the parts below, exact because
every numerator and denominator is a count. For a count KPI a part contributes k_c(P) − k_c(P′);
for a rate N/D it contributes N_c(P)/D_U(P) − N_c(P′)/D_U(P′), so the contributions add up to U's
change exactly (before rounding to 6 decimals).
"""

from __future__ import annotations

from app.aggregates.periods import Period
from app.aggregates.reads import read_spans, read_sums
from app.aggregates.sums import Scope, Sums
from app.db.models import ALL_SECTORS
from app.errors import Unprocessable
from app.scoring import kpis as kpi_math
from app.scoring import service as scoring
from app.scoring.context import Reader

# The KPIs that are N/D (a score is a rate out of 20), and those without drivers: hours are not
# sums of parts, and silent units are a figure at now, not of the period (from the KPI registry)
RATE_SCALE = {k.name: 20 if k.kind == kpi_math.SCORE else 1 for k in kpi_math.KPIS if k.kind in (kpi_math.RATE, kpi_math.SCORE)}
NO_DRIVERS = frozenset({k.name for k in kpi_math.KPIS if k.kind == kpi_math.HOURS} | {"silent_units"})
DIGITS = 6
CHILD_LEVEL = {"nation": "province", "province": "commune"}


def check_kpi(kpi: str) -> None:
    """422 for an unknown KPI and for those without drivers (processing hours, silent units)."""
    if kpi not in kpi_math.KPI_NAMES:
        raise Unprocessable(f"unknown KPI {kpi}", [{"loc": ["kpi"], "msg": f"unknown KPI {kpi}"}])
    if kpi in NO_DRIVERS:
        raise Unprocessable(f"{kpi} has no drivers", [{"loc": ["kpi"], "msg": "processing hours and silent_units have no drivers"}])


def fraction(figures: dict, samples: dict, kpi: str) -> tuple[int | None, int]:
    """(N, D) of a rate KPI from a span's KPIs and samples; N None where the KPI is unknown (a
    central node's 766 figures of other periods)."""
    if kpi == "online_rate":
        return figures["received_online"], figures["received"]
    if kpi == "on_time_rate":
        return figures["resolved_early"] + figures["resolved_on_time"], samples["classified"]
    size = samples["cohort"]
    return (None if figures["overdue_766"] is None else size - figures["overdue_766"]), size


def _counts(kpi: str, s: Sums) -> tuple[int | None, int | None]:
    """A part's (N, D) for a rate, (count, None) for a count KPI."""
    figures = kpi_math.compute(s)
    if kpi in RATE_SCALE:
        return fraction(figures, kpi_math.samples(s), kpi)
    return figures[kpi], None


def _less(total: tuple, parts: list[tuple]) -> tuple:
    """U's own (N, D): U's less the parts below it."""

    def minus(i: int):
        if total[i] is None or any(p[i] is None for p in parts):
            return None
        return total[i] - sum(p[i] for p in parts)

    return minus(0), minus(1)


def _value(kpi: str, nd: tuple) -> float | int | None:
    n, d = nd
    if kpi not in RATE_SCALE:
        return n
    if n is None or not d:
        return None
    return round(RATE_SCALE[kpi] * n / d, 2 if kpi == "settlement_score" else 4)


async def drivers(reader: Reader, code: str, kpi: str, p: Period, sort: str = "contribution", limit: int = 100, offset: int = 0) -> dict:
    """The parts of a unit and each one's contribution to the change of `kpi` (SPEC section 4)."""
    check_kpi(kpi)
    if sort not in ("contribution", "-contribution"):
        raise Unprocessable("sort is contribution or -contribution", [{"loc": ["sort"], "msg": "contribution or -contribution"}])
    registry, tz, silent_after_hours = reader.registry, reader.tz, reader.silent_after_hours
    u = scoring.unit_of(registry, code)
    now = reader.now()
    prev, spans, t = scoring.compared(p, now, tz)
    below = CHILD_LEVEL.get(u.level)
    async with reader.db.session() as session:
        cur_s, prev_s = await read_spans(
            session, scoring.scope_of(registry, code), spans, ALL_SECTORS, silent_after_hours=silent_after_hours
        )
        children = {}
        if below is not None:
            got = await read_sums(session, Scope(level=below, parent=code), spans, ALL_SECTORS, silent_after_hours=silent_after_hours)
            children = {c.code: got.get(c.code) or [Sums(), Sums()] for c in registry.at_level(below, code)}
    cur_k, prev_k = kpi_math.compute(cur_s), kpi_math.compute(prev_s)
    total = (_counts(kpi, cur_s), _counts(kpi, prev_s))
    parts = [(scoring.unit_shape(registry.get(c)), False, _counts(kpi, s[0]), _counts(kpi, s[1])) for c, s in sorted(children.items())]
    own_cur = _less(total[0], [x[2] for x in parts])
    own_prev = _less(total[1], [x[3] for x in parts])
    if below is None or any(v for v in (*own_cur, *own_prev)):  # a commune's only part is itself
        parts.insert(0, (scoring.unit_shape(u), True, own_cur, own_prev))
    change = kpi_math.change(cur_k, prev_k)[kpi]
    items = []
    for unit, own, (n, d), (n0, d0) in parts:
        if change is None or n is None or n0 is None:
            contribution = None
        elif kpi in RATE_SCALE:
            scale = RATE_SCALE[kpi]
            contribution = round(scale * n / total[0][1] - scale * n0 / total[1][1], DIGITS)
        else:
            contribution = n - n0
        items.append(
            {
                "unit": unit,
                "own": own,
                "value": _value(kpi, (n, d)),
                "previous_value": _value(kpi, (n0, d0)),
                "numerator": n,
                "denominator": d,
                "previous_numerator": n0,
                "previous_denominator": d0,
                "contribution": contribution,
            }
        )
    items.sort(key=lambda it: it["unit"]["code"])
    known = [it for it in items if it["contribution"] is not None]
    known.sort(key=lambda it: it["contribution"], reverse=sort.startswith("-"))
    ordered = known + [it for it in items if it["contribution"] is None]
    return {
        "unit": scoring.unit_shape(u),
        "kpi": kpi,
        "period": p.as_dict(),
        "previous": {"period": scoring.previous_period(prev, t, prev_s, tz)},
        "as_of": scoring.as_of(now, tz),
        "value": cur_k[kpi],
        "previous_value": prev_k[kpi],
        "change": change,
        "total": len(ordered),
        "limit": limit,
        "offset": offset,
        "items": ordered[offset : offset + limit],
    }
