"""No test may depend on the hour it runs at: the tests that build events around today's local noon,
midnight or deadlines run again under two clocks (libfaketime: the whole process believes it is
early morning, then late evening, local time, and the clock ticks on from there).

A test that posts an event "at today's noon" passes in the afternoon and fails every morning (noon
then lies beyond the 5-minute skew); run only at the hour CI happens to start, nothing catches it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime, time, timedelta

import pytest

from app.settings import Settings
from tests.helpers.server import ROOT

TZ = Settings(_env_file=None).tz
# The modules whose tests place events around today's local hours.
MODULES = ["tests/integration/test_export.py::TestOneExporter", "tests/integration/test_due_soon.py"]
FAKETIME = shutil.which("faketime")
REQUIRED = os.environ.get("CI", "").lower() == "true"


def _utc_of_local(hour: int, minute: int) -> str:
    today = datetime.now(TZ).date()
    local = datetime.combine(today, time(hour, minute), tzinfo=TZ)
    if local > datetime.now(TZ):  # the fake clock must not lie ahead of the database's real one by a day
        local -= timedelta(days=1)
    return local.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")  # faketime reads it in TZ=UTC (below)


@pytest.mark.parametrize("hour,minute", [(6, 0), (23, 40)], ids=["06:00", "23:40"])
def test_the_suite_passes_at_another_hour(hour, minute, tmp_path):
    if FAKETIME is None:
        if REQUIRED:
            pytest.fail("faketime is needed (Debian package faketime; .ci/run installs it)")
        pytest.skip("faketime is not installed")
    start = _utc_of_local(hour, minute)
    cmd = [FAKETIME, "-f", f"@{start}", sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x", *MODULES]
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900, env={**os.environ, "TZ": "UTC"})
    tail = (result.stdout + result.stderr)[-3000:]
    assert result.returncode == 0, f"under a clock started at {start} UTC:\n{tail}"
    assert " passed" in result.stdout, tail
