"""Run Alembic from the code: on start, from the CLI, from tests.

The scripts are package data: `app/migrations` (a symlink to the top-level `migrations/` in the source
tree, real files in a wheel) holds env.py, script.py.mako and versions/. The configuration is built here
rather than read from alembic.ini, which a wheel does not carry; alembic.ini stays for the `alembic`
command run from the source tree (`alembic revision --autogenerate`), which writes to `migrations/`.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.ext.asyncio import AsyncConnection

SCRIPTS = Path(str(files("app") / "migrations"))


def alembic_config(url: str | None = None) -> Config:
    if not (SCRIPTS / "env.py").is_file():
        raise RuntimeError(f"Alembic scripts missing from the installed package: {SCRIPTS} has no env.py")
    cfg = Config()
    cfg.set_main_option("script_location", str(SCRIPTS))
    cfg.set_main_option("path_separator", "os")
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


async def current_revisions(conn: AsyncConnection) -> set[str]:
    """The revisions the database is at (empty: no schema yet)."""
    return await conn.run_sync(lambda sync_conn: set(MigrationContext.configure(sync_conn).get_current_heads()))


async def schema_is_current(conn: AsyncConnection) -> bool:
    """True when the database is at the code's head revision."""
    return await current_revisions(conn) == set(head_revisions())
