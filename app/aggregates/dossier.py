"""A dossier's state as a merge of its events (SPEC section 3).

The merge is commutative and idempotent over distinct events: each field keeps the winner by
(occurred_at, event_id), counts add over distinct event ids. So any order of the same set of
events gives the same state.

The rules are spelled twice, side by side: the methods of DossierState (Python: the SQLite fold and
`chiso kpis verify`) and the SQL_* fragments at the end of this module, rendered into the PostgreSQL
pass (app/aggregates/pg/ingest.sql, by app.aggregates.pgpass) over rows `a` of dossier columns.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from datetime import datetime, tzinfo

NON_MOVING_REASONS = ("apology",)


@dataclass(slots=True)
class DossierState:
    unit_code: str
    dossier_id: str
    recv_at: datetime | None = None
    recv_event_id: str | None = None
    channel: str | None = None
    recv_due_at: datetime | None = None
    recv_sector: str | None = None
    res_at: datetime | None = None
    res_event_id: str | None = None
    res_due_at: datetime | None = None
    wd_at: datetime | None = None
    wd_event_id: str | None = None
    chg_at: datetime | None = None
    chg_event_id: str | None = None
    chg_due_at: datetime | None = None
    supplements: int = 0
    oth_sector: str | None = None
    oth_sector_at: datetime | None = None
    oth_sector_event_id: str | None = None
    event_days: dict[str, int] = field(default_factory=dict)

    # --- derived -------------------------------------------------------------------------

    def terminal(self) -> tuple[str, datetime] | None:
        """The event that ends the dossier: the earlier of the winning resolved and withdrawn."""
        res = (self.res_at, self.res_event_id) if self.res_at else None
        wd = (self.wd_at, self.wd_event_id) if self.wd_at else None
        if res and wd:
            return ("resolved", self.res_at) if res <= wd else ("withdrawn", self.wd_at)
        if res:
            return "resolved", self.res_at
        if wd:
            return "withdrawn", self.wd_at
        return None

    def ignored_terminal_at(self) -> datetime | None:
        """occurred_at of the terminal event that lost to the other kind, if both exist."""
        if self.res_at and self.wd_at:
            kind, _ = self.terminal()
            return self.wd_at if kind == "resolved" else self.res_at
        return None

    def effective_due(self) -> datetime | None:
        if self.chg_at is not None:
            return self.chg_due_at
        if self.recv_at is not None:
            return self.recv_due_at
        term = self.terminal()
        if term and term[0] == "resolved":
            return self.res_due_at
        return None

    def sector(self) -> str | None:
        """The winning received's sector, else the latest other event's that names one (SPEC section 5).

        `oth_sector` is the latest sector named by any event, superseded receipts included: when the
        winning received names none, it is not among them, so that is the latest of the others.
        """
        if self.recv_at is not None and self.recv_sector:
            return self.recv_sector
        return self.oth_sector

    def ok_766(self) -> bool:
        """Judged by INDEX-766 at all: a deadline is known and fewer than two supplement requests."""
        return self.effective_due() is not None and self.supplements < 2

    # --- merge ---------------------------------------------------------------------------

    def apply(self, ev: dict, tz: tzinfo) -> None:
        """Merge one distinct (never seen before) event into the state."""
        at: datetime = ev["occurred_at"]
        key = (at, ev["event_id"])
        day = at.astimezone(tz).date().isoformat()
        self.event_days[day] = self.event_days.get(day, 0) + 1
        kind = ev["type"]
        if kind == "received":
            if self.recv_at is None or key > (self.recv_at, self.recv_event_id):
                self.recv_at, self.recv_event_id = key
                self.channel = ev.get("channel")
                self.recv_due_at = ev.get("due_at")
                self.recv_sector = ev.get("sector")
        elif kind == "resolved":
            if self.res_at is None or key > (self.res_at, self.res_event_id):
                self.res_at, self.res_event_id = key
                self.res_due_at = ev.get("due_at")
        elif kind == "withdrawn":
            if self.wd_at is None or key > (self.wd_at, self.wd_event_id):
                self.wd_at, self.wd_event_id = key
        elif kind == "due_changed":
            if ev.get("reason") == "supplement_requested":
                self.supplements += 1
            if ev.get("reason") not in NON_MOVING_REASONS and (self.chg_at is None or key > (self.chg_at, self.chg_event_id)):
                self.chg_at, self.chg_event_id = key
                self.chg_due_at = ev.get("due_at")
        if ev.get("sector"):
            if self.oth_sector_at is None or key > (self.oth_sector_at, self.oth_sector_event_id):
                self.oth_sector_at, self.oth_sector_event_id = key
                self.oth_sector = ev["sector"]

    # --- storage -------------------------------------------------------------------------

    def to_row(self) -> dict:
        row = {name: getattr(self, name) for name in STATE_COLUMNS}
        row["event_days"] = json.dumps(self.event_days, sort_keys=True, separators=(",", ":"))
        term = self.terminal()
        row["sector"] = self.sector() or ""
        row["eff_due_at"] = self.effective_due()
        row["end_at"] = term[1] if term else None
        row["ok_766"] = self.ok_766()
        return row

    @classmethod
    def from_row(cls, row) -> DossierState:
        data = {f.name: row[f.name] for f in fields(cls)}
        data["event_days"] = json.loads(data["event_days"] or "{}")
        return cls(**data)


STATE_COLUMNS = tuple(f.name for f in fields(DossierState))


# --- the SQL spelling of the derived fields and of the merge (app/aggregates/pg/ingest.sql) ----------
# Ids are compared as binary strings (COLLATE "C"), as Python compares str.

RAW_COLUMNS = STATE_COLUMNS[2:]  # the stored state after the key, in the order of the pass's chiso_st


def SQL_TERM(a: str) -> str:  # noqa: N802
    """terminal()'s kind: the earlier of the winning resolved and withdrawn."""
    return (
        f'CASE WHEN {a}.res_at IS NOT NULL AND ({a}.wd_at IS NULL OR ({a}.res_at, {a}.res_event_id COLLATE "C") '
        f"<= ({a}.wd_at, {a}.wd_event_id COLLATE \"C\")) THEN 'resolved' WHEN {a}.wd_at IS NOT NULL THEN 'withdrawn' END"
    )


