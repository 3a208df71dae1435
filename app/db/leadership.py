"""Leadership: exactly one process of a deployment does a job (exporting, refreshing answers).

On PostgreSQL the holder of a session advisory lock on a dedicated connection (released by the
server when the process or connection dies, so another takes over at its next try); on SQLite the
holder of a lease row that expires.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from app.db.engine import Database
from app.db.models import ExportLease

log = logging.getLogger("chiso.leadership")


async def take_lease(session: AsyncSession, name: str, holder: str, now: datetime, until: datetime) -> bool:
    """Hold (or renew) the named lease unless another holder's lease is still running."""
    row = (await session.execute(select(ExportLease).where(ExportLease.name == name))).scalar_one_or_none()
    if row is None:
        session.add(ExportLease(name=name, holder=holder, expires_at=until))
        await session.flush()
        return True
    if row.holder != holder and row.expires_at > now:
        return False
    row.holder, row.expires_at = holder, until
    await session.flush()
    return True


async def drop_lease(session: AsyncSession, name: str, holder: str) -> None:
    """Give the lease up, so another process takes over at once."""
    await session.execute(delete(ExportLease).where(ExportLease.name == name, ExportLease.holder == holder))


class Leadership:
    """One job's leadership: `acquire()` each tick (True while this process leads), `release()` at the end."""

    def __init__(self, db: Database, lock_key: int, lease: str, holder: str, ttl: float):
        self.db = db
        self.lock_key = lock_key
        self.lease = lease
        self.holder = holder
        self.ttl = ttl  # seconds a SQLite lease lasts without renewal
        self._lock_conn: AsyncConnection | None = None

    async def acquire(self) -> bool:
        """Take or keep the leadership; False while another process holds it."""
        if self.db.is_sqlite:
            now = datetime.now(UTC)
            async with self.db.transaction() as session:
                return await take_lease(session, self.lease, self.holder, now, now + timedelta(seconds=self.ttl))
        if self._lock_conn is not None:
            try:
                await self._lock_conn.execute(text("SELECT 1"))
                await self._lock_conn.commit()
                return True
            except Exception:  # noqa: BLE001 - the connection died, and the lock with it: try again from scratch
                log.warning("%s lock connection lost", self.lease)
                await self._drop_lock_conn()
        conn = await self.db.engine.connect()
        try:
            got = (await conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": self.lock_key})).scalar()
            await conn.commit()  # session locks outlive the transaction; never sit idle in one
        except Exception:
            await conn.close()
            raise
        if got:
            self._lock_conn = conn
            return True
        await conn.close()
        return False

    async def release(self) -> None:
        """Give the leadership up, so another process takes over at once."""
        if self.db.is_sqlite:
            try:
                async with self.db.transaction() as session:
                    await drop_lease(session, self.lease, self.holder)
            except Exception:  # noqa: BLE001 - shutting down: the lease expires by itself
                pass
        await self._drop_lock_conn()

    async def _drop_lock_conn(self) -> None:
        conn, self._lock_conn = self._lock_conn, None
        if conn is None:
            return
        try:
            # The pool keeps the server session (and a session lock with it): unlock before returning it.
            await conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": self.lock_key})
            await conn.commit()
            await conn.close()
        except Exception:  # noqa: BLE001 - broken: make sure the server session ends, which frees the lock
            try:
                await conn.invalidate()
            except Exception:  # noqa: BLE001
                pass
