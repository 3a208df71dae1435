"""packed histograms: one histogram row per unit, sector and day (and source or slot), its bucket
counts in one array, instead of one row per bucket

Revision ID: d9f1b3c5e7a9
Revises: c8e0a2b4d6f8
Create Date: 2026-12-06 09:00:00

`hist` holds [first bucket, its count, the next bucket's count, ...], zero counts trimmed at both
ends (app.db.types.hist_pack): int4[] on PostgreSQL, JSON text on SQLite. Each table is rebuilt
under its own name, its rows converted (PostgreSQL in SQL, SQLite in Python); the downgrade
unpacks them again, zero counts left out.
"""

import json
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.db.types

revision: str = "d9f1b3c5e7a9"
down_revision: str | None = "c8e0a2b4d6f8"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = {"unit_day_hist": ("source", sa.String(length=64)), "rollup_day_hist": ("slot", sa.SmallInteger())}
INDEXES = {"unit_day_hist": ("ix_unit_day_hist_sector_day", ["sector", "day"])}

# app.aggregates.histogram.SQL_HIST_PACK as it is at this revision, for this migration only
PG_PACK = """
CREATE FUNCTION pg_temp.chiso_pack(p_buckets int[], p_counts bigint[]) RETURNS int[] LANGUAGE sql IMMUTABLE AS $$
  WITH c AS (SELECT u.b, sum(u.n) AS n FROM unnest(p_buckets, p_counts) u(b, n) GROUP BY u.b HAVING sum(u.n) <> 0),
       r AS (SELECT min(c.b) AS lo, max(c.b) AS hi FROM c)
  SELECT CASE WHEN r.lo IS NULL THEN '{}'::int[] ELSE array_prepend(r.lo, ARRAY(
    SELECT coalesce(c.n, 0)::int FROM generate_series(r.lo, r.hi) g(b) LEFT JOIN c ON c.b = g.b ORDER BY g.b)) END
  FROM r
$$
"""


def _key(table: str) -> list[str]:
    return ["unit_code", "sector", "day", TABLES[table][0]]


def _set_aside(table: str) -> None:
    """Rename a table to <table>_old, freeing its index and constraint names."""
    if table in INDEXES:
        op.drop_index(INDEXES[table][0], table_name=table)
    op.rename_table(table, f"{table}_old")
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"ALTER TABLE {table}_old RENAME CONSTRAINT pk_{table} TO pk_{table}_old")


def _create(table: str, packed: bool) -> None:
    extra, extra_type = TABLES[table]
    cols = [
        sa.Column("unit_code", sa.String(length=8), nullable=False),
        sa.Column("sector", sa.String(length=64), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
    ]
    if packed:
        cols += [sa.Column(extra, extra_type, nullable=False), sa.Column("hist", app.db.types.HistCounts(), nullable=False)]
        key = _key(table)
    else:
        cols += [
            sa.Column("bucket", sa.SmallInteger(), nullable=False),
            sa.Column(extra, extra_type, nullable=False),
            sa.Column("n", sa.Integer(), server_default="0", nullable=False),
        ]
        key = ["unit_code", "sector", "day", "bucket", extra]
    op.create_table(table, *cols, sa.PrimaryKeyConstraint(*key, name=f"pk_{table}"))
    if table in INDEXES:
        op.create_index(INDEXES[table][0], table, INDEXES[table][1])


def _pack_sqlite(table: str) -> None:
    bind = op.get_bind()
    key = _key(table)
    rows = bind.exec_driver_sql(f"SELECT {', '.join(key)}, bucket, n FROM {table}_old WHERE n <> 0 ORDER BY {', '.join(key)}, bucket")
    packed: dict[tuple, dict[int, int]] = {}
    for *k, bucket, n in rows:
        packed.setdefault(tuple(k), {})[bucket] = n
    out = [(*k, json.dumps(app.db.types.hist_pack(c), separators=(",", ":"))) for k, c in packed.items()]
    if out:
        bind.exec_driver_sql(f"INSERT INTO {table} ({', '.join(key)}, hist) VALUES (?, ?, ?, ?, ?)", out)


def _unpack_sqlite(table: str) -> None:
    bind = op.get_bind()
    key = _key(table)
    out = []
    for *k, hist in bind.exec_driver_sql(f"SELECT {', '.join(key)}, hist FROM {table}_old"):
        out += [(*k, b, n) for b, n in app.db.types.hist_unpack(json.loads(hist)).items()]
    if out:
        bind.exec_driver_sql(f"INSERT INTO {table} ({', '.join(key)}, bucket, n) VALUES (?, ?, ?, ?, ?, ?)", out)


PG_PACKED = (
    "INSERT INTO {table} ({key}, hist) SELECT {key}, pg_temp.chiso_pack(array_agg(bucket::int), array_agg(n::bigint)) "
    "FROM {table}_old WHERE n <> 0 GROUP BY {key} ORDER BY {key}"
)
PG_UNPACKED = (
    "INSERT INTO {table} ({key}, bucket, n) SELECT {key}, hist[1] + b.k::int - 1, b.n "
    "FROM {table}_old CROSS JOIN LATERAL unnest(hist[2:]) WITH ORDINALITY AS b(n, k) WHERE b.n <> 0"
)


def _convert(packed: bool) -> None:
    """Each table set aside, made again in the other shape, its rows converted, the old one dropped."""
    postgres = op.get_bind().dialect.name == "postgresql"
    if postgres and packed:
        op.execute(PG_PACK)
    for table in TABLES:
        _set_aside(table)
        _create(table, packed=packed)
        if postgres:
            op.execute((PG_PACKED if packed else PG_UNPACKED).format(table=table, key=", ".join(_key(table))))
        else:
            (_pack_sqlite if packed else _unpack_sqlite)(table)
        op.drop_table(f"{table}_old")
    if postgres and packed:
        op.execute("DROP FUNCTION pg_temp.chiso_pack(int[], bigint[])")


def upgrade() -> None:
    _convert(packed=True)


def downgrade() -> None:
    _convert(packed=False)
