"""narrow counts: the day, hour and bucket counts of the aggregate rows in 32 bits, buckets in 16

Revision ID: c8e0a2b4d6f8
Revises: b8d0f2a4c6e8
Create Date: 2026-12-06 08:30:00

A day's (or an hour's) count of dossiers of one unit, even the nation's, is far below 2^31
(app.db.models.aggregates.count_column); the summed processing time (proc_ms) and the all-time
totals (unit_total, rollup_total) stay 64-bit. A histogram bucket is below 400 for any duration a
bigint of milliseconds holds. On PostgreSQL each table is rewritten once (one ALTER TABLE); values
are kept as they are (a value out of range would stop the migration, not wrap). SQLite stores
integers by value whatever the declared type, so nothing is rewritten there: its declared types
are changed in place so that the schema matches the models.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "c8e0a2b4d6f8"
down_revision: str | None = "b8d0f2a4c6e8"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DAY_COUNTS = (
    "received",
    "received_online",
    "resolved_early",
    "resolved_on_time",
    "resolved_late",
    "resolved_unclassified",
    "withdrawn",
    "orphans",
    "proc_n",
    "c_size",
    "c_final_ok",
    "p_in",
    "p_out",
    "o_in",
    "o_out",
    "due_c0",
    "due_c1",
    "due_c2",
)  # every day counter but proc_ms
COLUMNS = {
    "unit_day": DAY_COUNTS,
    "rollup_day": DAY_COUNTS,
    "unit_day_hist": ("n",),
    "rollup_day_hist": ("n",),
    "unit_cohort_due": ("n",),
    "rollup_cohort_due": ("n",),
    "rollup_open_due": ("n",),
}
BUCKETS = ("unit_day_hist", "rollup_day_hist")


def _alter(count_type: str, bucket_type: str) -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table, cols in COLUMNS.items():
            parts = [f"ALTER COLUMN {c} TYPE {count_type}" for c in cols]
            if table in BUCKETS:
                parts.append(f"ALTER COLUMN bucket TYPE {bucket_type}")
            op.execute(f"ALTER TABLE {table} " + ", ".join(parts))
        return
    _sqlite_declared_types(count_type.upper(), bucket_type.upper())


def _sqlite_declared_types(count_type: str, bucket_type: str) -> None:
    """Rewrite the declared types in sqlite_master (the documented way to change a column's declared
    type without copying the table: https://www.sqlite.org/lang_altertable.html#otheralter); the
    stored integers do not change."""
    import re

    bind = op.get_bind()
    bind.exec_driver_sql("PRAGMA writable_schema = ON")
    for table, cols in COLUMNS.items():
        sql = bind.exec_driver_sql("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)).scalar_one()
        for c in cols:
            sql = re.sub(rf"([\s,(]{c}) [A-Z]+ ", rf"\1 {count_type} ", sql)
        if table in BUCKETS:
            sql = re.sub(r"([\s,(]bucket) [A-Z]+ ", rf"\1 {bucket_type} ", sql)
        bind.exec_driver_sql("UPDATE sqlite_master SET sql = ? WHERE type = 'table' AND name = ?", (sql, table))
    version = bind.exec_driver_sql("PRAGMA schema_version").scalar_one()
    bind.exec_driver_sql(f"PRAGMA schema_version = {version + 1}")
    bind.exec_driver_sql("PRAGMA writable_schema = OFF")


def upgrade() -> None:
    _alter("integer", "smallint")


def downgrade() -> None:
    _alter("bigint", "integer")
