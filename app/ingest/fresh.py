"""The bulk build of units with nothing stored yet (a history loaded into a new database, a province
joining): every row of theirs written once with plain INSERT ... SELECT, no upsert.

Aggregates are sums of what each dossier contributes, so for a unit that has no dossier, no event
and no own aggregate row, the write pass's "new minus old" is the new state's contribution alone and
each own row it would upsert is one that does not exist yet. This path therefore runs the write pass
of posting (app/aggregates/pg/ingest.sql, as app.aggregates.pgpass renders it) with three changes,
and spells no rule of its own:

1. Steps 1 to 3 (events, dossier states, dossiers) are plain inserts of the group's events and of
   the states built from them (the pass's fragments BATCH_STATES, RAW, DERIVED, WITH_TERM: sign 1,
   nothing stored to merge or take away), after the units' locks (EVENT_LOCKS, as the pass takes
   them) and a second look, under them, that the units are still fresh.
2. Steps 4 to 7 are the pass's own statements, taken from its rendered body, where the upserts of
   the units' own rows (unit_day, unit_cohort_due, unit_total, unit_event_day)
   become plain inserts: their ON CONFLICT clause cut off.
3. The rollup rows: the pass sums the own contributions over (unit, unit above) pairs. Units with
   the same chain of units above (the communes of a province) are first summed into one
   representative each (the chiso_x* tables, by the counter columns of the pass's contribution
   tables), and the pass's rollup statements read those: the same sums from a fraction of the rows.
   Rollup rows are shared with other units and groups; they keep their upserts.

Exactness rests on the second freshness check: a post to one of these units takes the unit's lock
before it looks for duplicates in the log, so once the group holds the locks no event of its units
can be stored by another writer until it commits, and the check under the locks sees every one
stored before (then NotFresh: the caller rolls the group back and builds it with the pass). The
first check (`stale`, before the transaction) only saves work. A plain insert that meets a row with
its key (a dossier, an own row) fails with a unique violation and goes to the pass as well. Events
dated after `now` (the pass marks them in dossier_future) also send a group to the pass. What the
pass does that this path skips (locking stored dossiers, merging, taking old states away) is what it
does for no row when nothing is stored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from functools import cache

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.aggregates import pgpass
from app.aggregates.counters import DAY_COUNTERS, TOTAL_COUNTERS
from app.aggregates.writes import STAGE_COLUMNS

# Own rows of a unit: where they are all absent, the pass's upserts into them are plain inserts.
OWN_TABLES = ("unit_day", "unit_cohort_due", "unit_total", "unit_event_day")
# A unit is fresh with no row in any of these. Event keys (archived months only) are hashes (no unit
# to look up): an archived event's unit keeps its dossiers, which stay.
FRESH_TABLES = ("dossier_event", "dossier", *OWN_TABLES)
# The counters of the contribution tables (summed by _collapse); their other columns are keys.
SUMMED = [*DAY_COUNTERS, *TOTAL_COUNTERS, "n"]
_CONTRIB = re.compile(r"\bchiso_(dday|dhist|ddue|dtot|dopen)\b")  # the pass's contribution tables

# Steps 1 to 3 for fresh units, from the pass's fragments (rendered by pgpass.render_template).
_HEAD = (
    "INSERT INTO dossier_event SELECT n.* FROM chiso_new n ORDER BY n.unit_code, n.event_id",
    "SELECT set_config('enable_nestloop', 'off', true)",
    "@BATCH_STATES@\n  INSERT INTO chiso_st SELECT d.unit_code, d.dossier_id, 1, @RAW(d)@, @DERIVED(d)@ FROM (@WITH_TERM(raw)@) d",
    "ANALYZE chiso_st",
    "INSERT INTO dossier (unit_code, dossier_id, @RAWNAMES@, sector, eff_due_at, end_at, ok_766)\n"
    "  SELECT b.unit_code, b.dossier_id, @RAW(b)@, b.sector, b.eff_due_at, b.end_at, b.ok_766 FROM chiso_st b ORDER BY 1, 2",
)


class NotFresh(Exception):
    """The group holds something the plain inserts cannot take (an event dated after now)."""


@dataclass(frozen=True)
class FreshPass:
    version: str  # the write pass's (pgpass.WritePass.version): both change together
    lock: str  # the group's units' locks (app.db.models.event_log), before the second look
    head: tuple[str, ...]  # steps 1 to 3
    tail: tuple[str, ...]  # steps 4 to 7: the pass's statements, own-row upserts made inserts
    collapsed: tuple[str, ...]  # the contribution tables the rollup statements read, as chiso_x*


def _statements(body: str) -> list[str]:
    """The SQL statements of a plpgsql body without control flow: comments dropped, split at the
    semicolons ending lines, PERFORM run as SELECT."""
    lines = []
    for line in body.splitlines():
        if line.strip().startswith("--"):
            continue
        lines.append(re.sub(r"\s+--[^'\n]*$", "", line))
    out = []
    for part in re.split(r";[ \t]*\n", "\n".join(lines) + "\n"):
        part = part.strip().rstrip(";")
        if part:
            out.append(re.sub(r"^PERFORM\b", "SELECT", part))
    return out


def _target(statement: str) -> str | None:
    m = re.search(r"\bINSERT INTO (\w+)", statement)
    return m.group(1) if m else None


def _no_upsert(statement: str) -> str:
    """An insert without its ON CONFLICT clause (the pass writes it last in its own-row upserts)."""
    cut = re.sub(r"\s+ON CONFLICT\b.*\Z", "", statement, flags=re.S)
    if cut == statement or "RETURNING" in cut[cut.index("INSERT INTO") :]:
        raise RuntimeError(f"app/aggregates/pg/ingest.sql: not an own-row upsert: {statement[:120]}")
    return cut


@cache
def current() -> FreshPass:
    """This version's fresh path, from this version's write pass."""
    fn = pgpass.current()
    (create,) = [s for s in fn.statements if f"FUNCTION {fn.ingest_staged}(" in s]
    body = create[create.index("\nBEGIN\n") + len("\nBEGIN\n") : create.rindex("\nEND")]
    start, end = body.index("-- 4."), body.index("RETURN QUERY")
    tail, collapsed = [], set()
    for statement in _statements(body[start:end]):
        target = _target(statement)
        if target in OWN_TABLES:
            statement = _no_upsert(statement)
        elif target is not None and target.startswith("rollup_"):
            collapsed.update(_CONTRIB.findall(statement))
            statement = _CONTRIB.sub(r"chiso_x\1", statement)
        tail.append(statement)
    missing = set(OWN_TABLES) - {_target(s) for s in tail}
    if missing or not collapsed:
        raise RuntimeError(f"app/aggregates/pg/ingest.sql: the fresh path found no statement for {sorted(missing) or 'rollups'}")
    names = {"@BUCKET@": fn.bucket, "@HIST_PACK@": fn.hist_pack, "@HIST_ADD@": fn.hist_add}
    head = []
    for statement in _HEAD:
        statement = pgpass.render_template(statement)
        for placeholder, name in names.items():
            statement = statement.replace(placeholder, name)
        left = re.findall(r"@[A-Z_]+(?:\([^)]*\))?@", statement)
        if left:
            raise RuntimeError(f"app.ingest.fresh: unknown placeholders {left}")
        head.append(statement)
    lock = pgpass.render_template("SELECT @EVENT_LOCKS(chiso_new)@")
    return FreshPass(fn.version, lock, tuple(head), tuple(tail), tuple(f"chiso_{c}" for c in sorted(collapsed)))


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def bind(statement: str, tz: str, now: datetime, slot: int, rollup: str) -> str:
    """A statement of the pass with its parameters as literals (run from here, not as the function)."""
    statement = re.sub(r"\bp_tz\b", _literal(tz), statement)
    statement = re.sub(r"\bp_now\b", f"{_literal(now.isoformat())}::timestamptz", statement)
    statement = re.sub(r"\bp_slot\b", str(int(slot)), statement)
    return re.sub(r"\bp_rollup\b", f"{_literal(rollup)}::json", statement)


async def stale(session: AsyncSession, units: list[str]) -> set[str]:
    """The units with a row in any of FRESH_TABLES (those go through the pass)."""
    exists = " OR ".join(f"EXISTS (SELECT 1 FROM {t} x WHERE x.unit_code = u.code)" for t in FRESH_TABLES)
    stmt = text(f"SELECT u.code FROM unnest(CAST(:units AS text[])) AS u(code) WHERE {exists}")
    return set((await session.execute(stmt, {"units": units})).scalars())


async def _collapse(session: AsyncSession, tables: tuple[str, ...]) -> None:
    """Fill each chiso_x<table>: its rows summed by the representative of their unit (chiso_rep)."""
    for table in tables:
        await session.execute(text(f"CREATE TEMP TABLE IF NOT EXISTS chiso_x{table[6:]} (LIKE {table}) ON COMMIT DELETE ROWS"))
        cols = (
            await session.execute(
                text(
                    "SELECT a.attname, a.attname = ANY(CAST(:summed AS text[])) FROM pg_attribute a "
                    "WHERE a.attrelid = CAST(:t AS regclass) AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum"
                ),
                {"t": f"pg_temp.{table}", "summed": SUMMED},
            )
        ).all()
        keys = [c for c, summed in cols if not summed and c != "unit_code"]
        select = ", ".join("r.rep" if c == "unit_code" else f"sum(t.{c})" if summed else f"t.{c}" for c, summed in cols)
        group = ", ".join(["r.rep", *(f"t.{c}" for c in keys)])
        join = f"{table} t JOIN chiso_rep r ON r.unit_code = t.unit_code"
        await session.execute(text(f"INSERT INTO chiso_x{table[6:]} SELECT {select} FROM {join} GROUP BY {group}"))


async def build(
    session: AsyncSession, work: str, units: list[str], chains: dict[str, tuple[str, ...]], tz: str, now: datetime, slot: int
) -> int:
    """The group's staged events (in `work`) through the fresh path, in the caller's transaction
    (the pass's temporary tables made); returns the events stored. Raises NotFresh, or the
    database's unique violation, for the caller to roll back and build with the pass."""
    fp = current()
    raw = (await (await session.connection()).get_raw_connection()).driver_connection  # simple protocol: no binds
    cols = ", ".join(STAGE_COLUMNS)
    stored = (
        await session.execute(
            text(
                f"INSERT INTO chiso_new ({cols}) SELECT DISTINCT ON (unit_code, event_id) {cols} FROM {work} "
                "WHERE unit_code = ANY(CAST(:units AS text[])) ORDER BY unit_code, event_id, seq"
            ),
            {"units": units},
        )
    ).rowcount
    if (await session.execute(text("SELECT EXISTS (SELECT 1 FROM chiso_new WHERE occurred_at > :now)"), {"now": now})).scalar():
        raise NotFresh("events dated after now")
    await raw.execute(fp.lock)
    if await stale(session, units):
        raise NotFresh("events stored meanwhile")
    await session.execute(text("ANALYZE chiso_new"))
    # one representative per chain of units above (the communes of a province share one)
    classes: dict[tuple[str, ...], list[str]] = {}
    for unit in sorted(units):
        if chains[unit]:
            classes.setdefault(chains[unit], []).append(unit)
    reps = [(u, members[0]) for members in classes.values() for u in members]
    rollup = orjson.dumps([{"u": members[0], "a": a} for chain, members in classes.items() for a in chain]).decode()
    await session.execute(text("CREATE TEMP TABLE IF NOT EXISTS chiso_rep (unit_code varchar(8), rep varchar(8)) ON COMMIT DELETE ROWS"))
    if reps:
        await session.execute(
            text("INSERT INTO chiso_rep SELECT * FROM unnest(CAST(:u AS text[]), CAST(:r AS text[]))"),
            {"u": [u for u, _ in reps], "r": [r for _, r in reps]},
        )
    for statement in fp.head:
        await raw.execute(bind(statement, tz, now, slot, rollup))
    for statement in fp.tail:
        if _target(statement) == "chiso_rollup":  # the rollup statements come next: the sums by representative first
            await _collapse(session, fp.collapsed)
        await raw.execute(bind(statement, tz, now, slot, rollup))
    return stored
