"""due soon: per deadline day, dossiers pending at the starts of that day and the two before;
indexes over open dossiers by deadline; open dossiers by deadline hour for provinces and the nation;
due-soon figures of received day records

Revision ID: e1a2b3c4d5e6
Revises: c3e5f7a9b1d2
Create Date: 2026-11-29 10:30:00
"""

from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime, time, timedelta

import sqlalchemy as sa
from alembic import op

import app.db.types

revision: str = "e1a2b3c4d5e6"
down_revision: str | None = "c3e5f7a9b1d2"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DUE = ("due_c0", "due_c1", "due_c2")
NET = ("due_24h", "due_48h", "due_72h")
OPEN = sa.text("end_at IS NULL AND eff_due_at IS NOT NULL")
ANCESTRY = (
    "SELECT u.code AS code, u.code AS anc FROM unit u WHERE u.level IN ('province', 'nation') "
    "UNION ALL SELECT u.code, p.code FROM unit u JOIN unit p ON p.code = u.parent_code WHERE p.level IN ('province', 'nation') "
    "UNION ALL SELECT u.code, g.code FROM unit u JOIN unit p ON p.code = u.parent_code JOIN unit g ON g.code = p.parent_code "
    "WHERE g.level IN ('province', 'nation')"
)


def _counter(name: str) -> sa.Column:
    return sa.Column(name, sa.BigInteger(), server_default="0", nullable=False)


def _aware(v):
    """A stored timestamp as an aware UTC datetime (SQLite answers raw SQL with text)."""
    if v is None:
        return None
    if isinstance(v, str):
        v = datetime.fromisoformat(v)
    return v.replace(tzinfo=UTC) if v.tzinfo is None else v.astimezone(UTC)


def upgrade() -> None:
    for table in ("unit_day", "rollup_day"):
        with op.batch_alter_table(table) as batch:
            for name in DUE:
                batch.add_column(_counter(name))
    with op.batch_alter_table("network_day") as batch:
        for name in NET:
            batch.add_column(_counter(name))
    for name, cols in (
        ("ix_dossier_open_due", ["eff_due_at", "unit_code", "dossier_id"]),
        ("ix_dossier_unit_open_due", ["unit_code", "eff_due_at", "dossier_id"]),
    ):
        op.create_index(name, "dossier", cols, postgresql_include=["recv_at", "sector"], postgresql_where=OPEN, sqlite_where=OPEN)
    op.create_table(
        "rollup_open_due",
        sa.Column("unit_code", sa.String(length=8), nullable=False),
        sa.Column("sector", sa.String(length=64), nullable=False),
        sa.Column("hour", app.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("slot", sa.SmallInteger(), nullable=False),
        _counter("n"),
        sa.PrimaryKeyConstraint("unit_code", "sector", "hour", "slot", name=op.f("pk_rollup_open_due")),
    )
    nonzero = sa.text("n <> 0")
    op.create_index(
        "ix_rollup_open_due_live",
        "rollup_open_due",
        ["unit_code", "sector", "hour"],
        postgresql_include=["n"],
        postgresql_where=nonzero,
        sqlite_where=nonzero,
    )
    _backfill()


def _backfill() -> None:
    """The due-soon counters of the dossiers already stored (app.aggregates.contrib.Delta.add), in the
    service's time zone, into the own rows and the rollup rows (slot 0) above them."""
    from app.settings import Settings

    tz = Settings().tz
    conn = op.get_bind()
    rows = conn.execute(
        sa.text("SELECT unit_code, sector, recv_at, end_at, eff_due_at FROM dossier WHERE recv_at IS NOT NULL AND eff_due_at IS NOT NULL")
    )
    sums: dict[tuple, list[int]] = defaultdict(lambda: [0, 0, 0])
    for unit, sector, recv, end, due in rows:
        recv, end, due = _aware(recv), _aware(end), _aware(due)
        dday = due.astimezone(tz).date()
        hits = []
        for k in range(3):
            m = datetime.combine(dday - timedelta(days=k), time(0), tzinfo=tz)
            hits.append(1 if recv < m and (end is None or end >= m) else 0)
        if any(hits):
            for s in ("*", sector or ""):
                got = sums[(unit, s, dday)]
                for k in range(3):
                    got[k] += hits[k]
    sets = ", ".join(f"{c} = excluded.{c}" for c in DUE)
    stmt = sa.text(
        f"INSERT INTO unit_day (unit_code, sector, day, source, {', '.join(DUE)}) VALUES (:u, :s, :d, '', :c0, :c1, :c2) "
        f"ON CONFLICT (unit_code, sector, day, source) DO UPDATE SET {sets}"
    )
    values = [{"u": u, "s": s, "d": d, "c0": c[0], "c1": c[1], "c2": c[2]} for (u, s, d), c in sorted(sums.items())]
    for start in range(0, len(values), 1000):
        conn.execute(stmt, values[start : start + 1000])
    # open dossiers with a receipt and a deadline, by UTC hour of the deadline, of every province and the nation
    postgres = conn.dialect.name == "postgresql"
    hour = (
        "date_trunc('hour', d.eff_due_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'"
        if postgres
        else "strftime('%Y-%m-%d %H:00:00.000000', d.eff_due_at)"
    )
    where = "d.end_at IS NULL AND d.eff_due_at IS NOT NULL AND d.recv_at IS NOT NULL"
    rows = (
        f"SELECT d.unit_code AS unit_code, '*' AS sector, {hour} AS hour FROM dossier d WHERE {where} "
        f"UNION ALL SELECT d.unit_code, d.sector, {hour} FROM dossier d WHERE {where}"
    )
    op.execute(
        f"INSERT INTO rollup_open_due (unit_code, sector, hour, slot, n) SELECT a.anc, x.sector, x.hour, 0, COUNT(*) "
        f"FROM ({rows}) x JOIN ({ANCESTRY}) a ON a.code = x.unit_code GROUP BY a.anc, x.sector, x.hour"
    )
    if values:
        op.execute(
            f"INSERT INTO rollup_day (unit_code, sector, day, slot, {', '.join(DUE)}) "
            f"SELECT a.anc, t.sector, t.day, 0, {', '.join(f'SUM(t.{c})' for c in DUE)} "
            f"FROM unit_day t JOIN ({ANCESTRY}) a ON a.code = t.unit_code "
            f"WHERE t.due_c0 <> 0 OR t.due_c1 <> 0 OR t.due_c2 <> 0 GROUP BY a.anc, t.sector, t.day "
            f"ON CONFLICT (unit_code, sector, day, slot) DO UPDATE SET {sets}"
        )


def downgrade() -> None:
    op.drop_index("ix_rollup_open_due_live", table_name="rollup_open_due")
    op.drop_table("rollup_open_due")
    op.drop_index("ix_dossier_unit_open_due", table_name="dossier")
    op.drop_index("ix_dossier_open_due", table_name="dossier")
    with op.batch_alter_table("network_day") as batch:
        for name in NET:
            batch.drop_column(name)
    for table in ("rollup_day", "unit_day"):
        with op.batch_alter_table(table) as batch:
            for name in DUE:
                batch.drop_column(name)
