"""Chromium for browser tests, found on the machine, or a skip (a failure under CI=true)."""

from __future__ import annotations

import os

import pytest

CI = os.environ.get("CI", "").lower() == "true"


CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def need(what: str, ok: bool) -> None:
    if not ok:
        message = f"{what} is needed for the dashboard test"
        if CI:
            pytest.fail(message)
        pytest.skip(message)
