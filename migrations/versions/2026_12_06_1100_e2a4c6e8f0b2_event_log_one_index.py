"""event_log_one_index: the partitioned event log keeps one index, (unit_code, dossier_id)

Revision ID: e2a4c6e8f0b2
Revises: b5c7d9e1f3a5
Create Date: 2026-12-06 11:00:00

Issue 24's compact store. On PostgreSQL the log's primary key (unit_code, event_id, occurred_at) is
dropped: it decides nothing since `event_key` holds every key ever stored (a unique index over a
partitioned table must include `occurred_at`, so it never recognised a duplicate sent with another
`occurred_at`), and it cost ~75 bytes per event. What read through it reads through
(unit_code, dossier_id) now: a unit's events (`kpis verify`), the procedure of a receipt (the at-risk
list, by its dossier). SQLite keeps its one-table log and its key (its fold inserts with that
conflict target; the size target is PostgreSQL's).
"""

from collections.abc import Sequence

from alembic import op

revision: str = "e2a4c6e8f0b2"
down_revision: str | None = "b5c7d9e1f3a5"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE dossier_event DROP CONSTRAINT pk_dossier_event")  # and each partition's


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE dossier_event ADD CONSTRAINT pk_dossier_event PRIMARY KEY (unit_code, event_id, occurred_at)")
