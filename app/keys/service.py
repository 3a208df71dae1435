"""API keys: scopes, unit binding, hashing. Only a SHA-256 of the token is stored."""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from app.db.engine import Database
from app.errors import Forbidden, Unauthorized
from app.keys import repository
from app.units.model import NATION
from app.units.service import Registry

SCOPES = ("ingest", "read", "admin")
TOKEN_PREFIX = "chiso_"


@dataclass(frozen=True, slots=True)
class Principal:
    key_id: int | None
    scope: str
    unit_code: str | None

    def can_read(self) -> bool:
        return self.scope in ("read", "admin")


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def create_key(db: Database, registry: Registry, scope: str, name: str, unit: str | None) -> tuple[int, str]:
    """Make a key; returns (id, token). The token is not kept."""
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {', '.join(SCOPES)}")
    if scope == "ingest":
        unit = unit or None
        if unit is None:
            raise ValueError("an ingest key needs --unit (use VN for every unit)")
        if registry.get(unit) is None:
            raise ValueError(f"unknown unit {unit}")
    elif unit is not None:
        raise ValueError("only ingest keys are bound to a unit")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    async with db.transaction() as session:
        key = await repository.insert_key(
            session,
            name=name,
            scope=scope,
            unit_code=unit,
            token_hash=hash_token(token),
            created_at=datetime.now(UTC),
        )
        key_id = key.id
    return key_id, token


async def list_keys(db: Database) -> list[dict]:
    """Every key without its secret."""
    async with db.session() as session:
        keys = await repository.read_keys(session)
    return [
        {
            "id": k.id,
            "name": k.name,
            "scope": k.scope,
            "unit": k.unit_code,
            "created_at": k.created_at.isoformat(),
            "revoked_at": k.revoked_at.isoformat() if k.revoked_at else None,
        }
        for k in keys
    ]


async def revoke(db: Database, key_id: int) -> bool:
    """Revoke a key by id. This process forgets every key it trusted (`authenticate`'s `keep_for`)."""
    async with db.transaction() as session:
        done = await repository.revoke_key(session, key_id, datetime.now(UTC))
    _trusted.clear()
    return done


# Keys this process found valid: (database, token hash) -> (principal, until when, monotonic). Only
# valid keys are kept, so it holds at most the keys there are; a new key is looked up at its first use.
_trusted: dict[tuple[str, str], tuple[Principal, float]] = {}


async def authenticate(db: Database, authorization: str | None, keep_for: float = 0.0) -> Principal:
    """The principal behind an `Authorization: Bearer` header, or 401. A key found valid is trusted
    without a look-up for `keep_for` seconds (KEY_CACHE_SECONDS): a dashboard polling with its key
    then costs the database nothing, and a key revoked by another process (the CLI) is refused by this
    one within that time; revoked in this process, at once."""
    if not authorization or not authorization.lower().startswith("bearer "):
        raise Unauthorized("missing bearer token")
    token_hash = hash_token(authorization[7:].strip())
    now = time.monotonic()
    known = _trusted.get((db.url, token_hash))
    if known is not None and known[1] > now:
        return known[0]
    async with db.session() as session:
        key = await repository.read_key_by_hash(session, token_hash)
    if key is None or key.revoked_at is not None:
        _trusted.pop((db.url, token_hash), None)
        raise Unauthorized("unknown or revoked key")
    principal = Principal(key.id, key.scope, key.unit_code)
    if keep_for > 0:
        _trusted[(db.url, token_hash)] = (principal, now + keep_for)
    return principal


def require_read(principal: Principal) -> None:
    if not principal.can_read():
        raise Forbidden(f"a key of scope {principal.scope} cannot read")


def require_ingest(principal: Principal) -> None:
    if principal.scope != "ingest":
        raise Forbidden(f"a key of scope {principal.scope} cannot post events")


def check_units(principal: Principal, registry: Registry, codes: set[str]) -> None:
    """Refuse the whole request when any known unit lies outside the key's unit."""
    root = principal.unit_code or NATION
    for code in sorted(codes):
        if registry.get(code) is not None and not registry.is_within(code, root):
            raise Forbidden(f"this key may not post for unit {code}", unit=code)
