"""event log retention: monthly partitions, event keys, archived months

Revision ID: b8d0f2a4c6e8
Revises: a4b6c8d0e2f4
Create Date: 2026-12-06 08:00:00

SPEC section 9: the event log is partitioned by local month of `occurred_at` and old months are
archived and dropped whole. A unique index of a partitioned table must include the partition key,
so duplicates are recognised by a new table `event_key` (every event id ever stored, filled here
from the log) and the log's primary key becomes (unit_code, event_id, occurred_at) on both stores.

PostgreSQL only: `dossier_event` becomes a table PARTITIONED BY RANGE (occurred_at), with one
partition per local month (TIMEZONE of the settings) that holds events, and the current and next
months; the rows move over in one INSERT ... SELECT. SQLite keeps one table (the same rules).
The service makes further partitions itself (app.db.partitions).
"""

from collections.abc import Sequence
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from alembic import op

import app.db.types

revision: str = "b8d0f2a4c6e8"
down_revision: str | None = "a4b6c8d0e2f4"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = """
  unit_code varchar(8) NOT NULL, event_id varchar(128) NOT NULL, type varchar(16) NOT NULL,
  dossier_id varchar(64) NOT NULL, occurred_at timestamptz NOT NULL, channel varchar(16),
  due_at timestamptz, reason varchar(32), outcome varchar(16), procedure_code varchar(32),
  sector varchar(64), ingested_at timestamptz NOT NULL"""


def _timezone() -> str:
    from app.settings import Settings

    return Settings().timezone


def _month_after(m: date) -> date:
    return date(m.year + m.month // 12, m.month % 12 + 1, 1)


def upgrade() -> None:
    op.create_table(
        "event_key",
        sa.Column("unit_code", sa.String(length=8), nullable=False),
        sa.Column("event_id", sa.String(length=128), nullable=False),
        sa.PrimaryKeyConstraint("unit_code", "event_id", name=op.f("pk_event_key")),
    )
    op.create_table(
        "archived_month",
        sa.Column("month", sa.Date(), nullable=False),
        sa.Column("events", sa.BigInteger(), nullable=False),
        sa.Column("file", sa.String(length=255), nullable=False),
        sa.Column("archived_at", app.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("month", name=op.f("pk_archived_month")),
    )
    op.create_table(
        "archived_unit_month",
        sa.Column("unit_code", sa.String(length=8), nullable=False),
        sa.Column("month", sa.Date(), nullable=False),
        sa.Column("events", sa.BigInteger(), nullable=False),
        sa.Column("last_ingested_at", app.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("days", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("unit_code", "month", name=op.f("pk_archived_unit_month")),
    )
    op.create_table(
        "archived_receipt",
        sa.Column("unit_code", sa.String(length=8), nullable=False),
        sa.Column("event_id", sa.String(length=128), nullable=False),
        sa.Column("procedure_code", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint("unit_code", "event_id", name=op.f("pk_archived_receipt")),
    )
    op.execute("INSERT INTO event_key (unit_code, event_id) SELECT unit_code, event_id FROM dossier_event ORDER BY 1, 2")

    if op.get_bind().dialect.name != "postgresql":
        with op.batch_alter_table("dossier_event", recreate="always") as batch_op:
            batch_op.drop_constraint("pk_dossier_event", type_="primary")
            batch_op.create_primary_key("pk_dossier_event", ["unit_code", "event_id", "occurred_at"])
        return

    tz = _timezone()
    op.execute("ALTER TABLE dossier_event RENAME TO dossier_event_unpartitioned")
    op.execute("ALTER TABLE dossier_event_unpartitioned RENAME CONSTRAINT pk_dossier_event TO pk_dossier_event_unpartitioned")
    op.execute("ALTER INDEX ix_dossier_event_unit_dossier RENAME TO ix_dossier_event_unpartitioned_unit_dossier")
    op.execute(
        f"CREATE TABLE dossier_event ({COLUMNS},\n  CONSTRAINT pk_dossier_event PRIMARY KEY (unit_code, event_id, occurred_at)"
        "\n) PARTITION BY RANGE (occurred_at)"
    )
    op.execute("CREATE INDEX ix_dossier_event_unit_dossier ON dossier_event (unit_code, dossier_id)")
    bind = op.get_bind()
    stmt = sa.text("SELECT DISTINCT date_trunc('month', occurred_at AT TIME ZONE :tz)::date FROM dossier_event_unpartitioned")
    months = set(bind.execute(stmt, {"tz": tz}).scalars())
    this_month = datetime.now(UTC).astimezone(ZoneInfo(tz)).date().replace(day=1)
    months |= {this_month, _month_after(this_month)}
    for m in sorted(months):
        end = _month_after(m)
        start_at, end_at = (datetime(d.year, d.month, 1, tzinfo=ZoneInfo(tz)).isoformat() for d in (m, end))
        table = f"dossier_event_{m.year:04d}{m.month:02d}"
        op.execute(f"CREATE TABLE {table} (LIKE dossier_event INCLUDING DEFAULTS)")
        op.execute(f"ALTER TABLE dossier_event ATTACH PARTITION {table} FOR VALUES FROM ('{start_at}') TO ('{end_at}')")
    op.execute("INSERT INTO dossier_event SELECT * FROM dossier_event_unpartitioned")
    op.execute("DROP TABLE dossier_event_unpartitioned")


def downgrade() -> None:
    # Archived events stay in their files; their keys go with event_key (a re-post is then new again).
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE dossier_event RENAME TO dossier_event_partitioned")
        op.execute("ALTER TABLE dossier_event_partitioned RENAME CONSTRAINT pk_dossier_event TO pk_dossier_event_partitioned")
        op.execute("ALTER INDEX ix_dossier_event_unit_dossier RENAME TO ix_dossier_event_partitioned_unit_dossier")
        op.execute(f"CREATE TABLE dossier_event ({COLUMNS},\n  CONSTRAINT pk_dossier_event PRIMARY KEY (unit_code, event_id)\n)")
        op.execute("CREATE INDEX ix_dossier_event_unit_dossier ON dossier_event (unit_code, dossier_id)")
        op.execute("INSERT INTO dossier_event SELECT * FROM dossier_event_partitioned")
        op.execute("DROP TABLE dossier_event_partitioned")  # and its partitions
    else:
        with op.batch_alter_table("dossier_event", recreate="always") as batch_op:
            batch_op.drop_constraint("pk_dossier_event", type_="primary")
            batch_op.create_primary_key("pk_dossier_event", ["unit_code", "event_id"])
    op.drop_table("archived_receipt")
    op.drop_table("archived_unit_month")
    op.drop_table("archived_month")
    op.drop_table("event_key")
