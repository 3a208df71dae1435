"""create_app(settings) and its lifespan: the Database, migrations, the registry, background loops."""

from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager, suppress

from fastapi import FastAPI

from app import collector
from app.aggregates import pgpass
from app.answers.refresher import AnswerRefresher
from app.answers.service import SharedAnswers
from app.api import dashboard, docs, downloads, errors, events, export, health, kpis, reports, units
from app.api.etag import ETagMiddleware
from app.api.limits import BodyReadTimeoutMiddleware, RateLimiter
from app.api.responses import JSONResponse
from app.api.timing import ServerTimingMiddleware
from app.db import migrate, partitions
from app.db.engine import Database, no_statement_timeout
from app.db.upkeep import Upkeep
from app.export.exporter import Exporter
from app.scoring.ranking import RankingMemo
from app.settings import Settings
from app.units import service as units_service

log = logging.getLogger("chiso")


async def prepare_database(db: Database, settings: Settings) -> None:
    """Bring the schema to head, install this version's write pass, make the event log's partitions
    the API can reach, and seed the registry when empty."""
    await upgrade_database(db)
    await partitions.ensure_ahead(db, settings.tz, settings.horizon_days)
    if settings.seed_registry:
        loaded = await units_service.seed_if_empty(db)
        if loaded:
            log.info("registry seeded with %d units", loaded)


async def upgrade_database(db: Database) -> tuple[set[str], set[str]]:
    """The schema to the Alembic head, then this version's PostgreSQL write pass (app.aggregates.pgpass);
    returns the revisions the database was at before and after."""
    async with db.engine.begin() as conn:
        await no_statement_timeout(conn)  # a migration moving a year of rows takes what it takes
        before = await migrate.current_revisions(conn)
        await migrate.upgrade(conn)
        after = await migrate.current_revisions(conn)
    async with db.engine.begin() as conn:
        await no_statement_timeout(conn)
        if await pgpass.install(conn):
            log.info("write pass %s installed", pgpass.current().version)
    return before, after


async def _stop(task: asyncio.Task | None) -> bool:
    """Cancel a background loop and wait for it to end; whether there was one."""
    if task is None:
        return False
    task.cancel()
    with suppress(asyncio.CancelledError):
        await task
    return True


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        collector.tune()
        db = Database(
            settings.database_url,
            settings.db_pool_size,
            settings.db_connect_timeout,
            settings.db_pool_timeout,
            settings.db_statement_timeout,
        )
        app.state.db = db
        if settings.migrate_on_start:
            await prepare_database(db, settings)
        app.state.registry = units_service.RegistryCache(db)
        app.state.answers = SharedAnswers(db, fresh_for=settings.answer_cache_seconds)
        app.state.rankings = RankingMemo()
        try:
            await app.state.registry.refresh()
        except Exception:  # the database may come later; /readyz tells
            log.exception("registry not loaded at start")
        exporter = app.state.exporter = Exporter(db, settings) if settings.export_enabled else None
        export_task = asyncio.create_task(exporter.run_forever()) if exporter else None
        # the refresher lives where the exporter does (under `chiso serve`, its own process)
        refresher = app.state.refresher = AnswerRefresher(db, settings) if exporter and settings.answer_refresh_seconds > 0 else None
        refresh_task = asyncio.create_task(refresher.run_forever()) if refresher else None
        upkeep_task = asyncio.create_task(Upkeep(db, settings.db_upkeep).run_forever()) if exporter else None  # beside the exporter
        yield
        await _stop(upkeep_task)
        if await _stop(refresh_task):
            await refresher.close()
        await app.state.answers.settle()
        if await _stop(export_task):
            await exporter.close()
        await db.dispose()

    app = FastAPI(
        title="chiso",
        version="0.1.0",
        description="Real-time performance assessment of Vietnam's two-tier local government.",
        lifespan=lifespan,
        default_response_class=JSONResponse,
        docs_url=None,  # app.api.docs serves /docs and /redoc with local assets (no CDN)
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.rate_limiter = RateLimiter(settings.ingest_rate_per_minute, settings.retry_after_seconds)
    errors.install(app)
    app.include_router(downloads.router)  # before the JSON routes: it matches only requests for CSV or XLSX
    for module in (health, units, events, kpis, reports, export):
        app.include_router(module.router)
    app.include_router(dashboard.router)  # GET /: the dashboard (app/static)
    docs.install(app)  # /docs, /redoc, /openapi.json
    app.add_middleware(ETagMiddleware)
    app.add_middleware(ServerTimingMiddleware)  # the time of what lies within (ETag's buffering included)
    app.add_middleware(BodyReadTimeoutMiddleware, seconds=settings.body_read_timeout)  # outermost: bounds every body read
    return app
