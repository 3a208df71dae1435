"""dossiers with future-dated events, for reads judged at now

Revision ID: d41e2a7c9b10
Revises: b7efce79d2b6
Create Date: 2026-11-23 14:05:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.db.types

revision: str = "d41e2a7c9b10"
down_revision: str | None = "b7efce79d2b6"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "dossier_future",
        sa.Column("unit_code", sa.String(length=8), nullable=False),
        sa.Column("dossier_id", sa.String(length=64), nullable=False),
        sa.Column("at", app.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("unit_code", "dossier_id", "at", name=op.f("pk_dossier_future")),
    )


def downgrade() -> None:
    op.drop_table("dossier_future")
