"""Dialect helpers, so one repository runs on SQLite and PostgreSQL."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession


def insert(session: AsyncSession, table):
    """The dialect's INSERT, which knows ON CONFLICT."""
    if session.bind.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def is_postgres(session: AsyncSession) -> bool:
    return session.bind.dialect.name == "postgresql"


async def bulk_upsert(
    session: AsyncSession,
    table,
    rows: list[dict],
    conflict: list[str],
    add: tuple[str, ...] = (),
    replace: tuple[str, ...] = (),
    returning: tuple[str, ...] = (),
) -> list[tuple]:
    """INSERT rows; on a conflict do nothing, or add to / replace the named columns.

    PostgreSQL gets one statement over unnest()ed arrays: one round trip and one plan for a
    thousand rows, where executemany pays a round trip per row. SQLite takes executemany with one
    cached statement. Rows must have the same keys; keys must be unique within `rows`.
    """
    if not rows:
        return []
    conn = await session.connection()
    t = table.__table__ if hasattr(table, "__table__") else table
    if conn.dialect.name != "postgresql":
        stmt = sqlite.insert(t)
        if add or replace:
            sets = {c: t.c[c] + stmt.excluded[c] for c in add} | {c: stmt.excluded[c] for c in replace}
            stmt = stmt.on_conflict_do_update(index_elements=conflict, set_=sets)
        else:
            stmt = stmt.on_conflict_do_nothing(index_elements=conflict)
        if returning:
            stmt = stmt.returning(*(t.c[c] for c in returning))
            return [tuple(r) for r in (await conn.execute(stmt, rows)).all()]
        await conn.execute(stmt, rows)
        return []
    cols = list(rows[0])
    arrays = ", ".join(f"CAST(:c{i} AS {t.c[c].type.compile(conn.dialect)}[])" for i, c in enumerate(cols))
    sql = f'INSERT INTO {t.name} ({", ".join(cols)}) SELECT * FROM unnest({arrays}) ON CONFLICT ({", ".join(conflict)}) '
    if add or replace:
        sets = [f"{c} = {t.name}.{c} + EXCLUDED.{c}" for c in add] + [f"{c} = EXCLUDED.{c}" for c in replace]
        sql += "DO UPDATE SET " + ", ".join(sets)
    else:
        sql += "DO NOTHING"
    if returning:
        sql += " RETURNING " + ", ".join(returning)
    params = {f"c{i}": [r[c] for r in rows] for i, c in enumerate(cols)}
    result = await conn.execute(text(sql), params)
    return [tuple(r) for r in result.all()] if returning else []
