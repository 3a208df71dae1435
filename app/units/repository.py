"""All SQL of the unit registry."""

from __future__ import annotations

from sqlalchemy import delete, func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import dialect
from app.db.models import Unit
from app.units.model import UnitRow

REGISTRY_VERSION = "registry_version"


async def count_units(session: AsyncSession) -> int:
    """Number of units stored."""
    return (await session.execute(select(func.count()).select_from(Unit))).scalar_one()


async def read_units(session: AsyncSession) -> list[UnitRow]:
    """Every unit, by code."""
    # columns, not ORM objects: every worker's start and every registry change reads all 3,356 (a third the time)
    rows = await session.execute(select(Unit.code, Unit.name, Unit.level, Unit.kind, Unit.parent_code).order_by(Unit.code))
    return [UnitRow(*row) for row in rows]


async def upsert_units(session: AsyncSession, rows: list[UnitRow]) -> None:
    """Insert or update units by code."""
    for start in range(0, len(rows), 500):
        chunk = [r.as_dict() for r in rows[start : start + 500]]
        stmt = dialect.insert(session, Unit).values(chunk)
        stmt = stmt.on_conflict_do_update(
            index_elements=["code"],
            set_={c: stmt.excluded[c] for c in ("name", "level", "kind", "parent_code")},
        )
        await session.execute(stmt)


async def delete_units_except(session: AsyncSession, codes: set[str]) -> int:
    """Delete every unit whose code is not in `codes`."""
    existing = set((await session.execute(select(Unit.code))).scalars())
    gone = sorted(existing - codes)
    for start in range(0, len(gone), 500):
        await session.execute(delete(Unit).where(Unit.code.in_(gone[start : start + 500])))
    return len(gone)


async def analyze_units(session: AsyncSession) -> None:
    """Refresh the planner's statistics of the unit table (rollup joins go astray without them)."""
    await session.execute(text("ANALYZE unit"))
