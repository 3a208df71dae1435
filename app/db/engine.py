"""The Database object: one engine per app, set up per dialect."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from app.db.types import hist_add


def _sqlite_engine(url: str) -> AsyncEngine:
    db_path = make_url(url).database
    if db_path and db_path != ":memory:":
        Path(db_path).parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(url, connect_args={"timeout": 60})

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection, _record):
        # Take BEGIN over from pysqlite so that writers can ask for BEGIN IMMEDIATE.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")  # readers never block the writer
        cursor.execute("PRAGMA synchronous=FULL")  # an acknowledged event survives power loss
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=60000")  # several workers share one file
        cursor.close()
        # the sum of two packed histograms (app.db.types.hist_add), for the histogram rows' upserts
        dbapi_connection.create_function("chiso_hist_add", 2, hist_add, deterministic=True)

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn):
        # Writers take the write lock at BEGIN, so two writers never deadlock upgrading a read lock.
        mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")

    return engine


def _postgres_engine(url: str, pool_size: int, connect_timeout: float, pool_timeout: float, statement_timeout: float) -> AsyncEngine:
    server_settings = {"application_name": "chiso", "max_parallel_workers_per_gather": "0"}
    if statement_timeout > 0:  # each session's default, set at connect: no statement of its own
        server_settings["statement_timeout"] = str(max(1, round(statement_timeout * 1000)))
    engine = create_async_engine(
        url,
        # SQLAlchemy's ping is three round trips (BEGIN, `;`, ROLLBACK) at every checkout: a tenth of
        # a web worker's CPU while communes post. _alive below asks the driver instead, for nothing.
        pool_pre_ping=False,
        pool_size=pool_size,
        # Bounds while the database is away or saturated: a request waits at most this long for a
        # connection (then 503 with Retry-After, app.api.errors), never indefinitely.
        pool_timeout=pool_timeout,
        # No overflow: a burst waits for a pooled connection rather than opening (and closing) more
        # backends, which on a small machine only adds connection churn and CPU contention.
        max_overflow=0,
        isolation_level="READ COMMITTED",  # row locks in sorted order give us what we need; explicit
        # application_name: visible in pg_stat_activity. No parallel plans: on a small machine under
        # many concurrent requests, launching workers for one query costs more than it saves.
        connect_args={
            "timeout": connect_timeout,
            "server_settings": server_settings,
        },
    )

    @event.listens_for(engine.sync_engine.pool, "checkout")
    def _alive(dbapi_connection, _record, _proxy):
        # Survive a database restart without failing the first request. A pooled connection whose
        # server went away (restarted, backend terminated) has had its socket closed under it, and
        # asyncpg, which watches the socket while idle, knows that without a round trip: the pool
        # then drops it and checks out another (SQLAlchemy's pessimistic disconnect handling).
        if dbapi_connection.driver_connection.is_closed():
            raise DisconnectionError("the server closed this pooled connection")

    return engine


async def no_statement_timeout(conn: AsyncConnection) -> None:
    """Lift the service's statement timeout (DB_STATEMENT_TIMEOUT) for the rest of this transaction:
    for the jobs that run inside the service and take what they take (migrations on start)."""
    if conn.dialect.name == "postgresql":
        await conn.execute(text("SET LOCAL statement_timeout = 0"))


class Database:
    def __init__(
        self,
        url: str,
        pool_size: int = 10,
        connect_timeout: float = 5.0,
        pool_timeout: float = 10.0,
        statement_timeout: float = 0.0,
    ):
        """`statement_timeout` (seconds, PostgreSQL; 0: none): how long one statement may run before
        the server cancels it. The service's API sets one (DB_STATEMENT_TIMEOUT); long jobs do not."""
        self.url = url
        self.dialect = make_url(url).get_backend_name()
        if self.dialect == "sqlite":
            self.engine = _sqlite_engine(url)
            write_engine = self.engine.execution_options(sqlite_begin="IMMEDIATE")
        else:
            self.engine = _postgres_engine(url, pool_size, connect_timeout, pool_timeout, statement_timeout)
            write_engine = self.engine
        self._reads = async_sessionmaker(self.engine, expire_on_commit=False)
        self._writes = async_sessionmaker(write_engine, expire_on_commit=False)
        self._autocommit = None
        if self.dialect != "sqlite":
            self._autocommit = async_sessionmaker(self.engine.execution_options(isolation_level="AUTOCOMMIT"), expire_on_commit=False)
        # Write transactions take at most half of the pool, so that reads (dashboards polling while
        # communes post) always find a connection instead of queueing behind a burst of batches.
        self._write_slots = asyncio.Semaphore(max(1, pool_size // 2))

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A write transaction, committed when the block ends without error; it takes one of the
        write slots (half the pool)."""
        async with self._write_slots, self._writes() as session, session.begin():
            yield session

    @asynccontextmanager
    async def autocommit(self, write: bool = False) -> AsyncIterator[AsyncSession]:
        """A session whose every statement is a transaction of its own: on PostgreSQL no BEGIN
        before it and no ROLLBACK or COMMIT after it, one round trip where a session of one
        statement takes three (under a saturated server each waits its turn for a core: ~10 ms).
        For statements that need nothing around them (the shared answers' look-ups, claims and
        stores); nothing here may `SET LOCAL`. No write slot is taken: the ingest's passes hold
        those, and a poller's claim and store waited behind them (under a live feed, half its time).
        On SQLite a read session, or with `write` a write transaction (its writers take the lock at
        BEGIN)."""
        if self._autocommit is not None:
            async with self._autocommit() as session:
                yield session
        elif write:
            async with self._writes() as session, session.begin():
                yield session
        else:
            async with self.session() as session:
                yield session

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A read session."""
        async with self._reads() as session:
            yield session

    async def dispose(self) -> None:
        await self.engine.dispose()
