"""A plain (non-editable) install: the wheel built from the source tree migrates, creates keys and serves.

The wheel is built from a copy of the tree (pip builds in place and would leave build/ behind), installed
with --no-deps into a folder of its own (the dependencies are this virtual environment's), and run from a
folder outside the tree, so the checkout's app/ cannot stand in for the installed one: the Alembic
scripts must come from the wheel (app/migrations, package data) or `db upgrade` fails.
"""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
import zipfile
from pathlib import Path

import httpx
import pytest

from app.aggregates import pgpass
from app.db import migrate
from tests.helpers.processes import clean_env, stop_tree, wait_http
from tests.helpers.server import free_port

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("pyproject.toml", "app", "migrations")


def _run(argv: list, env: dict, cwd: Path, timeout: float = 120) -> str:
    result = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{argv} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The site folder the wheel is installed into."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, src / name, symlinks=True, ignore=ignore)
        else:
            shutil.copy2(path, src / name)
    dist = tmp / "dist"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(src)], {**clean_env()}, tmp)
    (wheel,) = dist.glob("chiso-*.whl")

    names = set(zipfile.ZipFile(wheel).namelist())
    scripts = {
        f"app/migrations/{p.relative_to(ROOT / 'migrations').as_posix()}"
        for p in (ROOT / "migrations").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    assert {"app/migrations/env.py", "app/migrations/script.py.mako"} <= scripts
    assert scripts <= names, f"migrations missing from the wheel: {sorted(scripts - names)}"

    site = tmp / "site"
    _run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)], clean_env(), tmp)
    return site


def test_the_wheel_migrates_creates_keys_and_serves(installed: Path, tmp_path: Path):
    run = tmp_path / "run"  # outside the checkout: `python -m` puts the working folder first on sys.path
    run.mkdir()
    db_file = tmp_path / "wheel.db"
    env = clean_env(PYTHONPATH=str(installed), DATABASE_URL=f"sqlite+aiosqlite:///{db_file}", PUBLIC_READ="true", TMPDIR=str(tmp_path))

    where = _run([sys.executable, "-c", "import app.db.migrate as m; print(m.__file__); print(m.SCRIPTS)"], env, run)
    module, scripts = where.split()
    assert Path(module).is_relative_to(installed), f"app imported from {module}, not from the wheel"
    assert Path(scripts) == installed / "app" / "migrations" and not Path(scripts).is_symlink()

    # the PostgreSQL write pass renders from the wheel's templates (package data) to the same functions
    rendered = _run([sys.executable, "-c", "from app.aggregates import pgpass; print(pgpass.current().ingest)"], env, run)
    assert rendered.strip() == pgpass.current().ingest

    assert "schema created at" in _run([sys.executable, "-m", "app.cli", "db", "upgrade"], env, run)
    with sqlite3.connect(db_file) as conn:
        at = {row[0] for row in conn.execute("SELECT version_num FROM alembic_version")}
    assert at == set(migrate.head_revisions())

    out = _run([installed / "bin" / "chiso", "keys", "create", "--scope", "read", "--name", "wheel"], env, run)
    token = out.strip().splitlines()[-1]
    assert len(token) >= 20 and " " not in token

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "serve.log"
    serve = None
    try:
        with log.open("wb") as out_file:
            serve = subprocess.Popen(
                [sys.executable, "-m", "app.cli", "serve", "--port", str(port)],
                env=env,
                cwd=run,
                stdout=out_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_http(f"{base}/readyz", serve, log)
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=30) as client:
            assert client.get("/api/v1/units/VN").status_code == 200
            assert client.get("/openapi.json").json()["paths"]
            docs = client.get("/docs")
            assert docs.status_code == 200 and "swagger" in docs.text.lower()
            assert client.get("/").status_code == 200  # the dashboard's page, package data like the scripts
    finally:
        stop_tree(serve)
