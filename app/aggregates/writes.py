"""All writes of the aggregate model: dossier states, own rows per unit, the rollup rows of the
units above, and the change marks that the exporter consumes.

Lock order. Rows are touched in sorted key order, table after table, so concurrent writers wait
for each other but never deadlock: events (ingest), dossiers, own aggregate rows, rollup rows,
change counts (`unit_change`), change marks, then `node_meta`. Rollup rows of one unit and day are spread over ROLLUP_SLOTS
rows; each transaction adds into one slot (on PostgreSQL one no other pass holds, when there is
one), so that batches of different communes seldom queue on their province's or the nation's row
of today.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from datetime import UTC, date, datetime

import orjson
from sqlalchemy import delete, select, text, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from app.aggregates import pgpass
from app.aggregates.contrib import Delta
from app.aggregates.counters import DAY_COUNTERS, TOTAL_COUNTERS
from app.aggregates.dossier import STATE_COLUMNS, DossierState
from app.aggregates.histogram import bucket_rows_sql
from app.db import dialect
from app.db.models import (
    ALL_SECTORS,
    LOCAL_SOURCE,
    Dossier,
    ExportDirty,
    RollupCohortDue,
    RollupDay,
    RollupOpenDue,
    RollupTotal,
    Unit,
    UnitChange,
    UnitCohortDue,
    UnitDay,
    UnitTotal,
)
from app.db.types import hist_decode, hist_encode
from app.units.service import Registry

CHUNK = 1000
ROLLUP_SLOTS = pgpass.ROLLUP_SLOTS  # rollup rows per unit and day; declared with the pass, which picks a free one
DOSSIER_COLUMNS = (*STATE_COLUMNS, "sector", "eff_due_at", "end_at", "ok_766")
# (day rows, histograms, cohort rows, totals): the histograms are a column of the day rows
OWN_TABLES = (UnitDay, UnitDay, UnitCohortDue, UnitTotal)
ROLLUP_TABLES = (RollupDay, RollupDay, RollupCohortDue, RollupTotal)
ROLLUP_LEVELS = ("province", "nation")  # levels whose answers read rollup rows; communes read their own


def _chunks(items: list, size: int = CHUNK) -> Iterable[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def pick_slot() -> int:
    return random.randrange(ROLLUP_SLOTS)


# --- a whole batch at once (PostgreSQL) ----------------------------------------------------------


STAGE_COLUMNS = (
    "unit_code",
    "event_id",
    "type",
    "dossier_id",
    "occurred_at",
    "channel",
    "due_at",
    "reason",
    "outcome",
    "procedure_code",
    "sector",
    "ingested_at",
)  # dossier_event's columns, in its order


async def store_batch_pg(
    session: AsyncSession, events: list[dict], registry: Registry, timezone: str, now: datetime, copy: bool = False
) -> set[tuple[str, str]]:
    """Insert a batch's events and fold the new ones into dossiers and aggregates in one server-side
    pass (app.aggregates.pgpass: app/aggregates/pg/ingest.sql): the same rules as the Python path below,
    the same lock order. The events travel as one JSON document, or with `copy` (bulk imports) by
    COPY into the session's staging table. Returns the (unit_code, event_id) actually inserted."""
    units = sorted({e["unit_code"] for e in events})
    rollup = orjson.dumps([{"u": u, "a": a} for u in units for a in rollup_chain(registry, u)]).decode()
    params = {"rollup": rollup, "tz": timezone, "now": now, "slot": pick_slot()}
    fn = pgpass.current()
    if copy:
        await session.execute(text(f"SELECT {fn.temp_tables}()"))
        raw = await (await session.connection()).get_raw_connection()
        records = [tuple(e[c] for c in STAGE_COLUMNS) for e in events]
        await raw.driver_connection.copy_records_to_table("chiso_stage", records=records, columns=STAGE_COLUMNS)
        stmt = text(f"SELECT unit_code, event_id FROM {fn.ingest_staged}(CAST(:rollup AS json), :tz, :now, :slot)")
    else:
        params["events"] = orjson.dumps(events).decode()
        stmt = text(f"SELECT unit_code, event_id FROM {fn.ingest}(CAST(:events AS json), CAST(:rollup AS json), :tz, :now, :slot)")
    return {(u, e) for u, e in (await session.execute(stmt, params)).all()}


