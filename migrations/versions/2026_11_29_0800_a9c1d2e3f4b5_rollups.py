"""rollup rows of provinces and the nation

Revision ID: a9c1d2e3f4b5
Revises: e5f3b8a1c2d4
Create Date: 2026-11-29 08:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "a9c1d2e3f4b5"
down_revision: str | None = "e5f3b8a1c2d4"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DAY = (
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
)
TOTAL = ("p_in", "p_out", "o_in", "o_out")


def _counters(names) -> list:
    return [sa.Column(n, sa.BigInteger(), server_default="0", nullable=False) for n in names]


def upgrade() -> None:
    def key() -> list:
        return [sa.Column("unit_code", sa.String(length=8), nullable=False), sa.Column("sector", sa.String(length=64), nullable=False)]

    def slot() -> sa.Column:
        return sa.Column("slot", sa.SmallInteger(), nullable=False)

    op.create_table(
        "rollup_day",
        *key(),
        sa.Column("day", sa.Date(), nullable=False),
        slot(),
        *_counters(DAY),
        sa.PrimaryKeyConstraint("unit_code", "sector", "day", "slot", name=op.f("pk_rollup_day")),
    )
    op.create_table(
        "rollup_day_hist",
        *key(),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("bucket", sa.Integer(), nullable=False),
        slot(),
        *_counters(("n",)),
        sa.PrimaryKeyConstraint("unit_code", "sector", "day", "bucket", "slot", name=op.f("pk_rollup_day_hist")),
    )
    op.create_table(
        "rollup_cohort_due",
        *key(),
        sa.Column("recv_day", sa.Date(), nullable=False),
        sa.Column("due_day", sa.Date(), nullable=False),
        slot(),
        *_counters(("n",)),
        sa.PrimaryKeyConstraint("unit_code", "sector", "recv_day", "due_day", "slot", name=op.f("pk_rollup_cohort_due")),
    )
    op.create_table(
        "rollup_total",
        *key(),
        slot(),
        *_counters(TOTAL),
        sa.PrimaryKeyConstraint("unit_code", "sector", "slot", name=op.f("pk_rollup_total")),
    )
    # Existing figures: every rollup row from the own rows below it (a unit, its parent, its grandparent).
    ancestry = (
        "SELECT u.code AS code, u.code AS anc FROM unit u WHERE u.level IN ('province', 'nation') "
        "UNION ALL SELECT u.code, p.code FROM unit u JOIN unit p ON p.code = u.parent_code WHERE p.level IN ('province', 'nation') "
        "UNION ALL SELECT u.code, g.code FROM unit u JOIN unit p ON p.code = u.parent_code JOIN unit g ON g.code = p.parent_code "
        "WHERE g.level IN ('province', 'nation')"
    )
    for own, keys, values in (
        ("unit_day", ("sector", "day"), DAY),
        ("unit_day_hist", ("sector", "day", "bucket"), ("n",)),
        ("unit_cohort_due", ("sector", "recv_day", "due_day"), ("n",)),
        ("unit_total", ("sector",), TOTAL),
    ):
        k = ", ".join(keys)
        op.execute(
            f"INSERT INTO {own.replace('unit_', 'rollup_', 1)} (unit_code, {k}, slot, {', '.join(values)}) "
            f"SELECT a.anc, {', '.join('t.' + c for c in keys)}, 0, {', '.join(f'SUM(t.{v})' for v in values)} "
            f"FROM {own} t JOIN ({ancestry}) a ON a.code = t.unit_code GROUP BY a.anc, {', '.join('t.' + c for c in keys)}"
        )


def downgrade() -> None:
    for name in ("rollup_total", "rollup_cohort_due", "rollup_day_hist", "rollup_day"):
        op.drop_table(name)
