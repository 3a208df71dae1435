"""The unit registry: seeding, CSV import, and an in-memory view that every worker keeps fresh."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from app.db import meta
from app.db.engine import Database
from app.units import repository
from app.units.model import NATION, UnitRow
from app.units.seed import package_units


@dataclass
class Registry:
    """A snapshot of the registry with its tree, for validation, authorisation and rollups."""

    units: dict[str, UnitRow] = field(default_factory=dict)
    children: dict[str, list[str]] = field(default_factory=dict)
    version: int = -1

    @classmethod
    def build(cls, rows: list[UnitRow], version: int) -> Registry:
        reg = cls(units={r.code: r for r in rows}, version=version)
        for r in rows:
            if r.parent_code:
                reg.children.setdefault(r.parent_code, []).append(r.code)
        for kids in reg.children.values():
            kids.sort()
        return reg

    def get(self, code: str) -> UnitRow | None:
        return self.units.get(code)

    def ancestors(self, code: str) -> list[UnitRow]:
        """Ancestors from the nation down, the unit itself excluded."""
        chain: list[UnitRow] = []
        unit = self.units.get(code)
        while unit is not None and unit.parent_code:
            unit = self.units.get(unit.parent_code)
            if unit is not None:
                chain.append(unit)
        return list(reversed(chain))

    def is_within(self, code: str, ancestor: str) -> bool:
        """True when `code` is `ancestor` or lies below it."""
        if code not in self.units:
            return False
        return code == ancestor or any(a.code == ancestor for a in self.ancestors(code))

    def subtree(self, code: str) -> list[str]:
        """The unit and every unit below it."""
        out, stack = [], [code]
        while stack:
            c = stack.pop()
            out.append(c)
            stack.extend(self.children.get(c, ()))
        return sorted(out)

    def at_level(self, level: str, parent: str | None = None) -> list[UnitRow]:
        """Units of one level, under `parent` (at any depth) when given, by code."""
        rows = [u for u in self.units.values() if u.level == level]
        if parent is not None:
            rows = [u for u in rows if self.is_within(u.code, parent) and u.code != parent]
        return sorted(rows, key=lambda u: u.code)


class RegistryCache:
    """Keeps a worker's Registry in step with the database (imports bump a version)."""

    def __init__(self, db: Database, check_every: float = 2.0):
        self.db = db
        self.check_every = check_every
        self.registry = Registry()
        self._checked = 0.0

    async def get(self) -> Registry:
        if time.monotonic() - self._checked >= self.check_every:
            await self.refresh()
        return self.registry

    async def refresh(self) -> Registry:
        """Reload the registry when its version moved."""
        async with self.db.session() as session:
            version = await meta.read_meta(session, repository.REGISTRY_VERSION)
            if version != self.registry.version:
                self.registry = Registry.build(await repository.read_units(session), version)
        self._checked = time.monotonic()
        return self.registry


async def seed_if_empty(db: Database) -> int:
    """Load the package registry when no unit is stored; returns the number loaded."""
    async with db.transaction() as session:
        if await repository.count_units(session):
            return 0
        rows = package_units()
        await repository.upsert_units(session, rows)
        await meta.bump_meta(session, repository.REGISTRY_VERSION)
        await repository.analyze_units(session)
        return len(rows)


async def import_units(db: Database, rows: list[UnitRow], replace: bool = False) -> tuple[int, int]:
    """Amend the registry with `rows` (or replace it); returns (upserted, deleted)."""
    async with db.transaction() as session:
        await repository.upsert_units(session, rows)
        deleted = 0
        if replace:
            deleted = await repository.delete_units_except(session, {r.code for r in rows} | {NATION})
        await meta.bump_meta(session, repository.REGISTRY_VERSION)
        await repository.analyze_units(session)
    return len(rows), deleted
