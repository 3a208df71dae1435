"""The loop of a process's periodic jobs (the refresher's ticks, a worker's following of the shared
answers, the database upkeep)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable


async def every(
    interval: float,
    tick: Callable[[], Awaitable[object]],
    failed: str,
    log: logging.Logger,
    level: int = logging.ERROR,
    least: float = 0.02,
) -> None:
    """Run `tick` every `interval` seconds (at least `least` apart) until cancelled; a failed tick
    is logged to `log` (with its traceback, at `level`) and the loop goes on."""
    while True:
        started = time.monotonic()
        try:
            await tick()
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - the next tick tries again
            log.log(level, failed, exc_info=True)
        await asyncio.sleep(max(least, interval - (time.monotonic() - started)))
