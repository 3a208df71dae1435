"""dossier index by unit and deadline

Revision ID: e5f3b8a1c2d4
Revises: d41e2a7c9b10
Create Date: 2026-11-23 14:30:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "e5f3b8a1c2d4"
down_revision: str | None = "d41e2a7c9b10"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("dossier", schema=None) as batch_op:
        batch_op.create_index("ix_dossier_unit_due", ["unit_code", "eff_due_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("dossier", schema=None) as batch_op:
        batch_op.drop_index("ix_dossier_unit_due")
