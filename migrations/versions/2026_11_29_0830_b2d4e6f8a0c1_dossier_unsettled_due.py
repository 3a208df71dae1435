"""partial deadline indexes: only dossiers open or settled after their deadline

Revision ID: b2d4e6f8a0c1
Revises: a9c1d2e3f4b5
Create Date: 2026-11-29 08:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "b2d4e6f8a0c1"
down_revision: str | None = "a9c1d2e3f4b5"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UNSETTLED = sa.text("end_at IS NULL OR end_at > eff_due_at")
COVER = ("unit_code", "recv_at", "end_at", "ok_766", "sector")


def upgrade() -> None:
    op.drop_index("ix_dossier_unit_due", table_name="dossier")
    op.drop_index("ix_dossier_eff_due_at", table_name="dossier")
    # Covering on PostgreSQL: today's corrections are index-only scans, no heap page per dossier.
    op.create_index(
        "ix_dossier_due_unsettled",
        "dossier",
        ["eff_due_at"],
        postgresql_include=list(COVER),
        postgresql_where=UNSETTLED,
        sqlite_where=UNSETTLED,
    )
    op.create_index(
        "ix_dossier_unit_due_unsettled",
        "dossier",
        ["unit_code", "eff_due_at"],
        postgresql_include=list(COVER[1:]),
        postgresql_where=UNSETTLED,
        sqlite_where=UNSETTLED,
    )


def downgrade() -> None:
    op.drop_index("ix_dossier_unit_due_unsettled", table_name="dossier")
    op.drop_index("ix_dossier_due_unsettled", table_name="dossier")
    op.create_index("ix_dossier_eff_due_at", "dossier", ["eff_due_at"])
    op.create_index("ix_dossier_unit_due", "dossier", ["unit_code", "eff_due_at"])
