"""A private PostgreSQL cluster for the tests that stop the database: initdb in a temporary folder,
a free port on 127.0.0.1, run as the `postgres` OS user. The shared server on 5432 (colleagues' and
the rest of the suite's) is never stopped, restarted or reconfigured."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.helpers.server import free_port


def pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found and shutil.which("runuser") else None


class PrivateCluster:
    def __init__(self) -> None:
        self.bin = pg_bin()
        assert self.bin is not None, "PostgreSQL server binaries (initdb, pg_ctl) and runuser are needed"
        self.dir = Path(tempfile.mkdtemp(prefix="chiso-pg-"))
        shutil.chown(self.dir, "postgres", "postgres")
        self.data = self.dir / "data"
        self.port = free_port()
        self.log = self.dir / "postgres.log"

    def _run(self, *args: str, timeout: float = 120) -> str:
        result = subprocess.run(["runuser", "-u", "postgres", "--", *args], capture_output=True, text=True, timeout=timeout, cwd=self.dir)
        assert result.returncode == 0, f"{args[0]}: {result.stdout}{result.stderr}"
        return result.stdout

    def init(self) -> PrivateCluster:
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync")
        return self

    def start(self) -> None:
        # fsync off: this cluster only ever stops cleanly (-m fast) while the machine stays up.
        opts = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=60"
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-o", opts, "-w", "-t", "60", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def psql(self, sql: str, db: str = "postgres") -> str:
        return self._run("psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d", db, "-Atqc", sql)

    def url(self, db: str) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{db}"

    def destroy(self) -> None:
        if (self.data / "postmaster.pid").exists():
            try:
                self.stop("immediate")
            except (AssertionError, subprocess.TimeoutExpired):
                pid = int((self.data / "postmaster.pid").read_text().split()[0])
                os.kill(pid, 9)
        shutil.rmtree(self.dir, ignore_errors=True)
