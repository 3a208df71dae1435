"""shared_answer: polled KPI answers made once and served by every worker and replica

Revision ID: a4b6c8d0e2f4
Revises: d7e9f1a3b5c7
Create Date: 2026-12-06 05:00:00

On PostgreSQL the table is UNLOGGED: its rows are rendered answers that can be recomputed from the
figures at any time, so writing them costs no WAL; a crash empties the table (the next polls, or
the refresher, fill it again). SQLite has no such tables: there it is an ordinary table.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.db.types

revision: str = "a4b6c8d0e2f4"
down_revision: str | None = "d7e9f1a3b5c7"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "shared_answer",
        sa.Column("key", sa.String(length=2048), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("params", sa.Text(), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("etag", sa.String(length=40), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("computed_at", app.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("computed_by", sa.String(length=64), nullable=False),
        sa.Column("polled_at", app.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("claimed_until", app.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("claimed_by", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_shared_answer")),
    )
    op.create_index(op.f("ix_shared_answer_polled_at"), "shared_answer", ["polled_at"])
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE shared_answer SET UNLOGGED")


def downgrade() -> None:
    op.drop_index(op.f("ix_shared_answer_polled_at"), table_name="shared_answer")
    op.drop_table("shared_answer")
