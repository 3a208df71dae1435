"""Small named values of this node (`node_meta`), e.g. the data version behind ETags and caches."""

from __future__ import annotations

import random

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import dialect
from app.db.models import NodeMeta

# The data version behind ETags and answer caches: bumped by every commit that changes figures.
# It is the sum of VERSION_SLOTS rows (`data_version.0` …) and of the single row of older nodes
# (`data_version`): a commit adds one to a slot chosen at random, so concurrent commits seldom wait
# for each other's row lock, and a reader sees a sum that grows with every committed change.
DATA_VERSION = "data_version"
VERSION_SLOTS = 16  # rendered into the PostgreSQL write pass (app.aggregates.pgpass): it bumps one of the same 16


async def bump_data_version(session: AsyncSession) -> None:
    """Count one more change of the figures (in the writer's transaction; last, it holds a hot row)."""
    await bump_meta(session, f"{DATA_VERSION}.{random.randrange(VERSION_SLOTS)}")


def data_version_select():
    """SELECT of the data version (the sum of its slots), to read alone or as a scalar subquery."""
    return select(func.coalesce(func.sum(NodeMeta.value), 0)).where(
        or_(NodeMeta.name == DATA_VERSION, NodeMeta.name.like(f"{DATA_VERSION}.%"))
    )


async def read_data_version(session: AsyncSession) -> int:
    """The data version: the sum of its slots."""
    return int((await session.execute(data_version_select())).scalar() or 0)


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
