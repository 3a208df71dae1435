"""The administrative units' model: a unit row of the registry, and the nation's code."""

from __future__ import annotations

from dataclasses import dataclass

NATION = "VN"


@dataclass(frozen=True, slots=True)
class UnitRow:
    code: str
    name: str
    level: str
    kind: str | None
    parent_code: str | None

    def as_dict(self) -> dict:
        return {
            "code": self.code,
            "name": self.name,
            "level": self.level,
            "kind": self.kind,
            "parent_code": self.parent_code,
        }
