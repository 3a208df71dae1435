"""The at-risk list (SPEC section 5): pending dossiers by deadline."""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache

from sqlalchemy import and_, bindparam, case, func, select, tuple_, union
from sqlalchemy.ext.asyncio import AsyncSession

from app.aggregates.at_now import count_open_due
from app.db import dialect
from app.db.models import (
    ALL_SECTORS,
    OPEN,
    ArchivedReceipt,
    Dossier,
    DossierEvent,
    DossierFuture,
)

AT_RISK_COLUMNS = ("unit_code", "dossier_id", "recv_at", "eff_due_at", "channel", "sector", "recv_event_id")


@lru_cache(maxsize=16)
def _at_risk_statements(has_codes: bool, include_overdue: bool, ahead: bool) -> tuple:
    """(count, page) over the pending dossiers due before `until` (and from `now` on unless
    `include_overdue`), soonest first, ties by unit and dossier id.

    Open dossiers come from the partial indexes over open dossiers by deadline (ix_dossier_open_due,
    nation-wide in this very order; ix_dossier_unit_open_due per unit), so neither the count nor a
    page reads an ended dossier. With `ahead`, also the few dossiers pending at now whose end is
    dated later (within the clock-skew allowance; they carry a future mark)."""
    d, f = Dossier, DossierFuture
    now = bindparam("now", type_=d.eff_due_at.type)
    until = bindparam("until", type_=d.eff_due_at.type)
    common = [d.eff_due_at < until, d.recv_at < now]
    if not include_overdue:
        common.append(d.eff_due_at >= now)
    if has_codes:
        common.append(d.unit_code.in_(bindparam("codes", expanding=True)))
    cols = [getattr(d, c) for c in AT_RISK_COLUMNS]
    parts = [select(*cols).where(OPEN, *common)]
    if ahead:
        marked = select(f.unit_code, f.dossier_id).where(f.at >= now).distinct()
        parts.append(
            select(*cols).where(d.end_at >= now, d.eff_due_at.is_not(None), tuple_(d.unit_code, d.dossier_id).in_(marked), *common)
        )
    if len(parts) == 1:
        page = parts[0].order_by(d.eff_due_at, d.unit_code, d.dossier_id)
        count = select(func.count()).select_from(d).where(OPEN, *common)
    else:
        both = union(*parts).subquery()
        page = select(both).order_by(both.c.eff_due_at, both.c.unit_code, both.c.dossier_id)
        count = select(func.count()).select_from(both)
    page = page.limit(bindparam("limit")).offset(bindparam("offset"))
    return count, page


@lru_cache(maxsize=8)
def _at_risk_ahead_statement(has_codes: bool, include_overdue: bool):
    """Among dossiers with a mark ahead of now, in the at-risk window: (pending at now but ended
    later, open but received after now)."""
    d, f = Dossier, DossierFuture
    now = bindparam("now", type_=d.eff_due_at.type)
    where = [d.eff_due_at.is_not(None), d.eff_due_at < bindparam("until", type_=d.eff_due_at.type)]
    if not include_overdue:
        where.append(d.eff_due_at >= now)
    if has_codes:
        where.append(d.unit_code.in_(bindparam("codes", expanding=True)))
    where.append(tuple_(d.unit_code, d.dossier_id).in_(select(f.unit_code, f.dossier_id).where(f.at >= now).distinct()))
    ends = and_(d.end_at >= now, d.recv_at < now)
    starts = and_(d.end_at.is_(None), d.recv_at >= now)
    return select(func.sum(case((ends, 1), else_=0)), func.sum(case((starts, 1), else_=0))).where(*where)


async def read_at_risk(
    session: AsyncSession,
    codes: tuple[str, ...] | None,
    now: datetime,
    until: datetime,
    include_overdue: bool,
    limit: int,
    offset: int,
    rollup: str | None = None,
) -> tuple[int, list[dict]]:
    """(total, one page of rows) of the pending dossiers of `codes` (None: every unit) due before
    `until`, from `now` on unless `include_overdue`; each row with its `procedure_code` (the one
    its winning `received` names). For a province or the nation (`rollup`), the total sums whole
    hours of its open-deadline rollup rows (count_open_due) instead of counting the window."""
    conn = await session.connection()
    await dialect.plan_each_run(session)  # generically planned, it read a unit's every open dossier
    marks = select(DossierFuture.at).where(DossierFuture.at >= bindparam("now", type_=DossierFuture.at.type)).limit(1)
    ahead = (await conn.execute(marks, {"now": now})).first() is not None
    count, page = _at_risk_statements(codes is not None, include_overdue, ahead)
    params: dict = {"now": now, "until": until, "limit": limit, "offset": offset}
    if codes is not None:
        params["codes"] = list(codes)
    rows = [dict(r) for r in (await conn.execute(page, params)).mappings()]
    if rows and len(rows) < limit:  # the last page: the total needs no count
        total = offset + len(rows)
    elif rollup is not None:
        (total,) = await count_open_due(session, rollup, ALL_SECTORS, codes, [(None if include_overdue else now, until)])
        if ahead:  # pending but not open (ends ahead of now); open but not pending (received ahead of now)
            row = (await conn.execute(_at_risk_ahead_statement(codes is not None, include_overdue), params)).first()
            total += int(row[0] or 0) - int(row[1] or 0)
    else:
        total = int((await conn.execute(count, params)).scalar() or 0)
    # the log is found by dossier (its (unit_code, dossier_id) index; the other, on an event's hash, finds duplicates)
    receipts = sorted({(r["unit_code"], r["dossier_id"], r["recv_event_id"]) for r in rows if r["recv_event_id"]})
    keys = sorted({(u, i) for u, _, i in receipts})
    procedures: dict[tuple[str, str], str | None] = {}
    for chunk in (receipts[i : i + 500] for i in range(0, len(receipts), 500)):
        e = DossierEvent
        stmt = select(e.unit_code, e.event_id, e.procedure_code).where(tuple_(e.unit_code, e.dossier_id, e.event_id).in_(chunk))
        procedures.update({(u, i): p for u, i, p in (await conn.execute(stmt)).all()})
    archived = [k for k in keys if k not in procedures]  # receipts of a month archived (app.retention)
    for chunk in (archived[i : i + 500] for i in range(0, len(archived), 500)):
        a = ArchivedReceipt
        stmt = select(a.unit_code, a.event_id, a.procedure_code).where(tuple_(a.unit_code, a.event_id).in_(chunk))
        procedures.update({(u, i): p for u, i, p in (await conn.execute(stmt)).all()})
    for r in rows:
        r["procedure_code"] = procedures.get((r["unit_code"], r.pop("recv_event_id")))
    return total, rows
