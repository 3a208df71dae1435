"""Every Prometheus object of the service, named chiso_*.

Under several workers `chiso serve` sets PROMETHEUS_MULTIPROC_DIR before the workers import this
module, so counters and histograms add up across processes.

KPI gauges (app/scoring/gauges.py) are not kept in any process: the worker that serves a scrape
reads them from the database (app/api/kpi_gauges.py) and merges them with `exposition()`. This
module imports nothing of the service: everything may import it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from prometheus_client import REGISTRY as DEFAULT_REGISTRY
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess
from prometheus_client.core import Metric

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
GROUP_BATCHES = Histogram(
    "chiso_ingest_group_batches",
    "Ingest requests stored together in one write pass (group commit, app.ingest.groups).",
    buckets=(1, 2, 4, 8, 16, 32, 64),
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
    "Shared KPI answers computed, by kind and by whom (`request`: a request found none fresh and waited for it;"
    " `behind`: a request served one and computed it again behind; `refresher`: kept warm).",
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
