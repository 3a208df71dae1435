"""Processes started by a test: a clean environment, waiting for HTTP, stopping a process and its children."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from app.settings import Settings

BIN = Path(sys.executable).parent


def _family(proc: subprocess.Popen) -> list[psutil.Process]:
    try:
        parent = psutil.Process(proc.pid)
        return [parent, *parent.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def stop_tree(proc: subprocess.Popen | None) -> None:
    """End a process we started and every process it started (uvicorn's workers)."""
    if proc is None:
        return
    family = _family(proc)
    for p in family:
        try:
            p.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(family, timeout=10)
    for p in alive:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=5)
    proc.wait(5)


def wait_http(url: str, proc: subprocess.Popen, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"{proc.args[0]} exited {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    pytest.fail(f"{url} not ready after {timeout}s:\n{log.read_text()[-3000:]}")


def clean_env(**values: str) -> dict[str, str]:
    """This process's environment without any chiso setting, plus `values`."""
    names = {n.upper() for n in Settings.model_fields} | {"PROMETHEUS_MULTIPROC_DIR"}
    env = {k: v for k, v in os.environ.items() if k.upper() not in names}
    env.update(values)
    return env
