"""/metrics: the KPI gauges in-process on both stores; then a real `chiso serve --workers 2`, its
exposition checked by `promtool check metrics` and scraped by a real Prometheus.

promtool and prometheus come from the Debian package `prometheus` (.ci/run installs it). Without
them these tests skip, except under CI=true where they fail.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from prometheus_client.mmap_dict import MmapedDict

from app.api import kpi_gauges
from app.scoring import gauges
from tests.conftest import new_database_url
from tests.helpers.metrics import (
    COMMUNE,
    OTHER_PROVINCE,
    PROVINCE,
    Batches,
    gauge,
    make_batches,
    promtool_check,
    samples,
    tool,
)
from tests.helpers.processes import BIN, clean_env, stop_tree, wait_http
from tests.helpers.server import free_port

QUIET_PROVINCE = "46"  # gets no event: its rates are null


# --- events ----------------------------------------------------------------------------------------


def expected_on_time(kinds: list[str]) -> float:
    return round(kinds.count("early") / len(kinds), 4)


# --- in-process: the gauges against the read API, on both stores -----------------------------------

# Behaviour of the cache, not of a store: one store is enough.
ONE_STORE = pytest.mark.parametrize("store", ["sqlite"])


@pytest.fixture
def no_cache(monkeypatch):
    monkeypatch.setattr(kpi_gauges, "KPI_GAUGES_TTL_SECONDS", 0.0)


async def _scrape(svc) -> str:
    r = await svc.client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    return r.text


async def _load(svc, tag: str, count: int = 4) -> Batches:
    token = await svc.key("ingest", "VN")
    data = make_batches(tag, count)
    for batch in data.batches:
        r = await svc.post(batch, token)
        assert r.status_code == 202, r.text
    return data


async def test_gauges_equal_the_read_api(make_service, no_cache):
    async with make_service(public_read=True) as svc:
        data = await _load(svc, "inproc")
        now = datetime.now(UTC)
        soon = [  # due within 48 h: two in the province (one in a commune of it), one in another province
            {"event_id": f"soon-{i}", "type": "received", "dossier_id": f"soon-{i}", "unit_code": unit, "channel": "online",
             "occurred_at": (now - timedelta(hours=1)).isoformat(), "due_at": (now + timedelta(hours=30 + i)).isoformat()}
            for i, unit in enumerate((PROVINCE, COMMUNE, OTHER_PROVINCE))
        ]  # fmt: skip
        assert (await svc.post(soon, await svc.key("ingest", "VN"))).status_code == 202
        text = await _scrape(svc)
        parsed = samples(text)
        for code in ("VN", PROVINCE, OTHER_PROVINCE, QUIET_PROVINCE):
            for window in gauges.WINDOWS:
                answer = (await svc.get(f"/api/v1/units/{code}/kpis", window=window)).json()["kpis"]
                for metric, kpi, _ in gauges.WINDOWED:
                    assert gauge(parsed, metric, unit=code, window=window) == answer[kpi], (metric, code, window)
            for metric, kpi, _ in gauges.CURRENT:
                assert gauge(parsed, metric, unit=code) == answer[kpi], (metric, code)
        assert gauge(parsed, "chiso_on_time_ratio", unit=PROVINCE, window="30d") == expected_on_time(data.resolved[PROVINCE])
        assert gauge(parsed, "chiso_overdue_dossiers", unit=PROVINCE) == gauge(parsed, "chiso_overdue", unit=PROVINCE) == 4
        assert gauge(parsed, "chiso_due_48h", unit=PROVINCE) >= 2 and gauge(parsed, "chiso_due_48h", unit="VN") >= 3
        # Null KPIs are absent, counts are 0.
        assert gauge(parsed, "chiso_on_time_ratio", unit=QUIET_PROVINCE, window="30d") is None
        assert gauge(parsed, "chiso_pending_dossiers", unit=QUIET_PROVINCE) == 0
        assert gauge(parsed, "chiso_unit_info", unit=PROVINCE, level="province", name="Thành phố Hồ Chí Minh", parent="VN") == 1
        assert gauge(parsed, "chiso_kpi_gauges_up") == 1
        # Bounded: the nation and 34 provinces, no commune; < 100 series per metric.
        for name in gauges.NAMES:
            units = {dict(k)["unit"] for k in parsed[name]}
            assert len(parsed[name]) < 100 and all(u == "VN" or len(u) == 2 for u in units), name
        assert len(parsed["chiso_received_dossiers"]) == 35 * len(gauges.WINDOWS)
        assert len(parsed["chiso_pending_dossiers"]) == len(parsed["chiso_unit_info"]) == 35
        assert gauge(parsed, "chiso_ingested_events_total", outcome="accepted") >= 4 * 7  # process-wide: other tests add
        promtool_check(text)


async def test_commune_gauges_only_when_enabled(make_service, no_cache):
    async with make_service(public_read=True, metrics_communes=True) as svc:
        await _load(svc, "communes", count=2)
        parsed = samples(await _scrape(svc))
        answer = (await svc.get(f"/api/v1/units/{COMMUNE}/kpis", window="30d")).json()["kpis"]
        assert gauge(parsed, "chiso_on_time_ratio", unit=COMMUNE, level="commune", window="30d") == answer["on_time_rate"]
        assert gauge(parsed, "chiso_pending_dossiers", unit=COMMUNE) == answer["pending"]
        assert len(parsed["chiso_unit_info"]) == 1 + 34 + 3321


@ONE_STORE
async def test_gauges_are_cached_for_a_few_seconds(make_service, monkeypatch):
    monkeypatch.setattr(kpi_gauges, "KPI_GAUGES_TTL_SECONDS", 3600.0)
    async with make_service(public_read=True) as svc:
        await _load(svc, "cache1", count=1)
        before = gauge(samples(await _scrape(svc)), "chiso_received_dossiers", unit="VN", window="30d")
        await _load(svc, "cache2", count=1)
        assert gauge(samples(await _scrape(svc)), "chiso_received_dossiers", unit="VN", window="30d") == before
        monkeypatch.setattr(kpi_gauges, "KPI_GAUGES_TTL_SECONDS", 0.0)
        after = gauge(samples(await _scrape(svc)), "chiso_received_dossiers", unit="VN", window="30d")
        assert after == before + 4


@ONE_STORE
async def test_service_metrics_survive_a_failed_gauge_read(make_service, no_cache, monkeypatch):
    async def broken(*args, **kwargs):
        raise OSError("database unreachable")

    monkeypatch.setattr(gauges, "read", broken)
    async with make_service(public_read=True) as svc:
        text = await _scrape(svc)
        parsed = samples(text)
        assert gauge(parsed, "chiso_kpi_gauges_up") == 0
        assert "chiso_on_time_ratio" not in parsed
        assert "chiso_ingest_batch_seconds_count" in parsed
        promtool_check(text)


@ONE_STORE
async def test_a_slow_read_does_not_hold_the_scrape(make_service, monkeypatch):
    release, real = asyncio.Event(), gauges.read

    async def slow(*args, **kwargs):
        await release.wait()
        return await real(*args, **kwargs)

    monkeypatch.setattr(gauges, "read", slow)
    monkeypatch.setattr(kpi_gauges, "KPI_GAUGES_WAIT_SECONDS", 0.2)
    monkeypatch.setattr(kpi_gauges, "KPI_GAUGES_TTL_SECONDS", 3600.0)
    async with make_service(public_read=True) as svc:
        started = time.monotonic()
        parsed = samples(await _scrape(svc))
        assert time.monotonic() - started < 2
        assert gauge(parsed, "chiso_kpi_gauges_up") == 0 and "chiso_pending_dossiers" not in parsed
        release.set()  # the read goes on and serves the next scrape
        task = svc.app.state.kpi_gauge_cache.task
        if task is not None:
            await task
        parsed = samples(await _scrape(svc))
        assert gauge(parsed, "chiso_kpi_gauges_up") == 1 and gauge(parsed, "chiso_pending_dossiers", unit="VN") == 0


# --- a real `chiso serve --workers 2`, scraped by a real Prometheus ---------------------------------
# One store (PostgreSQL, the production store; SQLite when no server is reachable outside CI): what
# these tests prove is about processes, not stores, and the in-process tests above cover both.


@dataclass
class Stack:
    base: str
    port: int
    mp_dir: Path
    accepted: int
    data: Batches
    prometheus: str
    prometheus_proc: subprocess.Popen
    prometheus_log: Path


@pytest.fixture(scope="module")
async def stack(templates, pg_server, tmp_path_factory):
    """`chiso serve --workers 2` on a fresh database, events posted over HTTP (served by both
    workers), then a Prometheus scraping it every second. Every process is ended at the end."""
    promtool, prometheus = tool("promtool"), tool("prometheus")
    store = "postgres" if pg_server is not None else "sqlite"
    work = tmp_path_factory.mktemp(f"stack-{store}")
    url = await new_database_url(store, templates, pg_server, work)
    port, prom_port = free_port(), free_port()
    env = clean_env(DATABASE_URL=url, PUBLIC_READ="true", INGEST_RATE_PER_MINUTE="0", DB_POOL_SIZE="3")
    # Our own multiprocess directory, to see what each worker counted; `serve` empties it first.
    mp_dir = work / "multiproc"
    mp_dir.mkdir()
    serve_log, prom_log = work / "serve.log", work / "prometheus.log"
    serve = prom = None
    try:
        with serve_log.open("wb") as out:
            serve = subprocess.Popen(
                [BIN / "chiso", "serve", "--port", str(port), "--workers", "2"],
                env={**env, "PROMETHEUS_MULTIPROC_DIR": str(mp_dir)},
                cwd=work,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        # The key is made by the CLI while the service starts.
        keys = subprocess.run(
            [BIN / "chiso", "keys", "create", "--scope", "ingest", "--unit", "VN", "--name", "x"],
            env=env,
            cwd=work,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert keys.returncode == 0, keys.stderr
        token = keys.stdout.strip().splitlines()[-1]
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/readyz", serve, serve_log)
        data = make_batches(f"sys-{store}", 24)

        def post(batch: list[dict]) -> int:
            # A new connection per request, so that the kernel spreads them over both workers.
            r = httpx.post(
                f"{base}/api/v1/events",
                json={"events": batch},
                headers={"Authorization": f"Bearer {token}", "Connection": "close"},
                timeout=30,
            )
            assert r.status_code == 202, r.text
            return r.json()["accepted"]

        with ThreadPoolExecutor(6) as pool:
            accepted = sum(pool.map(post, data.batches))
            for extra in range(5):  # in the unlikely case one worker took every request so far
                if len([v for v in _accepted_by_worker(mp_dir).values() if v > 0]) >= 2:
                    break
                more = make_batches(f"sys-{store}-{extra}", 12)
                accepted += sum(pool.map(post, more.batches))
                data.batches += more.batches
                for unit, kinds in more.resolved.items():
                    data.resolved.setdefault(unit, []).extend(kinds)

        # Prometheus starts after the posts, so no worker caches KPI gauges read before them.
        config = work / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            f"scrape_configs:\n  - job_name: chiso\n    static_configs:\n      - targets: ['127.0.0.1:{port}']\n"
        )
        check = subprocess.run([promtool, "check", "config", str(config)], capture_output=True, text=True, timeout=30)
        assert check.returncode == 0, check.stdout + check.stderr
        with prom_log.open("wb") as out:
            prom = subprocess.Popen(
                [
                    prometheus,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={work / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{prom_port}",
                ],
                cwd=work,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        yield Stack(base, port, mp_dir, accepted, data, f"http://127.0.0.1:{prom_port}", prom, prom_log)
    finally:
        stop_tree(prom)
        stop_tree(serve)


def _accepted_by_worker(mp_dir: Path) -> dict[str, float]:
    """chiso_ingested_events_total{outcome="accepted"} as each worker process counted it."""
    out = {}
    for f in mp_dir.glob("counter_*.db"):
        for key, value, _, _ in MmapedDict.read_all_values_from_file(str(f)):
            _, name, labels, _ = json.loads(key)
            if name == "chiso_ingested_events_total" and labels == {"outcome": "accepted"}:
                out[f.stem.split("_", 1)[1]] = value
    return out


def _get_metrics(base: str) -> str:
    r = httpx.get(f"{base}/metrics", headers={"Connection": "close"}, timeout=30)
    assert r.status_code == 200
    return r.text


def test_promtool_accepts_the_two_worker_exposition(stack):
    by_worker = _accepted_by_worker(stack.mp_dir)
    assert len([v for v in by_worker.values() if v > 0]) == 2, by_worker  # both workers served posts
    assert sum(by_worker.values()) == stack.accepted == 7 * len(stack.data.batches)
    texts = [_get_metrics(stack.base) for _ in range(6)]
    for text in texts[:2]:
        promtool_check(text)
    parsed = [samples(t) for t in texts]
    # Whichever worker answers, counters are summed over both and the KPI gauges are the same.
    assert {p["chiso_ingested_events_total"][(("outcome", "accepted"),)] for p in parsed} == {stack.accepted}
    assert len({json.dumps(sorted(p["chiso_on_time_ratio"].items())) for p in parsed}) == 1
    assert all(len(p[name]) < 100 for p in parsed for name in gauges.NAMES)


def test_gauge_equals_the_kpi_answer(stack):
    answer = httpx.get(f"{stack.base}/api/v1/units/{PROVINCE}/kpis", params={"window": "30d"}, timeout=30).json()
    rate = answer["kpis"]["on_time_rate"]
    assert rate == expected_on_time(stack.data.resolved[PROVINCE])
    for _ in range(4):  # both workers, new connections
        value = gauge(samples(_get_metrics(stack.base)), "chiso_on_time_ratio", unit=PROVINCE, window="30d")
        assert value == rate


def _query(prom: str, expr: str) -> float | None:
    body = httpx.get(f"{prom}/api/v1/query", params={"query": expr}, timeout=10).json()
    assert body["status"] == "success", body
    result = body["data"]["result"]
    assert len(result) <= 1, result
    return float(result[0]["value"][1]) if result else None


def _eventually(prom: str, expr: str, want: float, timeout: float = 20) -> float | None:
    deadline = time.monotonic() + timeout
    got = None
    while time.monotonic() < deadline:
        got = _query(prom, expr)
        if got == want:
            return got
        time.sleep(0.2)
    return got


def test_prometheus_sees_the_sum_over_workers_and_the_gauges(stack):
    wait_http(f"{stack.prometheus}/-/ready", stack.prometheus_proc, stack.prometheus_log)
    prom = stack.prometheus
    assert _eventually(prom, 'up{job="chiso"}', 1) == 1
    assert _eventually(prom, 'chiso_ingested_events_total{outcome="accepted"}', stack.accepted) == stack.accepted
    answer = httpx.get(f"{stack.base}/api/v1/units/{PROVINCE}/kpis", params={"window": "30d"}, timeout=30).json()["kpis"]
    expr = f'chiso_on_time_ratio{{unit="{PROVINCE}",window="30d"}}'
    assert _eventually(prom, expr, answer["on_time_rate"]) == answer["on_time_rate"]
    expr = f'chiso_overdue_dossiers{{unit="{PROVINCE}"}}'
    assert _eventually(prom, expr, answer["overdue"]) == answer["overdue"]
