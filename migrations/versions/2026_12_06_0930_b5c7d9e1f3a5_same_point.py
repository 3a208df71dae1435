"""same_point: dossier indexes for figures at a past instant within a day

Revision ID: b5c7d9e1f3a5
Revises: d9f1b3c5e7a9
Create Date: 2026-12-06 09:00:00

A period in progress is compared with the previous one as it stood at the same point (SPEC section
4): the previous figures are those at the midnight before that instant (day rows) corrected by the
dossiers received, ended or due between that midnight and it. These indexes find them in a part of
one day, whatever the history (time first: the nation's read needs no list of units; a unit's
filters within the range); the partial one the dossiers without a receipt (orphans).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "b5c7d9e1f3a5"
down_revision: str | None = "d9f1b3c5e7a9"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_dossier_recv_unit", "dossier", ["recv_at", "unit_code"])
    op.create_index("ix_dossier_end_unit", "dossier", ["end_at", "unit_code"])
    op.create_index("ix_dossier_due_unit", "dossier", ["eff_due_at", "unit_code"])
    orphan = sa.text("recv_at IS NULL")
    op.create_index("ix_dossier_orphan", "dossier", ["unit_code"], postgresql_where=orphan, sqlite_where=orphan)


def downgrade() -> None:
    for name in ("ix_dossier_orphan", "ix_dossier_due_unit", "ix_dossier_end_unit", "ix_dossier_recv_unit"):
        op.drop_index(name, table_name="dossier")
