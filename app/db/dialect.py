"""Dialect helpers, so one repository runs on SQLite and PostgreSQL."""

from __future__ import annotations

from functools import lru_cache

import orjson
from sqlalchemy import String, any_, bindparam, func, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import ColumnElement
from sqlalchemy.sql.visitors import InternalTraversal
from sqlalchemy.types import NullType


def insert(session: AsyncSession, table):
    """The dialect's INSERT, which knows ON CONFLICT."""
    if session.bind.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def is_postgres(session: AsyncSession) -> bool:
    return session.bind.dialect.name == "postgresql"


async def plan_each_run(session: AsyncSession) -> None:
    """For the rest of this transaction, plan every statement for the values it runs with
    (PostgreSQL's `plan_cache_mode = force_custom_plan`; SQLite: nothing). After five runs of a
    prepared statement PostgreSQL may fall back to a generic plan, which cannot tell a deadline
    range of hours from one of years, nor a few units from the whole country: for the reads led by
    such ranges (due soon, at risk, the deadlines of today)."""
    if is_postgres(session):
        await (await session.connection()).execute(text("SET LOCAL plan_cache_mode = force_custom_plan"))


class CodesIn(ColumnElement):
    """`column IN (:codes)`, the list bound at execution. PostgreSQL takes it as one array
    (`column = ANY(:codes)`): one statement text whatever the list's length, so the driver's
    prepared statement serves again, and nothing renders a placeholder per code at each execution
    (SQLAlchemy's expanding parameter: ~8 % of a refresher tick that re-read 1,400 units in chunks of
    500). PostgreSQL plans both spellings alike (it reads an IN list as `= ANY(ARRAY[...])`). SQLite
    keeps the expanding list."""

    inherit_cache = True
    type = NullType()
    _traverse_internals = [("column", InternalTraversal.dp_clauseelement), ("name", InternalTraversal.dp_string)]

    def __init__(self, column, name: str = "codes"):
        self.column, self.name = column, name


@compiles(CodesIn)
def _codes_in(element: CodesIn, compiler, **kw) -> str:
    return compiler.process(element.column.in_(bindparam(element.name, expanding=True)), **kw)


@compiles(CodesIn, "postgresql")
def _codes_any(element: CodesIn, compiler, **kw) -> str:
    return compiler.process(element.column == any_(bindparam(element.name, type_=postgresql.ARRAY(String))), **kw)


def codes_in(column, name: str = "codes") -> CodesIn:
    """`column` among the codes bound as `name` (a list) at execution: CodesIn."""
    return CodesIn(column, name)


# A list of at most this many unit codes may lead a plan through the units' indexes; a longer one
# (a province's communes, a memo's chunk of changed units) filters the rows the time ranges find.
FEW_CODES = 8


def codes_filtered(postgres: bool, column: str, n_codes: int) -> str:
    """The spelling of `column` (SQL) in `column IN (codes)` of a read led by time ranges. PostgreSQL
    pushes a long list into every index range as an array of keys, costs that as one probe per code
    and range, and falls back to a sequential scan of the table, which grows with the history
    (measured: a province's correction at t, 126 codes, 55 ms on 340k dossiers; 1.7 ms filtered);
    an expression keeps the list out of the indexes. SQLite would read each unit's whole history by
    the primary key: its unary plus does the same for any list."""
    if not postgres:
        return f"+{column}"
    return column if n_codes <= FEW_CODES else f"({column} || '')"


