"""The exporter in a process of its own, started and watched by `chiso serve`.

Recomputing records is CPU work in bursts (a late back-fill makes every day since it dirty). In a
web worker it would share that worker's event loop and hold up the requests queued behind it; in
its own process at a lower CPU priority (nice) the kernel preempts it whenever a worker has work.
Only one exporter is ever active (advisory lock or lease), so replicas may each run one.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import signal
import subprocess
import sys
import threading

log = logging.getLogger("chiso.export")

NICE = 5  # +10 starved the exporter for minutes on a saturated 2-core machine
PR_SET_PDEATHSIG = 1  # prctl(2)
RESTART_AFTER = 5.0  # seconds before a dead exporter process is started again


def run_exporter() -> None:
    """The exporter loop, the answer refresher's and the database upkeep's (app.db.upkeep), until SIGTERM or
    SIGINT (the body of `chiso export run`)."""
    from app import collector
    from app.answers.refresher import AnswerRefresher
    from app.db.engine import Database
    from app.db.upkeep import Upkeep
    from app.export.exporter import Exporter
    from app.settings import Settings

    async def main() -> None:
        collector.tune()
        settings = Settings()
        db = Database(settings.database_url, pool_size=5)  # the two leadership connections, one session each, the upkeep's
        exporter = Exporter(db, settings)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        refresher = AnswerRefresher(db, settings) if settings.answer_refresh_seconds > 0 else None
        upkeep = Upkeep(db, settings.db_upkeep)
        tasks = [asyncio.create_task(job.run_forever()) for job in (exporter, refresher, upkeep) if job is not None]
        await stop.wait()
        for task in tasks:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
        await exporter.close()
        if refresher is not None:
            await refresher.close()
        await db.dispose()

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    asyncio.run(main())


class ExporterProcess:
    """`chiso export run` as a child process at nice +5 (NICE), started again if it dies."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen | None = None
        self._stopping = threading.Event()
        self._watch = threading.Thread(target=self._supervise, name="exporter-watch", daemon=True)

    def _spawn(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "app.cli", "export", "run"], preexec_fn=_in_child)  # noqa: PLW1509
        log.info("exporter process %d started", self.proc.pid)

    def start(self) -> None:
        self._spawn()
        self._watch.start()

    def _supervise(self) -> None:
        while not self._stopping.is_set():
            proc = self.proc
            if proc is not None and proc.poll() is not None and not self._stopping.is_set():
                log.warning("exporter process %d exited with %s; starting another", proc.pid, proc.returncode)
                _forget_metrics(proc.pid)
                if self._stopping.wait(RESTART_AFTER):
                    return
                self._spawn()
            self._stopping.wait(1.0)

    def stop(self) -> None:
        self._stopping.set()
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        _forget_metrics(proc.pid)


def _in_child() -> None:
    """Lower the exporter's priority; and on Linux have it sent SIGTERM when `chiso serve` dies,
    even by SIGKILL, so no exporter outlives its server."""
    os.nice(NICE)
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):  # not Linux: `chiso serve` still stops it on a normal exit
        pass


def _forget_metrics(pid: int) -> None:
    """Drop a dead process's live gauges from the shared metrics folder."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)
