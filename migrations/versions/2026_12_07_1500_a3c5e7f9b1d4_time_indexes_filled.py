"""time indexes filled: the dossiers' indexes by receipt, end and deadline time with full leaf pages

Revision ID: a3c5e7f9b1d4
Revises: f6b8d0e2a4c6
Create Date: 2026-12-07 15:00:00

`ix_dossier_recv_unit`, `ix_dossier_end_unit` and `ix_dossier_due_unit` (the same-point reads,
app.aggregates.at_tau) are keyed by a time first. Receipts and ends arrive at the end of the range
and deadlines within weeks of it; the past stays as it is. PostgreSQL leaves 10 % of each leaf page
free by default (fillfactor 90), for inserts into the middle that these indexes mostly do not get:
fillfactor 100 fills a page split at the end, and a build (the import's compaction, a REINDEX),
whole. 4.5 bytes an event at a year of the nation (3 x 15.2). The setting takes effect as pages are
split or the indexes rebuilt; nothing is rewritten here. PostgreSQL only.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "a3c5e7f9b1d4"
down_revision: str | None = "f6b8d0e2a4c6"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEXES = ("ix_dossier_recv_unit", "ix_dossier_end_unit", "ix_dossier_due_unit")


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for index in INDEXES:
            op.execute(f"ALTER INDEX {index} SET (fillfactor = 100)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for index in INDEXES:
            op.execute(f"ALTER INDEX {index} RESET (fillfactor)")
