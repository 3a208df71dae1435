"""The export records (SPEC section 6), pure: figures from scoring sums, digests, validation.

A day record holds one unit's own counters of one local day, its processing-time histogram and
`pending`/`overdue`/`due_24h`/`due_48h`/`due_72h` at the end of that day (for today: at the snapshot). A cohort record holds the
INDEX-766 cohort of one unit and calendar month, quarter or year. Counters, never rates, so a
receiver rolls them up exactly.
"""

from __future__ import annotations

import hashlib
from datetime import date

import orjson

from app.aggregates.counters import FLOWS
from app.aggregates.histogram import bounds_seconds
from app.aggregates.sums import Sums, cohort_766, due_of, overdue_of, pending_of

DAY_FLOWS = FLOWS  # the cohort goes in cohort records
DUE_FIGURES = ("due_24h", "due_48h", "due_72h")  # at the end of the day (today: at the snapshot)
DAY_FIGURES = (*DAY_FLOWS, "pending", "overdue", *DUE_FIGURES)
COHORT_KINDS = ("month", "quarter", "year")
HIST_BUCKETS = 160  # buckets published in the feed; 60 s * 1.1^159 is years, past any horizon
MAX_UNIT = 8


class RecordError(ValueError):
    """A received record that does not have the shape of section 6."""


def histogram_bounds() -> list[float]:
    """The bucket upper bounds (seconds) every node publishes and must share."""
    return bounds_seconds(HIST_BUCKETS)


def day_figures(s: Sums) -> dict:
    """A day record's figures from the sums of that day's span."""
    f = s.flows or {}
    out = {c: int(f.get(c, 0)) for c in DAY_FLOWS}
    out["pending"] = pending_of(s)
    out["overdue"] = overdue_of(s)
    out.update(zip(DUE_FIGURES, due_of(s), strict=True))
    out["histogram"] = [[b, n] for b, n in sorted(s.hist.items()) if n]
    return out


def cohort_figures(s: Sums) -> dict:
    """A cohort record's figures from the sums of its period's span (this node's own cohort)."""
    size, on_time = cohort_766(s)
    return {"cohort_size": size, "cohort_on_time": on_time}


def is_zero(figures: dict) -> bool:
    return not any(figures.values())


def digest(figures: dict) -> str:
    """A stable hash of the figures, to tell whether a record changed since it was last produced."""
    return hashlib.sha256(orjson.dumps(figures, option=orjson.OPT_SORT_KEYS)).hexdigest()


def day_record(node_id: str, sequence: int, unit: str, day: date, figures: dict) -> dict:
    return {"node_id": node_id, "sequence": sequence, "kind": "day", "unit": unit, "day": day.isoformat(), **figures}


def cohort_record(node_id: str, sequence: int, unit: str, period: dict, figures: dict) -> dict:
    return {"node_id": node_id, "sequence": sequence, "kind": "cohort", "unit": unit, "period": period, **figures}


# --- receiving -----------------------------------------------------------------------------------


def _count(rec: dict, name: str) -> int:
    v = rec.get(name, 0)
    # proc_ms alone may be negative: a resolution dated before its receipt counts as it is
    low = -(2**62) if name == "proc_ms" else 0
    if not isinstance(v, int) or isinstance(v, bool) or not low <= v < 2**62:
        raise RecordError(f"{name}: expected a non-negative integer")
    return v


def _date(v, name: str) -> date:
    try:
        return date.fromisoformat(v)
    except (TypeError, ValueError):
        raise RecordError(f"{name}: expected a date") from None


def parse_record(rec: object, node_id: str) -> dict:
    """A received record as a row of network_day or network_cohort; RecordError when malformed."""
    if not isinstance(rec, dict):
        raise RecordError("expected an object")
    if rec.get("node_id") != node_id:
        raise RecordError("node_id: not the signing node")
    seq = rec.get("sequence")
    if not isinstance(seq, int) or isinstance(seq, bool) or not 0 < seq < 2**63:  # a BigInteger column
        raise RecordError("sequence: expected a positive integer below 2**63")
    unit = rec.get("unit")
    if not isinstance(unit, str) or not 0 < len(unit) <= MAX_UNIT:
        raise RecordError("unit: expected a unit code")
    row = {"unit_code": unit, "source": node_id, "sequence": seq}
    if rec.get("kind") == "day":
        row["day"] = _date(rec.get("day"), "day")
        for c in DAY_FIGURES:
            row[c] = _count(rec, c)
        hist = rec.get("histogram", [])
        if not isinstance(hist, list) or not all(
            isinstance(p, list) and len(p) == 2 and all(isinstance(x, int) and not isinstance(x, bool) for x in p) for p in hist
        ):
            raise RecordError("histogram: expected [[bucket, n], ...]")
        if any(not 0 <= b < HIST_BUCKETS or n < 0 for b, n in hist):
            raise RecordError("histogram: bucket out of range")
        row["histogram"] = orjson.dumps(sorted(hist)).decode()
        return {"kind": "day", "row": row}
    if rec.get("kind") == "cohort":
        period = rec.get("period")
        if not isinstance(period, dict) or period.get("kind") not in COHORT_KINDS:
            raise RecordError("period: expected a calendar month, quarter or year")
        row["kind"] = period["kind"]
        row["start"] = _date(period.get("start"), "period.start")
        row["c_size"] = _count(rec, "cohort_size")
        row["c_ok"] = _count(rec, "cohort_on_time")
        if row["c_ok"] > row["c_size"]:
            raise RecordError("cohort_on_time: more than cohort_size")
        return {"kind": "cohort", "row": row}
    raise RecordError("kind: expected day or cohort")


SNAPSHOTS_PATH = "/api/v1/network/snapshots"  # where a central node receives snapshots


def snapshot_body(node_id: str, bodies: list[str]) -> bytes:
    """The pushed (and pulled) document around stored record bodies, without re-encoding them."""
    head = b'{"node_id":' + orjson.dumps(node_id) + b',"histogram_bounds_seconds":' + orjson.dumps(histogram_bounds())
    return head + b',"records":[' + b",".join(b.encode() for b in bodies) + b"]}"