# --- dossiers ------------------------------------------------------------------------------------


async def lock_dossiers(session: AsyncSession, keys: list[tuple[str, str]]) -> dict[tuple[str, str], DossierState]:
    """Create missing dossier rows, lock all of them in key order, and return their states."""
    keys = sorted(set(keys))
    placeholders = [{"unit_code": u, "dossier_id": d, "event_days": "{}", "supplements": 0, "sector": "", "ok_766": False} for u, d in keys]
    await dialect.bulk_upsert(session, Dossier, placeholders, ["unit_code", "dossier_id"])
    conn = await session.connection()
    states: dict[tuple[str, str], DossierState] = {}
    if dialect.is_postgres(session):
        # Row locks in key order: concurrent batches touching the same dossiers queue, never deadlock.
        # The keys travel as one JSON document (cheap to encode, see dialect.bulk_upsert); asyncpg
        # returns timestamptz as aware UTC datetimes, as the UTCDateTime type would.
        stmt = text(
            f"SELECT {', '.join(STATE_COLUMNS)} FROM dossier WHERE (unit_code, dossier_id) IN "
            "(SELECT u, d FROM json_to_recordset(CAST(:keys AS json)) AS k(u varchar, d varchar)) "
            "ORDER BY unit_code, dossier_id FOR UPDATE"
        )
        result = await conn.execute(stmt, {"keys": orjson.dumps([{"u": u, "d": d} for u, d in keys]).decode()})
        for row in result.mappings():
            states[(row["unit_code"], row["dossier_id"])] = DossierState.from_row(row)
        return states
    cols = [getattr(Dossier, c) for c in STATE_COLUMNS]
    for chunk in _chunks(keys):
        stmt = select(*cols).where(tuple_(Dossier.unit_code, Dossier.dossier_id).in_(chunk))
        for row in (await conn.execute(stmt)).mappings():
            states[(row["unit_code"], row["dossier_id"])] = DossierState.from_row(row)
    return states


async def upsert_dossiers(session: AsyncSession, states: list[DossierState]) -> None:
    """Write dossier states (rows exist: lock_dossiers made them)."""
    rows = sorted((s.to_row() for s in states), key=lambda r: (r["unit_code"], r["dossier_id"]))
    others = tuple(c for c in DOSSIER_COLUMNS if c not in ("unit_code", "dossier_id"))
    await dialect.bulk_upsert(session, Dossier, rows, ["unit_code", "dossier_id"], replace=others)


# --- aggregate rows ------------------------------------------------------------------------------


async def _add_rows(session: AsyncSession, table, keys: tuple[str, ...], cols: tuple[str, ...], rows: list[dict]):
    """Add counters to rows, creating them as needed, in key order."""
    rows.sort(key=lambda r: tuple(r[k] for k in keys))
    await dialect.bulk_upsert(session, table, rows, list(keys), add=cols)


async def _add_delta(session: AsyncSession, delta: Delta, tables: tuple, extra: dict) -> None:
    """Add a delta to one family of tables; `extra` is the rest of the key (source or slot)."""
    day_t, _, due_t, total_t = tables
    ((name, value),) = extra.items()
    await _add_days(session, day_t, name, value, delta)
    due_rows = [
        {"unit_code": u, "sector": s, "recv_day": r, "due_day": d, name: value, "n": n} for (u, s, r, d), n in delta.cohort_due.items()
    ]
    await _add_rows(session, due_t, ("unit_code", "sector", "recv_day", "due_day", name), ("n",), due_rows)
    total_rows = [
        {"unit_code": u, "sector": s, name: value, **{c: cols.get(c, 0) for c in TOTAL_COUNTERS}} for (u, s), cols in delta.total.items()
    ]
    await _add_rows(session, total_t, ("unit_code", "sector", name), TOTAL_COUNTERS, total_rows)


def _pack_days(hist: dict[tuple, int]) -> dict[tuple, str]:
    """Bucket counts keyed (unit, sector, day, bucket) as packed rows keyed (unit, sector, day)."""
    days: dict[tuple, dict[int, int]] = {}
    for (u, s, d, b), n in hist.items():
        days.setdefault((u, s, d), {})[b] = n
    return {k: hist_encode(v) for k, v in days.items()}


