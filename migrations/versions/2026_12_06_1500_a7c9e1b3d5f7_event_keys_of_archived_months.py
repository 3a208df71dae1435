"""event_keys_of_archived_months: event_key keeps the keys of archived months only

Revision ID: a7c9e1b3d5f7
Revises: f3a5c7e9b1d4
Create Date: 2026-12-06 15:00:00

Issue 24's compact store. Every event's key was stored twice: in the log as (unit_code, event_id)
and in `event_key` as its hash (~89 bytes per event, table and index). Now the log decides for the
events it holds and `event_key` keeps the keys of the events of archived months alone
(app.db.models.event_log): the keys of the events still stored are deleted here. On PostgreSQL the
log finds an event by a new index over the 8-byte hashtextextended of `unit_code:event_id` (every
month); SQLite finds it by the log's key (unit_code, event_id, occurred_at). The key
(app.db.models.event_log.event_key_of) is spelled here as it was when this revision was made: uuid
on PostgreSQL, its 32 hex digits on SQLite. Downgrade writes the keys of the stored events back into
`event_key` (an archived event's key never left it) and drops the index.
"""

import hashlib
import uuid
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "a7c9e1b3d5f7"
down_revision: str | None = "f3a5c7e9b1d4"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SQL_KEY = (
    "encode(substring(sha256(convert_to(e.unit_code, 'UTF8')) FROM 1 FOR 4)"
    " || substring(sha256(convert_to(e.unit_code || ':' || e.event_id, 'UTF8')) FROM 1 FOR 12), 'hex')::uuid"
)
INDEX_HASH = "hashtextextended(unit_code || ':' || event_id, 0)"
BATCH = 10_000


def _key(unit_code: str, event_id: str) -> uuid.UUID:
    unit = unit_code.encode()
    return uuid.UUID(bytes=hashlib.sha256(unit).digest()[:4] + hashlib.sha256(unit + b":" + event_id.encode()).digest()[:12])


def _stored_keys(bind) -> list[uuid.UUID]:
    rows = bind.execute(sa.text("SELECT unit_code, event_id FROM dossier_event")).all()
    return sorted({_key(u, e) for u, e in rows})


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        op.execute(f"CREATE INDEX ix_dossier_event_event_hash ON dossier_event ({INDEX_HASH})")
        op.execute(f"DELETE FROM event_key k USING dossier_event e WHERE k.key = {SQL_KEY}")
        return
    keys = sa.table("event_key", sa.column("key", sa.Uuid()))
    stored = _stored_keys(bind)
    for start in range(0, len(stored), BATCH):
        bind.execute(keys.delete().where(keys.c.key.in_(stored[start : start + BATCH])))


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        op.execute(f"INSERT INTO event_key (key) SELECT DISTINCT {SQL_KEY} FROM dossier_event e ORDER BY 1 ON CONFLICT DO NOTHING")
        op.execute("DROP INDEX ix_dossier_event_event_hash")
    else:
        keys = sa.table("event_key", sa.column("key", sa.Uuid()))
        have = {k for (k,) in bind.execute(sa.select(keys.c.key)).all()}
        stored = [k for k in _stored_keys(bind) if k not in have]
        for start in range(0, len(stored), BATCH):
            bind.execute(keys.insert(), [{"key": k} for k in stored[start : start + BATCH]])
