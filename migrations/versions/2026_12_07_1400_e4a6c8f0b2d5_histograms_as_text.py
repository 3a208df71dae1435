"""histograms as text: a day row's packed histogram stored as "first bucket,count,count,..."

Revision ID: e4a6c8f0b2d5
Revises: d2f4a6c8e0b3
Create Date: 2026-12-07 14:00:00

A day row's histogram (the processing times of the dossiers resolved that day, packed: the first
bucket, then the counts from it on) was an int4[] on PostgreSQL: 24 bytes of array header and 4
bytes a count, on a row that most often holds one or two small counts (56 bytes on average at a year
of the nation). As text it takes a byte of header and a few characters a count (app.db.types.
hist_encode); SQLite held it as a JSON list, now the same text without its brackets.

On PostgreSQL each day table is rewritten once (one ALTER TABLE); the same rewrite stores every
zero counter as NULL (migration d2f4a6c8e0b3 made the columns accept it: rows written since are so
already), so a store migrated in place is as compact as one written anew. SQLite's rows are updated
in place likewise.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "e4a6c8f0b2d5"
down_revision: str | None = "d2f4a6c8e0b3"
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
    "p_in",
    "p_out",
    "o_in",
    "o_out",
    "c_size",
    "c_final_ok",
    "due_c0",
    "due_c1",
    "due_c2",
)  # the 32-bit day counters of this revision; proc_ms is the 64-bit one


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in TABLES:
            parts = [f"ALTER COLUMN {c} TYPE integer USING nullif({c}, 0)" for c in COUNTERS]
            parts.append("ALTER COLUMN proc_ms TYPE bigint USING nullif(proc_ms, 0)")
            parts.append("ALTER COLUMN hist TYPE text USING array_to_string(hist, ',')")
            op.execute(f"ALTER TABLE {table} " + ", ".join(parts))
        return
    for table in TABLES:
        sets = [f"{c} = nullif({c}, 0)" for c in (*COUNTERS, "proc_ms")]
        sets.append("hist = CASE WHEN hist IS NULL THEN NULL ELSE substr(hist, 2, length(hist) - 2) END")
        op.execute(f"UPDATE {table} SET " + ", ".join(sets))


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in TABLES:
            op.execute(f"ALTER TABLE {table} ALTER COLUMN hist TYPE int[] USING string_to_array(hist, ',')::int[]")
        return
    for table in TABLES:
        op.execute(f"UPDATE {table} SET hist = '[' || hist || ']' WHERE hist IS NOT NULL")