async def _add_days(session: AsyncSession, table, name: str, value, delta: Delta) -> None:
    """Add the day counters and the bucket counts (hist_add on the stored histogram; None: nothing
    to add) to the day rows, in key order: a day with either kind of change is one upsert."""
    packed = {k: h for k, h in _pack_days(delta.hist).items() if h}
    rows = []
    for key in set(delta.day) | set(packed):
        counts = delta.day.get(key, {})
        u, s, d = key
        zero_as_null = {c: counts.get(c) or None for c in DAY_COUNTERS}  # as the day rows store it
        rows.append({"unit_code": u, "sector": s, "day": d, name: value, **zero_as_null, "hist": packed.get(key)})
    rows.sort(key=lambda r: (r["unit_code"], r["sector"], r["day"]))
    fn = pgpass.current().hist_add if dialect.is_postgres(session) else "chiso_hist_add"
    await dialect.bulk_upsert(session, table, rows, ["unit_code", "sector", "day", name], sparse=DAY_COUNTERS, combine=(("hist", fn),))


def rollup_chain(registry: Registry, unit: str) -> tuple[str, ...]:
    """The units whose rollup rows include `unit`'s own rows: provinces and the nation at or above it."""
    me = registry.get(unit)
    chain = [a.code for a in registry.ancestors(unit) if a.level in ROLLUP_LEVELS]
    if me is not None and me.level in ROLLUP_LEVELS:
        chain.append(unit)
    return tuple(chain)


def rollup_of(delta: Delta, registry: Registry) -> Delta:
    """The same changes added to every province and nation at or above each unit."""
    out = Delta()
    memo: dict[str, tuple[str, ...]] = {}

    def above(unit: str) -> tuple[str, ...]:
        got = memo.get(unit)
        if got is None:
            got = memo[unit] = rollup_chain(registry, unit)
        return got

    for (u, s, d), cols in delta.day.items():
        for a in above(u):
            row = out.day[(a, s, d)]
            for c, v in cols.items():
                row[c] += v
    for (u, s, d, b), n in delta.hist.items():
        for a in above(u):
            out.hist[(a, s, d, b)] += n
    for (u, s, r, d), n in delta.cohort_due.items():
        for a in above(u):
            out.cohort_due[(a, s, r, d)] += n
    for (u, s), cols in delta.total.items():
        for a in above(u):
            row = out.total[(a, s)]
            for c, v in cols.items():
                row[c] += v
    for (u, s, h), n in delta.open_due.items():
        for a in above(u):
            out.open_due[(a, s, h)] += n
    return out.nonzero()


async def add_aggregates(
    session: AsyncSession,
    delta: Delta,
    registry: Registry,
    source: str = LOCAL_SOURCE,
    slot: int | None = None,
    touched: Iterable[str] = (),
) -> None:
    """Add a delta of units' own figures to their own rows and to the rollup rows above them, and
    move the change count of the units whose stored rows changed: those of the delta, and `touched`
    (ingest: every unit with a dossier the batch's new events changed, whether or not an aggregate
    row moved: a deadline moved within an hour, an instant within a day, the last acceptance are
    read by the figures at now and at t; the SQL spelling: step 6 of app/aggregates/pg/ingest.sql)."""
    await _add_delta(session, delta, OWN_TABLES, {"source": source})
    up = rollup_of(delta, registry)
    slot = pick_slot() if slot is None else slot
    await _add_delta(session, up, ROLLUP_TABLES, {"slot": slot})
    rows = [{"unit_code": u, "sector": s, "hour": h, "slot": slot, "n": n} for (u, s, h), n in up.open_due.items()]
    await _add_rows(session, RollupOpenDue, ("unit_code", "sector", "hour", "slot"), ("n",), rows)
    await _count_changes(session, set(delta.units()) | set(touched))


async def _count_changes(session: AsyncSession, units: list[str]) -> None:
    """One more change for each unit whose stored rows changed, in unit order."""
    now = datetime.now(UTC)
    rows = [{"unit_code": u, "changes": 1, "changed_at": now} for u in sorted(units)]
    await dialect.bulk_upsert(session, UnitChange, rows, ["unit_code"], add=("changes",), replace=("changed_at",))


