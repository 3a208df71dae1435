"""docker-compose.yml, Prometheus and Grafana provisioning agree with each other and with the code.

`docker-compose` (Debian package) and `promtool` (package `prometheus`) validate the files; no
container engine is needed. Without the tools those checks skip, except under CI=true.
"""

from __future__ import annotations

import json
import re
import subprocess

import pytest
import yaml

from app.scoring import gauges
from app.settings import Settings
from tests.helpers.deploy import COMPOSE, PROMETHEUS_YML, ROOT, bind_mounts, exposed_metric_names, tool

GRAFANA = ROOT / "deploy/grafana"
DASHBOARD = GRAFANA / "dashboards/chiso.json"


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def _env(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def _container_ports(service: dict) -> set[int]:
    return {int(str(p).split(":")[-1].split("/")[0]) for p in service.get("ports", [])}


def _flag(service: dict, name: str, default: str) -> str:
    for arg in service.get("command") or []:
        if arg.startswith(f"--{name}="):
            return arg.split("=", 1)[1]
    return default


def test_docker_compose_accepts_the_file():
    r = subprocess.run([tool("docker-compose"), "-f", str(COMPOSE), "config", "-q"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


def test_compose_topology(compose):
    services = compose["services"]
    assert {"postgres", "chiso", "prometheus", "grafana"} <= set(services)
    pg = services["postgres"]
    assert pg["image"].startswith("postgres:16")
    assert "pg_isready" in " ".join(pg["healthcheck"]["test"])
    assert any(v.endswith(":/var/lib/postgresql/data") and not v.startswith(".") for v in pg["volumes"])
    chiso = services["chiso"]
    assert chiso["build"] == "."
    assert chiso["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert 8000 in _container_ports(chiso)
    assert services["prometheus"]["image"].startswith("prom/prometheus")
    assert services["grafana"]["image"].startswith("grafana/grafana")


def test_compose_environment_names_are_settings(compose):
    fields = {name.upper() for name in Settings.model_fields}
    env = _env(compose["services"]["chiso"])
    assert set(env) <= fields, set(env) - fields
    for name, value in env.items():  # and every value parses as that setting
        Settings(_env_file=None, **{name.lower(): value})


def test_database_url_points_at_the_postgres_service(compose):
    url = _env(compose["services"]["chiso"])["DATABASE_URL"]
    m = re.fullmatch(r"postgresql\+asyncpg://(\w+):(\w+)@([\w-]+):(\d+)/(\w+)", url)
    assert m, url
    user, password, host, port, db = m.groups()
    pg_env = _env(compose["services"]["postgres"])
    assert host == "postgres" and port == "5432"
    assert (user, password, db) == (pg_env["POSTGRES_USER"], pg_env["POSTGRES_PASSWORD"], pg_env["POSTGRES_DB"])


def test_dockerfile_serves_on_the_composed_port(compose):
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim", dockerfile, re.M)
    cmd = json.loads(re.search(r"^CMD (\[.*\])$", dockerfile, re.M).group(1))
    assert cmd[:2] == ["chiso", "serve"] and cmd[cmd.index("--host") + 1] == "0.0.0.0"
    assert int(cmd[cmd.index("--port") + 1]) in _container_ports(compose["services"]["chiso"])
    assert int(cmd[cmd.index("--workers") + 1]) > 1
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert ".venv" in ignored and ".git" in ignored and "var" in ignored


def test_prometheus_config(compose):
    prom = compose["services"]["prometheus"]
    config_path = _flag(prom, "config.file", "/etc/prometheus/prometheus.yml")
    assert bind_mounts(prom)[config_path] == str(PROMETHEUS_YML.relative_to(ROOT))
    r = subprocess.run([tool("promtool"), "check", "config", str(PROMETHEUS_YML)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


def test_prometheus_scrapes_the_chiso_service(compose):
    config = yaml.safe_load(PROMETHEUS_YML.read_text())
    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    job = jobs["chiso"]
    assert job.get("metrics_path", "/metrics") == "/metrics"
    targets = [t for sc in job["static_configs"] for t in sc["targets"]]
    assert targets
    for target in targets:
        host, port = target.rsplit(":", 1)
        assert host in compose["services"], target
        assert int(port) in _container_ports(compose["services"][host]), target
    from app.main import create_app

    assert "/metrics" in create_app(Settings(_env_file=None)).openapi()["paths"]


@pytest.fixture(scope="module")
def datasources() -> list[dict]:
    out = []
    for f in sorted((GRAFANA / "provisioning/datasources").glob("*.y*ml")):
        out.extend(yaml.safe_load(f.read_text())["datasources"])
    return out


def test_grafana_provisioning(compose, datasources):
    grafana = compose["services"]["grafana"]
    mounts = bind_mounts(grafana)
    assert mounts["/etc/grafana/provisioning"] == "deploy/grafana/provisioning"
    (prom,) = [d for d in datasources if d["type"] == "prometheus"]
    m = re.fullmatch(r"http://([\w-]+):(\d+)/?", prom["url"])
    assert m, prom["url"]
    host, port = m.group(1), m.group(2)
    assert host == "prometheus" and host in compose["services"]
    listen = _flag(compose["services"]["prometheus"], "web.listen-address", "0.0.0.0:9090")
    assert port == listen.rsplit(":", 1)[1]
    providers = []
    for f in sorted((GRAFANA / "provisioning/dashboards").glob("*.y*ml")):
        providers.extend(yaml.safe_load(f.read_text())["providers"])
    (provider,) = providers
    assert provider["type"] == "file"
    assert mounts[provider["options"]["path"]] == str(DASHBOARD.parent.relative_to(ROOT))


def _dashboard_panels() -> list[dict]:
    out = []
    for p in json.loads(DASHBOARD.read_text())["panels"]:
        out.append(p)
        out.extend(p.get("panels", []))
    return out


def test_dashboard_uses_the_provisioned_data_source(datasources):
    uids = {d["uid"] for d in datasources}
    panels = [p for p in _dashboard_panels() if p["type"] != "row"]
    assert panels
    for p in panels:
        assert p["datasource"]["uid"] in uids, p["title"]
        assert p["targets"] and all(t["datasource"]["uid"] in uids for t in p["targets"]), p["title"]


def test_dashboard_metric_names_are_exposed():
    exposed = exposed_metric_names()
    used = set()
    for p in _dashboard_panels():
        for t in p.get("targets", []):
            used |= set(re.findall(r"\bchiso_[a-z0-9_]+", t["expr"]))
    assert used, "no chiso_ metric in the dashboard"
    assert used <= exposed, sorted(used - exposed)
    wanted = {
        "chiso_ingested_events_total",
        "chiso_ingest_batch_seconds_bucket",
        "chiso_export_lag_seconds",
        "chiso_export_backlog_records",
        "chiso_on_time_ratio",
    }
    assert wanted <= used, sorted(wanted - used)


def test_dashboard_expressions_are_valid_promql(tmp_path):
    """promtool parses every panel expression (Grafana's variables substituted) as a recording rule."""
    exprs = [t["expr"] for p in _dashboard_panels() for t in p.get("targets", [])]
    substituted = [e.replace("$__rate_interval", "1m").replace("$window", gauges.WINDOWS[-1]) for e in exprs]
    assert not [e for e in substituted if "$" in e]
    rules = {"groups": [{"name": "dashboard", "rules": [{"record": f"dashboard:expr{i}", "expr": e} for i, e in enumerate(substituted)]}]}
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump(rules, allow_unicode=True))
    r = subprocess.run([tool("promtool"), "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


def test_dashboard_window_variable_offers_the_gauge_windows():
    (var,) = [v for v in json.loads(DASHBOARD.read_text())["templating"]["list"] if v["name"] == "window"]
    assert {o["value"] for o in var["options"]} == set(gauges.WINDOWS)
