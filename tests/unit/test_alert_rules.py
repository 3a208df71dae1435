"""The alert rules shipped with the compose stack (SPEC section 7): valid under `promtool check
rules`, each alert fired and held back by its unit test under `promtool test rules`, loaded by the
compose stack's Prometheus, on metrics the service exposes, each with a runbook line in the README.

promtool comes with Debian's `prometheus` package (installed by .ci/run); without it these checks
skip, except under CI=true.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.helpers.deploy import COMPOSE, PROMETHEUS_YML, ROOT, bind_mounts, exposed_metric_names, tool

ALERTS = ROOT / "deploy/prometheus/alerts.yml"
ALERTS_TEST = ROOT / "deploy/prometheus/alerts_test.yml"
# SPEC section 7: the six alerts, by what they watch.
SIX = {
    "ChisoProvinceOnTimeRateLow": "chiso_on_time_ratio",
    "ChisoProvinceOnTimeRateDrop": "chiso_on_time_ratio",
    "ChisoProvinceDueSoonHigh": "chiso_due_48h",
    "ChisoProvinceSilentUnits": "chiso_silent_units",
    "ChisoExportLagHigh": "chiso_export_lag_seconds",
    "ChisoIngestErrors": "chiso_database_errors_total",
}


def rules() -> list[dict]:
    return [r for g in yaml.safe_load(ALERTS.read_text())["groups"] for r in g["rules"]]


def test_promtool_checks_the_rules():
    r = subprocess.run([tool("promtool"), "check", "rules", str(ALERTS)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS: 6 rules found" in r.stdout + r.stderr


def test_promtool_unit_tests_pass():
    command = [tool("promtool"), "test", "rules", str(ALERTS_TEST)]
    r = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=ALERTS.parent)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS" in r.stdout + r.stderr


def test_the_six_alerts_each_with_a_unit_test_that_fires_it():
    by_name = {r["alert"]: r for r in rules()}
    assert set(by_name) == set(SIX)
    for name, metric in SIX.items():
        assert metric in by_name[name]["expr"], name
        assert by_name[name]["annotations"]["runbook"] == f"README.md#alerts: {name}"
    tests = yaml.safe_load(ALERTS_TEST.read_text())
    assert tests["rule_files"] == [ALERTS.name]
    fired: dict[str, int] = {}
    quiet: dict[str, int] = {}
    for case in tests["tests"]:
        for check in case["alert_rule_test"]:
            counts = fired if check["exp_alerts"] else quiet
            counts[check["alertname"]] = counts.get(check["alertname"], 0) + 1
    assert set(fired) == set(SIX) == set(quiet), (fired, quiet)


def test_prometheus_of_the_compose_stack_loads_the_rules():
    config = yaml.safe_load(PROMETHEUS_YML.read_text())
    assert config["rule_files"] == [ALERTS.name]
    prom = yaml.safe_load(COMPOSE.read_text())["services"]["prometheus"]
    mounts = bind_mounts(prom)
    # relative rule files are read beside the configuration file, inside the container too
    config_dir = Path(next(c for c, h in mounts.items() if h == str(PROMETHEUS_YML.relative_to(ROOT)))).parent
    assert mounts[str(config_dir / ALERTS.name)] == str(ALERTS.relative_to(ROOT))


def test_rules_watch_metrics_the_service_exposes():
    used = set()
    for r in rules():
        used |= set(re.findall(r"\bchiso_[a-z0-9_]+", r["expr"]))
    assert used, "no chiso_ metric in the rules"
    assert used <= exposed_metric_names(), sorted(used - exposed_metric_names())


def test_every_alert_has_a_runbook_line_in_the_readme():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n### Alerts", 1)
    assert len(section) == 2, "README.md has no Alerts section"
    body = section[1].split("\n## ", 1)[0]
    bullets = ["- " + b for b in ("\n" + body).split("\n- ")[1:]]  # a runbook line is one bullet, wrapped
    for name in SIX:
        (line,) = [b for b in bullets if b.startswith(f"- `{name}`")]
        assert len(line) > 200, name  # what happened and what to do


@pytest.mark.parametrize("name", sorted(SIX))
def test_each_alert_has_a_summary(name):
    (rule,) = [r for r in rules() if r["alert"] == name]
    assert rule["annotations"]["summary"] and rule["labels"]["severity"] in ("warning", "critical")