async def replace_source_rows(
    session: AsyncSession, registry: Registry, source: str, unit: str, day_rows: list[dict], hist: dict[date, list]
) -> None:
    """Set a subordinate's all-sector rows of one unit for some days (a central node's merge of
    its day records), its all-time totals, and the rollups above by the difference."""
    days = sorted({r["day"] for r in day_rows} | set(hist))
    old = await _read_source_rows(session, source, unit, days)
    new = Delta()
    for r in day_rows:
        row = new.day[(unit, ALL_SECTORS, r["day"])]
        for c in DAY_COUNTERS:
            row[c] += r.get(c, 0)
    for d, pairs in hist.items():
        for b, n in pairs:
            new.hist[(unit, ALL_SECTORS, d, b)] += n
    change = Delta()  # own rows become old + (new - old) = new; the totals sum the day rows
    for key in set(old.day) | set(new.day):
        for c in DAY_COUNTERS:
            diff = new.day.get(key, {}).get(c, 0) - old.day.get(key, {}).get(c, 0)
            change.day[key][c] += diff
            if c in TOTAL_COUNTERS:
                change.total[(unit, ALL_SECTORS)][c] += diff
    for key in set(old.hist) | set(new.hist):
        change.hist[key] += new.hist.get(key, 0) - old.hist.get(key, 0)
    await add_aggregates(session, change.nonzero(), registry, source=source)


async def _read_source_rows(session: AsyncSession, source: str, unit: str, days: list[date]) -> Delta:
    out = Delta()
    for chunk in _chunks(days):
        stmt = select(UnitDay).where(
            UnitDay.unit_code == unit, UnitDay.sector == ALL_SECTORS, UnitDay.source == source, UnitDay.day.in_(chunk)
        )
        for r in (await session.execute(stmt)).scalars():
            out.day[(unit, ALL_SECTORS, r.day)] = {c: getattr(r, c) or 0 for c in DAY_COUNTERS}
            for b, n in hist_decode(r.hist).items():
                out.hist[(unit, ALL_SECTORS, r.day, b)] = n
    return out


async def delete_unit_state(session: AsyncSession, unit_code: str) -> None:
    """Remove a unit's dossiers and its own (local) aggregates, before a rebuild (rollups: rebuild_rollups)."""
    await session.execute(delete(Dossier).where(Dossier.unit_code == unit_code))
    for table in dict.fromkeys(OWN_TABLES):  # each table once (the histograms are in the day rows)
        await session.execute(delete(table).where(table.unit_code == unit_code, table.source == LOCAL_SOURCE))


# --- rollups from own rows -----------------------------------------------------------------------

# (unit, ancestor-or-self at a rollup level), from the registry table: a unit, its parent and its
# grandparent (the registry has three levels).
ANCESTRY_SQL = (
    "SELECT u.code AS code, u.code AS anc FROM unit u WHERE u.level IN ('province', 'nation') "
    "UNION ALL SELECT u.code, p.code FROM unit u JOIN unit p ON p.code = u.parent_code "
    "WHERE p.level IN ('province', 'nation') "
    "UNION ALL SELECT u.code, g.code FROM unit u JOIN unit p ON p.code = u.parent_code JOIN unit g ON g.code = p.parent_code "
    "WHERE g.level IN ('province', 'nation')"
)


def rollup_select_sql(table: str, postgres: bool) -> tuple[str, tuple[str, ...]]:
    """SELECT of the rollup rows of one own table, summed from every unit's own rows (all sources):
    (sql, the selected columns in order, slot excluded). `hist`: the histograms of the day rows, by
    bucket (unpacked)."""
    keys = {
        "unit_day": ("sector", "day"),
        "hist": ("sector", "day", "bucket"),
        "unit_cohort_due": ("sector", "recv_day", "due_day"),
        "unit_total": ("sector",),
    }[table]
    values = {"unit_day": DAY_COUNTERS, "unit_total": TOTAL_COUNTERS}.get(table, ("n",))
    sparse = table == "unit_day"  # stored as the day rows store them: a zero as NULL
    source = table
    if table == "hist":
        source = f"({bucket_rows_sql('unit_day', ('unit_code', 'sector', 'day'), postgres)})"
    sql = (
        f"SELECT a.anc AS unit_code, {', '.join('t.' + k for k in keys)}, "
        f"{', '.join(f'NULLIF(SUM(t.{v}), 0) AS {v}' if sparse else f'SUM(t.{v}) AS {v}' for v in values)} "
        f"FROM {source} t JOIN ({ANCESTRY_SQL}) a ON a.code = t.unit_code "
        f"GROUP BY a.anc, {', '.join('t.' + k for k in keys)}"
    )
    return sql, ("unit_code", *keys, *values)


