"""Prometheus expositions (parsed, checked by promtool) and batches of events with the KPIs they must give."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client.parser import text_string_to_metric_families

CI = os.environ.get("CI", "").lower() == "true"


PROVINCE, COMMUNE = "79", "26740"  # Thành phố Hồ Chí Minh, Phường Sài Gòn


OTHER_PROVINCE, OTHER_COMMUNE = "01", "00070"  # Thành phố Hà Nội, Phường Hoàn Kiếm


PROVINCE_OF = {COMMUNE: PROVINCE, OTHER_COMMUNE: OTHER_PROVINCE}


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        message = f"{name} not found (Debian package `prometheus`)"
        if CI:
            pytest.fail(message)
        pytest.skip(message)
    return path


def samples(text: str) -> dict[str, dict[tuple, float]]:
    """{sample name: {sorted label items: value}} of an exposition."""
    out: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


def gauge(parsed: dict, sample: str, **labels) -> float | None:
    """The value of the sample whose labels include `labels`, None when absent (exactly one else)."""
    found = [v for k, v in parsed.get(sample, {}).items() if set(labels.items()) <= set(k)]
    assert len(found) <= 1, (sample, labels, found)
    return found[0] if found else None


def promtool_check(text: str) -> None:
    r = subprocess.run([tool("promtool"), "check", "metrics"], input=text.encode(), capture_output=True, timeout=30)
    assert r.returncode == 0, (r.stdout + r.stderr).decode()


def _ts(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat(timespec="seconds")


@dataclass
class Batches:
    """Batches of events with the KPIs they must give; dossier kinds cycle early, early, late."""

    batches: list[list[dict]] = field(default_factory=list)
    resolved: dict[str, list[str]] = field(default_factory=dict)  # unit -> kinds


def make_batches(tag: str, count: int, per_batch: int = 3) -> Batches:
    now = datetime.now(UTC)
    out = Batches()
    n = 0
    for b in range(count):
        batch: list[dict] = []
        for j in range(per_batch):
            commune = COMMUNE if (b + j) % 3 else OTHER_COMMUNE
            kind = ("early", "early", "late")[n % 3]
            n += 1
            d = f"{tag}-D{b}-{j}"
            due = now - timedelta(days=5)
            resolved_at = now - timedelta(days=7 if kind == "early" else 3)
            batch.append(
                {
                    "event_id": f"{d}-r",
                    "type": "received",
                    "dossier_id": d,
                    "unit_code": commune,
                    "occurred_at": _ts(now - timedelta(days=10)),
                    "channel": "online" if j % 2 else "in_person",
                    "due_at": _ts(due),
                }
            )
            batch.append(
                {
                    "event_id": f"{d}-x",
                    "type": "resolved",
                    "dossier_id": d,
                    "unit_code": commune,
                    "occurred_at": _ts(resolved_at),
                    "outcome": "approved",
                }
            )
            out.resolved.setdefault(PROVINCE_OF[commune], []).append(kind)
        # An open dossier past its deadline, a duplicate and a rejected event in every batch.
        batch.append(
            {
                "event_id": f"{tag}-O{b}",
                "type": "received",
                "dossier_id": f"{tag}-O{b}",
                "unit_code": COMMUNE,
                "occurred_at": _ts(now - timedelta(days=2)),
                "channel": "online",
                "due_at": _ts(now - timedelta(days=1)),
            }
        )
        batch.append(dict(batch[0]))
        batch.append({"event_id": f"{tag}-bad{b}", "type": "exploded", "dossier_id": "x", "unit_code": COMMUNE, "occurred_at": _ts(now)})
        out.batches.append(batch)
    return out
