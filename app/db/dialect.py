"""Dialect helpers, so one repository runs on SQLite and PostgreSQL."""

from __future__ import annotations

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession


def insert(session: AsyncSession, table):
    """The dialect's INSERT, which knows ON CONFLICT."""
    if session.bind.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def is_postgres(session: AsyncSession) -> bool:
    return session.bind.dialect.name == "postgresql"