def open_due_select_sql(postgres: bool) -> str:
    """SELECT (unit_code, sector, hour, n) of the rollup open-deadline rows from the dossier table:
    open dossiers with a receipt and a deadline, by UTC hour, stored as the ORM stores it."""
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
    return (
        f"SELECT a.anc AS unit_code, x.sector AS sector, x.hour AS hour, COUNT(*) AS n "
        f"FROM ({rows}) x JOIN ({ANCESTRY_SQL}) a ON a.code = x.unit_code GROUP BY a.anc, x.sector, x.hour"
    )


async def rebuild_rollups(session: AsyncSession) -> None:
    """Replace every rollup row by the sums of the own rows below (after a registry change, a repair,
    or a bulk load), and count a change of every unit with units under it (whose rollup rows these
    are: an answer that holds by its units' counts, app.answers, is computed again). Set-based: one
    INSERT ... SELECT per table."""
    postgres = dialect.is_postgres(session)
    for own, rollup in dict(zip(OWN_TABLES, ROLLUP_TABLES, strict=True)).items():
        await session.execute(delete(rollup))
        sql, cols = rollup_select_sql(own.__tablename__, postgres)
        names = ", ".join(cols)
        await session.execute(text(f"INSERT INTO {rollup.__tablename__} ({names}, slot) SELECT {names}, 0 FROM ({sql}) s"))
    await _rebuild_hist_rollups(session, rollup_select_sql("hist", postgres)[0], postgres)  # into the day rows
    await session.execute(delete(RollupOpenDue))
    sql = open_due_select_sql(dialect.is_postgres(session))
    await session.execute(
        text(f"INSERT INTO rollup_open_due (unit_code, sector, hour, slot, n) SELECT unit_code, sector, hour, 0, n FROM ({sql}) s")
    )
    above = (await session.execute(select(Unit.parent_code).where(Unit.parent_code.is_not(None)).distinct())).scalars()
    await _count_changes(session, list(above))


async def _rebuild_hist_rollups(session: AsyncSession, sql: str, postgres: bool) -> None:
    """The rollup day rows' histograms from their bucket sums (`sql`: unit_code, sector, day, bucket,
    n), packed, into the rollup day rows just rebuilt (slot 0; a day with resolutions has counters)."""
    if postgres:
        pack = pgpass.current().hist_pack
        await session.execute(
            text(
                f"INSERT INTO rollup_day AS r (unit_code, sector, day, slot, hist) SELECT unit_code, sector, day, 0, "
                f"{pack}(array_agg(bucket), array_agg(n)) FROM ({sql}) s GROUP BY unit_code, sector, day "
                "ON CONFLICT (unit_code, sector, day, slot) DO UPDATE SET hist = excluded.hist"
            )
        )
        return
    hist = {(u, s, date.fromisoformat(str(d)), int(b)): int(n) for u, s, d, b, n in (await session.execute(text(sql))).all()}
    rows = [{"unit_code": u, "sector": s, "day": d, "slot": 0, "hist": h} for (u, s, d), h in _pack_days(hist).items() if h]
    await dialect.bulk_upsert(
        session,
        RollupDay,
        sorted(rows, key=lambda r: (r["unit_code"], r["sector"], r["day"])),
        ["unit_code", "sector", "day", "slot"],
        replace=("hist",),
    )


# --- change marks (read by the exporter) ---------------------------------------------------------


async def mark_dirty(session: AsyncSession, marks: dict[str, date]) -> None:
    """Remember the earliest changed day per unit, in unit order, in the writer's transaction."""
    rows = [{"unit_code": u, "day": d, "gen": 1} for u, d in sorted(marks.items())]
    await dialect.bulk_upsert(session, ExportDirty, rows, ["unit_code"], add=("gen",), combine=(("day", "least"),))
