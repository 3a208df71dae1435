"""Autovacuum on the hot rows: per-table settings for the rows every batch updates

Revision ID: c3e5a7b9d1f4
Revises: e1a3c5f7b9d2
Create Date: 2026-12-06 13:30:00

PostgreSQL's default vacuums a table once a fifth of its rows are dead. For the small tables that
every batch or every refresh updates (totals, change counts, open-deadline hours, shared answers,
the export's dirty marks) that is a matter of seconds, but their churn is steady: a fixed threshold
keeps them a few pages each, cleaned at every autovacuum round. For the large day and dossier tables
a fifth is hundreds of thousands of rows of a year: only today's rows are updated, so a hundredth
keeps today's pages pruned without waiting for a fifth of history to die. Settings of the tables
(reloptions), so they hold on any server; nothing on SQLite.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "c3e5a7b9d1f4"
down_revision: str | None = "e1a3c5f7b9d2"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# small tables, updated by every batch (or every refresh): a fixed number of dead rows
SMALL = ("unit_total", "rollup_total", "rollup_open_due", "unit_change", "unit_source", "export_dirty", "shared_answer")
SMALL_SETTINGS = "autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 1000, autovacuum_vacuum_cost_delay = 0"
# large tables whose recent rows are updated: a small share of dead rows
LARGE = ("unit_day", "rollup_day", "dossier")
LARGE_SETTINGS = "autovacuum_vacuum_scale_factor = 0.01, autovacuum_analyze_scale_factor = 0.02"


def _reset(settings: str) -> str:
    return ", ".join(part.split("=")[0].strip() for part in settings.split(","))


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in SMALL:
        op.execute(f"ALTER TABLE {table} SET ({SMALL_SETTINGS})")
    op.execute("ALTER TABLE shared_answer SET (toast.autovacuum_vacuum_scale_factor = 0, toast.autovacuum_vacuum_threshold = 1000)")
    for table in LARGE:
        op.execute(f"ALTER TABLE {table} SET ({LARGE_SETTINGS})")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in SMALL:
        op.execute(f"ALTER TABLE {table} RESET ({_reset(SMALL_SETTINGS)})")
    op.execute("ALTER TABLE shared_answer RESET (toast.autovacuum_vacuum_scale_factor, toast.autovacuum_vacuum_threshold)")
    for table in LARGE:
        op.execute(f"ALTER TABLE {table} RESET ({_reset(LARGE_SETTINGS)})")
