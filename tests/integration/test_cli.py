"""The `chiso` command as an operator meets it: real processes on both stores."""

from __future__ import annotations

import os
import subprocess
import uuid

import pytest

from tests.helpers.server import CHISO, ROOT, cli

# real `chiso` processes, one per command: `make test` runs them, `make test-fast` leaves them out
pytestmark = pytest.mark.slow


@pytest.fixture
async def empty_url(store, pg_server, tmp_path) -> str:
    """A database with no schema yet."""
    if store == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"
    if pg_server is None:
        pytest.skip("PostgreSQL not reachable")
    return await pg_server.create(f"chiso_test_cli_{uuid.uuid4().hex[:8]}")


class TestDbUpgrade:
    def test_says_what_it_did(self, empty_url):
        env = {"DATABASE_URL": empty_url}
        first = cli(env, "db", "upgrade").strip()
        assert first.startswith("schema created at "), first
        head = first.removeprefix("schema created at ")
        assert cli(env, "db", "upgrade").strip() == f"schema is current ({head})"


class TestKeysList:
    def test_a_header_and_dates(self, empty_url):
        env = {"DATABASE_URL": empty_url}
        assert cli(env, "keys", "list").startswith("no keys yet")
        cli(env, "keys", "create", "--scope", "ingest", "--unit", "46", "--name", "Huế one-stop centre")
        cli(env, "keys", "create", "--scope", "read", "--name", "dashboard")
        cli(env, "keys", "revoke", "2")
        header, first, second = cli(env, "keys", "list").splitlines()
        assert header.split()[:4] == ["ID", "SCOPE", "UNIT", "CREATED"]
        assert first.split()[1:3] == ["ingest", "46"] and first.endswith("Huế one-stop centre")
        # created and revoked, each a date and a minute
        assert second.split()[1:3] == ["read", "-"] and len(second.split()) == 8 and second.endswith("dashboard")


def test_help_shows_whole_option_names_at_80_columns():
    env = {**os.environ, "COLUMNS": "80", "TERM": "dumb"}
    out = subprocess.run([*CHISO, "demo", "--help"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60).stdout
    assert "--per-commune-per-day" in out and "--backfill-seconds" in out
