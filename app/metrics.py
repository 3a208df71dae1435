"""Every Prometheus object of the service, named chiso_*.

Under several workers `chiso serve` sets PROMETHEUS_MULTIPROC_DIR before the workers import this
module, so counters and histograms add up across processes.
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, multiprocess
from prometheus_client import REGISTRY as DEFAULT_REGISTRY

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
KPI_SECONDS = Histogram(
    "chiso_kpi_answer_seconds",
    "Time to answer a KPI read, by endpoint.",
    ["endpoint"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)


def exposition() -> bytes:
    """The text exposition; merges every worker's files in multiprocess mode."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry)
    return generate_latest(DEFAULT_REGISTRY)
