"""hashed_event_keys: event_key holds a 16-byte key per event instead of (unit_code, event_id)

Revision ID: f4b6d8e0a2c4
Revises: e2a4c6e8f0b2
Create Date: 2026-12-06 11:30:00

Issue 24's compact store. A key is the first 4 bytes of the SHA-256 of `unit_code` (a unit's keys
stay together in the index) then the first 12 of the SHA-256 of `unit_code:event_id`, in UTF-8
(app.db.models.event_log.event_key_of, spelled here as it was when this revision was made):
uuid on PostgreSQL, its 32 hex digits on SQLite. Every stored key is hashed into the new table,
archived events' included, so a re-sent event stays a duplicate. Downgrade cannot read ids back from
their keys: it makes (unit_code, event_id) keys of the events still stored (those of archived months
go, as in the downgrade of b8d0f2a4c6e8).
"""

import hashlib
import uuid
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "f4b6d8e0a2c4"
down_revision: str | None = "e2a4c6e8f0b2"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SQL_KEY = (
    "encode(substring(sha256(convert_to(unit_code, 'UTF8')) FROM 1 FOR 4)"
    " || substring(sha256(convert_to(unit_code || ':' || event_id, 'UTF8')) FROM 1 FOR 12), 'hex')::uuid"
)
BATCH = 10_000


def _key(unit_code: str, event_id: str) -> uuid.UUID:
    unit = unit_code.encode()
    return uuid.UUID(bytes=hashlib.sha256(unit).digest()[:4] + hashlib.sha256(unit + b":" + event_id.encode()).digest()[:12])


def upgrade() -> None:
    op.create_table(
        "event_key_hashed", sa.Column("key", sa.Uuid(), nullable=False), sa.PrimaryKeyConstraint("key", name="pk_event_key_hashed")
    )
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        op.execute(f"INSERT INTO event_key_hashed (key) SELECT {SQL_KEY} FROM event_key ORDER BY 1")
    else:
        hashed = sa.table("event_key_hashed", sa.column("key", sa.Uuid()))
        rows = bind.execute(sa.text("SELECT unit_code, event_id FROM event_key")).all()
        keys = sorted({_key(u, e) for u, e in rows})
        for start in range(0, len(keys), BATCH):
            bind.execute(hashed.insert(), [{"key": k} for k in keys[start : start + BATCH]])
    op.drop_table("event_key")
    op.rename_table("event_key_hashed", "event_key")
    if bind.dialect.name == "postgresql":
        op.execute("ALTER TABLE event_key RENAME CONSTRAINT pk_event_key_hashed TO pk_event_key")
    else:
        with op.batch_alter_table("event_key", recreate="always") as batch_op:
            batch_op.drop_constraint("pk_event_key_hashed", type_="primary")
            batch_op.create_primary_key("pk_event_key", ["key"])


def downgrade() -> None:
    op.drop_table("event_key")
    op.create_table(
        "event_key",
        sa.Column("unit_code", sa.String(length=8), nullable=False),
        sa.Column("event_id", sa.String(length=128), nullable=False),
        sa.PrimaryKeyConstraint("unit_code", "event_id", name="pk_event_key"),
    )
    op.execute("INSERT INTO event_key (unit_code, event_id) SELECT DISTINCT unit_code, event_id FROM dossier_event ORDER BY 1, 2")
