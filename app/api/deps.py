"""Annotated dependency aliases: the database, the registry, and who is asking."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request

from app.db.engine import Database
from app.keys import service as keys
from app.keys.service import Principal
from app.settings import Settings
from app.units.service import Registry


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_db(request: Request) -> Database:
    return request.app.state.db


async def get_registry(request: Request) -> Registry:
    return await request.app.state.registry.get()


async def _principal(request: Request, authorization: str | None) -> Principal:
    return await keys.authenticate(request.app.state.db, authorization)


async def read_key(request: Request, authorization: Annotated[str | None, Header()] = None) -> Principal | None:
    if request.app.state.settings.public_read and not authorization:
        return None
    principal = await _principal(request, authorization)
    keys.require_read(principal)
    return principal


async def ingest_key(request: Request, authorization: Annotated[str | None, Header()] = None) -> Principal:
    principal = await _principal(request, authorization)
    keys.require_ingest(principal)
    return principal


SettingsDep = Annotated[Settings, Depends(get_settings)]
DbDep = Annotated[Database, Depends(get_db)]
RegistryDep = Annotated[Registry, Depends(get_registry)]
ReadKey = Annotated[Principal | None, Depends(read_key)]
IngestKey = Annotated[Principal, Depends(ingest_key)]
