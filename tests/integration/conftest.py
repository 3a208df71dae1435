"""Fixtures of the integration tests: a fresh service of its own and its keys."""

from __future__ import annotations

import pytest


@pytest.fixture
async def svc(fresh_service):
    return fresh_service


@pytest.fixture
async def tokens(svc):
    return await svc.key("ingest", "VN"), await svc.key("read")
