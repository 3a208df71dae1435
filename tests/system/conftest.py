"""Fixtures of the system tests: Chromium for the browser tests."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.helpers.browser import need


@pytest.fixture(scope="module")
def chromium() -> str:
    path = shutil.which("chromium") or "/usr/bin/chromium"
    need("Chromium (Debian package chromium)", Path(path).exists())
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        need("Playwright for Python (pip install playwright)", False)
    return path