def SQL_EFF_DUE(a: str) -> str:  # noqa: N802
    """effective_due() of a row that has its `term`."""
    return (
        f"CASE WHEN {a}.chg_at IS NOT NULL THEN {a}.chg_due_at WHEN {a}.recv_at IS NOT NULL THEN {a}.recv_due_at "
        f"WHEN {a}.term = 'resolved' THEN {a}.res_due_at END"
    )


def SQL_IGNORED(a: str) -> str:  # noqa: N802
    """ignored_terminal_at() of a row that has its `term`."""
    return (
        f"CASE WHEN {a}.res_at IS NOT NULL AND {a}.wd_at IS NOT NULL "
        f"THEN (CASE {a}.term WHEN 'resolved' THEN {a}.wd_at ELSE {a}.res_at END) END"
    )


def SQL_DERIVED(a: str) -> str:  # noqa: N802
    """sector(), effective_due(), the end, ok_766(), the term and ignored_terminal_at(), as to_row() stores them."""
    return ", ".join(
        (
            f"CASE WHEN {a}.recv_at IS NOT NULL AND coalesce({a}.recv_sector, '') <> '' "
            f"THEN {a}.recv_sector ELSE coalesce({a}.oth_sector, '') END",
            SQL_EFF_DUE(a),
            f"CASE {a}.term WHEN 'resolved' THEN {a}.res_at WHEN 'withdrawn' THEN {a}.wd_at END",
            f"({SQL_EFF_DUE(a)}) IS NOT NULL AND {a}.supplements < 2",
            f"{a}.term",
            SQL_IGNORED(a),
        )
    )


def SQL_PICK(spec: str) -> str:  # noqa: N802
    """apply()'s "the later winner by (occurred_at, event_id) is kept", field by field, for two
    states: the batch's (b) fields of one kind where its winner is later than the stored one's (o).
    `spec`: "at, event_id; the fields that follow the winner"."""
    key, cols = (part.split(",") for part in spec.split(";"))
    at, eid = (c.strip() for c in key)
    take = f'(b.{at} IS NOT NULL AND (o.{at} IS NULL OR (b.{at}, b.{eid} COLLATE "C") > (o.{at}, o.{eid} COLLATE "C")))'
    return ", ".join(f"CASE WHEN {take} THEN b.{c.strip()} ELSE o.{c.strip()} END AS {c.strip()}" for c in cols)


# apply()'s "a deadline change moves the deadline unless its reason is one of NON_MOVING_REASONS"
SQL_MOVES_DUE = "(n.reason IS NULL OR n.reason NOT IN (" + ", ".join(f"'{r}'" for r in NON_MOVING_REASONS) + "))"

