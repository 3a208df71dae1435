"""What one dossier adds to the aggregates. Aggregates are sums of these, so they depend only on
the set of events: ingest applies (new contribution - old contribution) for each touched dossier.

Each rule is spelled twice, side by side in this module: in Python (`Delta.add`, the SQLite fold
and the rebuild behind `chiso kpis verify`) and in SQL (the `SQL_*` fragments below it, rendered
into the PostgreSQL pass by app.aggregates.pgpass). tests/integration/test_write_rules_property.py
holds the two spellings equal on any stream.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, tzinfo

from sqlalchemy import BigInteger

from app.aggregates.counters import DAY_COUNTERS, DUE
from app.aggregates.dossier import DossierState
from app.aggregates.histogram import bucket_of
from app.db.models import ALL_SECTORS, UnitDay

_BEFORE = tuple(timedelta(days=k) for k in range(len(DUE)))
# The due-soon counters of deadline day D are the end-of-day figures of days D - 3 to D - 1.
DUE_MARK_BACK = timedelta(days=len(DUE))


def elapsed_ms(start: datetime, end: datetime) -> int:
    """Whole milliseconds from start to end, floored (-1.5 ms is -2), in integer arithmetic: a
    float (timedelta.total_seconds()) loses the last digit of a duration of days given in
    milliseconds. SQL spelling: SQL_ELAPSED_MS."""
    td = end - start
    return (td.days * 86_400 + td.seconds) * 1000 + td.microseconds // 1000


def SQL_ELAPSED_MS(start: str, end: str) -> str:  # noqa: N802 - the SQL spelling of elapsed_ms
    """elapsed_ms in SQL: the epoch of an interval is an exact numeric (PostgreSQL 14+), floored."""
    return f"floor(extract(epoch FROM ({end} - {start})) * 1000)::bigint"


@dataclass
class Delta:
    """Signed changes to the aggregate tables, keyed as their primary keys are."""

    day: dict[tuple, dict[str, int]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(int)))
    hist: dict[tuple, int] = field(default_factory=lambda: defaultdict(int))
    cohort_due: dict[tuple, int] = field(default_factory=lambda: defaultdict(int))
    total: dict[tuple, dict[str, int]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(int)))
    # open dossiers with a deadline by UTC hour of the deadline (rollup rows only: RollupOpenDue)
    open_due: dict[tuple, int] = field(default_factory=lambda: defaultdict(int))

    def add(self, state: DossierState, tz: tzinfo, sign: int) -> None:
        """Add (sign=1) or take away (sign=-1) what `state` contributes."""
        unit = state.unit_code
        sectors = (ALL_SECTORS, state.sector() or "")
        days: dict[datetime, date] = {}

        def local(dt: datetime) -> date:
            d = days.get(dt)
            if d is None:
                d = days[dt] = dt.astimezone(tz).date()
            return d

        bumps: list[tuple[date, str, int]] = []  # (day, counter, amount)
        totals: list[str] = []
        recv = state.recv_at
        due = state.effective_due()
        term = state.terminal()
        end = term[1] if term else None

        if recv is not None:
            rday = local(recv)
            bumps += [(rday, "received", 1), (rday, "p_in", 1), (rday, "c_size", 1)]
            totals.append("p_in")
            if state.channel == "online":
                bumps.append((rday, "received_online", 1))
            if state.ok_766():
                if end is not None and end <= due:
                    bumps.append((rday, "c_final_ok", 1))
                else:
                    for s in sectors:
                        self.cohort_due[(unit, s, rday, local(due))] += sign
            if end is not None:
                bumps.append((local(max(recv, end)), "p_out", 1))
                totals.append("p_out")
            if due is not None:
                if end is None:
                    hour = (due if due.tzinfo is UTC else due.astimezone(UTC)).replace(minute=0, second=0, microsecond=0)
                    for s in sectors:
                        self.open_due[(unit, s, hour)] += sign
                # Due soon at the midnights starting the deadline's day D and the two days before:
                # pending at the midnight starting day X <=> received on a local day before X and
                # not ended on a local day before X.
                dday = local(due)
                eday = None if end is None else local(end)
                for k, name in enumerate(DUE):  # SQL: SQL_CONTRIBUTIONS, the deadline's day
                    x = dday - _BEFORE[k]
                    if rday < x and (eday is None or eday >= x):
                        bumps.append((dday, name, 1))
                start = max(recv, due)
                bumps.append((local(start), "o_in", 1))
                totals.append("o_in")
                if end is not None:
                    bumps.append((local(max(start, end)), "o_out", 1))
                    totals.append("o_out")
        else:
            for day_s, n in state.event_days.items():
                bumps.append((date.fromisoformat(day_s), "orphans", n))
            ignored = state.ignored_terminal_at()
            if ignored is not None:
                bumps.append((local(ignored), "orphans", -1))

        if term is not None:
            kind, at = term
            eday = local(at)
            if kind == "withdrawn":
                bumps.append((eday, "withdrawn", 1))
            else:
                if due is None:
                    bumps.append((eday, "resolved_unclassified", 1))
                elif at > due:
                    bumps.append((eday, "resolved_late", 1))
                elif eday < local(due):
                    bumps.append((eday, "resolved_early", 1))
                else:
                    bumps.append((eday, "resolved_on_time", 1))
                if recv is not None:
                    ms = elapsed_ms(recv, at)
                    bumps += [(eday, "proc_n", 1), (eday, "proc_ms", ms)]
                    bucket = bucket_of(ms)
                    for s in sectors:
                        self.hist[(unit, s, eday, bucket)] += sign

        for s in sectors:
            for day, name, n in bumps:
                self.day[(unit, s, day)][name] += sign * n
            if totals:
                row = self.total[(unit, s)]
                for name in totals:
                    row[name] += sign

    def nonzero(self) -> Delta:
        """The same changes without the keys that cancel out."""
        out = Delta()
        for k, cols in self.day.items():
            cols = {c: v for c, v in cols.items() if v}
            if cols:
                out.day[k] = cols
        out.hist = {k: v for k, v in self.hist.items() if v}
        out.cohort_due = {k: v for k, v in self.cohort_due.items() if v}
        out.open_due = {k: v for k, v in self.open_due.items() if v}
        for k, cols in self.total.items():
            cols = {c: v for c, v in cols.items() if v}
            if cols:
                out.total[k] = cols
        return out

    def units(self) -> list[str]:
        """The units whose rows this change touches: own rows, and the open-deadline rows above them
        (a deadline moved to another hour of the same day changes no own row)."""
        parts = (self.day, self.hist, self.cohort_due, self.total, self.open_due)
        return sorted({k[0] for part in parts for k in part})

    def dirty_days(self) -> dict[str, date]:
        """Per unit, the earliest local day whose export records this change can alter.

        End-of-day pending and overdue telescope, so a change on day d alters every day from d on;
        cohort records are keyed by the receipt day, which the cohort rows carry; the due-soon
        counters of deadline day D are the end-of-day figures of days D - 3 to D - 1, so a row whose
        due-soon counters changed, with or without others, marks from D - 3: a day record is sent
        again whenever any of its figures changes (SPEC section 6). SQL spelling: SQL_MARK_DAY.
        """
        out: dict[str, date] = {}
        keys = [(u, d - DUE_MARK_BACK if any(cols.get(c) for c in DUE) else d) for (u, _s, d), cols in self.day.items()]
        keys += [(u, d) for u, _s, d, _b in self.hist]
        keys += [(u, r) for u, _s, r, _d in self.cohort_due]
        for unit, day in keys:
            if unit not in out or day < out[unit]:
                out[unit] = day
        return out


# --- the SQL spelling of Delta.add, Delta.dirty_days and bucket_of (app/aggregates/pg/ingest.sql) -------
#
# The pass holds each touched dossier's old (sign -1) and new (sign +1) state in rows `s` of the
# temporary table chiso_st (columns: DossierState's, and sector, eff_due_at, end_at, ok_766, term,
# ignored_at as app.aggregates.dossier derives them). SQL_STATE lists what Delta.add computes first
# (local days, the final judgement, the processing time); SQL_CONTRIBUTIONS what it adds on each
# kind of day, one row per kind: (the day or NULL, then each day counter's amount, times the sign).


def SQL_STATE(s: str, tz: str) -> str:  # noqa: N802
    """The select list of the per-state CTE `c` that SQL_CONTRIBUTIONS reads."""
    day = lambda expr: f"({expr} AT TIME ZONE {tz})::date"  # noqa: E731 - local(): the local day of an instant
    return ", ".join(
        (
            f"{s}.unit_code, {s}.sector, {s}.sign, {s}.recv_at, {s}.end_at, {s}.recv_at IS NOT NULL AS has_recv, {s}.channel",
            f"{s}.ok_766, {s}.term, {s}.event_days, {s}.eff_due_at IS NOT NULL AS has_due, {s}.end_at IS NOT NULL AS has_end",
            f"{day(f'{s}.recv_at')} AS rday, {day(f'{s}.end_at')} AS eday, {day(f'{s}.eff_due_at')} AS dday",
            f"{day(f'greatest({s}.recv_at, {s}.end_at)')} AS pout_day",  # p_out: local(max(recv, end))
            f"{day(f'greatest({s}.recv_at, {s}.eff_due_at)')} AS oin_day",  # o_in: local(max(recv, due))
            f"{day(f'greatest({s}.recv_at, {s}.eff_due_at, {s}.end_at)')} AS oout_day",  # o_out
            f"{day(f'{s}.ignored_at')} AS ig_day",
            f"{s}.end_at <= {s}.eff_due_at AS final_ok, {s}.end_at > {s}.eff_due_at AS late",
            f"{SQL_ELAPSED_MS(f'{s}.recv_at', f'{s}.end_at')} AS ms",
        )
    )


def _when(cond: str, value: str = "c.sign") -> str:
    return f"CASE WHEN {cond} THEN {value} ELSE 0 END"


_RESOLVED = "c.term = 'resolved'"
SQL_CONTRIBUTIONS = (
    (  # recv is not None: the receipt's day
        "CASE WHEN c.has_recv THEN c.rday END",
        {
            "received": "c.sign",
            "c_size": "c.sign",
            "p_in": "c.sign",
            "received_online": _when("c.channel = 'online'"),
            "c_final_ok": _when("c.ok_766 AND c.has_end AND c.final_ok"),
        },
    ),
    ("CASE WHEN c.has_recv AND c.has_end THEN c.pout_day END", {"p_out": "c.sign"}),
    ("CASE WHEN c.has_recv AND c.has_due THEN c.oin_day END", {"o_in": "c.sign"}),
    ("CASE WHEN c.has_recv AND c.has_due AND c.has_end THEN c.oout_day END", {"o_out": "c.sign"}),
    (  # due soon at the midnights starting the deadline's day D and the ones before (see Delta.add)
        "CASE WHEN c.has_recv AND c.has_due THEN c.dday END",
        {name: _when(f"c.rday < c.dday - {k} AND (NOT c.has_end OR c.eday >= c.dday - {k})") for k, name in enumerate(DUE)},
    ),
    ("CASE WHEN NOT c.has_recv THEN c.ig_day END", {"orphans": "-c.sign"}),  # the ignored terminal
    (  # the terminal event's day
        "CASE WHEN c.term IS NOT NULL THEN c.eday END",
        {
            "withdrawn": _when("c.term = 'withdrawn'"),
            "resolved_unclassified": _when(f"{_RESOLVED} AND NOT c.has_due"),
            "resolved_late": _when(f"{_RESOLVED} AND c.has_due AND c.late"),
            "resolved_early": _when(f"{_RESOLVED} AND c.has_due AND NOT c.late AND c.eday < c.dday"),
            "resolved_on_time": _when(f"{_RESOLVED} AND c.has_due AND NOT c.late AND c.eday >= c.dday"),
            "proc_n": _when(f"{_RESOLVED} AND c.has_recv"),
            "proc_ms": _when(f"{_RESOLVED} AND c.has_recv", "c.sign * c.ms"),
        },
    ),
)
# A dossier without its receipt: its events by day (json_each_text(c.event_days) as je) are orphans.
SQL_ORPHANS = {"orphans": "c.sign * je.value::bigint"}

# The total rows (Delta.add's `totals`): the condition on a state `s` for each counter.
SQL_TOTALS = {
    "p_in": "{s}.recv_at IS NOT NULL",
    "p_out": "{s}.recv_at IS NOT NULL AND {s}.end_at IS NOT NULL",
    "o_in": "{s}.recv_at IS NOT NULL AND {s}.eff_due_at IS NOT NULL",
    "o_out": "{s}.recv_at IS NOT NULL AND {s}.eff_due_at IS NOT NULL AND {s}.end_at IS NOT NULL",
}
# Delta.hist: resolved dossiers with a receipt, by the local day of the end and the bucket of the time.
SQL_HIST_WHERE = "{s}.term = 'resolved' AND {s}.recv_at IS NOT NULL"
# Delta.cohort_due: judged by INDEX-766 and not (yet) ended on time, by receipt day and deadline day.
SQL_COHORT_DUE_WHERE = "{s}.recv_at IS NOT NULL AND {s}.ok_766 AND NOT ({s}.end_at IS NOT NULL AND {s}.end_at <= {s}.eff_due_at)"
# Delta.open_due: open with a receipt and a deadline, by the UTC hour of the deadline.
SQL_OPEN_DUE_WHERE = "{s}.recv_at IS NOT NULL AND {s}.eff_due_at IS NOT NULL AND {s}.end_at IS NULL"


def SQL_MARK_DAY(d: str) -> str:  # noqa: N802
    """Delta.dirty_days of a day-row change `d`: from D - 3 when a due-soon counter changed."""
    changed = " OR ".join(f"coalesce({d}.{c}, 0) <> 0" for c in DUE)
    return f"CASE WHEN {changed} THEN {d}.day - {DUE_MARK_BACK.days} ELSE {d}.day END"


def sql_type(counter: str) -> str:
    """The SQL type of a day counter's contributions: the type of its stored column (32-bit counts,
    a 64-bit duration, app.db.models.aggregates). The pass sums a few hundred thousand of them a
    batch: a sum of int is a bigint, a sum of bigint a numeric (several times slower to add)."""
    return "bigint" if isinstance(UnitDay.__table__.c[counter].type, BigInteger) else "int"


def sql_contribution_rows() -> str:
    """The VALUES rows of SQL_CONTRIBUTIONS, one column per day counter (DAY_COUNTERS)."""
    rows = []
    for day, values in SQL_CONTRIBUTIONS:
        cells = [day, *(f"({values[c]})::{sql_type(c)}" if c in values else f"0::{sql_type(c)}" for c in DAY_COUNTERS)]
        rows.append("(" + ", ".join(cells) + ")")
    return ",\n      ".join(rows)


def sql_orphan_row() -> str:
    return ", ".join(f"({SQL_ORPHANS[c]})::{sql_type(c)}" if c in SQL_ORPHANS else f"0::{sql_type(c)}" for c in DAY_COUNTERS)
