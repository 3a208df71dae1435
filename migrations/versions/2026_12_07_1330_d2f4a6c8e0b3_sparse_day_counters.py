"""sparse day counters: a day row's zero counters stored as NULL

Revision ID: d2f4a6c8e0b3
Revises: b5d7f9a1c3e6
Create Date: 2026-12-07 13:30:00

Most counters of a day row are zero: a sector's day of a commune holds a dossier or two, and at a
year of the nation 13.7 of such a row's 19 counters were zero. PostgreSQL stores a NULL as one bit
of the row's null bitmap instead of 4 (or 8) bytes, so the write pass now stores nullif(value, 0)
(app.db.models.aggregates.day_count_column) and the counters of `unit_day` and `rollup_day` accept
NULL, with no default. Rows are not rewritten: a zero stored before reads as a NULL does (SUM skips
both; readers take NULL as 0), and the rows written from now on are the compact ones. Dropping NOT
NULL and a default changes the catalog only (no rewrite, on either store: on SQLite the declared
schema is edited in place, the documented way to remove a NOT NULL constraint,
https://www.sqlite.org/lang_altertable.html#otheralter). The downgrade writes 0 into every NULL
first.
"""

import re
from collections.abc import Sequence

from alembic import op

revision: str = "d2f4a6c8e0b3"
down_revision: str | None = "b5d7f9a1c3e6"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("unit_day", "rollup_day")
COUNTERS = (
    "received",
    "received_online",
    "resolved_early",
    "resolved_on_time",
    "resolved_late",
    "resolved_unclassified",
    "withdrawn",
    "orphans",
    "proc_n",
    "proc_ms",
    "p_in",
    "p_out",
    "o_in",
    "o_out",
    "c_size",
    "c_final_ok",
    "due_c0",
    "due_c1",
    "due_c2",
)  # app.aggregates.counters.DAY_COUNTERS as of this revision


def _sqlite_schema(edit) -> None:
    """Edit the declared CREATE TABLE of each table in place (no data is touched)."""
    bind = op.get_bind()
    bind.exec_driver_sql("PRAGMA writable_schema = ON")
    for table in TABLES:
        sql = bind.exec_driver_sql("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)).scalar_one()
        for c in COUNTERS:
            sql = edit(sql, c)
        bind.exec_driver_sql("UPDATE sqlite_master SET sql = ? WHERE type = 'table' AND name = ?", (sql, table))
    version = bind.exec_driver_sql("PRAGMA schema_version").scalar_one()
    bind.exec_driver_sql(f"PRAGMA schema_version = {version + 1}")
    bind.exec_driver_sql("PRAGMA writable_schema = OFF")


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in TABLES:
            parts = [f"ALTER COLUMN {c} DROP NOT NULL, ALTER COLUMN {c} DROP DEFAULT" for c in COUNTERS]
            op.execute(f"ALTER TABLE {table} " + ", ".join(parts))
        return
    _sqlite_schema(lambda sql, c: re.sub(rf"([\s,(]{c} [A-Z]+) DEFAULT '0' NOT NULL", r"\1", sql))


def downgrade() -> None:
    for table in TABLES:
        sets = ", ".join(f"{c} = coalesce({c}, 0)" for c in COUNTERS)
        op.execute(f"UPDATE {table} SET {sets} WHERE " + " OR ".join(f"{c} IS NULL" for c in COUNTERS))
    if op.get_bind().dialect.name == "postgresql":
        for table in TABLES:
            parts = [f"ALTER COLUMN {c} SET DEFAULT 0, ALTER COLUMN {c} SET NOT NULL" for c in COUNTERS]
            op.execute(f"ALTER TABLE {table} " + ", ".join(parts))
        return
    _sqlite_schema(lambda sql, c: re.sub(rf"([\s,(]{c} [A-Z]+)(?=\s*[,)])", r"\1 DEFAULT '0' NOT NULL", sql))
