"""histograms in the day rows: `unit_day.hist` and `rollup_day.hist` instead of the tables
unit_day_hist and rollup_day_hist; unit_day packed full (fillfactor 100)

Revision ID: f3a5c7e9b1d4
Revises: c3e5a7b9d1f4
Create Date: 2026-12-06 13:40:00

Issue 24's compact store: a histogram row of its own cost a tuple header, its key again and a
primary-key index (and, for unit_day_hist, a (sector, day) index) for each unit, sector and day with
a resolution: about 50 bytes per stored event on the bench's year of the nation. Each histogram
moves into the day row of its key (a new row with zero counters where there was none). On
PostgreSQL each day table is made again, its rows copied once in key order and its key and index
built after them (an UPDATE would leave a dead version of every row, which a CLUSTER in the same
transaction keeps). unit_day, whose rows of past days are seldom updated again, is packed full (its
fillfactor was 80, for HOT updates of today's rows: those now move to another page and add index
entries until a vacuum); the rollup rows, hot on every post, keep 80. The downgrade makes the
histogram tables again from the day rows that have one (the rows added with zero counters stay).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.db.types

revision: str = "f3a5c7e9b1d4"
down_revision: str | None = "c3e5a7b9d1f4"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# day table -> (histogram table, the rest of the key, its type)
TABLES = {
    "unit_day": ("unit_day_hist", "source", sa.String(length=64)),
    "rollup_day": ("rollup_day_hist", "slot", sa.SmallInteger()),
}


def _key(day_table: str) -> list[str]:
    return ["unit_code", "sector", "day", TABLES[day_table][1]]


# the day table's other index, made again under its name
INDEXES = {"unit_day": ("ix_unit_day_sector_day", "sector, day")}
FILLFACTOR = {"unit_day": (100, 80), "rollup_day": (80, 80)}  # (after, before)


def _rebuild_pg(day: str, hist: str) -> None:
    """The day table made again with its histograms: the old rows copied once, in key order, its key
    and index built after them (packed)."""
    key = _key(day)
    bind = op.get_bind()
    cols = [
        c
        for (c,) in bind.exec_driver_sql(
            f"SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = '{day}'"
            " ORDER BY ordinal_position"
        )
    ]
    # the table's settings (autovacuum: c3e5a7b9d1f4) carried over, its fillfactor set
    (options,) = bind.exec_driver_sql(f"SELECT coalesce(reloptions, '{{}}') FROM pg_class WHERE oid = '{day}'::regclass").one()
    settings = dict(o.split("=", 1) for o in options) | {"fillfactor": str(FILLFACTOR[day][0])}
    with_settings = ", ".join(f"{k} = {v}" for k, v in settings.items())
    op.execute(f"ALTER TABLE {day} RENAME TO {day}_old")
    op.execute(f"ALTER TABLE {day}_old RENAME CONSTRAINT pk_{day} TO pk_{day}_old")
    if day in INDEXES:
        op.execute(f"ALTER INDEX {INDEXES[day][0]} RENAME TO {INDEXES[day][0]}_old")
    op.execute(f"CREATE TABLE {day} (LIKE {day}_old INCLUDING DEFAULTS INCLUDING STORAGE) WITH ({with_settings})")
    op.execute(f"ALTER TABLE {day} ADD COLUMN hist int[]")
    values = ", ".join(c if c in key else f"coalesce(d.{c}, 0)" for c in cols)
    op.execute(
        f"INSERT INTO {day} ({', '.join(cols)}, hist) SELECT {values}, h.hist "
        f"FROM {day}_old d FULL JOIN {hist} h USING ({', '.join(key)}) ORDER BY {', '.join(key)}"
    )
    op.execute(f"ALTER TABLE {day} ADD CONSTRAINT pk_{day} PRIMARY KEY ({', '.join(key)})")
    if day in INDEXES:
        op.execute(f"CREATE INDEX {INDEXES[day][0]} ON {day} ({INDEXES[day][1]})")
    op.execute(f"DROP TABLE {day}_old")


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    for day, (hist, _, _) in TABLES.items():
        if postgres:
            _rebuild_pg(day, hist)
            op.drop_table(hist)
            continue
        key = _key(day)
        op.add_column(day, sa.Column("hist", app.db.types.HistCounts(), nullable=True))
        mine = " AND ".join(f"{day}.{k} = h.{k}" for k in key)
        op.execute(f"UPDATE {day} SET hist = (SELECT h.hist FROM {hist} h WHERE {mine}) WHERE EXISTS (SELECT 1 FROM {hist} h WHERE {mine})")
        cols = ", ".join(key)
        same = " AND ".join(f"d.{k} = h.{k}" for k in key)
        op.execute(
            f"INSERT INTO {day} ({cols}, hist) SELECT {', '.join('h.' + k for k in key)}, h.hist FROM {hist} h "
            f"WHERE NOT EXISTS (SELECT 1 FROM {day} d WHERE {same}) ORDER BY {cols}"
        )
        op.drop_table(hist)


def downgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    for day, (hist, extra, extra_type) in TABLES.items():
        key = _key(day)
        op.create_table(
            hist,
            sa.Column("unit_code", sa.String(length=8), nullable=False),
            sa.Column("sector", sa.String(length=64), nullable=False),
            sa.Column("day", sa.Date(), nullable=False),
            sa.Column(extra, extra_type, nullable=False),
            sa.Column("hist", app.db.types.HistCounts(), nullable=False),
            sa.PrimaryKeyConstraint(*key, name=f"pk_{hist}"),
        )
        if hist == "unit_day_hist":
            op.create_index("ix_unit_day_hist_sector_day", hist, ["sector", "day"])
        cols = ", ".join(key)
        op.execute(f"INSERT INTO {hist} ({cols}, hist) SELECT {cols}, hist FROM {day} WHERE hist IS NOT NULL ORDER BY {cols}")
        with op.batch_alter_table(day) as batch:
            batch.drop_column("hist")
        if postgres:
            op.execute(f"ALTER TABLE {day} SET (fillfactor = {FILLFACTOR[day][1]})")
