"""Run Alembic from the code: on start, from the CLI, from tests."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.ext.asyncio import AsyncConnection

ROOT = Path(__file__).resolve().parents[2]


def alembic_config(url: str | None = None) -> Config:
    cfg = Config(str(ROOT / "alembic.ini"))
    cfg.set_main_option("script_location", str(ROOT / "migrations"))
    if url:
        cfg.attributes["url"] = url
    return cfg


def _upgrade_on(sync_conn, revision: str) -> None:
    cfg = alembic_config()
    cfg.attributes["connection"] = sync_conn
    command.upgrade(cfg, revision)


def _downgrade_on(sync_conn, revision: str) -> None:
    cfg = alembic_config()
    cfg.attributes["connection"] = sync_conn
    command.downgrade(cfg, revision)


async def upgrade(conn: AsyncConnection, revision: str = "head") -> None:
    """Bring the schema to `revision` over an open connection."""
    await conn.run_sync(_upgrade_on, revision)


async def downgrade(conn: AsyncConnection, revision: str) -> None:
    """Take the schema down to `revision`."""
    await conn.run_sync(_downgrade_on, revision)


def head_revisions() -> tuple[str, ...]:
    return tuple(ScriptDirectory.from_config(alembic_config()).get_heads())


async def schema_is_current(conn: AsyncConnection) -> bool:
    """True when the database is at the code's head revision."""

    def _current(sync_conn):
        return set(MigrationContext.configure(sync_conn).get_current_heads())

    return await conn.run_sync(_current) == set(head_revisions())
