"""packed columns: the dossiers, the day rows and the event log's months rewritten with their columns in the order that packs a row

Revision ID: f6b8d0e2a4c6
Revises: e4a6c8f0b2d5
Create Date: 2026-12-07 14:30:00

A dossier row holds ten timestamps among as many texts, in the models' order, and each timestamp
after a text paid up to 7 bytes of alignment padding: 12.5 bytes an event (117.8 -> 105.3 bytes of
heap an event at 400k events); an event, three timestamps among its texts: 7.4 bytes (136.0 ->
128.9); a day row, its date and 64-bit sum among texts and 32-bit counts: 4 bytes (85.2 -> 81.2).
On PostgreSQL each of these tables is made anew with the same columns (name, type, NOT NULL,
default) ordered widest alignment first and variable-length last, each group in its former order,
the rows copied over in their order, and its key, indexes and storage options made again from the
catalog's own definitions; each month of the event log likewise (detached, made anew, attached again with its
bounds: the parent's indexes are built on it as it is attached). app.db.partitions makes the months
to come in that order. Statements name their columns, and PostgreSQL routes a row to a partition by
its columns' names, so nothing else changes. SQLite pads nothing: nothing is done there. The order
is physical only, so the downgrade leaves it.
"""

from collections.abc import Sequence

from alembic import op
from sqlalchemy import text

revision: str = "f6b8d0e2a4c6"
down_revision: str | None = "e4a6c8f0b2d5"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("dossier", "unit_day", "rollup_day")
LOG = "dossier_event"  # partitioned by month (app.db.partitions)
PACKED = """
SELECT string_agg(format('%I %s', a.attname, format_type(a.atttypid, a.atttypmod))
                  || CASE WHEN a.attnotnull THEN ' NOT NULL' ELSE '' END
                  || coalesce(' DEFAULT ' || pg_get_expr(d.adbin, d.adrelid), ''),
                  ', ' ORDER BY t.typlen < 0, position(t.typalign IN 'disc'), a.attnum),
       string_agg(format('%I', a.attname), ', ' ORDER BY a.attnum)
FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE a.attrelid = CAST(:t AS regclass) AND a.attnum > 0 AND NOT a.attisdropped
"""


def _packed(bind, table: str) -> tuple[str, str]:
    """(the columns of `table` as a CREATE TABLE declares them, packed; their names, in order)."""
    return tuple(bind.execute(text(PACKED), {"t": table}).one())


def _repack(bind, table: str) -> None:
    columns, names = _packed(bind, table)
    constraints = bind.execute(
        text("SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = CAST(:t AS regclass)"), {"t": table}
    ).all()
    indexes = bind.execute(
        text(
            "SELECT pg_get_indexdef(i.indexrelid) FROM pg_index i WHERE i.indrelid = CAST(:t AS regclass) "
            "AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)"
        ),
        {"t": table},
    ).scalars()
    indexes = list(indexes)
    options = bind.execute(text("SELECT reloptions FROM pg_class WHERE oid = CAST(:t AS regclass)"), {"t": table}).scalar()
    op.execute(f"ALTER TABLE {table} RENAME TO {table}_unpacked")
    op.execute(f"CREATE TABLE {table} ({columns})")
    op.execute(f"INSERT INTO {table} ({names}) SELECT {names} FROM {table}_unpacked")
    op.execute(f"DROP TABLE {table}_unpacked")
    for name, definition in constraints:
        op.execute(f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}')
    for definition in indexes:
        op.execute(definition)
    if options:
        op.execute(f"ALTER TABLE {table} SET ({', '.join(options)})")
    op.execute(f"ANALYZE {table}")


def _repack_months(bind) -> None:
    columns, names = _packed(bind, LOG)
    months = bind.execute(
        text(
            "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = CAST(:t AS regclass) ORDER BY 1"
        ),
        {"t": LOG},
    ).all()
    for month, bounds in months:
        op.execute(f"CREATE TABLE {month}_packed ({columns})")
        op.execute(f"INSERT INTO {month}_packed ({names}) SELECT {names} FROM {month}")
        op.execute(f"ALTER TABLE {LOG} DETACH PARTITION {month}")
        op.execute(f"DROP TABLE {month}")
        op.execute(f"ALTER TABLE {month}_packed RENAME TO {month}")
        op.execute(f"ALTER TABLE {LOG} ATTACH PARTITION {month} {bounds}")
        op.execute(f"ANALYZE {month}")


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    for table in TABLES:
        _repack(bind, table)
    _repack_months(bind)


def downgrade() -> None:
    pass  # the order of the columns is physical only
