"""export network: dirty marks, record digests, outbox, exporter lease; received records (central).

Revision ID: c80edba71f5b
Revises: f3acd9b67f48
Create Date: 2026-11-23 11:12:30.378354
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.db.types

revision: str = "c80edba71f5b"
down_revision: str | None = "f3acd9b67f48"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "export_dirty",
        sa.Column("unit_code", sa.String(length=8), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("gen", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("unit_code", name=op.f("pk_export_dirty")),
    )
    op.create_table(
        "export_lease",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("holder", sa.String(length=64), nullable=False),
        sa.Column("expires_at", app.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_export_lease")),
    )
    op.create_table(
        "export_outbox",
        sa.Column("sequence", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("unit_code", sa.String(length=8), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("key", sa.Date(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("state", sa.String(length=8), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", app.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("sent_at", app.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("sequence", name=op.f("pk_export_outbox")),
    )
    with op.batch_alter_table("export_outbox", schema=None) as batch_op:
        batch_op.create_index("ix_export_outbox_state_sequence", ["state", "sequence"], unique=False)

    op.create_table(
        "export_state",
        sa.Column("unit_code", sa.String(length=8), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("key", sa.Date(), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("unit_code", "kind", "key", name=op.f("pk_export_state")),
    )
    op.create_table(
        "network_cohort",
        sa.Column("unit_code", sa.String(length=8), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("start", sa.Date(), nullable=False),
        sa.Column("sequence", sa.BigInteger(), nullable=False),
        sa.Column("c_size", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("c_ok", sa.BigInteger(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("unit_code", "source", "kind", "start", name=op.f("pk_network_cohort")),
    )
    op.create_table(
        "network_day",
        sa.Column("unit_code", sa.String(length=8), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("sequence", sa.BigInteger(), nullable=False),
        sa.Column("received", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("received_online", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("resolved_early", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("resolved_on_time", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("resolved_late", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("resolved_unclassified", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("withdrawn", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("orphans", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("proc_n", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("proc_ms", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("pending", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("overdue", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("histogram", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("unit_code", "source", "day", name=op.f("pk_network_day")),
    )
    op.create_table(
        "network_source",
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("last_sequence", sa.BigInteger(), nullable=False),
        sa.Column("received_at", app.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("source", name=op.f("pk_network_source")),
    )


def downgrade() -> None:
    op.drop_table("network_source")
    op.drop_table("network_day")
    op.drop_table("network_cohort")
    op.drop_table("export_state")
    with op.batch_alter_table("export_outbox", schema=None) as batch_op:
        batch_op.drop_index("ix_export_outbox_state_sequence")

    op.drop_table("export_outbox")
    op.drop_table("export_lease")
    op.drop_table("export_dirty")
