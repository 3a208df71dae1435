"""due_minute rows: open dossiers and unsettled cohort members by deadline minute and receipt day

Revision ID: d4f6a8b0c2e3
Revises: c3e5f7a9b1d2
Create Date: 2026-11-29 09:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.db.types

revision: str = "d4f6a8b0c2e3"
down_revision: str | None = "c3e5f7a9b1d2"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _columns(extra: sa.Column) -> list:
    return [
        sa.Column("sector", sa.String(length=64), nullable=False),
        sa.Column("due_min", app.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("recv_day", sa.Date(), nullable=False),
        sa.Column("open_n", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("late_n", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("unit_code", sa.String(length=8), nullable=False),
        extra,
    ]


def upgrade() -> None:
    op.create_table(
        "unit_due_minute",
        *_columns(sa.Column("source", sa.String(length=64), nullable=False)),
        sa.PrimaryKeyConstraint("unit_code", "sector", "due_min", "recv_day", "source", name=op.f("pk_unit_due_minute")),
    )
    op.create_index("ix_unit_due_minute_sector_due", "unit_due_minute", ["sector", "due_min"])
    op.create_table(
        "rollup_due_minute",
        *_columns(sa.Column("slot", sa.SmallInteger(), nullable=False)),
        sa.PrimaryKeyConstraint("unit_code", "sector", "due_min", "recv_day", "slot", name=op.f("pk_rollup_due_minute")),
    )
    _backfill()


def _backfill() -> None:
    """Rows of the dossiers already stored that count: open ones and unsettled cohort members, from
    the dossier table's derived columns (the partial deadline index holds exactly those)."""
    from collections import defaultdict

    from app.settings import Settings

    tz = Settings().tz  # the service's local days, as the running service counts them
    utc = app.db.types.UTCDateTime(timezone=True)
    dossier = sa.table(
        "dossier",
        sa.column("unit_code", sa.String),
        sa.column("sector", sa.String),
        sa.column("recv_at", utc),
        sa.column("eff_due_at", utc),
        sa.column("end_at", utc),
        sa.column("ok_766", sa.Boolean),
    )
    bind = op.get_bind()
    rows = bind.execute(
        sa.select(dossier).where(
            dossier.c.recv_at.is_not(None),
            dossier.c.eff_due_at.is_not(None),
            sa.or_(dossier.c.end_at.is_(None), dossier.c.end_at > dossier.c.eff_due_at),
        )
    )
    counts: dict = defaultdict(lambda: [0, 0])
    for r in rows:
        minute = r.eff_due_at.replace(second=0, microsecond=0)
        for sector in ("*", r.sector or ""):
            row = counts[(r.unit_code, sector, minute, r.recv_at.astimezone(tz).date())]
            row[0] += r.end_at is None
            row[1] += bool(r.ok_766)
    own = sa.table(
        "unit_due_minute",
        sa.column("unit_code", sa.String),
        sa.column("sector", sa.String),
        sa.column("due_min", utc),
        sa.column("recv_day", sa.Date),
        sa.column("source", sa.String),
        sa.column("open_n", sa.BigInteger),
        sa.column("late_n", sa.BigInteger),
    )
    values = [
        {"unit_code": u, "sector": s, "due_min": m, "recv_day": d, "source": "", "open_n": o, "late_n": late}
        for (u, s, m, d), (o, late) in counts.items()
    ]
    for start in range(0, len(values), 1000):
        bind.execute(own.insert(), values[start : start + 1000])
    ancestry = (
        "SELECT u.code AS code, u.code AS anc FROM unit u WHERE u.level IN ('province', 'nation') "
        "UNION ALL SELECT u.code, p.code FROM unit u JOIN unit p ON p.code = u.parent_code WHERE p.level IN ('province', 'nation') "
        "UNION ALL SELECT u.code, g.code FROM unit u JOIN unit p ON p.code = u.parent_code JOIN unit g ON g.code = p.parent_code "
        "WHERE g.level IN ('province', 'nation')"
    )
    op.execute(
        "INSERT INTO rollup_due_minute (unit_code, sector, due_min, recv_day, slot, open_n, late_n) "
        "SELECT a.anc, t.sector, t.due_min, t.recv_day, 0, SUM(t.open_n), SUM(t.late_n) "
        f"FROM unit_due_minute t JOIN ({ancestry}) a ON a.code = t.unit_code GROUP BY a.anc, t.sector, t.due_min, t.recv_day"
    )


def downgrade() -> None:
    op.drop_table("rollup_due_minute")
    op.drop_index("ix_unit_due_minute_sector_due", table_name="unit_due_minute")
    op.drop_table("unit_due_minute")
