"""Small named values of this node (`node_meta`), e.g. the data version behind ETags and caches."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import dialect
from app.db.models import NodeMeta

DATA_VERSION = "data_version"  # bumped by every commit that changes figures


async def read_meta(session: AsyncSession, name: str) -> int:
    """A named value of node_meta, 0 when absent."""
    value = (await session.execute(select(NodeMeta.value).where(NodeMeta.name == name))).scalar()
    return value or 0


async def bump_meta(session: AsyncSession, name: str) -> None:
    """Add one to a named value of node_meta."""
    stmt = dialect.insert(session, NodeMeta).values(name=name, value=1)
    stmt = stmt.on_conflict_do_update(index_elements=["name"], set_={"value": NodeMeta.value + 1})
    await session.execute(stmt)


async def set_meta(session: AsyncSession, name: str, value: int) -> None:
    """Set a named value of node_meta."""
    stmt = dialect.insert(session, NodeMeta).values(name=name, value=value)
    await session.execute(stmt.on_conflict_do_update(index_elements=["name"], set_={"value": value}))


async def add_meta(session: AsyncSession, name: str, n: int) -> int:
    """Add n to a named value of node_meta; returns the new value."""
    stmt = dialect.insert(session, NodeMeta).values(name=name, value=n)
    stmt = stmt.on_conflict_do_update(index_elements=["name"], set_={"value": NodeMeta.value + n})
    await session.execute(stmt)
    return await read_meta(session, name)
