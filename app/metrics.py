"""Every Prometheus object of the service, named chiso_*.

Under several workers `chiso serve` sets PROMETHEUS_MULTIPROC_DIR before the workers import this
module, so counters and histograms add up across processes.

KPI gauges (app/scoring/gauges.py) are not kept in any process: the worker that serves a scrape
reads them from the database (cached for KPI_GAUGES_TTL_SECONDS per worker), so every worker
reports the same values. `scrape()` merges them with the exposition above.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Iterable

from prometheus_client import REGISTRY as DEFAULT_REGISTRY
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily, Metric

log = logging.getLogger("chiso.metrics")
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

EVENTS = Counter("chiso_ingested_events_total", "Events posted, by outcome.", ["outcome"])
BATCH_SECONDS = Histogram(
    "chiso_ingest_batch_seconds",
    "Time to validate, store and commit one ingest request.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
BATCH_EVENTS = Histogram(
    "chiso_ingest_batch_events",
    "Events per ingest request.",
    buckets=(1, 10, 100, 500, 1000, 2000, 5000),
)
DB_ERRORS = Counter("chiso_database_errors_total", "Requests that failed because the database was unavailable.")
INGEST_ERRORS = Counter(
    "chiso_ingest_errors_total", "Ingest requests (POST /api/v1/events) answered 500 by an unexpected error (503s: database errors)."
)
KPI_SECONDS = Histogram(
    "chiso_kpi_answer_seconds",
    "Time to answer a KPI read, by endpoint.",
    ["endpoint"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
ANSWER_COMPUTATIONS = Counter(
    "chiso_answer_computations_total",
    "Shared KPI answers computed, by kind and by whom (`request`: a request found none fresh; `refresher`: kept warm).",
    ["kind", "by"],
)
# Export gauges: every worker's exporter loop reads them from the database each tick, so all agree;
# livemax drops the files of dead workers.
EXPORT_LAG = Gauge(
    "chiso_export_lag_seconds",
    "Age of the oldest export record not yet delivered to the central node (0 when none or push is off).",
    multiprocess_mode="livemax",
)
EXPORT_BACKLOG = Gauge(
    "chiso_export_backlog_records",
    "Export records waiting for delivery to the central node (parked ones excluded).",
    multiprocess_mode="livemax",
)
EXPORT_PRODUCED = Counter("chiso_export_records_produced_total", "Export records appended to the outbox.")
EXPORT_SENT = Counter("chiso_export_records_sent_total", "Export records accepted by the central node.")


class _Families:
    """A collector of metric families computed before rendering (read at scrape time)."""

    def __init__(self, families: Iterable[Metric]):
        self.families = list(families)

    def collect(self) -> Iterable[Metric]:
        return iter(self.families)


def exposition(*extra: Iterable[Metric]) -> bytes:
    """The text exposition; merges every worker's files in multiprocess mode, then `extra` families."""
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.MultiProcessCollector(registry)
    else:
        registry.register(_Default())
    for families in extra:
        registry.register(_Families(families))
    return generate_latest(registry)


class _Default:
    """This process's own metrics (single-process mode)."""

    def collect(self) -> Iterable[Metric]:
        return DEFAULT_REGISTRY.collect()


# --- KPI gauges, read from the database at scrape time -------------------------------------------

KPI_GAUGES_TTL_SECONDS = 5.0  # each worker reuses what it read for this long
KPI_GAUGES_WAIT_SECONDS = 7.0  # a scrape waits this long for a read (Prometheus' scrape_timeout: 10 s)
KPI_GAUGES_UP = "chiso_kpi_gauges_up"


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
        from app.scoring import gauges

        settings = state.settings
        try:
            registry = await state.registry.get()
            self.families = await gauges.read(state.db, registry, settings.tz, settings.metrics_communes, settings.silent_after_hours)
            self.ok = True
        except Exception as exc:  # noqa: BLE001 - the service metrics must still be served when the database is not
            log.warning("KPI gauges not read: %s: %s", type(exc).__name__, exc)
            self.families, self.ok = [], False
        finally:
            self.read_at = time.monotonic()
            self.task = None


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
    return exposition(await kpi_gauges(state))
