"""Shared fixtures: both stores, a migrated template database per store, and in-process services.

PostgreSQL: each test run creates its own databases on CHISO_TEST_PG (default the local server)
and drops them at the end. When the server cannot be reached the PostgreSQL tests skip, except
under CI=true (or CHISO_REQUIRE_PG=1), where they fail.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import shutil
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import orjson
import pytest
from asgi_lifespan import LifespanManager

from app.db.engine import Database
from app.keys import service as keys
from app.main import create_app, prepare_database
from app.settings import Settings
from app.units.service import RegistryCache
from tests.openapi_check import Conformance

PG_ADMIN = os.environ.get("CHISO_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
REQUIRE_PG = os.environ.get("CI", "").lower() == "true" or os.environ.get("CHISO_REQUIRE_PG") == "1"
RUN_ID = uuid.uuid4().hex[:8]
# `make test-fast` sets CHISO_STORES=sqlite: the edit-test loop without a server.
STORES = tuple(os.environ.get("CHISO_STORES", "sqlite,postgres").split(","))


def pg_url(dbname: str) -> str:
    base = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
    return f"{base}/{dbname}"


class PgServer:
    """Creates the run's databases and drops them at its end. A DROP DATABASE waits for a checkpoint
    (a second or more on a busy server, 2 s here one after the other); drops made together share one:
    they go in groups (0.1 s a database)."""

    def __init__(self):
        self.created: list[str] = []

    async def execute(self, sql: str) -> None:
        conn = await asyncpg.connect(PG_ADMIN, timeout=5)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    async def create(self, name: str, template: str | None = None) -> str:
        await self.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
        self.created.append(name)
        return pg_url(name)

    async def drop_all(self, together: int = 12) -> None:
        templates = [n for n in self.created if n.endswith("_template")]  # last: they are the copies' source
        names = [n for n in reversed(self.created) if n not in templates] + templates
        for i in range(0, len(names), together):
            group = names[i : i + together]
            await asyncio.gather(*(self.execute(f'DROP DATABASE IF EXISTS "{n}" WITH (FORCE)') for n in group))


@pytest.fixture(scope="session")
async def pg_server() -> AsyncIterator[PgServer | None]:
    server = PgServer()
    if "postgres" not in STORES:  # make test-fast: no server at all, whatever is running
        yield None
        return
    try:
        await server.execute("SELECT 1")
    except (OSError, asyncpg.PostgresError) as exc:
        if REQUIRE_PG:
            pytest.fail(f"PostgreSQL is required (CI) but unreachable at {PG_ADMIN}: {exc}")
        yield None
        return
    yield server
    await server.drop_all()


def test_settings(url: str, **overrides) -> Settings:
    values = {
        "database_url": url,
        "ingest_rate_per_minute": 0,
        "migrate_on_start": False,
        "seed_registry": False,
        "db_pool_size": int(os.environ.get("CHISO_TEST_POOL", "5")),
        "answer_cache_seconds": 0,  # tests read their writes at once; the version check still caches
        "answer_refresh_seconds": 0,  # no refresher behind the tests' backs (tests of it start one)
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)


@dataclass
class Templates:
    sqlite_path: Path | None = None
    pg_name: str | None = None


@pytest.fixture(scope="session")
async def templates(tmp_path_factory, pg_server) -> Templates:
    """One migrated and seeded database per store, copied for every fresh database."""
    t = Templates()
    t.sqlite_path = tmp_path_factory.mktemp("sqlite") / "template.db"
    url = f"sqlite+aiosqlite:///{t.sqlite_path}"
    db = Database(url)
    await prepare_database(db, test_settings(url, seed_registry=True))
    await db.dispose()
    if pg_server is not None:
        t.pg_name = f"chiso_test_{RUN_ID}_template"
        url = await pg_server.create(t.pg_name)
        db = Database(url)
        await prepare_database(db, test_settings(url, seed_registry=True))
        await db.dispose()
    return t


async def new_database_url(store: str, templates: Templates, pg_server: PgServer | None, tmp_path: Path) -> str:
    """A fresh, migrated, seeded database of `store`."""
    if store == "sqlite":
        path = tmp_path / f"chiso-{uuid.uuid4().hex[:6]}.db"
        shutil.copy(templates.sqlite_path, path)
        return f"sqlite+aiosqlite:///{path}"
    if pg_server is None:
        pytest.skip("PostgreSQL not reachable")
    return await pg_server.create(f"chiso_test_{RUN_ID}_{uuid.uuid4().hex[:8]}", template=templates.pg_name)


async def clone_database_url(store: str, url: str, pg_server: PgServer | None, tmp_path: Path) -> str:
    """A copy of the database at `url`, which no connection holds open (its service stopped): for a
    state built once (a module's data set) and given to each test as its own database."""
    if store == "sqlite":
        source = Path(url.split(":///", 1)[1])
        path = tmp_path / f"chiso-{uuid.uuid4().hex[:6]}.db"
        shutil.copy(source, path)
        for suffix in ("-wal", "-shm"):  # none once the last connection closed; copied if one is left
            if Path(f"{source}{suffix}").exists():
                shutil.copy(f"{source}{suffix}", f"{path}{suffix}")
        return f"sqlite+aiosqlite:///{path}"
    if pg_server is None:
        pytest.skip("PostgreSQL not reachable")
    return await pg_server.create(f"chiso_test_{RUN_ID}_{uuid.uuid4().hex[:8]}", template=url.rsplit("/", 1)[1])


@pytest.fixture(params=STORES, scope="session")
def store(request) -> str:
    return request.param


@dataclass
class Service:
    """A real app on a real database, driven in-process over ASGI."""

    app: object
    client: httpx.AsyncClient
    settings: Settings
    url: str
    conformance: Conformance | None = None  # every answer `client` receives, checked against /openapi.json

    @property
    def db(self) -> Database:
        return self.app.state.db

    async def key(self, scope: str, unit: str | None = None) -> str:
        registry = await self.app.state.registry.refresh()
        _, token = await keys.create_key(self.db, registry, scope, f"test {scope} {unit}", unit)
        return token

    async def post(self, events, token: str, **params) -> httpx.Response:
        return await self.client.post(
            "/api/v1/events", json={"events": events}, headers={"Authorization": f"Bearer {token}"}, params=params
        )

    async def get(self, path: str, token: str | None = None, **params) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return await self.client.get(path, headers=headers, params=params)


_DOCS: dict[bool, bytes] = {}
_HIDDEN: dict[bool, list] = {}  # the routes kept out of the document, by PUBLIC_READ: they depend on the code alone
_ROUTERS: dict[tuple, object] = {}


def _share_routers(app) -> None:
    """Give the app the included routers of the first app of the run, with the state FastAPI built for
    their routes (dependants, fields, handlers: 0.3 s an app, paid at its first request, most of a
    fresh service's cost). That state depends on the code alone, as in one `chiso serve` process serving
    every request; the routers are shared only when included alike. The tests set no
    dependency_overrides (a shared router looks them up on the first app). A FastAPI without lazily
    included routers (no `include_context`) is left as it is."""
    for i, route in enumerate(app.router.routes):
        context = getattr(route, "include_context", None)
        if context is None or not dataclasses.is_dataclass(context) or not hasattr(route, "effective_candidates"):
            continue
        key = (i, id(route.original_router))
        first = _ROUTERS.setdefault(key, route)
        if first is not route and first.original_router is route.original_router:
            alike = dataclasses.replace(first.include_context, dependency_overrides_provider=None)
            if alike == dataclasses.replace(context, dependency_overrides_provider=None):
                app.router.routes[i] = first


async def start_service(url: str, **overrides) -> AsyncIterator[Service]:
    settings = test_settings(url, **overrides)
    app = create_app(settings)
    _share_routers(app)
    # The document depends on the code and PUBLIC_READ only: generated once a run for each, not once
    # a service (0.2 s each, a third of a fresh service's start).
    if settings.public_read in _DOCS:
        app.openapi_schema = orjson.loads(_DOCS[settings.public_read])
    else:
        _DOCS[settings.public_read] = orjson.dumps(app.openapi())
    lifespan = LifespanManager(app, startup_timeout=60, shutdown_timeout=60)  # a loaded CI machine can be slow
    await lifespan.__aenter__()
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://chiso.test") as client:
            # strict: the request whose answer the OpenAPI document does not describe raises in the test
            # Resolving every route's hidden flag costs 0.25 s an app (FastAPI builds each route's state):
            # once a run, like the document.
            if settings.public_read not in _HIDDEN:
                _HIDDEN[settings.public_read] = Conformance.of_app(app).hidden
            conformance = Conformance(app.openapi(), _HIDDEN[settings.public_read]).watch(client, strict=True)
            yield Service(app, client, settings, url, conformance)
    finally:
        # Shut down whatever ended the service (a failed test, a closed generator): asgi-lifespan skips
        # the app's shutdown when its block exits by an exception, and the pool's connections then
        # stayed open until the run ended, one or two per test, past a stock server's 100.
        await lifespan.__aexit__(None, None, None)


@pytest.fixture(scope="session")
async def shared_service(store, templates, pg_server, tmp_path_factory) -> AsyncIterator[Service]:
    """One service per store for tests that isolate themselves by unique ids and units."""
    url = await new_database_url(store, templates, pg_server, tmp_path_factory.mktemp("shared"))
    async for service in start_service(url):
        yield service


@pytest.fixture
async def fresh_service(store, templates, pg_server, tmp_path) -> AsyncIterator[Service]:
    """A service on its own new database."""
    url = await new_database_url(store, templates, pg_server, tmp_path)
    async for service in start_service(url):
        yield service


@pytest.fixture
def make_service(store, templates, pg_server, tmp_path):
    """Build a service with settings of the test's choosing: `async with make_service(**kw) as svc`."""
    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def factory(**overrides):
        url = await new_database_url(store, templates, pg_server, tmp_path)
        gen = start_service(url, **overrides)
        service = await gen.__anext__()
        try:
            yield service
        finally:
            await gen.aclose()

    return factory


@pytest.fixture
async def registry(shared_service):
    return await RegistryCache(shared_service.db).refresh()


def pytest_collection_modifyitems(config, items) -> None:
    """Spread over processes (-n), the long tests start first: those marked slow, the system and
    reliability tests (real processes, minutes each) and the groups one process runs whole
    (`xdist_group`: a module's shared fixtures, 5–20 s of tests), so none is left running alone at the
    end of a run while the other processes wait. One process keeps the order of the files."""
    if not hasattr(config, "workerinput"):  # not a pytest-xdist worker
        return

    def long(item) -> bool:
        marked = any(item.get_closest_marker(m) is not None for m in ("slow", "xdist_group"))
        return marked or item.path.parent.name in ("system", "reliability")

    items.sort(key=lambda item: not long(item))  # stable: each file's order stays
