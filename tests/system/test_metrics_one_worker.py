"""/metrics of `chiso serve` with one worker and the exporter process on: what `make run` starts.

The worker serves in the `chiso serve` process itself, which migrates first; its counters must be
file-backed like the exporter's, or /metrics (which reads the files when the exporter runs) misses
them. tests/system/test_metrics.py covers several workers.
"""

from __future__ import annotations

import subprocess

import httpx
import pytest

from tests.conftest import new_database_url
from tests.helpers.metrics import gauge, make_batches, promtool_check, samples
from tests.helpers.processes import BIN, clean_env, stop_tree, wait_http
from tests.helpers.server import free_port


@pytest.fixture
async def env(templates, pg_server, tmp_path) -> dict:
    store = "postgres" if pg_server is not None else "sqlite"
    url = await new_database_url(store, templates, pg_server, tmp_path)
    # TMPDIR: `serve` makes its multiprocess folder there when none is given, as under `make run`
    return clean_env(
        DATABASE_URL=url, PUBLIC_READ="true", INGEST_RATE_PER_MINUTE="0", DB_POOL_SIZE="3", EXPORT_INTERVAL="1", TMPDIR=str(tmp_path)
    )


def test_one_worker_with_the_exporter_reports_the_ingest_counters(env, tmp_path):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "serve.log"
    keys = subprocess.run(
        [BIN / "chiso", "keys", "create", "--scope", "ingest", "--unit", "VN", "--name", "x"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert keys.returncode == 0, keys.stderr
    token = keys.stdout.strip().splitlines()[-1]
    serve = None
    try:
        with log.open("wb") as out:
            serve = subprocess.Popen(
                [BIN / "chiso", "serve", "--port", str(port)],
                env=env,
                cwd=tmp_path,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_http(f"{base}/readyz", serve, log)
        mp_dir = tmp_path / f"chiso-metrics-{port}"
        assert mp_dir.is_dir(), "serve with the exporter on uses a multiprocess folder"
        data = make_batches("one", 4)
        accepted = 0
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=30) as client:
            for batch in data.batches:
                r = client.post("/api/v1/events", json={"events": batch})
                assert r.status_code == 202, r.text
                accepted += r.json()["accepted"]
        with httpx.Client(base_url=base, timeout=30) as client:  # public reads
            for window in ("7d", "30d"):
                assert client.get("/api/v1/units/VN/kpis", params={"window": window}).status_code == 200
            assert client.get("/api/v1/rankings", params={"level": "province"}).status_code == 200
            text = client.get("/metrics").text
        parsed = samples(text)
        # the worker's own counters, written to the folder and merged with the exporter's
        assert gauge(parsed, "chiso_ingested_events_total", outcome="accepted") == accepted == 7 * len(data.batches)
        assert gauge(parsed, "chiso_ingested_events_total", outcome="duplicate") == len(data.batches)
        assert gauge(parsed, "chiso_ingest_batch_seconds_count") == len(data.batches)
        assert gauge(parsed, "chiso_kpi_answer_seconds_count", endpoint="kpis") == 2
        assert gauge(parsed, "chiso_kpi_answer_seconds_count", endpoint="rankings") == 1
        assert any(f.name.startswith("counter_") and str(serve.pid) in f.name for f in mp_dir.iterdir()), sorted(mp_dir.iterdir())
        assert gauge(parsed, "chiso_on_time_ratio", unit="VN", window="30d") is not None
        promtool_check(text)
    finally:
        stop_tree(serve)
