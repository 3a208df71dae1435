"""histograms in the day rows: `unit_day.hist` and `rollup_day.hist` instead of the tables
unit_day_hist and rollup_day_hist; unit_day packed full (fillfactor 100)

Revision ID: f3a5c7e9b1d4
Revises: e1a3c5f7b9d2
Create Date: 2026-12-06 13:10:00

Issue 24's compact store: a histogram row of its own cost a tuple header, its key again and a
primary-key index (and, for unit_day_hist, a (sector, day) index) for each unit, sector and day with
a resolution: about 50 bytes per stored event on the bench's year of the nation. Each histogram
moves into the day row of its key (a new row with zero counters where there was none); the day rows
are then rewritten (CLUSTER) without the dead versions the move left. unit_day, whose rows of past
days are seldom updated again, is packed full (its fillfactor was 80, for HOT updates of today's
rows: those now move to another page and add index entries until a vacuum); the rollup rows, hot
on every post, keep 80. The downgrade makes the histogram tables again from the day rows that have
one (the rows added with zero counters stay).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.db.types

revision: str = "f3a5c7e9b1d4"
down_revision: str | None = "e1a3c5f7b9d2"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# day table -> (histogram table, the rest of the key, its type)
TABLES = {
    "unit_day": ("unit_day_hist", "source", sa.String(length=64)),
    "rollup_day": ("rollup_day_hist", "slot", sa.SmallInteger()),
}
FILLFACTOR = {"unit_day": (100, 80)}  # (after, before)


def _key(day_table: str) -> list[str]:
    return ["unit_code", "sector", "day", TABLES[day_table][1]]


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    for day, (hist, _, _) in TABLES.items():
        key = _key(day)
        same = " AND ".join(f"d.{k} = h.{k}" for k in key)
        op.add_column(day, sa.Column("hist", app.db.types.HistCounts(), nullable=True))
        if postgres:
            op.execute(f"UPDATE {day} d SET hist = h.hist FROM {hist} h WHERE {same}")
        else:
            mine = " AND ".join(f"{day}.{k} = h.{k}" for k in key)
            op.execute(
                f"UPDATE {day} SET hist = (SELECT h.hist FROM {hist} h WHERE {mine}) WHERE EXISTS (SELECT 1 FROM {hist} h WHERE {mine})"
            )
        cols = ", ".join(key)
        op.execute(
            f"INSERT INTO {day} ({cols}, hist) SELECT {', '.join('h.' + k for k in key)}, h.hist FROM {hist} h "
            f"WHERE NOT EXISTS (SELECT 1 FROM {day} d WHERE {same}) ORDER BY {cols}"
        )
        op.drop_table(hist)
        if postgres:
            if day in FILLFACTOR:
                op.execute(f"ALTER TABLE {day} SET (fillfactor = {FILLFACTOR[day][0]})")
            op.execute(f"CLUSTER {day} USING pk_{day}")  # rewritten in key order, packed to its fillfactor
            op.execute(f"ALTER TABLE {day} SET WITHOUT CLUSTER")


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
        if postgres and day in FILLFACTOR:
            op.execute(f"ALTER TABLE {day} SET (fillfactor = {FILLFACTOR[day][1]})")
