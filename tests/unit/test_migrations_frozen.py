"""A migration already on main is never edited: migrations/manifest.sha256 holds the hash of each,
and a revision file it does not list is a new one that must be listed there (STYLE.md, Migrations).
An edit to an applied revision would never reach a deployed database, and nothing else would tell."""

from __future__ import annotations

import hashlib
from pathlib import Path

MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"
HOW = "add a new revision instead (alembic revision), and add its hash to migrations/manifest.sha256"


def manifest() -> dict[str, str]:
    out = {}
    for line in (MIGRATIONS / "manifest.sha256").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            digest, path = line.split(maxsplit=1)
            out[path.lstrip("*")] = digest
    return out


def test_listed_revisions_are_unchanged():
    listed = manifest()
    assert listed, "migrations/manifest.sha256 lists no revision"
    for path, digest in listed.items():
        file = MIGRATIONS / path
        assert file.is_file(), f"migrations/{path} is listed in the manifest but gone: a revision on main is never removed"
        assert hashlib.sha256(file.read_bytes()).hexdigest() == digest, f"migrations/{path} was edited after it reached main: {HOW}"


def test_every_revision_is_listed():
    listed = manifest()
    unlisted = sorted(f"versions/{p.name}" for p in (MIGRATIONS / "versions").glob("*.py") if f"versions/{p.name}" not in listed)
    add = " && ".join(f"sha256sum {p} >> manifest.sha256" for p in unlisted)
    assert not unlisted, (
        f"revisions not in migrations/manifest.sha256: {unlisted}; a new revision is right: add its hash (cd migrations && {add})"
    )