# apply() over the events of one batch (the pass's table chiso_new n, days in the zone p_tz): the
# CTEs ending in `raw`, one row per touched dossier with its RAW_COLUMNS from these events alone.
SQL_BATCH_STATES = (
    """  WITH rw AS (  -- the batch's winner per kind (an apology never moves the deadline)
    SELECT DISTINCT ON (n.unit_code, n.dossier_id, n.type) n.unit_code, n.dossier_id, n.type, n.occurred_at, n.event_id,
           n.channel, n.due_at, n.sector
    FROM chiso_new n
    WHERE n.type <> 'due_changed' OR """
    + SQL_MOVES_DUE
    + """
    ORDER BY n.unit_code, n.dossier_id, n.type, n.occurred_at DESC, n.event_id COLLATE "C" DESC
  ),
  sw AS (  -- the latest event of the batch that names a sector
    SELECT DISTINCT ON (n.unit_code, n.dossier_id) n.unit_code, n.dossier_id, n.occurred_at, n.event_id, n.sector
    FROM chiso_new n WHERE n.sector IS NOT NULL AND n.sector <> ''
    ORDER BY n.unit_code, n.dossier_id, n.occurred_at DESC, n.event_id COLLATE "C" DESC
  ),
  k AS (  -- per dossier: supplement requests and event_days (events per local day, sorted compact JSON)
    SELECT z.unit_code, z.dossier_id, sum(z.supp) AS supp,
      '{' || string_agg('"' || z.day || '":' || z.k, ',' ORDER BY z.day COLLATE "C") || '}' AS days
    FROM (SELECT n.unit_code, n.dossier_id, (n.occurred_at AT TIME ZONE p_tz)::date::text AS day, count(*) AS k,
            count(*) FILTER (WHERE n.type = 'due_changed' AND n.reason = 'supplement_requested') AS supp
          FROM chiso_new n GROUP BY 1, 2, 3) z
    GROUP BY 1, 2
  ),
  raw AS (
    SELECT k.unit_code, k.dossier_id,
      r.occurred_at AS recv_at, r.event_id AS recv_event_id, r.channel, r.due_at AS recv_due_at, r.sector AS recv_sector,
      s.occurred_at AS res_at, s.event_id AS res_event_id, s.due_at AS res_due_at,
      w.occurred_at AS wd_at, w.event_id AS wd_event_id,
      c.occurred_at AS chg_at, c.event_id AS chg_event_id, c.due_at AS chg_due_at,
      k.supp::int AS supplements, x.sector AS oth_sector, x.occurred_at AS oth_sector_at, x.event_id AS oth_sector_event_id,
      k.days AS event_days
    FROM k
    LEFT JOIN rw r ON r.unit_code = k.unit_code AND r.dossier_id = k.dossier_id AND r.type = 'received'
    LEFT JOIN rw s ON s.unit_code = k.unit_code AND s.dossier_id = k.dossier_id AND s.type = 'resolved'
    LEFT JOIN rw w ON w.unit_code = k.unit_code AND w.dossier_id = k.dossier_id AND w.type = 'withdrawn'
    LEFT JOIN rw c ON c.unit_code = k.unit_code AND c.dossier_id = k.dossier_id AND c.type = 'due_changed'
    LEFT JOIN sw x ON x.unit_code = k.unit_code AND x.dossier_id = k.dossier_id
  )"""
)

# The stored state (o) and the batch's (b) merged as apply() would: each kind's later winner kept,
# supplement requests and events per day added (the select list of the CTE `m`).
_WINNERS = (  # "at, event_id; the fields that follow that winner", per kind
    "recv_at, recv_event_id; recv_at, recv_event_id, channel, recv_due_at, recv_sector",
    "res_at, res_event_id; res_at, res_event_id, res_due_at",
    "wd_at, wd_event_id; wd_at, wd_event_id",
    "chg_at, chg_event_id; chg_at, chg_event_id, chg_due_at",
)
_SUM_EVENT_DAYS = """(SELECT '{' || string_agg('"' || e.day || '":' || e.k, ',' ORDER BY e.day COLLATE "C") || '}'
       FROM (SELECT j.key AS day, sum(j.value::bigint) AS k
             FROM (SELECT * FROM json_each_text(o.event_days::json) UNION ALL SELECT * FROM json_each_text(b.event_days::json)) j
             GROUP BY j.key) e) AS event_days"""
SQL_MERGE_STATES = (
    "    SELECT o.unit_code, o.dossier_id,\n      "
    + ",\n      ".join(
        (
            *(SQL_PICK(kind) for kind in _WINNERS),
            "o.supplements + b.supplements AS supplements",
            SQL_PICK("oth_sector_at, oth_sector_event_id; oth_sector, oth_sector_at, oth_sector_event_id"),
            _SUM_EVENT_DAYS,
        )
    )
    + "\n    FROM chiso_st o JOIN chiso_st b ON b.unit_code = o.unit_code AND b.dossier_id = o.dossier_id AND b.sign = 0"
    + "\n    WHERE o.sign = -1"
)
