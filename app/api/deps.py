"""Annotated dependency aliases: the database, the registry, who is asking, and what a read needs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from app.db.engine import Database
from app.keys import service as keys
from app.keys.service import Principal
from app.scoring.context import Reader
from app.scoring.ranking import RankingMemo
from app.settings import Settings
from app.units.service import Registry


# async: FastAPI runs a plain `def` dependency in its thread pool, a hop per request for a lookup
async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_db(request: Request) -> Database:
    return request.app.state.db


async def get_registry(request: Request) -> Registry:
    return await request.app.state.registry.get()


# Declares the scheme in the OpenAPI document (Swagger UI's "Authorize"); auto_error=False leaves
# every refusal to keys.authenticate, which answers 401 as application/problem+json.
bearer = HTTPBearer(
    auto_error=False,
    scheme_name="bearer",
    bearerFormat="chiso API key",
    description="An API key made by `chiso keys create` (printed once): `Authorization: Bearer chiso_…`. "
    "Scopes: `ingest` (post events for the key's unit and below), `read`, `admin` (read and more).",
)
Credentials = Annotated[HTTPAuthorizationCredentials | None, Security(bearer)]


async def _principal(request: Request) -> Principal:
    state = request.app.state
    return await keys.authenticate(state.db, request.headers.get("authorization"), state.settings.key_cache_seconds)


async def read_key(request: Request, _: Credentials) -> Principal | None:
    if request.app.state.settings.public_read and not request.headers.get("authorization"):
        return None
    principal = await _principal(request)
    keys.require_read(principal)
    return principal


async def ingest_key(request: Request, _: Credentials) -> Principal:
    principal = await _principal(request)
    keys.require_ingest(principal)
    return principal


SettingsDep = Annotated[Settings, Depends(get_settings)]
DbDep = Annotated[Database, Depends(get_db)]
RegistryDep = Annotated[Registry, Depends(get_registry)]
ReadKey = Annotated[Principal | None, Depends(read_key)]
IngestKey = Annotated[Principal, Depends(ingest_key)]


@dataclass(frozen=True, slots=True)
class Reads:
    """What a read needs, injected as one: the request (its key allowed to read), the settings, and
    the scoring service's read context (database, registry, time zone, silent hours, clock), made
    once per request."""

    request: Request
    reader: Reader
    settings: Settings

    @property
    def rankings(self) -> RankingMemo:
        """This process's ranking memo (app.scoring.ranking)."""
        return self.request.app.state.rankings


async def reads(request: Request, _: ReadKey) -> Reads:
    # from the app's state, not through get_db and get_settings: a plain `def` dependency runs in the
    # thread pool (those two added about 0.5 ms to each request of a toy app; the KPI polls are the hot path)
    state = request.app.state
    return Reads(request, Reader.of(state.db, await state.registry.get(), state.settings), state.settings)


ReadsDep = Annotated[Reads, Depends(reads)]
