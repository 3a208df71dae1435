"""The event log's monthly partitions on PostgreSQL (SPEC section 9), made by the service itself.

`dossier_event` is partitioned by RANGE of `occurred_at`, one partition per local month (the
service's TIMEZONE), named `dossier_event_YYYYMM`. Partitions are made ahead of need (at start:
the months the API's horizon reaches and the next one) and on demand (a batch dated in a month that
has none: the turn of a month, history brought by `chiso import`). Why not pg_partman: it would
make the months in UTC or need its background worker and a superuser to install the extension,
and retention here must archive a month before it drops it, in the same transaction as the record
of what was archived (app.retention), which pg_partman's retention does not do.

A partition is made as a plain table and then ATTACHed: ATTACH takes SHARE UPDATE EXCLUSIVE on the
parent, which neither ingest nor reads wait for (CREATE TABLE ... PARTITION OF would take ACCESS
EXCLUSIVE and queue every batch behind the longest running read). SQLite keeps one table.

A partition's columns are the parent's, by name, type, NOT NULL and default, in the order that
packs a row best (PACKED_COLUMNS_SQL: widest alignment first, variable-length last): the parent's
order puts three timestamps among the texts, and each paid up to 7 bytes of alignment padding
(7.4 bytes an event). PostgreSQL routes a row to a partition whose columns are in another order by
name, so only the partitions' rows change (migration f6b8d0e2a4c6 made the months before it so).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta, tzinfo

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from app.db.engine import Database

PARENT = "dossier_event"
_NAME = re.compile(r"^dossier_event_(\d{4})(\d{2})$")
LOCK_KEY = 0x63686973_70617274  # "chispart": one maker of partitions at a time
# The parent's columns as a partition declares them, packed (see the module's docstring): fixed
# widths by alignment (8, 4, 2, 1 bytes), then the variable-length ones, each group in the parent's order.
PACKED_COLUMNS_SQL = """
SELECT string_agg(format('%I %s', a.attname, format_type(a.atttypid, a.atttypmod))
                  || CASE WHEN a.attnotnull THEN ' NOT NULL' ELSE '' END
                  || coalesce(' DEFAULT ' || pg_get_expr(d.adbin, d.adrelid), ''),
                  ', ' ORDER BY t.typlen < 0, position(t.typalign IN 'disc'), a.attnum)
FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE a.attrelid = CAST(:parent AS regclass) AND a.attnum > 0 AND NOT a.attisdropped
"""


def is_partition(name: str) -> bool:
    """True for the name of a monthly partition (not one of the models' tables)."""
    return _NAME.match(name) is not None


def include_name(name: str | None, type_: str, parent_names) -> bool:
    """Alembic's `include_name`: the models know the partitioned table, not its partitions."""
    return not (type_ == "table" and name is not None and is_partition(name))


def month_of(at: datetime, tz: tzinfo) -> date:
    """The local month of an instant, as its first day."""
    return at.astimezone(tz).date().replace(day=1)


def next_month(month: date, n: int = 1) -> date:
    index = month.year * 12 + month.month - 1 + n
    return date(index // 12, index % 12 + 1, 1)


def bounds(month: date, tz: tzinfo) -> tuple[datetime, datetime]:
    """The instants a local month starts and ends at (end excluded)."""
    end = next_month(month)
    return datetime(month.year, month.month, 1, tzinfo=tz), datetime(end.year, end.month, 1, tzinfo=tz)


def name(month: date) -> str:
    return f"{PARENT}_{month.year:04d}{month.month:02d}"


async def read_months(conn: AsyncConnection) -> list[date]:
    """The months that have a partition, oldest first (PostgreSQL)."""
    stmt = text("SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = CAST(:parent AS regclass)")
    names = (await conn.execute(stmt, {"parent": PARENT})).scalars()
    return sorted(date(int(m[1]), int(m[2]), 1) for n in names if (m := _NAME.match(n)))


async def create(conn: AsyncConnection, months: Iterable[date], tz: tzinfo) -> list[date]:
    """Make the partitions of `months` that are missing, in the caller's transaction; returns those made."""
    await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": LOCK_KEY})
    have = set(await read_months(conn))
    made = []
    for month in sorted(set(months) - have):
        start, end = bounds(month, tz)
        table = name(month)
        columns = (await conn.execute(text(PACKED_COLUMNS_SQL), {"parent": PARENT})).scalar_one()
        await conn.execute(text(f"CREATE TABLE {table} ({columns})"))
        await conn.execute(
            text(f"ALTER TABLE {PARENT} ATTACH PARTITION {table} FOR VALUES FROM ('{start.isoformat()}') TO ('{end.isoformat()}')")
        )
        made.append(month)
    return made


class Partitions:
    """One per Database: the months known to have a partition, so a batch asks the catalog only when
    it is dated in a month this process has not seen yet."""

    def __init__(self) -> None:
        self.known: set[date] = set()

    async def ensure(self, db: Database, months: Iterable[date], tz: tzinfo) -> None:
        """Make sure every month of `months` has its partition (its own short transaction)."""
        wanted = set(months) - self.known
        if not wanted or db.is_sqlite:
            return
        async with db.engine.begin() as conn:
            await create(conn, wanted, tz)
            self.known = set(await read_months(conn))

    def forget(self) -> None:
        """After a partition may have been dropped (a retention run, in any process)."""
        self.known.clear()


async def ensure_ahead(db: Database, tz: tzinfo, horizon_days: int, now: datetime | None = None) -> None:
    """Partitions for every month the API can reach (its horizon) and the next one, made ahead of need."""
    now = now or datetime.now(UTC)
    month, last = month_of(now - timedelta(days=horizon_days), tz), next_month(month_of(now, tz))
    months = []
    while month <= last:
        months.append(month)
        month = next_month(month)
    await of(db).ensure(db, months, tz)


def of(db: Database) -> Partitions:
    """The Partitions of a Database."""
    found = getattr(db, "_partitions", None)
    if found is None:
        found = db._partitions = Partitions()
    return found
