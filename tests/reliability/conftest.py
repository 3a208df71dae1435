"""Fixtures of the reliability suite (see tests/reliability/harness.py)."""

from __future__ import annotations

import pytest

from tests.reliability.harness import TokenWatch


@pytest.fixture
def watch(tmp_path):
    """Tokens made by the test and the logs of its servers: fails the test if any log holds a token."""
    w = TokenWatch(tmp_path / "logs")
    yield w
    leaks = w.leaks()
    assert not leaks, f"tokens found in server logs: {leaks}"
    assert not w.tokens or any(w.log_dir.glob("*")), "the test's servers wrote no log to check"


@pytest.fixture
async def db_url(store, templates, pg_server, tmp_path) -> str:
    """A fresh, migrated and seeded database of the store under test."""
    from tests.conftest import new_database_url

    return await new_database_url(store, templates, pg_server, tmp_path)
