"""silent sources: the last accepted event per unit and the local days its events are dated on

Revision ID: f2b3c4d5e6f7
Revises: e1a2b3c4d5e6
Create Date: 2026-11-29 10:30:00

Back-filled from the event log: per unit the latest `ingested_at` (with its local day and the first
of the 14 local days up to it), and the local days of `occurred_at` of its events within those 14
days (the only ones the 3-of-14 rule of SPEC section 4 can still ask about: the last acceptance
only moves forward). Local days are those of the TIMEZONE setting, as for every aggregate.
"""

from collections.abc import Sequence
from datetime import datetime, time, timedelta

import sqlalchemy as sa
from alembic import op

import app.db.types

revision: str = "f2b3c4d5e6f7"
down_revision: str | None = "e1a2b3c4d5e6"  # c3e5f7a9b1d2 on its own branch; after due_soon once merged
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WINDOW_DAYS = 14


def upgrade() -> None:
    source = op.create_table(
        "unit_source",
        sa.Column("unit_code", sa.String(length=8), nullable=False),
        sa.Column("last_at", app.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_day", sa.Date(), nullable=False),
        sa.Column("window_from", sa.Date(), nullable=False),
        sa.PrimaryKeyConstraint("unit_code", name=op.f("pk_unit_source")),
    )
    op.create_index("ix_unit_source_last_at", "unit_source", ["last_at"])
    days = op.create_table(
        "unit_event_day",
        sa.Column("unit_code", sa.String(length=8), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.PrimaryKeyConstraint("unit_code", "day", name=op.f("pk_unit_event_day")),
    )
    _backfill(source, days)


def _backfill(source, days) -> None:
    from app.settings import Settings

    tz = Settings().tz
    conn = op.get_bind()
    ev = sa.table(
        "dossier_event",
        sa.column("unit_code", sa.String),
        sa.column("occurred_at", app.db.types.UTCDateTime(timezone=True)),
        sa.column("ingested_at", app.db.types.UTCDateTime(timezone=True)),
    )
    last = conn.execute(sa.select(ev.c.unit_code, sa.func.max(ev.c.ingested_at)).group_by(ev.c.unit_code)).all()
    for unit, last_at in last:
        last_day = last_at.astimezone(tz).date()
        window_from = last_day - timedelta(days=WINDOW_DAYS - 1)
        conn.execute(source.insert().values(unit_code=unit, last_at=last_at, last_day=last_day, window_from=window_from))
        lo = datetime.combine(window_from, time(0), tz)
        hi = datetime.combine(last_day + timedelta(days=1), time(0), tz)
        stmt = sa.select(ev.c.occurred_at).where(ev.c.unit_code == unit, ev.c.occurred_at >= lo, ev.c.occurred_at < hi)
        dated = sorted({at.astimezone(tz).date() for (at,) in conn.execute(stmt)})
        if dated:
            conn.execute(days.insert(), [{"unit_code": unit, "day": d} for d in dated])


def downgrade() -> None:
    op.drop_table("unit_event_day")
    op.drop_index("ix_unit_source_last_at", table_name="unit_source")
    op.drop_table("unit_source")
