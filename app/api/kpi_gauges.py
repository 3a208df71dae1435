"""The KPI gauges of /metrics (app/scoring/gauges.py), read from the database at scrape time by the
worker that serves the scrape (cached for KPI_GAUGES_TTL_SECONDS per worker), so every worker
reports the same values; `scrape()` merges them with the service metrics of every worker."""

from __future__ import annotations

import asyncio
import logging
import time

from prometheus_client.core import GaugeMetricFamily, Metric

from app import metrics
from app.db import partitions
from app.retention import service as retention
from app.scoring import gauges
from app.scoring.context import Reader

log = logging.getLogger("chiso.metrics")

KPI_GAUGES_TTL_SECONDS = 5.0  # each worker reuses what it read for this long
KPI_GAUGES_WAIT_SECONDS = 7.0  # a scrape waits this long for a read (Prometheus' scrape_timeout: 10 s)
KPI_GAUGES_UP = "chiso_kpi_gauges_up"
EVENT_LOG_OLDEST = "chiso_event_log_oldest_month_timestamp_seconds"


class KpiGaugeCache:
    """One per app: the last KPI gauge families and when they were read; one read at a time.

    A scrape waits at most KPI_GAUGES_WAIT_SECONDS for a read; when the database is slow or gone,
    it is answered without KPI gauges (the service metrics are what an operator needs then) and
    the read goes on for the next scrape.
    """

    def __init__(self) -> None:
        self.families: list[Metric] = []
        self.ok = False
        self.read_at = float("-inf")
        self.task: asyncio.Task | None = None

    def fresh(self) -> bool:
        return time.monotonic() - self.read_at < KPI_GAUGES_TTL_SECONDS

    async def get(self, state) -> tuple[list[Metric], bool]:
        if not self.fresh():
            if self.task is None:
                self.task = asyncio.create_task(self._read(state))
            done, _ = await asyncio.wait({self.task}, timeout=KPI_GAUGES_WAIT_SECONDS)  # never cancels the read
            if not done:
                return [], False
        return self.families, self.ok

    async def _read(self, state) -> None:
        settings = state.settings
        try:
            reader = Reader.of(state.db, await state.registry.get(), settings)
            self.families = await gauges.read(reader, settings.metrics_communes)
            self.families.append(await event_log_gauge(state))
            self.ok = True
        except Exception as exc:  # noqa: BLE001 - the service metrics must still be served when the database is not
            log.warning("KPI gauges not read: %s: %s", type(exc).__name__, exc)
            self.families, self.ok = [], False
        finally:
            self.read_at = time.monotonic()
            self.task = None


async def event_log_gauge(state) -> Metric:
    """The oldest local month of the event log still stored (app.retention), read like the KPI gauges."""
    oldest = await retention.oldest_month(state.db, state.settings)
    family = GaugeMetricFamily(
        EVENT_LOG_OLDEST,
        "Start (Unix time) of the oldest local month whose events are still stored; older months are archived "
        "(RETAIN_EVENTS_MONTHS). Absent when no event is stored.",
    )
    if oldest is not None:
        family.add_metric([], partitions.bounds(oldest, state.settings.tz)[0].timestamp())
    return family


async def kpi_gauges(state) -> list[Metric]:
    """The KPI gauge families of the app whose `state` is given, plus chiso_kpi_gauges_up."""
    cache = getattr(state, "kpi_gauge_cache", None)
    if cache is None:
        cache = state.kpi_gauge_cache = KpiGaugeCache()
    families, ok = await cache.get(state)
    up = GaugeMetricFamily(KPI_GAUGES_UP, "1 when this answer carries the KPI gauges, read from the database.")
    up.add_metric([], 1 if ok else 0)
    return [*families, up]


async def scrape(state) -> bytes:
    """Everything /metrics serves: the service metrics of every worker and the KPI gauges."""
    return metrics.exposition(await kpi_gauges(state))
