"""The PostgreSQL write pass as package code: app/aggregates/pg/ingest.sql, rendered here with the
constants and rule fragments declared once beside their Python twins, installed after the Alembic
head as versioned functions.

Each function's name carries a short hash of the rendered SQL (`chiso_ingest_<hash>`): a change to any
rule, constant or counter list renders a new pass under new names, created by the next
`chiso db upgrade` (or the service's migrate-on-start) next to the old ones, so two versions of the
service during a rolling deploy each call their own (what Flyway calls a repeatable migration).
Alembic keeps schema changes only. The functions of revision d7e9f1a3b5c7 (`chiso_ingest`, without a
hash) stay in the schema for a service of that version still running; nothing here calls them.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import cache
from importlib.resources import files

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from app.aggregates import contrib, dossier, silent
from app.aggregates.counters import DAY_COUNTERS, TOTAL_COUNTERS
from app.aggregates.histogram import SQL_BUCKET, SQL_HIST_ADD, SQL_HIST_PACK
from app.db.meta import DATA_VERSION, VERSION_SLOTS
from app.db.models.event_log import SQL_EVENT_KEY, SQL_EVENT_LOCKS, SQL_EVENTS_STORED

# pg_advisory_xact_lock key of the install: concurrent installers (workers, nodes) queue on it, and
# the second finds the functions the first committed.
LOCK_KEY = 0x63686973_6F706173  # "chisopas"
SEPARATOR = "\n$fn$;\n"  # between two functions of the template: one statement each
# Rollup rows of one unit and day are spread over ROLLUP_SLOTS rows (column `slot`), summed by every
# read: concurrent writers add to different rows. A pass takes the first slot from the one it is
# given that no other pass holds (pg_try_advisory_xact_lock(SLOT_LOCK_CLASS, slot), until it commits).
ROLLUP_SLOTS = 4
SLOT_LOCK_CLASS = 0x63687273  # "chrs"


@dataclass(frozen=True)
class WritePass:
    version: str  # short hash of the rendered SQL
    ingest: str  # (events json, rollup json, tz text, now timestamptz, slot int)
    ingest_staged: str  # (rollup json, tz text, now timestamptz, slot int): events in chiso_stage
    temp_tables: str  # () creates the session's temporary tables once
    bucket: str  # (ms bigint): app.aggregates.histogram.bucket_of
    hist_pack: str  # (buckets int[], counts bigint[]) -> text: app.db.types.hist_encode
    hist_add: str  # (text, text): app.db.types.hist_add
    statements: tuple[str, ...]  # the CREATE FUNCTIONs, in order

    @property
    def signatures(self) -> tuple[str, ...]:
        return (
            f"{self.bucket}(bigint)",
            f"{self.hist_pack}(int[], bigint[])",
            f"{self.hist_add}(text, text)",
            f"{self.temp_tables}()",
            f"{self.ingest_staged}(json, text, timestamptz, int)",
            f"{self.ingest}(json, json, text, timestamptz, int)",
        )


def _counters(sql: str, tag: str, cols: tuple[str, ...], typed=lambda c: "bigint") -> str:
    """@DAY_COLS@, @DAY_TYPED@, @DAY_VALUES(a)@, @DAY_SUMS(a)@, @DAY_NAMED_SUMS(a)@, @DAY_PLAIN_SUMS(a)@,
    @DAY_NONZERO(a)@, @DAY_ADD(a)@ (and TOT_…) from a counter list of app.aggregates.counters; for
    the day rows, whose zero counters are stored as NULL (app.db.models.aggregates.day_count_column),
    @DAY_STORED(a)@ and @DAY_SPARSE_ADD(a)@."""
    sql = sql.replace(f"@{tag}_COLS@", ", ".join(cols))
    sql = sql.replace(f"@{tag}_TYPED@", ", ".join(f"{c} {typed(c)}" for c in cols))
    forms = {
        "VALUES": lambda a: ", ".join(f"coalesce({a}.{c}, 0)" for c in cols),
        "SUMS": lambda a: ", ".join(f"coalesce(sum({a}.{c}), 0)" for c in cols),
        "NAMED_SUMS": lambda a: ", ".join(f"coalesce(sum({a}.{c}), 0) AS {c}" for c in cols),
        "PLAIN_SUMS": lambda a: ", ".join(f"sum({a}.{c})" for c in cols),
        "NONZERO": lambda a: " OR ".join(f"coalesce(sum({a}.{c}), 0) <> 0" for c in cols),
        "ADD": lambda a: ", ".join(f"{c} = {a}.{c} + excluded.{c}" for c in cols),
        "STORED": lambda a: ", ".join(f"nullif({a}.{c}, 0)" for c in cols),
        "SPARSE_ADD": lambda a: ", ".join(f"{c} = nullif(coalesce({a}.{c}, 0) + coalesce(excluded.{c}, 0), 0)" for c in cols),
    }
    for form, render in forms.items():
        sql = re.sub(rf"@{tag}_{form}\((\w+)\)@", lambda m, render=render: render(m.group(1)), sql)
    return sql


def _with_term(source: str) -> str:
    return f"SELECT q.*, {dossier.SQL_TERM('q')} AS term FROM {source} q"


# @NAME(alias)@ fragments: the rules, spelled in app.aggregates.dossier and app.aggregates.contrib
_FRAGMENTS = {
    "RAW": lambda a: ", ".join(f"{a}.{c}" for c in dossier.RAW_COLUMNS),
    "DERIVED": dossier.SQL_DERIVED,
    "IGNORED": dossier.SQL_IGNORED,
    "WITH_TERM": _with_term,
    "STATE": lambda a: contrib.SQL_STATE(a, "p_tz"),
    "TOTAL_FILTERS": lambda a: ", ".join(
        f"sum({a}.sign) FILTER (WHERE {contrib.SQL_TOTALS[c].format(s=a)}) AS {c}" for c in TOTAL_COUNTERS
    ),
    "ELAPSED_MS": lambda a: contrib.SQL_ELAPSED_MS(f"{a}.recv_at", f"{a}.end_at"),
    "HIST_WHERE": lambda a: contrib.SQL_HIST_WHERE.format(s=a),
    "COHORT_DUE_WHERE": lambda a: contrib.SQL_COHORT_DUE_WHERE.format(s=a),
    "OPEN_DUE_WHERE": lambda a: contrib.SQL_OPEN_DUE_WHERE.format(s=a),
    "MARK_DAY": contrib.SQL_MARK_DAY,
    "EVENT_KEY": lambda a: SQL_EVENT_KEY.format(a=a),
    "EVENT_LOCKS": lambda t: SQL_EVENT_LOCKS.format(t=t),
    "EVENTS_STORED": lambda t: SQL_EVENTS_STORED.format(t=t),
}
_NAMES = ("INGEST_STAGED", "INGEST", "TEMP_TABLES", "BUCKET", "HIST_PACK", "HIST_ADD")  # longest first: INGEST is a prefix


def render_template(sql: str) -> str:
    """The template with its constants and rule fragments in place (function names still @NAME@)."""
    sql = sql.replace("@BATCH_STATES@", dossier.SQL_BATCH_STATES.rstrip("\n"))
    sql = sql.replace("@MERGE_STATES@", dossier.SQL_MERGE_STATES.rstrip("\n"))
    sql = sql.replace("@RECORD_ACCEPTED@", silent.SQL_RECORD_ACCEPTED.rstrip("\n"))
    sql = sql.replace("@CONTRIBUTIONS@", contrib.sql_contribution_rows())
    sql = sql.replace("@ORPHAN_ROW@", contrib.sql_orphan_row())
    # day contributions typed as stored (contrib.sql_type): summed as integers, not numerics
    sql = _counters(_counters(sql, "DAY", DAY_COUNTERS, contrib.sql_type), "TOT", TOTAL_COUNTERS)
    sql = re.sub(r"@PICK\(([^)]*)\)@", lambda m: dossier.SQL_PICK(m.group(1)), sql)
    for name, render in _FRAGMENTS.items():
        sql = re.sub(rf"@{name}\((\w+)\)@", lambda m, render=render: render(m.group(1)), sql)
    sql = sql.replace(
        "@WITH_TERM_LOCKED@",
        # each stored dossier of the batch found by its key, one at a time in key order (a join would
        # let stale statistics read the whole table in key order instead of probing it)
        _with_term(
            "(SELECT DISTINCT b.unit_code, b.dossier_id FROM chiso_st b WHERE b.sign = 0 ORDER BY 1, 2) b CROSS JOIN LATERAL"
            " (SELECT x.* FROM dossier x WHERE x.unit_code = b.unit_code AND x.dossier_id = b.dossier_id FOR UPDATE)"
        ),
    )
    constants = {
        "RAWNAMES": ", ".join(dossier.RAW_COLUMNS),
        "DATA_VERSION": DATA_VERSION,
        "VERSION_SLOTS": str(VERSION_SLOTS),  # app.db.meta: the data version's slots
        "ROLLUP_SLOTS": str(ROLLUP_SLOTS),
        "SLOT_LOCK_CLASS": str(SLOT_LOCK_CLASS),
    }
    for name, value in constants.items():
        sql = sql.replace(f"@{name}@", value)
    return sql


@cache
def current() -> WritePass:
    """The write pass of this version of the code."""
    return build((files("app.aggregates") / "pg" / "ingest.sql").read_text(encoding="utf-8"))


def build(template: str) -> WritePass:
    """The pass of a template: rendered, hashed, its functions named by the hash."""
    head = SEPARATOR.join(f.strip() for f in (SQL_BUCKET, SQL_HIST_PACK, SQL_HIST_ADD))
    body = render_template(head + SEPARATOR + template.strip())
    left = sorted(set(re.findall(r"@[A-Z_]+(?:\([^)]*\))?@", body)) - {f"@{n}@" for n in _NAMES})
    if left:
        raise RuntimeError(f"app/aggregates/pg/ingest.sql: unknown placeholders {left}")
    version = hashlib.sha256(body.encode()).hexdigest()[:10]
    names = {n: f"chiso_{n.lower()}_{version}" for n in _NAMES}
    for n in _NAMES:
        body = body.replace(f"@{n}@", names[n])
    statements = tuple(
        part if part.rstrip().endswith("$fn$") or part.rstrip().endswith("$$") else part + "\n$fn$" for part in body.split(SEPARATOR)
    )
    return WritePass(
        version,
        names["INGEST"],
        names["INGEST_STAGED"],
        names["TEMP_TABLES"],
        names["BUCKET"],
        names["HIST_PACK"],
        names["HIST_ADD"],
        statements,
    )


async def is_installed(conn: AsyncConnection) -> bool:
    """True when every function of this version's pass exists (always true on SQLite: no pass there)."""
    if conn.dialect.name != "postgresql":
        return True
    stmt = text("SELECT bool_and(to_regprocedure(s) IS NOT NULL) FROM unnest(CAST(:sigs AS text[])) AS s")
    return bool((await conn.execute(stmt, {"sigs": list(current().signatures)})).scalar())


async def install(conn: AsyncConnection) -> bool:
    """Create this version's pass if missing (after the Alembic head, in the caller's transaction,
    under an advisory lock); True when it created it."""
    if conn.dialect.name != "postgresql":
        return False
    await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": LOCK_KEY})
    if await is_installed(conn):
        return False
    for statement in current().statements:
        await conn.execute(text(statement))
    return True
