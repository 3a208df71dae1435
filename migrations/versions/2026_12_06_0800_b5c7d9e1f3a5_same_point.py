"""same_point: dossier indexes for figures at a past instant within a day

Revision ID: b5c7d9e1f3a5
Revises: a4b6c8d0e2f4
Create Date: 2026-12-06 08:00:00

A period in progress is compared with the previous one as it stood at the same point (SPEC section
4): the previous figures are those at the midnight before that instant (day rows) corrected by the
dossiers received, ended or due within the rest of it. These indexes find them per unit in a part
of one day, whatever the history; the partial one the dossiers without a receipt (orphans).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "b5c7d9e1f3a5"
down_revision: str | None = "a4b6c8d0e2f4"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_dossier_unit_recv", "dossier", ["unit_code", "recv_at"])
    op.create_index("ix_dossier_unit_end", "dossier", ["unit_code", "end_at"])
    op.create_index("ix_dossier_unit_due", "dossier", ["unit_code", "eff_due_at"])
    orphan = sa.text("recv_at IS NULL")
    op.create_index("ix_dossier_orphan", "dossier", ["unit_code"], postgresql_where=orphan, sqlite_where=orphan)


def downgrade() -> None:
    for name in ("ix_dossier_orphan", "ix_dossier_unit_due", "ix_dossier_unit_end", "ix_dossier_unit_recv"):
        op.drop_index(name, table_name="dossier")
