"""unit_change: how many times each unit's own aggregate rows changed

Revision ID: c3e5f7a9b1d2
Revises: b2d4e6f8a0c1
Create Date: 2026-11-29 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.db.types

revision: str = "c3e5f7a9b1d2"
down_revision: str | None = "b2d4e6f8a0c1"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "unit_change",
        sa.Column("unit_code", sa.String(length=8), nullable=False),
        sa.Column("changes", sa.BigInteger(), nullable=False),
        sa.Column("changed_at", app.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("unit_code", name=op.f("pk_unit_change")),
    )


def downgrade() -> None:
    op.drop_table("unit_change")