async def bulk_upsert(
    session: AsyncSession,
    table,
    rows: list[dict],
    conflict: list[str],
    add: tuple[str, ...] = (),
    replace: tuple[str, ...] = (),
    returning: tuple[str, ...] = (),
    combine: tuple[tuple[str, str], ...] = (),
    newer: str | None = None,
    sparse: tuple[str, ...] = (),
) -> list[tuple]:
    """INSERT rows; on a conflict do nothing, or add to / replace the named columns, or set them to
    a SQL function of the stored and the new value (`combine`: (column, function) pairs; `least`
    and `greatest` on both stores). `sparse` columns are added to as well, NULL standing for zero on
    both sides and a zero sum stored as NULL (the day rows' counters, app.db.models.aggregates.
    day_count_column): rows give None for zero. With `newer`, a conflicting row is updated only when the new
    row's value of that column is greater than the stored one (NULL on either side: kept); a row
    kept is still locked, as by an update, and not returned.

    PostgreSQL gets one statement over the rows sent as one JSON document and expanded by
    json_populate_recordset() with the table's own column types: one round trip, one plan and one
    parameter for a thousand rows. (unnest() over one array per column spent a third of an ingest
    worker's CPU in asyncpg's per-element array encoding; orjson writes the document in C.)
    SQLite takes executemany with one cached statement. Rows must have the same keys; keys must be
    unique within `rows`; datetimes must be aware.
    """
    if not rows:
        return []
    conn = await session.connection()
    t = table.__table__ if hasattr(table, "__table__") else table
    if newer is not None and not (add or replace or combine or sparse):
        raise ValueError("newer: a condition of an update, and nothing is updated")
    if conn.dialect.name != "postgresql":
        stmt = sqlite.insert(t)
        if add or replace or combine or sparse:
            sets = {c: t.c[c] + stmt.excluded[c] for c in add} | {c: stmt.excluded[c] for c in replace}
            sets |= {c: func.nullif(func.coalesce(t.c[c], 0) + func.coalesce(stmt.excluded[c], 0), 0) for c in sparse}
            sets |= {c: getattr(func, _SQLITE_FUNCTIONS.get(fn, fn))(t.c[c], stmt.excluded[c]) for c, fn in combine}
            where = t.c[newer] < stmt.excluded[newer] if newer is not None else None
            stmt = stmt.on_conflict_do_update(index_elements=conflict, set_=sets, where=where)
        else:
            stmt = stmt.on_conflict_do_nothing(index_elements=conflict)
        if returning:
            stmt = stmt.returning(*(t.c[c] for c in returning))
            return [tuple(r) for r in (await conn.execute(stmt, rows)).all()]
        await conn.execute(stmt, rows)
        return []
    sql = _pg_upsert_sql(t.name, tuple(rows[0]), tuple(conflict), add, replace, returning, combine, newer, sparse)
    result = await conn.execute(text(sql), {"rows": orjson.dumps(rows).decode()})
    return [tuple(r) for r in result.all()] if returning else []


# SQLite's spelling of PostgreSQL's least() and greatest(): its min() and max() of several arguments are
# scalar functions (they differ on NULL, which PostgreSQL's skip and SQLite's return: NOT NULL columns only)
_SQLITE_FUNCTIONS = {"least": "min", "greatest": "max"}


@lru_cache(maxsize=64)
def _pg_upsert_sql(
    name: str,
    cols: tuple[str, ...],
    conflict: tuple[str, ...],
    add: tuple[str, ...],
    replace: tuple[str, ...],
    returning: tuple[str, ...],
    combine: tuple[tuple[str, str], ...] = (),
    newer: str | None = None,
    sparse: tuple[str, ...] = (),
) -> str:
    names = ", ".join(cols)
    sql = (
        f"INSERT INTO {name} ({names}) SELECT {names} FROM json_populate_recordset(NULL::{name}, CAST(:rows AS json)) "
        f"ON CONFLICT ({', '.join(conflict)}) "
    )
    if add or replace or combine or sparse:
        sets = [f"{c} = {name}.{c} + EXCLUDED.{c}" for c in add] + [f"{c} = EXCLUDED.{c}" for c in replace]
        sets += [f"{c} = nullif(coalesce({name}.{c}, 0) + coalesce(EXCLUDED.{c}, 0), 0)" for c in sparse]
        sets += [f"{c} = {fn}({name}.{c}, EXCLUDED.{c})" for c, fn in combine]
        sql += "DO UPDATE SET " + ", ".join(sets)
        if newer is not None:
            sql += f" WHERE {name}.{newer} < EXCLUDED.{newer}"
    else:
        sql += "DO NOTHING"
    if returning:
        sql += " RETURNING " + ", ".join(returning)
    return sql
