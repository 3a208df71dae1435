"""The deployment files (docker-compose, Prometheus) and the names the service exposes."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from app import metrics
from app.api import kpi_gauges
from app.scoring import gauges

ROOT = Path(__file__).resolve().parents[2]


COMPOSE = ROOT / "docker-compose.yml"


PROMETHEUS_YML = ROOT / "deploy/prometheus/prometheus.yml"


CI = os.environ.get("CI", "").lower() == "true"


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        if CI:
            pytest.fail(f"{name} is required under CI=true")
        pytest.skip(f"{name} not installed")
    return path


def bind_mounts(service: dict) -> dict[str, str]:
    """{container path: host path} of a service's bind mounts, host paths relative to the repository."""
    out = {}
    for v in service.get("volumes", []):
        host, container = v.split(":")[:2]
        if host.startswith("."):
            out[container] = str((ROOT / host).resolve().relative_to(ROOT))
    return out


def exposed_metric_names() -> set[str]:
    """Sample names the service can expose: every chiso_* object in app.metrics, and the KPI gauges."""
    names = set(gauges.NAMES) | {kpi_gauges.KPI_GAUGES_UP}
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "summary": ("_sum", "_count"), "gauge": ("",)}
    for family in text_string_to_metric_families(metrics.exposition().decode()):
        if family.name.startswith("chiso_"):
            names |= {family.name + s for s in suffixes.get(family.type, ("",))}
    return names
