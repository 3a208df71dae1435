"""Run `chiso` as real processes: a server on a free port, and CLI commands with the same settings."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

CHISO = [sys.executable, "-m", "app.cli"]
ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cli(env: dict, *args: str) -> str:
    """Run a chiso command; its stdout."""
    result = subprocess.run([*CHISO, *args], env={**os.environ, **env}, capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def token(env: dict, scope: str, unit: str | None = None) -> str:
    args = ["keys", "create", "--scope", scope, "--name", f"test {scope}"] + (["--unit", unit] if unit else [])
    return cli(env, *args).strip().splitlines()[-1]


class Server:
    """`chiso serve` in its own process group, killed hard on exit."""

    def __init__(self, env: dict, workers: int = 1, log: Path | None = None):
        # A small pool per process: the suite's servers, workers and exporters share one PostgreSQL
        # (max_connections 100) with the in-process services of the other tests.
        self.env = {**os.environ, "DB_POOL_SIZE": "4", **env}
        self.workers = workers
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        self.proc: subprocess.Popen | None = None

    def start(self) -> Server:
        out = open(self.log, "ab") if self.log else subprocess.DEVNULL
        try:
            self.proc = subprocess.Popen(
                [*CHISO, "serve", "--port", str(self.port), "--workers", str(self.workers)],
                env=self.env,
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            if self.log:
                out.close()  # the child holds its own copy
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"chiso serve exited with {self.proc.returncode}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError("chiso serve did not become ready")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            self.proc.wait(timeout=30)

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.kill()
