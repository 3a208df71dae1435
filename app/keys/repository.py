"""All SQL of API keys."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.models import ApiKey


async def insert_key(session: AsyncSession, **values) -> ApiKey:
    """Store a key (its hash only)."""
    key = ApiKey(**values)
    session.add(key)
    await session.flush()
    return key


async def read_key_by_hash(session: AsyncSession, token_hash: str) -> ApiKey | None:
    """The key with this token hash, revoked or not."""
    return (await session.execute(select(ApiKey).where(ApiKey.token_hash == token_hash))).scalar()


async def read_keys(session: AsyncSession) -> list[ApiKey]:
    """Every key, by id."""
    return list((await session.execute(select(ApiKey).order_by(ApiKey.id))).scalars())


async def revoke_key(session: AsyncSession, key_id: int, at: datetime) -> bool:
    """Mark a key revoked; False when there is no such live key."""
    result = await session.execute(update(ApiKey).where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None)).values(revoked_at=at))
    return result.rowcount == 1
